"""Linearizable reads: queued reads go out as ONE ReadIndex request per loop turn
(a batch, told apart by its context bytes); each is released once the state
machine has applied the index the leader answered."""

from __future__ import annotations

import heapq
import itertools
import os
from dataclasses import dataclass

from raftkv.consensus import AnyConsensus, NotLeader, ReadState
from raftkv.runtime.outcomes import Pending

READ_RETRY_TICKS = 3  # re-issue a ReadIndex not answered within this many election timeouts


@dataclass(slots=True)
class _ReadBatch:
    futures: list[Pending]
    issued_tick: int


class ReadIndexQueue:
    def __init__(self) -> None:
        self.queued: list[Pending] = []  # for the next ReadIndex request
        self._batches: dict[bytes, _ReadBatch] = {}  # asked, by context
        self._pending: list[tuple[int, int, Pending]] = []  # answered: a heap by index
        self._seq = itertools.count(1)
        self._prefix = os.urandom(4)

    def issue(self, core: AnyConsensus, tick: int) -> None:
        """Ask for one read index for every queued read."""
        futures = [f for f in self.queued if not f.done()]
        self.queued = []
        if not futures:
            return
        ctx = self._prefix + next(self._seq).to_bytes(8, "big")
        try:
            core.read_index(ctx)
        except NotLeader as exc:
            for f in futures:
                f.set_exception(exc)
            return
        self._batches[ctx] = _ReadBatch(futures, tick)

    def reissue_all(self) -> None:
        """A new leader is known: ReadIndex requests sent to the old one will not be
        answered (or only by a leader that is gone): ask the new one at once instead
        of waiting out READ_RETRY_TICKS. A late answer to an old ctx is ignored."""
        if not self._batches:
            return
        for batch in self._batches.values():
            self.queued.extend(f for f in batch.futures if not f.done())
        self._batches.clear()

    def reissue_lost(self, tick: int, election_ticks: int) -> None:
        """Re-issue ReadIndex requests that got lost (leader change, dropped message)."""
        if not self._batches:
            return
        limit = election_ticks * READ_RETRY_TICKS
        for ctx, batch in list(self._batches.items()):
            if tick - batch.issued_tick >= limit:
                del self._batches[ctx]
                self.queued.extend(f for f in batch.futures if not f.done())

    def answered(self, read_states: list[ReadState]) -> None:
        """The leader answered these batches: each read waits for its index."""
        for rs in read_states:
            batch = self._batches.pop(rs.context, None)
            if batch is not None:
                for f in batch.futures:
                    heapq.heappush(self._pending, (rs.index, id(f), f))

    def release(self, applied: int) -> None:
        """Answer the reads whose index the state machine has applied."""
        pending = self._pending
        while pending and pending[0][0] <= applied:
            _, _, fut = heapq.heappop(pending)
            if not fut.done():
                fut.set_result(None)

    def take_all(self) -> list[Pending]:
        """Forget every read (queued, asked, answered); their futures, to fail."""
        futures = self.queued
        futures += [f for batch in self._batches.values() for f in batch.futures]
        futures += [f for _, _, f in self._pending]
        self.queued, self._pending = [], []
        self._batches.clear()
        return futures
