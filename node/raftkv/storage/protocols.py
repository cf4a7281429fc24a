"""The storage contracts the runtime and the simulator program against.

Small interfaces in the hashicorp/raft style, each with an in-memory twin
(`memory.py`) for tests and the simulator, and a durable implementation
(`wal.py`, `snapshots.py`) for the real node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

from raftkv.raft.types import Entry, HardState, SnapshotMeta


@dataclass(slots=True)
class InitialState:
    """What a node finds on disk when it starts."""

    hard_state: HardState = field(default_factory=HardState)
    snapshot: SnapshotMeta | None = None  # newest durable snapshot, if any
    entries: list[Entry] = field(default_factory=list)  # log after the snapshot


class RaftStore(Protocol):
    """The log and hard state together: one Ready is one `save` = one write + one fsync."""

    def load(self) -> InitialState: ...

    def save(self, hard_state: HardState | None, entries: list[Entry]) -> None:
        """Durably append `entries` (overwriting any suffix from entries[0].index
        on) and record `hard_state`. Returns only once both are on stable storage."""
        ...

    def compact(self, index: int) -> None:
        """Entries <= index are covered by a durable snapshot and may be dropped."""
        ...

    def reset_to_snapshot(self, meta: SnapshotMeta, hard_state: HardState) -> None:
        """Discard the whole log: the node installed a snapshot from the leader."""
        ...

    def close(self) -> None: ...


class SnapshotStore(Protocol):
    def save(self, meta: SnapshotMeta, data: bytes) -> None:
        """Write durably (temp file, fsync, rename, fsync dir); keep the newest few."""
        ...

    def latest(self) -> tuple[SnapshotMeta, bytes] | None: ...

    def open_latest(self) -> tuple[SnapshotMeta, BinaryIO, int] | None:
        """Meta, a readable file object and its size: for streaming to a peer."""
        ...
