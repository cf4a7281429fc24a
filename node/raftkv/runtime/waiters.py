"""The waiter registry: every request the node loop will answer, filed by what
answers it — a proposal by the log index whose apply decides it, a lock waiter by
(lock, lease), a checkpoint request by its id — and the one deadline queue that
fails any of them past --request-timeout (swept on ticks: no timer per request)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass
from typing import Any

from raftkv.consensus import Entry, SnapshotMeta
from raftkv.runtime.outcomes import Pending, RequestTimeout, WaitInterrupted, snapshot_outcome


@dataclass(slots=True)
class ProposalWaiter:
    term: int  # the entry at its index answers it only if it has this term ...
    future: Pending
    started: float
    # ... or, for an engine that decides outcomes by value (Multi-Paxos: a later
    # leader may choose the same value again at its own ballot), these bytes: the
    # command under the proposal's request id (runtime/proposals.py), so an
    # identical command proposed by another request is not this one.
    data: bytes | None = None

    def answered_by(self, e: Entry) -> bool:
        if self.data is not None:
            return e.data == self.data
        return e.term == self.term


class Waiters:
    def __init__(self) -> None:
        self.proposals: dict[int, ProposalWaiter] = {}  # by log index
        self.locks: dict[tuple[str, int], list[asyncio.Future[int | None]]] = {}
        self.checkpoints: dict[str, list[asyncio.Future[dict[str, Any]]]] = {}
        # (deadline, future) in deadline order (one timeout for all).
        self.deadlines: deque[tuple[float, Pending]] = deque()

    # --- proposals ------------------------------------------------------------
    def expect(
        self, index: int, term: int, future: Pending, started: float, data: bytes | None = None
    ) -> None:
        self.proposals[index] = ProposalWaiter(term, future, started, data)

    def snapshot_installed(self, meta: SnapshotMeta) -> None:
        """Waiters at or below the snapshot can no longer learn their outcome here."""
        for index in [i for i in self.proposals if i <= meta.index]:
            w = self.proposals.pop(index)
            if not w.future.done():
                if w.data is not None:  # by value: a snapshot says nothing of one slot
                    w.future.set_exception(snapshot_outcome(index, 0, meta, certain=False))
                else:
                    w.future.set_exception(snapshot_outcome(index, w.term, meta))

    def take_proposals(self) -> list[Pending]:
        """Forget every proposal waiter; their futures, for the caller to fail."""
        futures = [w.future for w in self.proposals.values()]
        self.proposals.clear()
        return futures

    # --- deadlines ------------------------------------------------------------
    def deadline(self, at: float, future: Pending) -> None:
        self.deadlines.append((at, future))

    def expire(self, now: float) -> None:
        """Fail proposals and reads past their deadline (their futures may still be
        listed as waiters: whoever resolves those skips futures already done)."""
        deadlines = self.deadlines
        while deadlines and deadlines[0][0] <= now:
            _, fut = deadlines.popleft()
            if not fut.done():
                fut.set_exception(RequestTimeout("no outcome within --request-timeout"))
        self.drop_answered()

    def drop_answered(self) -> None:
        """Forget the answered requests at the front of the deadline queue. Called after
        every apply, not only on ticks: a queue entry keeps its result slot (and a
        Future's callbacks) alive, and thousands of answered requests held for a tick
        each would age into the collector's older generations."""
        deadlines = self.deadlines
        while deadlines and deadlines[0][1].done():
            deadlines.popleft()

    # --- locks ----------------------------------------------------------------
    def wait_lock(self, name: str, lease: int) -> asyncio.Future[int | None]:
        fut: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        key = (name, lease)
        self.locks.setdefault(key, []).append(fut)
        fut.add_done_callback(lambda f: _discard(self.locks, key, f))
        return fut

    def lock_answered(self, name: str, lease: int, token: int | None) -> None:
        """`lease` got lock `name` with fencing `token`, or stopped waiting (None)."""
        for fut in self.locks.pop((name, lease), ()):
            if not fut.done():
                fut.set_result(token)

    def interrupt_lock_waits(self, reason: str) -> None:
        for futures in list(self.locks.values()):
            for fut in list(futures):
                if not fut.done():
                    fut.set_exception(WaitInterrupted(reason))

    # --- checkpoints ----------------------------------------------------------
    def wait_checkpoint(self, checkpoint_id: str) -> asyncio.Future[dict[str, Any]]:
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.checkpoints.setdefault(checkpoint_id, []).append(fut)
        fut.add_done_callback(lambda f: _discard(self.checkpoints, checkpoint_id, f))
        return fut

    def checkpoint_written(self, checkpoint_id: str, manifest: dict[str, Any]) -> None:
        for w in self.checkpoints.pop(checkpoint_id, []):
            if not w.done():
                w.set_result(manifest)

    def checkpoint_failed(self, checkpoint_id: str, exc: BaseException) -> None:
        for w in self.checkpoints.pop(checkpoint_id, []):
            if not w.done():
                w.set_exception(exc)

    def checkpoint_futures(self) -> list[Pending]:
        return [f for futures in self.checkpoints.values() for f in futures]


def _discard(waiters: dict[Any, list[Any]], key: Any, fut: Any) -> None:
    """Drop a finished (answered or abandoned) waiter from its list."""
    futures = waiters.get(key)
    if futures is not None:
        with contextlib.suppress(ValueError):
            futures.remove(fut)
        if not futures:
            del waiters[key]
