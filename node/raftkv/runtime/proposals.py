"""Client proposals queued for the next batch, and the bytes admitted but not yet
applied: the quota counts those too, so many writes admitted at once cannot
overshoot it (runtime/limits.py)."""

from __future__ import annotations

from collections import deque

from raftkv.runtime.outcomes import Pending

Queued = tuple[bytes, Pending, float]  # (entry data, its result slot, when it came)


class ProposalQueue:
    def __init__(self) -> None:
        self.queued: list[Queued] = []
        self._queued_bytes = 0
        # Batches proposed by this leader and not applied yet: (last index, bytes).
        self._inflight: deque[tuple[int, int]] = deque()
        self._inflight_bytes = 0

    def add(self, data: bytes, fut: Pending, now: float) -> None:
        self._queued_bytes += len(data)
        self.queued.append((data, fut, now))

    def take(self) -> list[Queued]:
        """Everything queued (to propose as one batch, or to fail)."""
        queued, self.queued = self.queued, []
        self._queued_bytes = 0
        return queued

    def in_log(self, last_index: int, size: int) -> None:
        """A batch of `size` bytes is in the log up to `last_index`."""
        self._inflight.append((last_index, size))
        self._inflight_bytes += size

    def step_down(self) -> list[Queued]:
        """No longer the leader: a later term of leadership counts afresh; what was
        queued is returned, to fail."""
        self._inflight.clear()
        self._inflight_bytes = 0
        return self.take()

    def unapplied_bytes(self, applied: int) -> int:
        """Bytes of admitted client proposals this leader has not applied yet."""
        inflight = self._inflight
        while inflight and inflight[0][0] <= applied:
            self._inflight_bytes -= inflight.popleft()[1]
        return self._queued_bytes + self._inflight_bytes
