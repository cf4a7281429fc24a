"""The node loop: one asyncio task drives the Raft core, the storage and the state machine.

Everything that touches the core runs inside `_run`, between two awaits, so the
core is never re-entered: HTTP handlers and the peer transport only queue
inputs (`_inbox`, `_proposals`, `_reads`, `_actions`) and wake the loop. One
turn of the loop:

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

Snapshots are taken every `snapshot_entries` applied entries and saved in the
background; compaction follows once the snapshot is durable. The loop only
freezes the state at the exact index (`StateMachine.snapshot_view`: reference
copies, ~70 ms at a million keys instead of ~1 s to encode it all); the
encoding runs in the background thread, yielding to the loop between chunks,
and gives the same bytes on every member (checkpoints too).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, assert_never

from raftkv.fsm import ApplyResult, StateMachine
from raftkv.raft import (
    NONE,
    ConfChange,
    ConfChangeType,
    Config,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MsgType,
    NotLeader,
    ProposalDropped,
    Raft,
    Ready,
    Snapshot,
    SnapshotMeta,
    SoftState,
    StateRole,
)
from raftkv.raft.core import bootstrap_entries
from raftkv.runtime import ready
from raftkv.runtime.admission import ClusterId
from raftkv.runtime.config import NodeConfig
from raftkv.runtime.durable import DurableWriter
from raftkv.runtime.leases import LeaseClock
from raftkv.runtime.limits import AdmissionLimits, admission_refusal, over_quota
from raftkv.runtime.metrics import NodeMetrics
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
from raftkv.runtime.watch import WatchHub
from raftkv.storage.checkpoints import CheckpointStore, read_checkpoint
from raftkv.storage.protocols import InitialState, RaftStore, SnapshotStore
from raftkv.storage.recovery import recover

log = logging.getLogger("raftkv.node")

READY_LAG_ENTRIES = 1000  # a member this close to the leader's commit counts as caught up
PROMOTE_LAG_ENTRIES = 1000  # a learner this close may be promoted
READ_RETRY_TICKS = 3  # re-issue a ReadIndex not answered within this many election timeouts


class ProposalLost(Exception):
    """The entry was overwritten by another leader's: it did not apply. Retry."""


class OutcomeUnknown(Exception):
    """The proposal's fate cannot be learnt here any more (a snapshot installed over
    its index): it may or may not have applied. A retry with the same session
    headers applies it at most once (the session table answers a duplicate)."""


class NodeStopped(Exception):
    """The node is shutting down."""


class WaitInterrupted(NodeStopped):
    """The node shuts down while a request waits (for a lock grant): what the
    request proposed may have applied (the lease stays queued). Retry elsewhere."""


class NodeFailed(NodeStopped):
    """The node loop died (a WAL write or fsync failed: a full disk, a failing
    device) and the process exits. A pending write was NOT acknowledged, but its
    outcome is unknown: its entry may have reached the followers (a leader sends
    before its own fsync) and commit there. Retry elsewhere, same session."""


class RequestTimeout(TimeoutError):
    """A proposal or read did not complete within --request-timeout (its outcome,
    for a proposal, is unknown)."""


MAX_READIES_PER_TURN = 64  # then let the event loop run (I/O, HTTP) before more
FAILED_EXIT_SECONDS = 1.0  # after the loop died: time to answer the pending requests


class Completion:
    """A result slot like an asyncio Future, but its callback runs at once, inside
    the node loop, when it resolves (a Future's callbacks run a loop turn later,
    after whatever else this Ready does, such as sending to the followers). The
    fast HTTP path answers with it in the same turn as the apply. The callback
    must not call back into the node; its errors are logged, never raised here."""

    __slots__ = ("_callback", "_done")

    def __init__(self, callback: Callable[[Any, BaseException | None], None]) -> None:
        self._callback = callback
        self._done = False

    def done(self) -> bool:
        return self._done

    def set_result(self, result: Any) -> None:
        self._resolve(result, None)

    def set_exception(self, exc: BaseException) -> None:
        self._resolve(None, exc)

    def _resolve(self, result: Any, exc: BaseException | None) -> None:
        if self._done:
            raise asyncio.InvalidStateError("already resolved")
        self._done = True
        try:
            self._callback(result, exc)
        except Exception:
            log.exception("a completion callback failed")


Pending = asyncio.Future[Any] | Completion  # what the loop resolves


@dataclass(slots=True)
class _Waiter:
    term: int
    future: Pending
    started: float


@dataclass(slots=True)
class _ReadBatch:
    futures: list[Pending]
    issued_tick: int


class RaftNode:
    def __init__(self, cfg: NodeConfig, *, raft_store: RaftStore, snapshot_store: SnapshotStore,
                 checkpoint_store: CheckpointStore | None, fsm: StateMachine,
                 metrics: NodeMetrics) -> None:
        self.cfg = cfg
        self.id = cfg.id
        self.raft_store = raft_store
        self.snapshot_store = snapshot_store
        self.checkpoint_store = checkpoint_store
        self.fsm = fsm
        self.metrics = metrics
        self.watch = WatchHub(max_watchers=cfg.max_watches,
                              max_per_client=cfg.max_watches_per_client)
        self.admission = AdmissionLimits(cfg.quota_backend_bytes, cfg.max_leases,
                                         cfg.max_lock_waiters)
        metrics.quota_bytes.set(cfg.quota_backend_bytes)
        # How the process ends when the loop dies (a test replaces it).
        self.exit_process: Callable[[int], None] = os._exit
        self.leases = LeaseClock()
        self.send: Callable[[list[Message]], None] = lambda msgs: None
        self.on_members_changed: Callable[[], None] = lambda: None
        self.on_role_changed: Callable[[], None] = lambda: None  # must not block
        self.core: Raft  # set by open()
        # This node's cluster id (runtime.admission); the server sets it at start.
        self.cluster = ClusterId(None, None)
        self.peer_commit: dict[int, int] = {}  # the commit index each peer last told us
        self.peer_seen: dict[int, float] = {}  # when we last heard from each peer
        # Queued inputs for the loop.
        self._inbox: list[Message] = []
        self._proposals: list[tuple[bytes, Pending, float]] = []
        # Bytes of client proposals admitted but not yet applied (queued, then in the
        # log as (last index, bytes)): the quota counts them, so many writes admitted
        # at once cannot overshoot it (runtime/limits.py).
        self._queued_bytes = 0
        self._inflight: deque[tuple[int, int]] = deque()
        self._inflight_bytes = 0
        self._reads: list[Pending] = []
        self._actions: list[Callable[[], None]] = []
        self._waker: asyncio.Future[None] | None = None
        # Outstanding work.
        self._waiters: dict[int, _Waiter] = {}
        self._read_batches: dict[bytes, _ReadBatch] = {}
        self._read_pending: list[tuple[int, int, Pending]] = []  # heap by index
        self._read_seq = itertools.count(1)
        self._read_prefix = os.urandom(4)
        self._lock_waiters: dict[tuple[str, int], list[asyncio.Future[int | None]]] = {}
        self._checkpoint_waiters: dict[str, list[asyncio.Future[dict[str, Any]]]] = {}
        self._status_changed = asyncio.Event()
        # Set when the node shuts down: nothing waits for long any more.
        self.long_polls_ended = asyncio.Event()
        # (member id, name) label values of each member's leader-side series.
        self._member_labels: dict[int, tuple[str, str]] = {}
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._durable = DurableWriter()
        self._pending_compaction = 0  # WAL compaction to run between Readies
        # (deadline, future) in deadline order (one timeout for all): swept on ticks.
        self._deadlines: deque[tuple[float, Pending]] = deque()
        self._background_pool = ThreadPoolExecutor(1, thread_name_prefix="raftkv-snap")
        self._snapshot_index = 0
        self._previous_snapshot_index = 0
        self._snapshotting = False
        self._ticks = 0
        self._last_leader = NONE
        self._last_term = 0
        self._removed = False
        self._newest_checkpoint_index = 0
        self._durable_hs = HardState()
        self._deferred_hs: HardState | None = None  # a commit-only change not yet written
        self.started_at = time.monotonic()

    # ======================================================================
    # Start-up
    # ======================================================================
    def open(self, prior_state: list[str] | None = None) -> None:
        """Recover from disk (bootstrapping a new cluster if asked), build the core.
        `prior_state`: files proving this node ran before; with no log beside them
        the start is refused (storage.recovery)."""
        recovered = recover(self.raft_store, self.snapshot_store, prior_state=prior_state or ())
        state = recovered.state
        if self._is_blank(state) and self._should_bootstrap():
            state, data = self._bootstrap()
        else:
            data = recovered.snapshot_data
        if state.snapshot is not None and data is not None:
            self.fsm.restore(data)
            self.watch.reset(self.fsm.revision)
            self._snapshot_index = state.snapshot.index
        self.core = Raft(self._raft_config(), hard_state=state.hard_state,
                         snapshot=state.snapshot, entries=state.entries)
        if self.checkpoint_store is not None:
            existing = self.checkpoint_store.list()
            self._newest_checkpoint_index = existing[-1]["index"] if existing else 0
        self._last_term = self.core.term
        self._durable_hs = HardState(self.core.term, self.core.vote, self.core.commit)
        log.info("node %s (id %d) starts at term %d, commit %d, last index %d, members %s",
                 self.cfg.name, self.id, self.core.term, self.core.commit,
                 self.core.last_index(), sorted(self.core.conf.members()))

    def _raft_config(self) -> Config:
        return Config(id=self.id, election_tick=self.cfg.election_ticks,
                      heartbeat_tick=self.cfg.heartbeat_ticks)

    @staticmethod
    def _is_blank(state: InitialState) -> bool:
        return (state.snapshot is None and not state.entries
                and state.hard_state == HardState())

    def _should_bootstrap(self) -> bool:
        if self.cfg.initial_cluster_state != "new":
            return False
        return any(m.name == self.cfg.name for m in self.cfg.initial_cluster)

    def _bootstrap(self) -> tuple[InitialState, bytes | None]:
        """The founding members' identical start: one ADD_VOTER per initial member
        (with its name and peer URL as context, so the directory knows them), or,
        with --restore-from, a snapshot of the checkpoint plus that membership."""
        members = sorted(self.cfg.initial_cluster, key=lambda m: m.id)
        entries, hard_state = bootstrap_entries([m.id for m in members])
        contexts = {m.id: _member_context(m.name, m.peer_url, "") for m in members}
        entries = [Entry(e.term, e.index, e.type,
                         ConfChange(ConfChangeType.ADD_VOTER, cc.node_id,
                                    contexts[cc.node_id]).encode())
                   for e in entries for cc in [ConfChange.decode(e.data)]]
        if self.cfg.restore_from is None:
            self.raft_store.save(hard_state, entries)
            log.info("bootstrapped a new cluster of %s", [m.name for m in members])
            return InitialState(hard_state, None, entries), None
        manifest, data = read_checkpoint(self.cfg.restore_from)
        seed = StateMachine()
        seed.restore(data)
        # Replace the checkpoint's membership by ours, deterministically on every founder.
        index = seed.applied_index
        new_ids = {m.id for m in members}
        for old_id in sorted(set(seed.members) - new_ids):
            index += 1
            seed.apply_conf_change(index, ConfChange(ConfChangeType.REMOVE, old_id))
        for m in members:
            index += 1
            seed.apply_conf_change(index, ConfChange(ConfChangeType.ADD_VOTER, m.id,
                                                     contexts[m.id]))
        meta = SnapshotMeta(index, 1, ConfState(frozenset(new_ids), frozenset()))
        snap_data = seed.snapshot_bytes()
        hard_state = HardState(term=1, vote=NONE, commit=index)
        self.raft_store.record_snapshot(meta)  # before the file: see storage.recovery
        self.snapshot_store.save(meta, snap_data)
        self.raft_store.reset_to_snapshot(meta, hard_state)
        log.info("bootstrapped from checkpoint %s (index %d) at index %d",
                 manifest.get("id"), manifest.get("index"), index)
        return InitialState(hard_state, meta, []), snap_data

    # ======================================================================
    # Lifecycle
    # ======================================================================
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
            self._fail_pending(NodeFailed(
                f"the node failed ({exc!r}; a WAL write or fsync failed: disk full?) and "
                "exits; this write was not acknowledged and its outcome is unknown: "
                "retry on another member with the same session headers"))
            asyncio.get_running_loop().call_later(FAILED_EXIT_SECONDS, self.exit_process, 70)

    def _fail_pending(self, exc: Exception) -> None:
        """Fail every queued or in-flight proposal and read with `exc`."""
        pending: list[Pending] = [w.future for w in self._waiters.values()]
        pending += [fut for _, fut, _ in self._proposals]
        pending += self._reads
        pending += [f for batch in self._read_batches.values() for f in batch.futures]
        pending += [f for _, _, f in self._read_pending]
        pending += [f for futures in self._checkpoint_waiters.values() for f in futures]
        self._waiters.clear()
        self._proposals, self._reads, self._read_pending = [], [], []
        self._queued_bytes = 0
        self._read_batches.clear()
        for fut in pending:
            if not fut.done():
                fut.set_exception(exc)

    async def stop(self) -> None:
        self._stopping = True
        self._wake()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, 5.0)
        for w in self._waiters.values():
            if not w.future.done():
                w.future.set_exception(NodeStopped("node is shutting down"))
        self._background_pool.shutdown(wait=True)
        deferred = self._deferred_hs
        if deferred is not None:
            with contextlib.suppress(Exception):
                await self._durable.run(self.raft_store.save, deferred, [])
        self._durable.close()
        self.raft_store.close()

    # ======================================================================
    # Inputs (called from the HTTP layer and the transport)
    # ======================================================================
    def _wake(self) -> None:
        w = self._waker
        if w is not None and not w.done():
            w.set_result(None)

    def deliver(self, frm: int, sender_commit: int, msgs: list[Message]) -> None:
        if sender_commit:
            self.peer_commit[frm] = sender_commit
        self.peer_seen[frm] = time.monotonic()
        self._inbox.extend(msgs)
        self._wake()

    def snapshot_allowed(self, msg: Message) -> bool:
        """A snapshot replaces the whole state: only from the leader of our term."""
        core = self.core
        return msg.term == core.term and core.leader == msg.frm and msg.frm != self.id

    async def deliver_snapshot(self, msg: Message, data: bytes) -> bool:
        assert msg.snapshot is not None
        if not self.snapshot_allowed(msg):
            return False
        msg.snapshot.data = data
        self.deliver(msg.frm, 0, [msg])
        return True

    def peer_unreachable(self, peer: int) -> None:
        self._actions.append(lambda: self.core.report_unreachable(peer))
        self._wake()

    def peer_gone(self, peer: int) -> None:
        """The transport saw `peer` close its connection and refuse a redial (its
        process died). If it is our leader, the core expires its lease and campaigns
        within a few ticks; pre-vote keeps that harmless if it is alive after all."""
        if peer == self.core.leader:
            log.info("leader %s closed its connection and refuses a new one: campaigning "
                     "early", self.member_name(peer))
        self._actions.append(lambda: self.core.leader_unreachable(peer))
        self._wake()

    def snapshot_status(self, peer: int, ok: bool) -> None:
        self._actions.append(lambda: self.core.report_snapshot(peer, ok))
        self._wake()

    # --- the membership view of the peer gate (runtime.admission) -----------
    def current_members(self) -> frozenset[int]:
        return self.core.conf.members()

    def known_name(self, member: int) -> str:
        return self.member_info(member)["name"]

    def member_peer_url(self, member: int) -> str:
        return self.member_info(member)["peer_url"]

    def is_removed(self, member: int) -> bool:
        return member in self.fsm.removed_members

    def propose(self, data: bytes) -> asyncio.Future[ApplyResult]:
        """Queue a proposal. Raises NotLeader at once if this node is not the leader."""
        fut: asyncio.Future[ApplyResult] = asyncio.get_running_loop().create_future()
        self.propose_into(data, fut)
        return fut

    def propose_into(self, data: bytes, fut: Pending) -> None:
        """`propose`, resolving `fut` (a Future or a Completion) with the outcome."""
        if self._stopping:
            raise NodeStopped("node is shutting down")
        if self.core.role != StateRole.LEADER:
            raise NotLeader(self.core.leader)
        refusal = admission_refusal(self.admission, self.fsm, data, self._unapplied_bytes())
        if refusal is not None:  # decided here, on the leader: see runtime/limits.py
            self.metrics.limit_refusals.labels(refusal.limit).inc()
            fut.set_exception(refusal)
            return
        now = time.monotonic()
        self._queued_bytes += len(data)
        self._proposals.append((data, fut, now))
        self._deadlines.append((now + self.cfg.request_timeout, fut))
        self._wake()

    def _unapplied_bytes(self) -> int:
        """Bytes of admitted client proposals this leader has not applied yet."""
        inflight = self._inflight
        applied = self.fsm.applied_index
        while inflight and inflight[0][0] <= applied:
            self._inflight_bytes -= inflight.popleft()[1]
        return self._queued_bytes + self._inflight_bytes

    def read_barrier(self) -> asyncio.Future[None]:
        """Resolves once the state machine may serve a linearizable read; fails with
        RequestTimeout after --request-timeout."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.read_barrier_into(fut)
        return fut

    def read_barrier_into(self, fut: Pending) -> None:
        """`read_barrier`, resolving `fut` (a Future or a Completion)."""
        if self.core.leader == NONE:
            raise NotLeader(NONE)
        self._reads.append(fut)
        self._deadlines.append((time.monotonic() + self.cfg.request_timeout, fut))
        self._wake()

    def call(self, fn: Callable[[], Any]) -> asyncio.Future[Any]:
        """Run `fn` inside the loop (between Readies); resolve with its result."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def action() -> None:
            if fut.done():
                return
            try:
                fut.set_result(fn())
            except Exception as exc:
                fut.set_exception(exc)

        self._actions.append(action)
        self._wake()
        return fut

    async def propose_conf_change(self, cc: ConfChange) -> ApplyResult:
        def submit() -> tuple[int, int]:
            return self.core.propose_conf_change(cc)

        term, index = await self.call(submit)
        fut: asyncio.Future[ApplyResult] = asyncio.get_running_loop().create_future()
        self._waiters[index] = _Waiter(term, fut, time.monotonic())
        return await fut

    def transfer_target(self, eligible: Callable[[int], bool] | None = None) -> int | None:
        """The most caught-up other voter for which `eligible` holds (None if none)."""
        core = self.core
        candidates = [(pr.match, m) for m, pr in core.prs.items()
                      if m != self.id and m in core.conf.voters
                      and (eligible is None or eligible(m))]
        return max(candidates)[1] if candidates else None

    async def transfer_leadership(self, to: int, timeout: float) -> int | None:
        """Hand leadership to `to`; the new leader's id once known, None on timeout."""
        await self.call(lambda: self.core.transfer_leadership(to))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.core.leader
            if leader not in (NONE, self.id):
                return leader
            await self.wait_status_change(leader, self.core.term,
                                          min(0.5, deadline - time.monotonic()))
        return None

    def wait_lock(self, name: str, lease: int) -> asyncio.Future[int | None]:
        """Resolves with the fencing token when `lease` is granted lock `name`, or None
        if it stops waiting (its lease went away or it dequeued)."""
        fut: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        if self.long_polls_ended.is_set():
            fut.set_exception(WaitInterrupted("node is shutting down"))
            return fut
        key = (name, lease)
        self._lock_waiters.setdefault(key, []).append(fut)
        fut.add_done_callback(lambda f: _discard(self._lock_waiters, key, f))
        return fut

    def wait_checkpoint(self, checkpoint_id: str) -> asyncio.Future[dict[str, Any]]:
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._checkpoint_waiters.setdefault(checkpoint_id, []).append(fut)
        fut.add_done_callback(lambda f: _discard(self._checkpoint_waiters, checkpoint_id, f))
        return fut

    async def wait_status_change(self, leader: int | None, term: int | None,
                                 timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.long_polls_ended.is_set():
            if leader is not None and self.core.leader != leader:
                return
            if term is not None and self.core.term != term:
                return
            if leader is None and term is None:
                leader = self.core.leader  # "any change from now"
                term = self.core.term
            left = deadline - time.monotonic()
            if left <= 0:
                return
            event = self._status_changed
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(event.wait(), left)

    async def wait_leader_moved(self, leader: int) -> int:
        """Wait until a member other than `leader` is known to lead (not merely "no
        leader": an election may re-elect it); return it (NONE: the node stops).
        A request forwarded to `leader` stops waiting for it then (issue 15 item 1)."""
        while not self.long_polls_ended.is_set():
            event = self._status_changed
            now = self.core.leader
            if now not in (leader, NONE):
                return now
            await event.wait()
        return NONE

    def end_long_polls(self) -> None:
        """The node is going away: a request waiting for a lock grant fails now with
        WaitInterrupted (its client retries elsewhere; the lease stays queued, and
        acquiring is idempotent per lease), and status long-polls answer at once."""
        self.long_polls_ended.set()
        for futures in list(self._lock_waiters.values()):
            for fut in list(futures):
                if not fut.done():
                    fut.set_exception(WaitInterrupted("node is shutting down"))
        self._status_changed.set()

    # ======================================================================
    # The loop
    # ======================================================================
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        tick = self.cfg.tick_seconds
        next_tick = loop.time() + tick
        readies = 0
        while not self._stopping:
            if not (self._inbox or self._proposals or self._reads or self._actions
                    or self.core.has_ready() or self._pending_compaction):
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
            if self._pending_compaction:
                upto, self._pending_compaction = self._pending_compaction, 0
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
                if m.type == MsgType.SNAP and (m.snapshot is None or m.snapshot.data is None):
                    continue  # a snapshot arrives only through deliver_snapshot
                if m.to != self.id:
                    continue  # meant for an earlier incarnation at this address
                core.step(m)
        if self._proposals:
            self._propose_queued()
        if self._reads:
            self._issue_reads()

    def _propose_queued(self) -> None:
        batch, self._proposals = self._proposals, []
        self._queued_bytes = 0
        live = [(d, f, t) for d, f, t in batch if not f.done()]
        if not live:
            return
        try:
            term, first = self.core.propose_batch([d for d, _, _ in live])
        except ProposalDropped as exc:
            for _, fut, _ in live:
                fut.set_exception(exc)
            self.metrics.proposals_failed.inc(len(live))
            return
        for i, (_, fut, started) in enumerate(live):
            self._waiters[first + i] = _Waiter(term, fut, started)
        size = sum(len(d) for d, _, _ in live)
        self._inflight.append((first + len(live) - 1, size))
        self._inflight_bytes += size

    def _issue_reads(self) -> None:
        futures = [f for f in self._reads if not f.done()]
        self._reads = []
        if not futures:
            return
        ctx = self._read_prefix + next(self._read_seq).to_bytes(8, "big")
        try:
            self.core.read_index(ctx)
        except NotLeader as exc:
            for f in futures:
                f.set_exception(exc)
            return
        self._read_batches[ctx] = _ReadBatch(futures, self._ticks)

    def _reissue_reads(self) -> None:
        """A new leader is known: ReadIndex requests sent to the old one will not be
        answered (or only by a leader that is gone): ask the new one at once instead
        of waiting out READ_RETRY_TICKS. A late answer to an old ctx is ignored."""
        if not self._read_batches:
            return
        for batch in self._read_batches.values():
            self._reads.extend(f for f in batch.futures if not f.done())
        self._read_batches.clear()

    def _on_tick(self) -> None:
        now = time.monotonic()
        self._expire_requests(now)
        # Re-issue ReadIndex requests that got lost (leader change, dropped message).
        if self._read_batches:
            limit = self.cfg.election_ticks * READ_RETRY_TICKS
            for ctx, batch in list(self._read_batches.items()):
                if self._ticks - batch.issued_tick >= limit:
                    del self._read_batches[ctx]
                    self._reads.extend(f for f in batch.futures if not f.done())
        if self.core.role == StateRole.LEADER:
            due = self.leases.due(now)
            if due:
                self._propose_internal(_encode_lease_expire(due))
            self._update_member_metrics()

    def _expire_requests(self, now: float) -> None:
        """Fail proposals and reads past their deadline (their futures may still be
        listed as waiters: whoever resolves those skips futures already done)."""
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            _, fut = deadlines.popleft()
            if not fut.done():
                fut.set_exception(RequestTimeout("no outcome within --request-timeout"))
        # Futures answered long before their deadline: don't let them pile up.
        while deadlines and deadlines[0][1].done():
            deadlines.popleft()

    def _propose_internal(self, data: bytes) -> None:
        try:
            self.core.propose(data)
        except ProposalDropped as exc:
            log.debug("internal proposal dropped: %s", exc)

    # ======================================================================
    # One Ready
    # ======================================================================
    async def _handle_ready(self, rd: Ready) -> None:
        """Run the steps `ready.plan` gives for `rd` (the order, and why it is safe, is
        explained there and in docs/architecture.md; the simulator runs the same plan)."""
        if rd.soft_state is not None:
            self._on_soft_state(rd.soft_state)
        steps = ready.plan(rd, leader=self.core.role == StateRole.LEADER,
                           durable=self._durable_hs, deferred=self._deferred_hs)
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
                for rs in step.read_states:
                    batch = self._read_batches.pop(rs.context, None)
                    if batch is not None:
                        for f in batch.futures:
                            heapq.heappush(self._read_pending, (rs.index, id(f), f))
                self._release_reads()
            elif type(step) is DeferHardState:
                # Like etcd, no fsync for the commit index alone: it is volatile in
                # Raft (a restarted node relearns it); it rides with the next entries.
                self._deferred_hs = step.hard_state
            elif type(step) is PersistSnapshot:
                await self._durable.run_in_thread(self._persist_snapshot, step.snapshot,
                                                  step.hard_state)
                self._durable_hs = step.hard_state
                self._deferred_hs = None
            elif type(step) is RestoreSnapshot:
                self._restore_snapshot(step.snapshot)
            else:
                assert_never(step)
        if rd.hard_state is not None and rd.hard_state.term != self._last_term:
            self._last_term = rd.hard_state.term
            self._notify_status()
        self._update_metrics()
        self._maybe_snapshot()

    def _persist_snapshot(self, snap: Snapshot, hs: HardState) -> None:
        assert snap.data is not None
        # The log records the snapshot (with the term and vote) before its file
        # exists: a snapshot beyond the log with no record means a lost WAL
        # (storage.recovery). The commit index waits for the reset: the log does
        # not reach the snapshot yet.
        self.raft_store.record_snapshot(
            snap.meta, HardState(hs.term, hs.vote, self._durable_hs.commit))
        self.snapshot_store.save(snap.meta, snap.data)
        self.raft_store.reset_to_snapshot(snap.meta, hs)

    def _restore_snapshot(self, snap: Snapshot) -> None:
        assert snap.data is not None
        self.fsm.restore(snap.data)
        self.watch.reset(self.fsm.revision)
        self._previous_snapshot_index = self._snapshot_index
        self._snapshot_index = snap.meta.index
        self.metrics.snapshots.labels("installed").inc()
        # Waiters at or below the snapshot can no longer learn their outcome here.
        for index in [i for i in self._waiters if i <= snap.meta.index]:
            w = self._waiters.pop(index)
            if not w.future.done():
                w.future.set_exception(snapshot_outcome(index, w.term, snap.meta))
        self.on_members_changed()
        log.info("installed snapshot at index %d (term %d)", snap.meta.index, snap.meta.term)

    def _apply_entries(self, entries: list[Entry]) -> None:
        fsm = self.fsm
        waiters = self._waiters
        committed = failed = 0
        now = time.monotonic()
        for e in entries:
            if e.index <= fsm.applied_index:
                continue  # covered by a restored snapshot
            if e.type == EntryType.CONF_CHANGE:
                res = fsm.apply_conf_change(e.index, ConfChange.decode(e.data))
                self._on_conf_change(e, res)
            else:
                res = fsm.apply(e.index, e.term, e.data)
                if res.events:
                    self.watch.publish(res.events)
                if not res.duplicate:
                    self._side_effects(e, res, now)
            w = waiters.pop(e.index, None) if waiters else None
            if w is not None:
                if w.term == e.term:
                    committed += 1
                    self.metrics.proposal_duration.observe(now - w.started)
                    if not w.future.done():
                        w.future.set_result(res)
                else:
                    failed += 1
                    if not w.future.done():
                        w.future.set_exception(ProposalLost(
                            f"entry {e.index} was replaced by another leader's; retry"))
        if committed:
            self.metrics.proposals_committed.inc(committed)
        if failed:
            self.metrics.proposals_failed.inc(failed)

    def _side_effects(self, e: Entry, res: ApplyResult, now: float) -> None:
        result = res.result
        if res.lock_grants:
            for grant in res.lock_grants:
                for fut in self._lock_waiters.pop((grant.name, grant.lease), ()):
                    if not fut.done():
                        fut.set_result(grant.token)
        if res.lock_waits_cancelled:
            for c in res.lock_waits_cancelled:
                for fut in self._lock_waiters.pop((c.name, c.lease), ()):
                    if not fut.done():
                        fut.set_result(None)
        if res.revoked_leases:
            for lease_id in res.revoked_leases:
                self.leases.forget(lease_id)
        elif ("ttl" in result and "id" in result and "error" not in result
              and self.core.role == StateRole.LEADER):
            self.leases.granted(result["id"], result["ttl"], now)  # a grant starts its clock
        if res.checkpoint is not None:
            self._write_checkpoint(res.checkpoint, e.index, e.term)

    def _on_conf_change(self, e: Entry, res: ApplyResult) -> None:
        cc = ConfChange.decode(e.data)
        if cc.type == ConfChangeType.REMOVE and cc.node_id == self.id:
            self._removed = True
            log.warning("this node (%s) was removed from the cluster", self.cfg.name)
        elif cc.node_id == self.id:
            self._removed = False
        if cc.type == ConfChangeType.REMOVE:
            self.peer_commit.pop(cc.node_id, None)
            self.peer_seen.pop(cc.node_id, None)
            self._forget_member_series(cc.node_id)
        self.on_members_changed()

    def _on_soft_state(self, ss: SoftState) -> None:
        if ss.leader != self._last_leader:
            if ss.leader != NONE:
                self.metrics.leader_changes.inc()
                self._reissue_reads()
            self._last_leader = ss.leader
        if ss.role == StateRole.LEADER:
            self.leases.reset(self.fsm.leases(), time.monotonic())
            self._register_client_url()
        else:
            self.leases.clear()
            # Proposals queued for a leader that is gone fail fast (the HTTP layer
            # re-forwards); those already in the log wait for their entry's fate.
            queued, self._proposals = self._proposals, []
            self._queued_bytes = 0
            self._inflight.clear()  # a later term of leadership starts counting afresh
            self._inflight_bytes = 0
            for _, fut, _ in queued:
                if not fut.done():
                    fut.set_exception(NotLeader(ss.leader))
        self.metrics.set_role(self.role_name())
        self.on_role_changed()
        self._notify_status()

    def _register_client_url(self) -> None:
        """A new leader puts its client URL in the replicated directory if it is not
        there yet: followers forward writes to it (and clients learn it) from there."""
        url = self.cfg.advertise_client_url
        known = self.fsm.members.get(self.id)
        if not url or (known is not None and known.get("client_url") == url):
            return
        from raftkv.fsm import MemberClientUrl, encode

        done = Completion(lambda result, exc: None)  # retried at the next election if lost
        now = time.monotonic()
        self._proposals.append((encode(MemberClientUrl(self.id, url)), done, now))
        self._deadlines.append((now + self.cfg.request_timeout, done))

    def _notify_status(self) -> None:
        self._status_changed.set()
        self._status_changed = asyncio.Event()

    def _release_reads(self) -> None:
        pending = self._read_pending
        applied = self.fsm.applied_index
        while pending and pending[0][0] <= applied:
            _, _, fut = heapq.heappop(pending)
            if not fut.done():
                fut.set_result(None)

    # ======================================================================
    # Snapshots and checkpoints
    # ======================================================================
    def _maybe_snapshot(self) -> None:
        if self._snapshotting:
            return
        applied = self.core.applied
        if applied - self._snapshot_index < self.cfg.snapshot_entries:
            return
        if applied != self.fsm.applied_index:
            return  # mid-way through a Ready's entries: try after the next advance
        started = time.perf_counter()
        meta = self.core.snapshot_meta()
        view = self.fsm.snapshot_view()  # the state at exactly meta.index
        self.metrics.snapshot_pause.observe(time.perf_counter() - started)
        self._snapshotting = True

        def encode_and_save() -> None:
            self.snapshot_store.save(meta, view.pack(_yield_to_loop))

        fut = asyncio.get_running_loop().run_in_executor(self._background_pool, encode_and_save)

        def saved(f: asyncio.Future[None]) -> None:
            self._snapshotting = False
            if f.cancelled() or f.exception() is not None:
                log.error("saving snapshot at %d failed: %s", meta.index,
                          None if f.cancelled() else f.exception())
                return
            self.metrics.snapshots.labels("taken").inc()
            self.metrics.snapshot_duration.observe(time.perf_counter() - started)
            self._previous_snapshot_index = self._snapshot_index
            self._snapshot_index = meta.index
            self._actions.append(lambda: self._compact(meta))
            self._wake()

        fut.add_done_callback(saved)

    def _compact(self, meta: SnapshotMeta) -> None:
        keep = self.cfg.snapshot_catchup_entries
        self.core.compact(meta, keep)
        # Keep the log back to the previous snapshot too: if the newest snapshot file is
        # ever damaged, recovery falls back to the older one and needs the log from there.
        upto = min(meta.index - keep, self._previous_snapshot_index or meta.index)
        if upto > 0:
            # Run by the loop between Readies: WAL writes happen one at a time.
            self._pending_compaction = max(self._pending_compaction, upto)

    def _write_checkpoint(self, checkpoint_id: str, index: int, term: int) -> None:
        store = self.checkpoint_store
        if store is None:
            return
        if index <= self._newest_checkpoint_index and store.get(checkpoint_id) is None:
            return  # replayed after a restart, and already removed by retention
        started = time.perf_counter()
        view = self.fsm.snapshot_view()  # the state at exactly this entry
        self.metrics.snapshot_pause.observe(time.perf_counter() - started)
        members = sorted(self.member_name(m) for m in self.core.conf.members())
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self._newest_checkpoint_index = max(self._newest_checkpoint_index, index)

        def encode_and_write() -> dict[str, Any]:
            return store.write(checkpoint_id, index, term, view.pack(_yield_to_loop), members,
                               stamp)

        fut = asyncio.get_running_loop().run_in_executor(self._background_pool,
                                                         encode_and_write)

        def written(f: asyncio.Future[dict[str, Any]]) -> None:
            waiters = self._checkpoint_waiters.pop(checkpoint_id, [])
            exc = None if f.cancelled() else f.exception()
            if f.cancelled() or exc is not None:
                self.metrics.checkpoints.labels("failure").inc()
                log.error("checkpoint %s at index %d failed: %s", checkpoint_id, index, exc)
                for w in waiters:
                    if not w.done():
                        w.set_exception(exc or RuntimeError("checkpoint cancelled"))
                return
            manifest = f.result()
            self.metrics.checkpoints.labels("success").inc()
            self.metrics.checkpoint_duration.observe(time.perf_counter() - started)
            self.metrics.last_checkpoint.set(time.time())
            log.info("checkpoint %s written at index %d", checkpoint_id, index)
            for w in waiters:
                if not w.done():
                    w.set_result(manifest)

        fut.add_done_callback(written)

    # ======================================================================
    # Views (status, membership)
    # ======================================================================
    def role_name(self) -> str:
        if self.id in self.core.conf.learners:
            return "learner"
        if self.id not in self.core.conf.members():
            return "none"  # waiting to be added (or removed): no part in any quorum
        return str(self.core.role)

    def member_info(self, member: int) -> dict[str, str]:
        """Name and URLs of a member: the replicated directory, then the initial
        cluster flags. Never what a peer says about itself on the wire."""
        info = {"name": "", "peer_url": "", "client_url": ""}
        known = self.fsm.members.get(member)
        if known:
            info.update({k: known.get(k, "") for k in info})
        if member == self.id:
            info.update(name=self.cfg.name, peer_url=self.cfg.advertise_peer_url,
                        client_url=self.cfg.advertise_client_url)
        if not info["peer_url"] or not info["name"]:
            for m in self.cfg.initial_cluster:
                if m.id == member:
                    info["name"] = info["name"] or m.name
                    info["peer_url"] = info["peer_url"] or m.peer_url
        return info

    def member_name(self, member: int) -> str:
        return self.member_info(member)["name"] or str(member)

    def leader_client_url(self) -> str | None:
        leader = self.core.leader
        if leader == NONE:
            return None
        return self.member_info(leader)["client_url"] or None

    async def leader_client_url_within(self, timeout: float) -> str | None:
        """The leader's client URL, waiting up to `timeout` for it: a member that leads
        for the first time writes its URL into the replicated directory as its first
        entry (`_register_client_url`), so followers learn it one commit after the
        election, never from what the leader says on the wire."""
        deadline = time.monotonic() + timeout
        while True:
            url = self.leader_client_url()
            leader = self.core.leader
            if url is not None or leader in (NONE, self.id) or time.monotonic() >= deadline:
                return url
            await asyncio.sleep(0.01)

    def is_ready(self) -> bool:
        core = self.core
        if self._removed or self.id not in core.conf.members() or core.leader == NONE:
            return False
        if core.leader == self.id:
            return core.role == StateRole.LEADER
        leader_commit = max(self.peer_commit.get(core.leader, 0), core.commit)
        return self.fsm.applied_index + READY_LAG_ENTRIES >= leader_commit

    def members(self) -> list[dict[str, Any]]:
        core = self.core
        leader = core.role == StateRole.LEADER
        out = []
        for m in sorted(core.conf.members()):
            info = self.member_info(m)
            pr = core.prs.get(m) if leader else None
            out.append({"id": m, **info,
                        "role": "learner" if m in core.conf.learners else "voter",
                        "match_index": (pr.match if pr is not None else None)})
        return out

    def status(self) -> dict[str, Any]:
        core = self.core
        leader: dict[str, Any] | None = None
        if core.leader != NONE:
            info = self.member_info(core.leader)
            leader = {"id": core.leader, "name": info["name"], "client_url": info["client_url"]}
        return {
            "name": self.cfg.name, "id": self.id, "cluster_id": self.cluster.value or None,
            "role": self.role_name(), "term": core.term,
            "leader": leader, "commit_index": core.commit,
            "applied_index": self.fsm.applied_index, "last_index": core.last_index(),
            "ready": self.is_ready(), "revision": self.fsm.revision,
            "members": self.members(),
        }

    def learner_lag(self, member: int) -> int | None:
        pr = self.core.prs.get(member)
        if pr is None:
            return None
        return max(0, self.core.commit - pr.match)

    def _update_metrics(self) -> None:
        m = self.metrics
        core = self.core
        m.term.set(core.term)
        m.commit_index.set(core.commit)
        m.applied_index.set(self.fsm.applied_index)
        m.last_index.set(core.last_index())

    def update_slow_metrics(self) -> None:
        """Gauges that cost a scan; refreshed when /metrics is scraped."""
        stats = self.fsm.stats()
        m = self.metrics
        m.kv_keys.set(stats["keys"])
        m.leases.set(stats["leases"])
        m.locks_held.set(stats["locks_held"])
        m.members.labels("voter").set(len(self.core.conf.voters))
        m.members.labels("learner").set(len(self.core.conf.learners))
        m.watchers.set(len(self.watch.watchers))
        m.state_bytes.set(stats["size_bytes"])
        m.quota_alarm.set(1 if over_quota(self.admission, self.fsm) else 0)
        self._update_metrics()
        self._update_member_metrics()

    def _update_member_metrics(self) -> None:
        core = self.core
        if core.role != StateRole.LEADER:
            return
        now = time.monotonic()
        recent = 2 * self.cfg.election_timeout
        for member, pr in core.prs.items():
            # The id and the name (`node2`, `demo-1`): people and dashboards go by names.
            labels = (str(member), self.member_name(member))
            if self._member_labels.get(member, labels) != labels:
                self._forget_member_series(member)  # its name became known or changed
            self._member_labels[member] = labels
            lag = max(0, core.commit - pr.match)
            self.metrics.member_lag.labels(*labels).set(lag)
            heard = member == self.id or now - self.peer_seen.get(member, -1e9) < recent
            healthy = heard and lag <= READY_LAG_ENTRIES
            self.metrics.member_healthy.labels(*labels).set(1 if healthy else 0)

    def _forget_member_series(self, member: int) -> None:
        labels = self._member_labels.pop(member, None)
        if labels is None:
            return
        for gauge in (self.metrics.member_lag, self.metrics.member_healthy):
            with contextlib.suppress(KeyError):
                gauge.remove(*labels)


def snapshot_outcome(index: int, term: int, meta: SnapshotMeta) -> Exception:
    """What a proposal at (index, term) learns when a snapshot at `meta` replaces it.

    Only two cases are certain. The snapshot's own entry is at (meta.index,
    meta.term); a different term there means ours was overwritten. And a log's terms
    never decrease, so no committed entry at or below meta.index has a term above
    meta.term: ours, of a later term, never committed. Either way it did not apply.
    Otherwise the snapshot may well contain it: outcome unknown."""
    if term > meta.term or (index == meta.index and term != meta.term):
        return ProposalLost(f"entry {index} was replaced by another leader's "
                            f"(snapshot at {meta.index}, term {meta.term}); retry")
    return OutcomeUnknown(f"a snapshot (index {meta.index}) was installed over entry {index}: "
                          "the write may or may not have applied; retry with the same "
                          "session headers to apply it at most once")


def _yield_to_loop() -> None:
    """Between two chunks of a snapshot encoded in the background thread: give the
    GIL to the event loop thread if it wants it (a sleep, however short, lets it
    take the GIL; a bare release would often be won back by this thread)."""
    time.sleep(0.0001)


def _discard(waiters: dict[Any, list[Any]], key: Any, fut: Any) -> None:
    """Drop a finished (answered or abandoned) waiter from its list."""
    futures = waiters.get(key)
    if futures is not None:
        with contextlib.suppress(ValueError):
            futures.remove(fut)
        if not futures:
            del waiters[key]


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _member_context(name: str, peer_url: str, client_url: str) -> bytes:
    return json.dumps({"name": name, "peer_url": peer_url, "client_url": client_url},
                      sort_keys=True, separators=(",", ":")).encode()


member_context = _member_context


def _encode_lease_expire(ids: list[int]) -> bytes:
    from raftkv.fsm import LeaseExpire, encode
    return encode(LeaseExpire(ids))
