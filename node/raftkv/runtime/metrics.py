"""Prometheus metrics of one node, in a per-node registry (several nodes may
share a process in tests). The names are documented in docs/metrics.md."""

from __future__ import annotations

from abc import ABC, abstractmethod
from bisect import bisect_left
from collections.abc import Iterator
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from raftkv import __version__
from raftkv.runtime.codec import REJECT_REASONS as PEER_REJECT_REASONS

_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_SLOW = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_PAUSE = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
_BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
ROLES = ("leader", "follower", "candidate", "pre_candidate", "learner")

CONTENT_TYPE = CONTENT_TYPE_LATEST


# The `limit` label values of raftkv_limit_refusals_total (runtime/limits.py).
LIMITS = ("quota", "leases", "lock_waiters", "watches", "watches_per_client", "json_depth")


# --- metrics of every request, counted by the event loop alone -------------------------
# prometheus_client's Counter and Histogram take a lock on every update (they may be
# updated from any thread): ~0.9 us an increment, ~1.6 us an observation here, three of
# them per write on the leader. The series below are updated only by the event loop's
# thread (the HTTP paths and the node loop), so a plain add is enough; a scrape reads
# them in that thread too (/metrics is served there). Same names, labels and buckets.
class LoopCounterChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        self.value += amount


class LoopHistogramChild:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound (+Inf)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # bounds[i] is the first bound >= value: Prometheus's `le` (less or equal).
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value


C = TypeVar("C")


class _LoopFamily(Collector, ABC, Generic[C]):
    """One metric family of event-loop-only children (C), keyed by label values."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: tuple[str, ...],
        registry: CollectorRegistry,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = labelnames
        self._children: dict[tuple[str, ...], C] = {}
        registry.register(self)

    def labels(self, *values: str) -> C:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._new_child()
        return child

    @abstractmethod
    def _new_child(self) -> C: ...

    @abstractmethod
    def _family(self, children: dict[tuple[str, ...], C]) -> Metric:
        """The family with a sample set per child (none for describe())."""

    def describe(self) -> list[Metric]:
        return [self._family({})]

    def collect(self) -> Iterator[Metric]:
        yield self._family(dict(self._children))


class LoopCounter(_LoopFamily[LoopCounterChild]):
    """A counter (name without `_total`) updated by the event loop only."""

    def inc(self, amount: float = 1) -> None:
        self.labels().inc(amount)

    def _new_child(self) -> LoopCounterChild:
        return LoopCounterChild()

    def _family(self, children: dict[tuple[str, ...], LoopCounterChild]) -> Metric:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, child in children.items():
            family.add_metric(list(values), child.value)
        return family


class LoopHistogram(_LoopFamily[LoopHistogramChild]):
    """A histogram updated by the event loop only."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: tuple[str, ...],
        registry: CollectorRegistry,
        buckets: tuple[float, ...],
    ) -> None:
        self.buckets = tuple(sorted(buckets))
        super().__init__(name, documentation, labelnames, registry)

    def observe(self, value: float) -> None:
        self.labels().observe(value)

    def _new_child(self) -> LoopHistogramChild:
        return LoopHistogramChild(self.buckets)

    def _family(self, children: dict[tuple[str, ...], LoopHistogramChild]) -> Metric:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, child in children.items():
            cumulative, running = [], 0
            for bound, count in zip((*self.buckets, float("inf")), child.counts, strict=True):
                running += count
                cumulative.append((_bound(bound), float(running)))
            family.add_metric(list(values), cumulative, child.sum)
        return family


def _bound(value: float) -> str:
    """A bucket's `le` as prometheus_client writes it (0.005, 1.0, +Inf)."""
    return "+Inf" if value == float("inf") else repr(float(value))


class NodeMetrics:
    def __init__(self, name: str) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.info = Gauge(
            "raftkv_info",
            "Constant 1, labelled with version and node name",
            ["version", "name"],
            registry=r,
        )
        self.info.labels(__version__, name).set(1)
        self.term = Gauge("raftkv_term", "Current Raft term", registry=r)
        self.is_leader = Gauge("raftkv_is_leader", "1 if this node is the leader", registry=r)
        self.role = Gauge("raftkv_role", "1 for this node's current role", ["role"], registry=r)
        self.leader_changes = Counter(
            "raftkv_leader_changes_total", "Leader changes seen by this node", registry=r
        )
        self.commit_index = Gauge("raftkv_commit_index", "Raft commit index", registry=r)
        self.applied_index = Gauge(
            "raftkv_applied_index", "Index applied to the state machine", registry=r
        )
        self.last_index = Gauge("raftkv_last_index", "Last index in the local log", registry=r)
        self.proposals_committed = Counter(
            "raftkv_proposals_committed_total", "Proposals of this node that committed", registry=r
        )
        self.proposals_failed = Counter(
            "raftkv_proposals_failed_total",
            "Proposals of this node that failed (dropped, lost, timed out)",
            registry=r,
        )
        self.proposal_duration = LoopHistogram(
            "raftkv_proposal_duration_seconds",
            "Proposal to apply on this node",
            (),
            r,
            _FAST,
        )
        self.proposal_duration.labels()  # the series exists from the start
        self.fsync_duration = Histogram(
            "raftkv_wal_fsync_duration_seconds",
            "Time to durably save one Ready (write + fsync)",
            buckets=_FAST,
            registry=r,
        )
        self.append_batch = Histogram(
            "raftkv_append_batch_entries",
            "Entries persisted per Ready (group commit size)",
            buckets=_BATCH,
            registry=r,
        )
        self.snapshots = Counter(
            "raftkv_snapshots_total", "Snapshots taken or installed", ["kind"], registry=r
        )
        self.snapshot_duration = Histogram(
            "raftkv_snapshot_duration_seconds",
            "Time to take and save a snapshot",
            buckets=_SLOW,
            registry=r,
        )
        self.snapshot_pause = Histogram(
            "raftkv_snapshot_pause_seconds",
            "Time the node loop stops to freeze the state for a "
            "snapshot or checkpoint (encoding runs in the "
            "background)",
            buckets=_FAST,
            registry=r,
        )
        self.checkpoints = Counter(
            "raftkv_checkpoints_total", "Checkpoints written", ["result"], registry=r
        )
        self.checkpoint_duration = Histogram(
            "raftkv_checkpoint_duration_seconds",
            "Time to write a checkpoint",
            buckets=_SLOW,
            registry=r,
        )
        self.last_checkpoint = Gauge(
            "raftkv_last_checkpoint_timestamp_seconds",
            "Unix time of the last checkpoint written",
            registry=r,
        )
        self.peer_errors = Counter(
            "raftkv_peer_rpc_errors_total",
            "Peer connection and send failures",
            ["peer"],
            registry=r,
        )
        self.peer_up = Gauge(
            "raftkv_peer_up", "1 while the connection to a peer is up", ["peer"], registry=r
        )
        self.frames_rejected = Counter(
            "raftkv_peer_frames_rejected_total",
            "Peer frames and handshakes rejected before the Raft core (the connection is "
            "closed; wrong_sender counts dropped messages)",
            ["reason"],
            registry=r,
        )
        for reason in PEER_REJECT_REASONS:
            self.frames_rejected.labels(reason)
        self.peer_plain_connections = Counter(
            "raftkv_peer_plain_connections_total",
            "Peer connections admitted in plain text while --peer-tls-migration lets the "
            "port take both (unauthenticated; zero once every member dials TLS)",
            registry=r,
        )
        self.kv_keys = Gauge("raftkv_kv_keys", "Keys in the store", registry=r)
        self.leases = Gauge("raftkv_leases", "Granted leases", registry=r)
        self.locks_held = Gauge("raftkv_locks_held", "Locks with a holder", registry=r)
        self.http_requests = LoopCounter(
            "raftkv_http_requests", "Client HTTP requests", ("route", "method", "code"), r
        )
        self.http_duration = LoopHistogram(
            "raftkv_http_request_duration_seconds",
            "Client HTTP request latency",
            ("route",),
            r,
            _FAST,
        )
        self.member_healthy = Gauge(
            "raftkv_member_healthy",
            "Leader only: 1 if the member is recently active",
            ["member", "member_name"],
            registry=r,
        )
        self.member_lag = Gauge(
            "raftkv_member_lag_entries",
            "Leader only: commit index minus the member's match index",
            ["member", "member_name"],
            registry=r,
        )
        self.members = Gauge("raftkv_members", "Cluster members by role", ["role"], registry=r)
        self.watchers = Gauge("raftkv_watchers", "Open watch streams", registry=r)
        self.state_bytes = Gauge(
            "raftkv_state_bytes", "Estimated size of the state (what a snapshot holds)", registry=r
        )
        self.quota_bytes = Gauge(
            "raftkv_quota_backend_bytes", "--quota-backend-bytes (0: no quota)", registry=r
        )
        self.quota_alarm = Gauge(
            "raftkv_quota_alarm",
            "1 while the state is at or over --quota-backend-bytes "
            "(writes that grow it are refused)",
            registry=r,
        )
        self.limit_refusals = Counter(
            "raftkv_limit_refusals_total", "Requests refused by a limit", ["limit"], registry=r
        )
        self.client_connections = Gauge(
            "raftkv_client_connections", "Open client connections", registry=r
        )
        self.client_connections_rejected = Counter(
            "raftkv_client_connections_rejected_total",
            "Client connections refused (503) at --client-max-connections",
            registry=r,
        )
        self.client_connections_closed = Counter(
            "raftkv_client_connections_closed_total",
            "Client connections closed by the node: a timeout, or a malformed request",
            ["reason"],
            registry=r,
        )
        self.gc_pause = Histogram(
            "raftkv_gc_pause_seconds",
            "Garbage-collector pauses of the process, by generation",
            ["generation"],
            buckets=_PAUSE,
            registry=r,
        )
        self.loop_lag = Histogram(
            "raftkv_event_loop_lag_seconds",
            "How late a 50 ms timer of the event loop fired (a stall)",
            buckets=_PAUSE,
            registry=r,
        )
        for role in ROLES:
            self.role.labels(role).set(0)
        for role in ("voter", "learner"):
            self.members.labels(role).set(0)
        # Every label value exists from the start, at 0: alerts and dashboards on failures
        # then see a zero, not a missing series (docs/contracts.md "Metrics").
        for result in ("success", "failure"):
            self.checkpoints.labels(result)
        for kind in ("taken", "installed"):
            self.snapshots.labels(kind)
        for limit in LIMITS:
            self.limit_refusals.labels(limit)
        for reason in ("header_timeout", "body_timeout", "idle_timeout", "malformed"):
            self.client_connections_closed.labels(reason)

    def set_role(self, role: str) -> None:
        for r in ROLES:
            self.role.labels(r).set(1 if r == role else 0)
        self.is_leader.set(1 if role == "leader" else 0)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
