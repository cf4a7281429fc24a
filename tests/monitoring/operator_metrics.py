"""The operator's real metrics for the live checks, served in-process.

The operator is not runnable here without a Kubernetes API, so the live test imports the
operator's own metrics module (raftkv_operator.metrics), records into its metric objects
what reconciling one RaftCluster records (rounds that succeed and one that fails, a leader
switch, a checkpoint, the cluster's phase), and serves its registry on loopback for
Prometheus to scrape: names, labels and types are the operator's. When that module is
missing or lacks these objects, `start` returns None and the live test reports the operator
expressions as unchecked.
"""

from __future__ import annotations

import importlib
import threading
import time
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIServer

MODULE = "raftkv_operator.metrics"
NEEDED = ("REGISTRY", "RECONCILES", "RECONCILE_DURATION", "LEADER_SWITCH", "CHECKPOINTS",
          "ARCHIVES", "set_phase", "set_active", "set_quorum", "set_ca")  # fmt: skip
"""What this module calls; the operator's metrics module is expected to offer them."""


def unavailable_reason() -> str | None:
    """Why the operator's metrics cannot be served, or None."""
    try:
        module = importlib.import_module(MODULE)
    except ImportError as error:
        return f"{MODULE} is not importable ({error})"
    missing = [name for name in NEEDED if not hasattr(module, name)]
    if missing:
        return f"{MODULE} lacks {missing}"
    return None


@dataclass
class OperatorMetrics:
    server: WSGIServer
    thread: threading.Thread
    target: str

    @classmethod
    def start(cls, namespace: str, cluster: str) -> OperatorMetrics | None:
        if unavailable_reason() is not None:
            return None
        from prometheus_client import start_http_server

        from raftkv_operator.models import ClusterPhase

        module: Any = importlib.import_module(MODULE)
        # Only the active replica reconciles. Set it here: the metrics module is a
        # process-wide singleton, and an earlier test's standby may have left it at 0.
        module.set_active(True)
        for seconds, result in ((0.05, "success"), (0.2, "error"), (0.04, "success")):
            module.RECONCILES.labels(cluster, namespace, result).inc()
            module.RECONCILE_DURATION.observe(seconds)
        module.LEADER_SWITCH.observe(0.4)
        module.CHECKPOINTS.labels("success").inc()
        module.set_phase(namespace, cluster, ClusterPhase.AVAILABLE)
        # A cluster that lost its quorum and recovers; one archive copy failed, one succeeded.
        module.set_quorum(namespace, cluster, lost=True, recovering=True, restoring=True)
        module.ARCHIVES.labels(cluster, namespace, "success").inc()
        module.ARCHIVES.labels(cluster, namespace, "failure").inc()
        # A CA rotation in its first step; the CA expires in 10 years.
        module.set_ca(namespace, cluster, 1, time.time() + 3650 * 86400)
        server, thread = start_http_server(0, addr="127.0.0.1", registry=module.REGISTRY)
        return cls(server, thread, f"127.0.0.1:{server.server_port}")

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
