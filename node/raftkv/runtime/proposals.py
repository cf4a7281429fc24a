"""Client proposals queued for the next batch, and the bytes admitted but not yet
applied: the quota counts those too, so many writes admitted at once cannot
overshoot it (runtime/limits.py). And the request ids a Multi-Paxos node puts on
its proposals, so that a proposal's outcome (the value chosen at its slot is its
own) never confuses two identical commands."""

from __future__ import annotations

import secrets
from collections import deque

from raftkv.fsm import with_request_id
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


class RequestIds:
    """Request ids unique across the cluster: this node's id and a 64-bit counter
    from a random start (a restarted node's ids do not repeat its previous life's,
    whose proposals may still be chosen in slots it waits on again)."""

    __slots__ = ("_node", "_next")

    def __init__(self, node_id: int) -> None:
        self._node = node_id.to_bytes(8, "big")
        self._next = secrets.randbits(64)

    def stamp(self, data: bytes) -> bytes:
        """`data` as a proposal with a fresh request id."""
        n = self._next
        self._next = (n + 1) & 0xFFFF_FFFF_FFFF_FFFF
        return with_request_id(data, self._node + n.to_bytes(8, "big"))
