"""Emulated Kubernetes: two operator replicas (real `raftkv-operator` processes, as two pods
would run them, watching only their namespace) elect one active replica through a
coordination.k8s.io Lease.

The standby answers /healthz (a liveness probe must not restart it) and reports
`raftkv_operator_active 0`; after a `kill -9` of the active replica the standby takes the
Lease and reconciles within 15 s; a graceful stop hands the Lease over at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from raftkv.tools.ports import free_port
from tests.k8s.harness.cluster import EmulatedCluster
from tests.k8s.harness_ext import (
    CLUSTERS,
    NAMESPACE,
    OPERATOR_ENV,
    cluster_manifest,
    emulated_fixture,  # noqa: F401 - the `emulated` fixture
    status,
    wait_available,
    wait_for,
)

NAME = "ha"
LEASE = "raftkv-operator"
LEASES = "coordination.k8s.io/v1/leases"
FAILOVER_BUDGET = 15.0
pytestmark = pytest.mark.timeout(240)


class Replica:
    """One operator replica: a `raftkv-operator` process with leader election."""

    def __init__(self, emulated: EmulatedCluster, identity: str, logs: Path) -> None:
        self.identity = identity
        self.health_port, self.metrics_port = free_port(), free_port()
        env = {**os.environ, **emulated.env(), **OPERATOR_ENV}
        self.log = open(logs / f"{identity}.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "raftkv-operator"),
                # The chart's watch.releaseNamespaceOnly mode: one namespace, no cluster-wide
                # CRD/namespace scanning (a Role-only install).
                f"--namespace={NAMESPACE}",
                "--no-cluster-scan",
                f"--leader-election-lease={LEASE}",
                f"--leader-election-namespace={NAMESPACE}",
                f"--identity={identity}",
                f"--liveness=http://127.0.0.1:{self.health_port}/healthz",
                f"--metrics-port={self.metrics_port}",
                "--metrics-address=127.0.0.1",
                "--log-format=full",
            ],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def get(self, port: int, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                return r.status, r.read().decode()
        except OSError:
            return 0, ""

    def healthy(self) -> bool:
        return self.get(self.health_port, "/healthz")[0] == 200

    def active(self) -> float | None:
        code, text = self.get(self.metrics_port, "/metrics")
        if code != 200:
            return None
        line = next((x for x in text.splitlines() if x.startswith("raftkv_operator_active ")), "")
        return float(line.split()[1]) if line else None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.log.close()


def holder(emulated: EmulatedCluster) -> str | None:
    lease = emulated.get(LEASES, NAMESPACE, LEASE)
    return ((lease or {}).get("spec") or {}).get("holderIdentity")


@pytest.fixture
def replicas(emulated: EmulatedCluster, tmp_path: Path) -> Iterator[dict[str, Replica]]:
    started: dict[str, Replica] = {}
    yield started
    for replica in started.values():
        replica.stop(signal.SIGKILL)


def test_one_active_replica_and_failover_within_15_s(
    emulated: EmulatedCluster, replicas: dict[str, Replica], tmp_path: Path
) -> None:
    replicas["a"] = Replica(emulated, "op-a", tmp_path)
    wait_for(emulated, lambda: holder(emulated) == "op-a", 30, "op-a takes the Lease")
    replicas["b"] = Replica(emulated, "op-b", tmp_path)
    a, b = replicas["a"], replicas["b"]
    wait_for(emulated, lambda: b.active() == 0.0 and b.healthy(), 30, "op-b stands by, healthy")
    wait_for(emulated, lambda: a.active() == 1.0, 10, "op-a reports itself active")

    emulated.create(CLUSTERS, cluster_manifest(NAME, 1), NAMESPACE)
    wait_available(emulated, NAME, 1, timeout=90)
    assert holder(emulated) == "op-a"
    assert b.active() == 0.0, "the standby never acts"

    # A crash of the active replica: the standby takes over once the Lease goes stale.
    killed = time.monotonic()
    a.stop(signal.SIGKILL)
    wait_for(emulated, lambda: holder(emulated) == "op-b", 30, "op-b takes the Lease")
    took_lease = time.monotonic() - killed
    emulated.patch(CLUSTERS, NAMESPACE, NAME, {"spec": {"paused": True}})
    wait_for(emulated, lambda: status(emulated, NAME).get("phase") == "Paused", 30, "op-b acts")
    acted = time.monotonic() - killed
    print(f"failover after kill -9: Lease in {took_lease:.1f} s, reconciled in {acted:.1f} s")
    assert acted <= FAILOVER_BUDGET, f"the standby acted {acted:.1f} s after the crash"
    assert b.active() == 1.0

    # A graceful stop (rollout, drain) hands the Lease over at once.
    replicas["c"] = Replica(emulated, "op-c", tmp_path)
    c = replicas["c"]
    wait_for(emulated, lambda: c.active() == 0.0, 30, "op-c stands by")
    stopped = time.monotonic()
    b.stop(signal.SIGTERM)
    wait_for(emulated, lambda: holder(emulated) == "op-c", 30, "op-c takes the released Lease")
    handover = time.monotonic() - stopped
    emulated.patch(CLUSTERS, NAMESPACE, NAME, {"spec": {"paused": False}})
    wait_available(emulated, NAME, 1, timeout=60)
    print(f"graceful handover: Lease in {handover:.1f} s")
    assert handover <= FAILOVER_BUDGET
