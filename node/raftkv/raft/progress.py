"""What the leader knows about each follower's log (etcd-io/raft's tracker)."""

from __future__ import annotations

from collections import deque
from enum import IntEnum


class ProgressState(IntEnum):
    PROBE = 0  # one message in flight until we learn where the follower's log matches
    REPLICATE = 1  # optimistic pipelining, capped by Inflights
    SNAPSHOT = 2  # a snapshot is being sent; wait for its outcome


class Inflights:
    """Caps the messages and bytes in flight to one follower (pipelining window)."""

    __slots__ = ("max_count", "max_bytes", "queue", "bytes")

    def __init__(self, max_count: int, max_bytes: int) -> None:
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.queue: deque[tuple[int, int]] = deque()  # (last index, bytes)
        self.bytes = 0

    def add(self, last_index: int, size: int) -> None:
        self.queue.append((last_index, size))
        self.bytes += size

    def free_le(self, index: int) -> None:
        q = self.queue
        while q and q[0][0] <= index:
            self.bytes -= q.popleft()[1]

    def free_first(self) -> None:
        if self.queue:
            self.bytes -= self.queue.popleft()[1]

    def full(self) -> bool:
        return len(self.queue) >= self.max_count or (
            self.max_bytes > 0 and self.bytes >= self.max_bytes
        )

    def reset(self) -> None:
        self.queue.clear()
        self.bytes = 0


class Progress:
    __slots__ = (
        "match",
        "next",
        "state",
        "probe_sent",
        "pending_snapshot",
        "recent_active",
        "is_learner",
        "inflights",
        "probe_hi",
    )

    def __init__(self, next_index: int, inflights: Inflights, is_learner: bool = False) -> None:
        self.match = 0
        self.next = next_index
        self.state = ProgressState.PROBE
        self.probe_sent = False
        self.pending_snapshot = 0
        self.recent_active = False
        self.is_learner = is_learner
        self.inflights = inflights
        self.probe_hi = 0  # bisection: smallest prev index known NOT to match (0 = unknown)

    def _reset_state(self, state: ProgressState) -> None:
        self.probe_sent = False
        self.pending_snapshot = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        if self.state == ProgressState.SNAPSHOT:
            pending = self.pending_snapshot
            self._reset_state(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset_state(ProgressState.PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        self._reset_state(ProgressState.REPLICATE)
        self.next = self.match + 1
        self.probe_hi = 0

    def become_snapshot(self, index: int) -> None:
        self._reset_state(ProgressState.SNAPSHOT)
        self.pending_snapshot = index

    def maybe_update(self, index: int) -> bool:
        """An ack for `index`: returns True if match moved."""
        updated = False
        if self.match < index:
            self.match = index
            updated = True
            self.probe_sent = False
        if self.next < index + 1:
            self.next = index + 1
        return updated

    def is_paused(self) -> bool:
        if self.state == ProgressState.PROBE:
            return self.probe_sent
        if self.state == ProgressState.REPLICATE:
            return self.inflights.full()
        return True
