"""The node loop: one asyncio task drives the Raft core, the storage and the state machine.

Everything that touches the core runs inside `_run`, between two awaits, so the
core is never re-entered: the HTTP layer and the peer transport only queue
inputs (`RaftNode` in node.py: peer messages, proposals, reads, actions) and wake
the loop. One turn of the loop:

1. fire the ticks that are due (election / heartbeat timers, lease expiry);
2. step every queued peer message; propose every queued request as ONE batch
   (`propose_batch`); issue ONE ReadIndex for every queued linearizable read;
3. for each Ready: run the steps of its plan (`ready.py`, shared with the
   simulator): persist it (snapshot, entries, hard state: one write and one
   fsync, inline while fsyncs are fast, else in the storage thread: see
   `durable.py`; whatever arrives meanwhile joins the next Ready, which is what
   makes batches big: group commit), send its messages, apply its committed
   entries, `advance`, release the reads it made safe. (A leader with a durable
   term sends its appends before its own fsync, so the followers' fsyncs run
   alongside it; committed entries already on disk are applied before the fsync.)

Nothing waits for a tick: an input wakes the loop at once. Ticks drive only the
timers (elections, heartbeats, lease expiry, and the sweep that fails requests
past their deadline: one ordered queue instead of a timer per request).

The parts it drives, one job each: `proposals` and `readindex` (the queued
inputs), `waiters` (who waits for what), `applier` (committed entries into the
state machine, and their side effects), `snapshotter` (snapshots, compaction,
checkpoints), `views` (status, members, metrics).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from typing import Any, assert_never

from raftkv.consensus import (
    NONE,
    AnyConsensus,
    ConfChange,
    ConfChangeType,
    Entry,
    HardState,
    NotLeader,
    ProposalDropped,
    ReadyBatch,
    Snapshot,
    SoftState,
    StateRole,
    sends_before_persist,
)
from raftkv.fsm import LeaseExpire, MemberClientUrl, StateMachine, encode
from raftkv.runtime import ready
from raftkv.runtime.admission import ClusterId
from raftkv.runtime.applier import Applier
from raftkv.runtime.config import NodeConfig
from raftkv.runtime.durable import DurableWriter
from raftkv.runtime.leases import LeaseClock
from raftkv.runtime.limits import AdmissionLimits
from raftkv.runtime.metrics import NodeMetrics
from raftkv.runtime.outcomes import Completion, NodeFailed, Pending
from raftkv.runtime.proposals import ProposalQueue, RequestIds
from raftkv.runtime.readindex import ReadIndexQueue
from raftkv.runtime.ready import (
    Advance,
    Apply,
    DeferHardState,
    Persist,
    PersistSnapshot,
    ReleaseReads,
    RestoreSnapshot,
    Send,
)
from raftkv.runtime.snapshotter import Snapshotter
from raftkv.runtime.views import NodeView
from raftkv.runtime.waiters import Waiters
from raftkv.runtime.watch import WatchHub
from raftkv.storage.checkpoints import CheckpointStore
from raftkv.storage.protocols import RaftStore, SnapshotStore

log = logging.getLogger("raftkv.node")

MAX_READIES_PER_TURN = 64  # then let the event loop run (I/O, HTTP) before more
FAILED_EXIT_SECONDS = 1.0  # after the loop died: time to answer the pending requests


class NodeLoop:
    """The loop task and the state it alone changes. `RaftNode` (node.py) adds the
    inputs and requests the rest of the process makes of it."""

    def __init__(
        self,
        cfg: NodeConfig,
        *,
        raft_store: RaftStore,
        snapshot_store: SnapshotStore,
        checkpoint_store: CheckpointStore | None,
        fsm: StateMachine,
        metrics: NodeMetrics,
    ) -> None:
        self.cfg = cfg
        self.id = cfg.id
        self.raft_store = raft_store
        self.snapshot_store = snapshot_store
        self.checkpoint_store = checkpoint_store
        self.fsm = fsm
        self.metrics = metrics
        self.watch = WatchHub(
            max_watchers=cfg.max_watches, max_per_client=cfg.max_watches_per_client
        )
        self.admission = AdmissionLimits(
            cfg.quota_backend_bytes, cfg.max_leases, cfg.max_lock_waiters
        )
        metrics.quota_bytes.set(cfg.quota_backend_bytes)
        # How the process ends when the loop dies (a test replaces it).
        self.exit_process: Callable[[int], None] = os._exit
        self.leases = LeaseClock()
        # The engine's messages to the peer transport (which encodes them).
        self.send: Callable[[list[Any]], None] = lambda msgs: None
        self.on_members_changed: Callable[[], None] = lambda: None
        self.on_role_changed: Callable[[], None] = lambda: None  # must not block
        self.core: AnyConsensus  # set by open(): the engine of --consensus
        # This node's cluster id (runtime.admission); the server sets it at start.
        self.cluster = ClusterId(None, None)
        # The TLS files each plane's contexts were built from, for /v1/status (the server
        # sets it; None without TLS).
        self.tls_material: Callable[[], dict[str, Any]] = lambda: {"peer": None, "client": None}
        # What the peer port accepts and how it dials (runtime.server.peer_modes).
        self.peer_modes: Callable[[], dict[str, Any]] = lambda: {}
        # The last peer refused for running another consensus engine (PeerGate).
        self.engine_mismatch: Callable[[], dict[str, Any] | None] = lambda: None
        self.peer_commit: dict[int, int] = {}  # the commit index each peer last told us
        self.peer_seen: dict[int, float] = {}  # when we last heard from each peer
        self.removed = False  # this node was removed from the cluster
        # Set when the node shuts down: nothing waits for long any more.
        self.long_polls_ended = asyncio.Event()
        self.started_at = time.monotonic()
        # The parts.
        self.view = NodeView(self)
        self.waiters = Waiters()
        self._proposals = ProposalQueue()
        self._request_ids = RequestIds(self.id)
        self._reads = ReadIndexQueue()
        self._snapshots = Snapshotter(
            cfg,
            fsm,
            raft_store,
            snapshot_store,
            checkpoint_store,
            metrics,
            self.waiters,
            run_in_loop=self._run_in_loop,
            member_names=lambda: sorted(self.view.member_name(m) for m in self.core.conf.members()),
        )
        self._applier = Applier(
            fsm,
            self.watch,
            self.waiters,
            self.leases,
            metrics,
            is_leader=lambda: self.core.role == StateRole.LEADER,
            on_conf_change=self._on_conf_change,
            on_checkpoint=lambda checkpoint_id, index, term: self._snapshots.write_checkpoint(
                checkpoint_id, index, self.core.shown_term(term)
            ),
        )
        # The loop's own state.
        self._inbox: list[Any] = []  # the engine's messages, decoded and checked
        self._actions: list[Callable[[], None]] = []
        self._waker: asyncio.Future[None] | None = None
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._durable = DurableWriter()
        self._ticks = 0
        self._last_leader = NONE
        self._last_term = 0
        self._durable_hs = HardState()
        self._deferred_hs: HardState | None = None  # a commit-only change not yet written

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="raft-loop")
        self._task.add_done_callback(self._loop_died)

    def _loop_died(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or self._stopping:
            return
        exc = task.exception()
        if exc is not None:
            log.critical("the Raft loop died: %r", exc, exc_info=exc)
            # Storage failures are not survivable in place (see WALUnusableError):
            # nothing is applied or acknowledged from now on. Answer what is pending
            # (outcome unknown, never "done"), refuse what comes, then exit.
            self._stopping = True
            self._fail_pending(
                NodeFailed(
                    f"the node failed ({exc!r}; a WAL write or fsync failed: disk full?) and "
                    "exits; this write was not acknowledged and its outcome is unknown: "
                    "retry on another member with the same session headers"
                )
            )
            asyncio.get_running_loop().call_later(FAILED_EXIT_SECONDS, self.exit_process, 70)

    def _fail_pending(self, exc: Exception) -> None:
        """Fail every queued or in-flight proposal and read with `exc`."""
        pending = self.waiters.take_proposals()
        pending += [fut for _, fut, _ in self._proposals.take()]
        pending += self._reads.take_all()
        pending += self.waiters.checkpoint_futures()
        for fut in pending:
            if not fut.done():
                fut.set_exception(exc)

    def _wake(self) -> None:
        w = self._waker
        if w is not None and not w.done():
            w.set_result(None)

    def _run_in_loop(self, action: Callable[[], None]) -> None:
        self._actions.append(action)
        self._wake()

    def _queue_proposal(self, data: bytes, fut: Pending) -> None:
        now = time.monotonic()
        self._proposals.add(data, fut, now)
        self.waiters.deadline(now + self.cfg.request_timeout, fut)

    # ======================================================================
    # The loop
    # ======================================================================
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        tick = self.cfg.tick_seconds
        next_tick = loop.time() + tick
        readies = 0
        while not self._stopping:
            if not (
                self._inbox
                or self._proposals.queued
                or self._reads.queued
                or self._actions
                or self.core.has_ready()
                or self._snapshots.pending_compaction
            ):
                readies = 0
                waker = self._waker = loop.create_future()
                handle = loop.call_at(next_tick, _resolve, waker)
                await waker
                handle.cancel()
                self._waker = None
            elif readies >= MAX_READIES_PER_TURN:
                # Inline writes never suspend: don't starve the sockets of a busy node.
                readies = 0
                await asyncio.sleep(0)
            now = loop.time()
            if now >= next_tick:
                behind = int((now - next_tick) / tick) + 1
                for _ in range(min(behind, 3)):  # after a stall, don't fire a burst
                    self.core.tick()
                    self._ticks += 1
                next_tick = max(next_tick + tick * behind, now + tick / 2)
                self._on_tick()
            # Inputs that arrived during the last fsync join this Ready (group commit).
            self._drain_inputs()
            if self.core.has_ready():
                readies += 1
                await self._handle_ready(self.core.ready())
            if self._snapshots.pending_compaction:
                upto = self._snapshots.take_compaction()
                await self._durable.run(self.raft_store.compact, upto)

    def _drain_inputs(self) -> None:
        core = self.core
        if self._actions:
            actions, self._actions = self._actions, []
            for action in actions:
                action()
        if self._inbox:
            inbox, self._inbox = self._inbox, []
            for m in inbox:
                if m.snapshot is not None and m.snapshot.data is None:
                    continue  # a snapshot arrives only through deliver_snapshot
                if m.to != self.id:
                    continue  # meant for an earlier incarnation at this address
                core.step(m)
        if self._proposals.queued:
            self._propose_queued()
        if self._reads.queued:
            self._reads.issue(core, self._ticks)

    def _propose_queued(self) -> None:
        live = [(d, f, t) for d, f, t in self._proposals.take() if not f.done()]
        if not live:
            return
        datas = [d for d, _, _ in live]
        by_value = self.core.OUTCOME_BY_VALUE
        if by_value:  # outcome = "my value was chosen": each proposal's value is its own
            datas = [self._request_ids.stamp(d) for d in datas]
        try:
            term, first = self.core.propose_batch(datas)
        except ProposalDropped as exc:
            for _, fut, _ in live:
                fut.set_exception(exc)
            self.metrics.proposals_failed.inc(len(live))
            return
        for i, (_, fut, started) in enumerate(live):
            self.waiters.expect(first + i, term, fut, started, datas[i] if by_value else None)
        self._proposals.in_log(first + len(live) - 1, sum(len(d) for d, _, _ in live))

    def _on_tick(self) -> None:
        now = time.monotonic()
        self.waiters.expire(now)
        self._reads.reissue_lost(self._ticks, self.cfg.election_ticks)
        if self.core.role == StateRole.LEADER:
            due = self.leases.due(now)
            if due:
                try:
                    self.core.propose(encode(LeaseExpire(due)))
                except ProposalDropped as exc:
                    log.debug("internal proposal dropped: %s", exc)
            self.view.update_member_metrics()

    # ======================================================================
    # One Ready
    # ======================================================================
    async def _handle_ready(self, rd: ReadyBatch[Any]) -> None:
        """Run the steps `ready.plan` gives for `rd` (the order, and why it is safe, is
        explained there and in docs/architecture.md; the simulator runs the same plan)."""
        if rd.soft_state is not None:
            self._on_soft_state(rd.soft_state)
        steps = ready.plan(
            rd,
            leader=sends_before_persist(self.core),
            durable=self._durable_hs,
            deferred=self._deferred_hs,
        )
        for step in steps:
            # `type(step) is` in order of frequency: twice as fast as `match` here.
            if type(step) is Send:
                self.send(step.messages)
            elif type(step) is Apply:
                self._apply_entries(step.entries)
            elif type(step) is Persist:
                hs, entries = step.hard_state, step.entries
                started = time.perf_counter()
                await self._durable.run(self.raft_store.save, hs, entries, entries=len(entries))
                self.metrics.fsync_duration.observe(time.perf_counter() - started)
                if hs is not None:
                    self._durable_hs = hs
                    self._deferred_hs = None
                if entries:
                    self.metrics.append_batch.observe(len(entries))
            elif type(step) is Advance:
                self.core.advance(rd)
            elif type(step) is ReleaseReads:
                self._reads.answered(step.read_states)
                self._release_reads()
            elif type(step) is DeferHardState:
                # Like etcd, no fsync for the commit index alone: it is volatile in
                # Raft (a restarted node relearns it); it rides with the next entries.
                self._deferred_hs = step.hard_state
            elif type(step) is PersistSnapshot:
                await self._durable.run_in_thread(
                    self._persist_snapshot, step.snapshot, step.hard_state
                )
                self._durable_hs = step.hard_state
                self._deferred_hs = None
            elif type(step) is RestoreSnapshot:
                self._restore_snapshot(step.snapshot)
            else:
                assert_never(step)
        if rd.hard_state is not None and self.core.term != self._last_term:
            # The term as the engine shows it (a Paxos hard state holds the whole ballot).
            self._last_term = self.core.term
            self.view.changed()
        self.view.update_metrics()
        self._snapshots.maybe_snapshot(self.core)
        self.waiters.drop_answered()  # this Ready's answers: their slots may go now

    def _apply_entries(self, entries: list[Entry]) -> None:
        self._applier.apply(entries)

    def _release_reads(self) -> None:
        self._reads.release(self.fsm.applied_index)

    def _persist_snapshot(self, snap: Snapshot, hs: HardState) -> None:
        self._snapshots.persist(snap, hs, self._durable_hs.commit)

    def _restore_snapshot(self, snap: Snapshot) -> None:
        assert snap.data is not None
        self.fsm.restore(snap.data)
        self.watch.reset(self.fsm.revision)
        self._snapshots.installed(snap.meta)
        self.waiters.snapshot_installed(snap.meta)
        self.on_members_changed()
        log.info("installed snapshot at index %d (term %d)", snap.meta.index, snap.meta.term)

    def _on_conf_change(self, cc: ConfChange) -> None:
        if cc.type == ConfChangeType.REMOVE and cc.node_id == self.id:
            self.removed = True
            log.warning("this node (%s) was removed from the cluster", self.cfg.name)
        elif cc.node_id == self.id:
            self.removed = False
        if cc.type == ConfChangeType.REMOVE:
            self.peer_commit.pop(cc.node_id, None)
            self.peer_seen.pop(cc.node_id, None)
            self.view.forget_member_series(cc.node_id)
        self.on_members_changed()

    def _on_soft_state(self, ss: SoftState) -> None:
        if ss.leader != self._last_leader:
            if ss.leader != NONE:
                self.metrics.leader_changes.inc()
                self._reads.reissue_all()
            self._last_leader = ss.leader
        if ss.role == StateRole.LEADER:
            self.leases.reset(self.fsm.leases(), time.monotonic())
            self._register_client_url()
        else:
            self.leases.clear()
            # Proposals queued for a leader that is gone fail fast (the HTTP layer
            # re-forwards); those already in the log wait for their entry's fate.
            for _, fut, _ in self._proposals.step_down():
                if not fut.done():
                    fut.set_exception(NotLeader(ss.leader))
        self.metrics.set_role(self.view.role_name())
        self.on_role_changed()
        self.view.changed()

    def _register_client_url(self) -> None:
        """A new leader puts its client URL in the replicated directory if it is not
        there yet: followers forward writes to it (and clients learn it) from there."""
        url = self.cfg.advertise_client_url
        known = self.fsm.members.get(self.id)
        if not url or (known is not None and known.get("client_url") == url):
            return
        done = Completion(lambda result, exc: None)  # retried at the next election if lost
        self._queue_proposal(encode(MemberClientUrl(self.id, url)), done)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
