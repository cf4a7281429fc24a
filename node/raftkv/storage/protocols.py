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
    # From RaftStore.load(): where the log starts (index/term of the entry before
    # its first one; the store does not know the membership, so conf_state is
    # empty), None when the log starts at index 1. From storage.recovery.recover():
    # the newest usable snapshot, with its ConfState. Start a node from the latter.
    snapshot: SnapshotMeta | None = None
    entries: list[Entry] = field(default_factory=list)  # log after the snapshot
    # From RaftStore.load() only; recovery uses them to notice missing state.
    new_log: bool = False  # there was no log at all (a new node, or one that lost it)
    # The newest snapshot the log has a record of (`record_snapshot`): (index, term).
    snapshot_record: tuple[int, int] | None = None
    origin: str = ""  # where the log was read from, for error messages


class RaftStore(Protocol):
    """The log and hard state together: one Ready is one `save` = one write + one fsync."""

    def load(self) -> InitialState: ...

    def save(self, hard_state: HardState | None, entries: list[Entry]) -> None:
        """Durably append `entries` (overwriting any suffix from entries[0].index
        on) and record `hard_state`. Returns only once both are on stable storage."""
        ...

    def record_snapshot(self, meta: SnapshotMeta, hard_state: HardState | None = None) -> None:
        """Durably record that a snapshot at (meta.index, meta.term) is about to be
        saved (and `hard_state`, if given, in the same write). Call it before saving
        a snapshot that lies beyond the log (installed from the leader, restored at
        bootstrap); `load()` reports the newest one as `snapshot_record`."""
        ...

    def compact(self, index: int) -> None:
        """Entries <= index are covered by a durable snapshot and may be dropped."""
        ...

    def reset_to_snapshot(self, meta: SnapshotMeta, hard_state: HardState) -> None:
        """Discard the whole log: the node installed a snapshot from the leader."""
        ...

    def close(self) -> None: ...


class SnapshotSink(Protocol):
    """A snapshot arriving in chunks (InstallSnapshot streamed by the leader).
    Nothing is visible until `finish()`; leaving the `with` block without it
    (or on an exception) discards what was written."""

    def write(self, chunk: bytes) -> None: ...

    def finish(self) -> SnapshotMeta:
        """Verify the expected size/sha256 (if given), make durable, publish."""
        ...

    def abort(self) -> None: ...

    def __enter__(self) -> SnapshotSink: ...

    def __exit__(self, *exc_info: object) -> None: ...


class SnapshotStore(Protocol):
    def save(self, meta: SnapshotMeta, data: bytes) -> None:
        """Write durably (temp file, fsync, rename, fsync dir); keep the newest few."""
        ...

    def latest(self) -> tuple[SnapshotMeta, bytes] | None: ...

    def location(self, meta: SnapshotMeta) -> str:
        """Where the snapshot `meta` is kept (a file name), for error messages."""
        ...

    def open_latest(self) -> tuple[SnapshotMeta, BinaryIO, int] | None:
        """Meta, a readable file object and its size: for streaming to a peer."""
        ...

    def receive(
        self, meta: SnapshotMeta, *, size: int | None = None, sha256: str | None = None
    ) -> SnapshotSink:
        """Start receiving a snapshot in chunks (see SnapshotSink)."""
        ...
