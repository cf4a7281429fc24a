"""The operator's Prometheus metrics (names pinned in docs/contracts.md "Metrics").

One registry of our own (not the process-global default), served on `--metrics-port` by
`serve()`; tests read it with `exposition()`.
"""

from __future__ import annotations

import contextlib
import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import start_http_server

from raftkv_operator.models import ClusterPhase

REGISTRY = CollectorRegistry(auto_describe=True)

RECONCILES = Counter(
    "raftkv_operator_reconciles",
    "Reconcile rounds of a RaftCluster, by result.",
    ["cluster", "namespace", "result"],
    registry=REGISTRY,
)
RECONCILE_DURATION = Histogram(
    "raftkv_operator_reconcile_duration_seconds",
    "Time of one reconcile round (observe, decide, act, write status).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
CLUSTERS = Gauge(
    "raftkv_operator_clusters",
    "RaftClusters managed by this operator, by phase.",
    ["phase"],
    registry=REGISTRY,
)
CHECKPOINTS = Counter(
    "raftkv_operator_checkpoints",
    "Checkpoints requested through RaftCheckpoint objects, by result.",
    ["result"],
    registry=REGISTRY,
)
LEADER_SWITCH = Histogram(
    "raftkv_operator_leader_switch_seconds",
    "From a leadership change seen by the operator to the role labels moved.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)

COMMIT_INDEX = Gauge(
    "raftkv_operator_commit_index",
    "The leader's commit index, as the operator last saw it.",
    ["cluster", "namespace"],
    registry=REGISTRY,
)
MEMBER_LAG = Gauge(
    "raftkv_operator_member_lag_entries",
    "Entries a member is behind the leader's last index, as the operator last saw it.",
    ["cluster", "namespace", "member"],
    registry=REGISTRY,
)

ARCHIVES = Counter(
    "raftkv_operator_checkpoint_archives",
    "Checkpoint archive copies (the archive Job) by result: success or failure.",
    ["cluster", "namespace", "result"],
    registry=REGISTRY,
)
QUORUM_LOST = Gauge(
    "raftkv_operator_quorum_lost",
    "1 while no member leads and fewer voters answer with their data than a quorum (the "
    "cluster cannot elect a leader by itself); the alert RaftkvQuorumLost.",
    ["cluster", "namespace"],
    registry=REGISTRY,
)
RECOVERY_IN_PROGRESS = Gauge(
    "raftkv_operator_recovery_in_progress",
    "1 while a quorum-loss recovery (spec.recovery) is in flight.",
    ["cluster", "namespace"],
    registry=REGISTRY,
)

RESTORE_IN_PROGRESS = Gauge(
    "raftkv_operator_restore_in_progress",
    "1 while an in-place restore (spec.restoreInPlace) is in flight (writes are stopped).",
    ["cluster", "namespace"],
    registry=REGISTRY,
)

CA_ROTATION_STEP = Gauge(
    "raftkv_operator_ca_rotation_step",
    "The cluster CA rotation's step in flight: 0 none, 1 TrustBoth (old + new CA trusted), "
    "2 IssueNew (member certificates from the new CA), 3 DropOld (the old CA dropped).",
    ["cluster", "namespace"],
    registry=REGISTRY,
)
CA_EXPIRY = Gauge(
    "raftkv_operator_ca_expiry_timestamp_seconds",
    "When the CA that signs the cluster's member certificates expires (Unix time); the "
    "operator rotates it when a third of its lifetime is left.",
    ["cluster", "namespace"],
    registry=REGISTRY,
)

ACTIVE = Gauge(
    "raftkv_operator_active",
    "1 on the operator replica that acts (holds the leader-election Lease, or runs alone), "
    "0 on a standby. The alert RaftkvOperatorAbsent fires when no replica reports 1.",
    registry=REGISTRY,
)
ACTIVE.set(1)  # a standalone operator acts; leader election sets it to 0 while it waits

_phases: dict[tuple[str, str], str] = {}
_lagging: dict[tuple[str, str], set[str]] = {}
_phases_lock = threading.Lock()


def set_phase(namespace: str, name: str, phase: ClusterPhase | None) -> None:
    """Record a cluster's phase (None: the cluster is gone) and refresh the gauge."""
    with _phases_lock:
        if phase is None:
            _phases.pop((namespace, name), None)
        else:
            _phases[(namespace, name)] = phase.value
        for known in ClusterPhase:
            CLUSTERS.labels(known.value).set(
                sum(1 for value in _phases.values() if value == known.value)
            )


def set_progress(namespace: str, name: str, commit_index: int | None, lags: dict[str, int]) -> None:
    """The fast-moving counters of a cluster (never in its status)."""
    if commit_index is not None:
        COMMIT_INDEX.labels(name, namespace).set(commit_index)
    with _phases_lock:
        for member, value in lags.items():
            MEMBER_LAG.labels(name, namespace, member).set(value)
        gone = _lagging.get((namespace, name), set()) - set(lags)
        for member in gone:
            with contextlib.suppress(KeyError):
                MEMBER_LAG.remove(name, namespace, member)
        _lagging[(namespace, name)] = set(lags)


def set_quorum(
    namespace: str, name: str, *, lost: bool, recovering: bool, restoring: bool = False
) -> None:
    QUORUM_LOST.labels(name, namespace).set(1 if lost else 0)
    RECOVERY_IN_PROGRESS.labels(name, namespace).set(1 if recovering else 0)
    RESTORE_IN_PROGRESS.labels(name, namespace).set(1 if restoring else 0)


def set_ca(namespace: str, name: str, step: int, expires: float | None) -> None:
    CA_ROTATION_STEP.labels(name, namespace).set(step)
    if expires is not None:
        CA_EXPIRY.labels(name, namespace).set(expires)


def set_active(active: bool) -> None:
    ACTIVE.set(1 if active else 0)


def forget_cluster(namespace: str, name: str) -> None:
    set_phase(namespace, name, None)
    set_progress(namespace, name, None, {})
    for gauge in (
        COMMIT_INDEX,
        QUORUM_LOST,
        RECOVERY_IN_PROGRESS,
        RESTORE_IN_PROGRESS,
        CA_ROTATION_STEP,
        CA_EXPIRY,
    ):
        with contextlib.suppress(KeyError):
            gauge.remove(name, namespace)
    for result in ("success", "error"):
        with contextlib.suppress(KeyError):
            RECONCILES.remove(name, namespace, result)
    for result in ("success", "failure"):
        with contextlib.suppress(KeyError):
            ARCHIVES.remove(name, namespace, result)


def exposition() -> bytes:
    return generate_latest(REGISTRY)


def serve(port: int, address: str = "0.0.0.0") -> None:
    """Serve /metrics on a background thread."""
    start_http_server(port, addr=address, registry=REGISTRY)
