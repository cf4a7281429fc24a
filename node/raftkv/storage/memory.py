"""In-memory twins of the durable stores, for the simulator and unit tests.

`MemoryRaftStore.durable` is exactly what a real node would find on disk after
a crash: every `save` is synchronous, so everything saved is "fsynced". The
simulator crashes a node by dropping its core and building a new one from
`store.load()` (or from `store.copy()` taken at the moment of the crash).

Entries are shared with the caller, not copied: the core treats `Entry`
objects as immutable once created, which keeps copies cheap.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from typing import BinaryIO

from raftkv.raft.types import ConfState, Entry, HardState, SnapshotMeta
from raftkv.storage.errors import CorruptSnapshotError, StorageError
from raftkv.storage.logshape import check_append, check_compact
from raftkv.storage.protocols import InitialState


@dataclass(slots=True)
class DurableRaftState:
    """What survives a crash: the hard state, where the log starts, the log."""

    hard_state: HardState = field(default_factory=HardState)
    base_index: int = 0  # the log holds entries base_index+1 .. last
    base_term: int = 0  # term of entry base_index (covered by a snapshot)
    entries: list[Entry] = field(default_factory=list)
    snapshot_record: tuple[int, int] | None = None  # newest record_snapshot (index, term)
    exists: bool = False  # something was ever written (a WAL with segments)

    def copy(self) -> DurableRaftState:
        """A cheap independent copy (the Entry objects are shared, being immutable)."""
        return DurableRaftState(
            self.hard_state.copy(),
            self.base_index,
            self.base_term,
            list(self.entries),
            self.snapshot_record,
            self.exists,
        )

    @property
    def last_index(self) -> int:
        return self.entries[-1].index if self.entries else self.base_index

    def term_at(self, index: int) -> int:
        if index == self.base_index:
            return self.base_term
        if self.base_index < index <= self.last_index:
            return self.entries[index - self.base_index - 1].term
        raise IndexError(f"index {index} is outside the log ({self.base_index}, {self.last_index}]")


class MemoryRaftStore:
    """RaftStore kept in memory. `saves` counts calls that would have fsynced."""

    def __init__(self, durable: DurableRaftState | None = None) -> None:
        self.durable = durable if durable is not None else DurableRaftState()
        self.saves = 0
        self.closed = False

    def copy(self) -> MemoryRaftStore:
        """An independent store holding the same durable state (a crash image)."""
        return MemoryRaftStore(self.durable.copy())

    def load(self) -> InitialState:
        state = self.durable
        snapshot = (
            SnapshotMeta(state.base_index, state.base_term, ConfState())
            if state.base_index
            else None
        )
        return InitialState(
            state.hard_state.copy(),
            snapshot,
            list(state.entries),
            new_log=not state.exists,
            snapshot_record=state.snapshot_record,
            origin="the in-memory log",
        )

    def save(self, hard_state: HardState | None, entries: list[Entry]) -> None:
        self._check_open()
        state = self.durable
        if entries:
            first = entries[0].index
            in_log = state.base_index <= first - 1 <= state.last_index
            term_before = state.term_at(first - 1) if in_log else 0
            check_append(entries, state.base_index, state.last_index, term_before)
            del state.entries[first - state.base_index - 1 :]
            state.entries.extend(entries)
        if hard_state is not None:
            state.hard_state = hard_state.copy()
        if entries or hard_state is not None:
            state.exists = True
            self.saves += 1

    def record_snapshot(self, meta: SnapshotMeta, hard_state: HardState | None = None) -> None:
        self._check_open()
        state = self.durable
        state.snapshot_record = (meta.index, meta.term)
        if hard_state is not None:
            state.hard_state = hard_state.copy()
        state.exists = True
        self.saves += 1

    def compact(self, index: int) -> None:
        self._check_open()
        state = self.durable
        if index <= state.base_index:
            return
        check_compact(index, state.last_index)
        term = state.term_at(index)
        del state.entries[: index - state.base_index]
        state.base_index, state.base_term = index, term
        state.exists = True
        self.saves += 1

    def reset_to_snapshot(self, meta: SnapshotMeta, hard_state: HardState) -> None:
        self._check_open()
        self.durable = DurableRaftState(
            hard_state.copy(), meta.index, meta.term, [], self.durable.snapshot_record, exists=True
        )
        self.saves += 1

    def close(self) -> None:
        self.closed = True

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("store is closed")


class MemorySnapshotStore:
    """SnapshotStore kept in memory; keeps the newest `retain` snapshots by index."""

    def __init__(self, retain: int = 2) -> None:
        if retain < 1:
            raise ValueError("retain must be >= 1")
        self.retain = retain
        self.snapshots: list[tuple[SnapshotMeta, bytes]] = []  # oldest first

    def copy(self) -> MemorySnapshotStore:
        other = MemorySnapshotStore(self.retain)
        other.snapshots = list(self.snapshots)
        return other

    def save(self, meta: SnapshotMeta, data: bytes) -> None:
        kept = [(m, d) for m, d in self.snapshots if m.index != meta.index]
        kept.append((_copy_meta(meta), bytes(data)))
        kept.sort(key=lambda item: item[0].index)
        self.snapshots = kept[-self.retain :]

    def latest(self) -> tuple[SnapshotMeta, bytes] | None:
        if not self.snapshots:
            return None
        meta, data = self.snapshots[-1]
        return _copy_meta(meta), data

    def open_latest(self) -> tuple[SnapshotMeta, BinaryIO, int] | None:
        found = self.latest()
        if found is None:
            return None
        meta, data = found
        return meta, io.BytesIO(data), len(data)

    def receive(
        self, meta: SnapshotMeta, *, size: int | None = None, sha256: str | None = None
    ) -> MemorySnapshotSink:
        return MemorySnapshotSink(self, meta, size, sha256)

    def location(self, meta: SnapshotMeta) -> str:
        return "<in memory>"

    def metas(self) -> list[SnapshotMeta]:
        """Metadata of the retained snapshots, newest first."""
        return [_copy_meta(meta) for meta, _ in reversed(self.snapshots)]


class MemorySnapshotSink:
    """SnapshotSink of MemorySnapshotStore: same checks as the file version."""

    def __init__(
        self, store: MemorySnapshotStore, meta: SnapshotMeta, size: int | None, sha256: str | None
    ) -> None:
        self._store = store
        self.meta = meta
        self._expected_size = size
        self._expected_sha256 = sha256
        self._chunks: list[bytes] | None = []
        self._done = False

    def write(self, chunk: bytes) -> None:
        if self._chunks is None:
            raise StorageError("snapshot receiver is closed")
        self._chunks.append(bytes(chunk))

    def finish(self) -> SnapshotMeta:
        if self._chunks is None:
            raise StorageError("snapshot receiver is closed")
        data = b"".join(self._chunks)
        self._chunks = None
        if self._expected_size is not None and len(data) != self._expected_size:
            raise CorruptSnapshotError(
                f"snapshot {self.meta.index}: received {len(data)} bytes, "
                f"expected {self._expected_size}"
            )
        if (
            self._expected_sha256 is not None
            and hashlib.sha256(data).hexdigest() != self._expected_sha256
        ):
            raise CorruptSnapshotError(f"snapshot {self.meta.index}: sha256 mismatch")
        self._store.save(self.meta, data)
        self._done = True
        return self.meta

    def abort(self) -> None:
        self._chunks = None

    def __enter__(self) -> MemorySnapshotSink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self._done:
            self.abort()


def _copy_meta(meta: SnapshotMeta) -> SnapshotMeta:
    conf = ConfState(frozenset(meta.conf_state.voters), frozenset(meta.conf_state.learners))
    return SnapshotMeta(meta.index, meta.term, conf)
