"""What the emulated control plane's parts share: options, the store, the network, paths,
and the list of harness errors a test must not ignore."""

from __future__ import annotations

import contextlib
import logging
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.k8s.harness.network import ClusterNetwork
from tests.k8s.harness.store import ApiError, Obj, ObjectStore, rfc3339

if TYPE_CHECKING:
    from tests.k8s.harness.apitls import ApiTlsFront

logger = logging.getLogger("tests.k8s.harness")

NODE_NAME = "emulated-node"
NODE_IP = "127.0.0.1"
HARNESS_DIR = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent


@dataclass
class ClusterOptions:
    """Knobs of the emulated cluster. The defaults keep tests fast; each is documented in
    tests/k8s/README.md."""

    network: str | None = None
    """A /23 in 127.0.0.0/8 for pod and Service addresses; random when None."""
    probe_period_cap: float = 1.0
    """Probe periods (and initial delays) longer than this are shortened to it."""
    probe_timeout_cap: float = 2.0
    restart_backoff: tuple[float, float] = (0.2, 2.0)
    """Container restart back-off: first delay and cap (Kubernetes: 10 s and 5 min)."""
    job_backoff: tuple[float, float] = (0.2, 2.0)
    termination_grace_cap: float = 10.0
    """Graceful termination waits at most this long before SIGKILL."""
    shutdown_grace: float = 2.0
    """SIGTERM-to-SIGKILL time for the pods still running when the cluster stops."""
    pod_ip_per_incarnation: bool = False
    """A recreated pod gets a new address, as on a real cluster (default: a pod keeps its
    address per name). Then nothing is predicted: DNS names exist for running pods only,
    `raftkv serve` gets no --resolve map and resolves through the pod shim (which keeps
    uvloop out of pod processes, as it would bypass the shim), so members re-resolve a
    peer's name on every dial."""
    predicted_ordinals: int = 16
    """How many StatefulSet ordinals get their DNS name and address before their pod exists."""
    image_entrypoints: dict[str, list[str]] = field(default_factory=lambda: {"raftkv": ["raftkv"]})
    """The entrypoint of an image, for containers without `command` (matched on the full
    image, the repository, or its last path segment)."""
    raftkv_env: bool = True
    """Give every container RAFTKV_LISTEN_HOST=<pod IP> and RAFTKV_RESOLVE=<cluster names>
    unless its spec sets them (Kubernetes gives a pod its own network and DNS)."""
    pod_shim: bool = True
    """Load podshim/sitecustomize.py into Python pod processes (cluster DNS, wildcard bind)."""
    aiohttp_cluster_dns: bool = True
    """Resolve `*.svc` names for aiohttp clients in the test process (the operator)."""
    resync_seconds: float = 1.0
    volume_sync_seconds: float = 1.0
    """How often configMap/secret volumes are brought up to date (the kubelet: ~1 min)."""
    crds: list[Path] = field(default_factory=list)
    """CustomResourceDefinition YAML files applied at start (e.g. the repository's crds/)."""


class Runtime:
    def __init__(
        self, workdir: Path, options: ClusterOptions, store: ObjectStore, network: ClusterNetwork
    ) -> None:
        self.workdir = workdir
        self.options = options
        self.store = store
        self.network = network
        self.errors: list[str] = []
        """Harness failures (bugs, crashed controller loops): the fixture fails on them."""
        self.api_tls: ApiTlsFront | None = None
        """The API server as pods reach it (HTTPS); set once the cluster runs."""
        self.warnings: list[str] = []
        """What a real controller would report as a Warning event (e.g. an invalid pod)."""

    def report_error(self, where: str, exc: BaseException | None = None) -> None:
        text = f"{where}: {''.join(traceback.format_exception(exc)) if exc else ''}"
        self.errors.append(text)
        logger.error("harness error in %s", text)

    def warn(self, involved: Obj | None, reason: str, message: str, component: str) -> None:
        self.warnings.append(f"{component}: {reason}: {message}")
        logger.warning("%s: %s: %s", component, reason, message)
        if involved is not None:
            self.event(involved, reason, message, component, type_="Warning")

    def event(
        self, involved: Obj, reason: str, message: str, component: str, type_: str = "Normal"
    ) -> None:
        meta = involved.get("metadata") or {}
        namespace = meta.get("namespace") or "default"
        now = rfc3339()
        body = {
            "metadata": {"generateName": f"{meta.get('name', 'object')}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion"),
                "kind": involved.get("kind"),
                "name": meta.get("name"),
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
            },
            "reason": reason,
            "message": message,
            "type": type_,
            "source": {"component": component, "host": NODE_NAME},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": component,
            "reportingInstance": NODE_NAME,
        }
        with contextlib.suppress(ApiError):  # the namespace is going away: no matter
            self.store.create("v1/events", body, namespace)

    # ---- paths -------------------------------------------------------------------------------

    def claim_path(self, namespace: str, claim: str) -> Path:
        """The directory standing in for a PersistentVolumeClaim's volume."""
        return self.workdir / "pvcs" / namespace / claim

    def pod_dir(self, namespace: str, name: str, uid: str) -> Path:
        return self.workdir / "pods" / namespace / f"{name}-{uid[:8]}"

    def log_path(self, namespace: str, pod: str, container: str) -> Path:
        return self.workdir / "logs" / namespace / pod / f"{container}.log"


def owner_reference(owner: Obj, *, controller: bool = True) -> dict[str, Any]:
    meta = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": controller,
        "blockOwnerDeletion": True,
    }


def controlled_by(obj: Obj, owner_uid: str) -> bool:
    return any(
        ref.get("uid") == owner_uid and ref.get("controller")
        for ref in obj.get("metadata", {}).get("ownerReferences") or []
    )


def condition(obj: Obj, type_: str) -> dict[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return None


def pod_ready(pod: Obj) -> bool:
    c = condition(pod, "Ready")
    return bool(c and c.get("status") == "True")


def set_condition(
    conditions: list[dict[str, Any]],
    type_: str,
    status: bool,
    reason: str | None = None,
    message: str | None = None,
) -> None:
    value = "True" if status else "False"
    for c in conditions:
        if c.get("type") == type_:
            if c.get("status") != value:
                c["status"] = value
                c["lastTransitionTime"] = rfc3339()
            if reason is not None:
                c["reason"] = reason
            else:
                c.pop("reason", None)
            if message is not None:
                c["message"] = message
            else:
                c.pop("message", None)
            return
    entry: dict[str, Any] = {
        "type": type_,
        "status": value,
        "lastProbeTime": None,
        "lastTransitionTime": rfc3339(),
    }
    if reason is not None:
        entry["reason"] = reason
    if message is not None:
        entry["message"] = message
    conditions.append(entry)
