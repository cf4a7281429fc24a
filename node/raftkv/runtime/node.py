"""The node as the rest of the process sees it: opened from disk, started and
stopped, fed by the peer transport, asked by the HTTP layer to propose, read,
change membership, hand leadership over or wait for a lock or a checkpoint.

Every input only queues and wakes the loop (`NodeLoop`, loop.py, where the Raft
core is driven and the Ready steps run). Where a node starts from is in
bootstrap.py; what it shows of itself (status, members, metrics) in views.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from raftkv.consensus import NONE, ConfChange, HardState, NotLeader, StateRole, make_core
from raftkv.fsm import ApplyResult
from raftkv.runtime.bootstrap import member_context, recover_or_bootstrap
from raftkv.runtime.limits import admission_refusal
from raftkv.runtime.loop import NodeLoop
from raftkv.runtime.outcomes import (
    Completion,
    NodeFailed,
    NodeStopped,
    OutcomeUnknown,
    Pending,
    ProposalLost,
    RequestTimeout,
    WaitInterrupted,
    snapshot_outcome,
)
from raftkv.runtime.views import READY_LAG_ENTRIES

# What the HTTP layer and tests imported from here before the split stays importable.
__all__ = [
    "PROMOTE_LAG_ENTRIES",
    "READY_LAG_ENTRIES",
    "Completion",
    "NodeFailed",
    "NodeStopped",
    "OutcomeUnknown",
    "Pending",
    "ProposalLost",
    "RaftNode",
    "RequestTimeout",
    "WaitInterrupted",
    "member_context",
    "snapshot_outcome",
]

log = logging.getLogger("raftkv.node")

PROMOTE_LAG_ENTRIES = 1000  # a learner this close may be promoted


class RaftNode(NodeLoop):
    # ======================================================================
    # Open, start, stop
    # ======================================================================
    def open(self, prior_state: list[str] | None = None) -> None:
        """Recover from disk (bootstrapping a new cluster if asked), build the core."""
        state, data = recover_or_bootstrap(
            self.cfg, self.raft_store, self.snapshot_store, prior_state
        )
        if state.snapshot is not None and data is not None:
            self.fsm.restore(data)
            self.watch.reset(self.fsm.revision)
            self._snapshots.opened(state.snapshot.index)
        else:
            self._snapshots.opened(0)
        self.core = make_core(
            self.cfg.consensus,
            self.id,
            election_tick=self.cfg.election_ticks,
            heartbeat_tick=self.cfg.heartbeat_ticks,
            hard_state=state.hard_state,
            snapshot=state.snapshot,
            entries=state.entries,
        )
        self._last_term = self.core.term
        hs = state.hard_state
        self._durable_hs = HardState(hs.term, hs.vote, self.core.commit)
        log.info(
            "node %s (id %d, %s) starts at term %d, commit %d, last index %d, members %s",
            self.cfg.name,
            self.id,
            self.core.ENGINE,
            self.core.term,
            self.core.commit,
            self.core.last_index(),
            sorted(self.core.conf.members()),
        )

    async def stop(self) -> None:
        self._stopping = True
        self._wake()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, 5.0)
        for fut in self.waiters.take_proposals():
            if not fut.done():
                fut.set_exception(NodeStopped("node is shutting down"))
        self._snapshots.close()
        deferred = self._deferred_hs
        if deferred is not None:
            with contextlib.suppress(Exception):
                await self._durable.run(self.raft_store.save, deferred, [])
        self._durable.close()
        self.raft_store.close()

    def end_long_polls(self) -> None:
        """The node is going away: a request waiting for a lock grant fails now with
        WaitInterrupted (its client retries elsewhere; the lease stays queued, and
        acquiring is idempotent per lease), and status long-polls answer at once."""
        self.long_polls_ended.set()
        self.waiters.interrupt_lock_waits("node is shutting down")
        self.view.end_waits()

    # ======================================================================
    # Inputs (called from the HTTP layer and the transport): queue, wake the loop
    # ======================================================================
    def deliver(self, frm: int, sender_commit: int, msgs: list[Any]) -> None:
        if sender_commit:
            self.peer_commit[frm] = sender_commit
        self.peer_seen[frm] = time.monotonic()
        self._inbox.extend(msgs)
        self._wake()

    def snapshot_allowed(self, msg: Any) -> bool:
        """A snapshot replaces the whole state: only from whom the engine trusts with
        one (Raft: the leader of our term)."""
        return self.core.snapshot_acceptable(msg)

    async def deliver_snapshot(self, msg: Any, data: bytes) -> bool:
        assert msg.snapshot is not None
        if not self.snapshot_allowed(msg):
            return False
        msg.snapshot.data = data
        self.deliver(msg.frm, 0, [msg])
        return True

    def peer_unreachable(self, peer: int) -> None:
        self._run_in_loop(lambda: self.core.report_unreachable(peer))

    def peer_gone(self, peer: int) -> None:
        """The transport saw `peer` close its connection and refuse a redial (its
        process died). If it is our leader, the core expires its lease and campaigns
        within a few ticks; pre-vote keeps that harmless if it is alive after all."""
        if peer == self.core.leader:
            log.info(
                "leader %s closed its connection and refuses a new one: campaigning early",
                self.member_name(peer),
            )
        self._run_in_loop(lambda: self.core.leader_unreachable(peer))

    def snapshot_status(self, peer: int, ok: bool) -> None:
        self._run_in_loop(lambda: self.core.report_snapshot(peer, ok))

    # --- the membership view of the peer gate (runtime.admission) -----------
    def current_members(self) -> frozenset[int]:
        return self.core.conf.members()

    def known_name(self, member: int) -> str:
        return self.member_info(member)["name"]

    def member_peer_url(self, member: int) -> str:
        return self.member_info(member)["peer_url"]

    def is_removed(self, member: int) -> bool:
        return member in self.fsm.removed_members

    def current_leader(self) -> int:
        return self.core.leader

    # --- requests -----------------------------------------------------------
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
        unapplied = self._proposals.unapplied_bytes(self.fsm.applied_index)
        refusal = admission_refusal(self.admission, self.fsm, data, unapplied)
        if refusal is not None:  # decided here, on the leader: see runtime/limits.py
            self.metrics.limit_refusals.labels(refusal.limit).inc()
            fut.set_exception(refusal)
            return
        self._queue_proposal(data, fut)
        self._wake()

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
        self._reads.queued.append(fut)
        self.waiters.deadline(time.monotonic() + self.cfg.request_timeout, fut)
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

        self._run_in_loop(action)
        return fut

    async def propose_conf_change(self, cc: ConfChange) -> ApplyResult:
        def submit() -> tuple[int, int]:
            return self.core.propose_conf_change(cc)

        term, index = await self.call(submit)
        fut: asyncio.Future[ApplyResult] = asyncio.get_running_loop().create_future()
        data = cc.encode() if self.core.OUTCOME_BY_VALUE else None
        self.waiters.expect(index, term, fut, time.monotonic(), data)
        return await fut

    def transfer_target(self, eligible: Callable[[int], bool] | None = None) -> int | None:
        """The most caught-up other voter for which `eligible` holds (None if none)."""
        core = self.core
        candidates = [
            (match, m)
            for m in core.conf.voters
            if m != self.id
            and (match := core.match_index(m)) is not None
            and (eligible is None or eligible(m))
        ]
        return max(candidates)[1] if candidates else None

    async def transfer_leadership(self, to: int, timeout: float) -> int | None:
        """Hand leadership to `to`; the new leader's id once known, None on timeout."""
        await self.call(lambda: self.core.transfer_leadership(to))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.core.leader
            if leader not in (NONE, self.id):
                return leader
            await self.wait_status_change(
                leader, self.core.term, min(0.5, deadline - time.monotonic())
            )
        return None

    def wait_lock(self, name: str, lease: int) -> asyncio.Future[int | None]:
        """Resolves with the fencing token when `lease` is granted lock `name`, or None
        if it stops waiting (its lease went away or it dequeued)."""
        if self.long_polls_ended.is_set():
            fut: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
            fut.set_exception(WaitInterrupted("node is shutting down"))
            return fut
        return self.waiters.wait_lock(name, lease)

    def wait_checkpoint(self, checkpoint_id: str) -> asyncio.Future[dict[str, Any]]:
        return self.waiters.wait_checkpoint(checkpoint_id)

    # ======================================================================
    # Views (views.py)
    # ======================================================================
    def role_name(self) -> str:
        return self.view.role_name()

    def member_info(self, member: int) -> dict[str, str]:
        return self.view.member_info(member)

    def member_name(self, member: int) -> str:
        return self.view.member_name(member)

    def members(self) -> list[dict[str, Any]]:
        return self.view.members()

    def status(self) -> dict[str, Any]:
        return self.view.status()

    def is_ready(self) -> bool:
        return self.view.is_ready()

    def learner_lag(self, member: int) -> int | None:
        return self.view.learner_lag(member)

    def leader_client_url(self) -> str | None:
        return self.view.leader_client_url()

    async def leader_client_url_within(self, timeout: float) -> str | None:
        return await self.view.leader_client_url_within(timeout)

    async def wait_status_change(
        self, leader: int | None, term: int | None, timeout: float
    ) -> None:
        await self.view.wait_status_change(leader, term, timeout)

    async def wait_leader_moved(self, leader: int) -> int:
        return await self.view.wait_leader_moved(leader)

    def update_slow_metrics(self) -> None:
        self.view.update_slow_metrics()
