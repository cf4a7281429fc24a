"""recover(): putting the log and the newest snapshot together at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from raftkv.raft.types import ConfState, HardState, SnapshotMeta
from raftkv.storage.errors import InconsistentStorageError
from raftkv.storage.memory import MemoryRaftStore, MemorySnapshotStore
from raftkv.storage.recovery import recover
from raftkv.storage.snapshots import FileSnapshotStore
from raftkv.storage.wal import WriteAheadLog

from .helpers import entries, flip_byte

CONF = ConfState(frozenset({1, 2, 3}))


def indexes(result_entries: list) -> list[tuple[int, int]]:
    return [(e.index, e.term) for e in result_entries]


def test_no_snapshot_and_a_full_log() -> None:
    log = MemoryRaftStore()
    log.save(HardState(2, 1, 3), entries(1, 4, term=2))
    result = recover(log, MemorySnapshotStore())
    assert result.snapshot_data is None and result.state.snapshot is None
    assert indexes(result.state.entries) == [(i, 2) for i in range(1, 5)]


def test_snapshot_taken_but_log_not_yet_compacted() -> None:
    log, snapshots = MemoryRaftStore(), MemorySnapshotStore()
    log.save(HardState(2, 1, 6), entries(1, 8, term=2))
    snapshots.save(SnapshotMeta(5, 2, CONF), b"state@5")
    result = recover(log, snapshots)
    assert result.state.snapshot == SnapshotMeta(5, 2, CONF)  # membership from the snapshot
    assert result.snapshot_data == b"state@5"
    assert indexes(result.state.entries) == [(i, 2) for i in range(6, 9)]
    assert result.state.hard_state == HardState(2, 1, 6)


def test_installed_snapshot_before_the_log_was_reset() -> None:
    log, snapshots = MemoryRaftStore(), MemorySnapshotStore()
    log.save(HardState(2, 1, 3), entries(1, 8, term=2))
    snapshots.save(SnapshotMeta(20, 4, CONF), b"state@20")  # crash before reset_to_snapshot
    result = recover(log, snapshots)
    assert result.state.entries == []
    assert result.state.hard_state.commit == 20


def test_log_that_diverges_from_the_snapshot_is_dropped() -> None:
    log, snapshots = MemoryRaftStore(), MemorySnapshotStore()
    log.save(HardState(2, 1, 3), entries(1, 8, term=2))  # 4..8 never committed
    snapshots.save(SnapshotMeta(6, 3, CONF), b"state@6")  # term 3 at index 6
    result = recover(log, snapshots)
    assert result.state.entries == []


def test_log_starting_after_the_usable_snapshot_refuses() -> None:
    log, snapshots = MemoryRaftStore(), MemorySnapshotStore()
    log.save(HardState(2, 1, 8), entries(1, 10, term=2))
    log.compact(8)
    snapshots.save(SnapshotMeta(5, 2, CONF), b"state@5")
    with pytest.raises(InconsistentStorageError, match="6..8"):
        recover(log, snapshots)
    with pytest.raises(InconsistentStorageError, match="no usable snapshot"):
        recover(log, MemorySnapshotStore())


def test_commit_beyond_the_log_refuses() -> None:
    log = MemoryRaftStore()
    log.save(HardState(2, 1, 9), entries(1, 3, term=2))
    with pytest.raises(InconsistentStorageError, match="committed"):
        recover(log, MemorySnapshotStore())


def test_files_with_a_damaged_newest_snapshot(tmp_path: Path) -> None:
    # Compacting one snapshot behind keeps the fallback usable.
    snapshots = FileSnapshotStore(tmp_path / "snap")
    with WriteAheadLog(tmp_path / "wal") as wal:
        wal.load()
        wal.save(HardState(2, 1, 30), entries(1, 30, term=2))
        snapshots.save(SnapshotMeta(10, 2, CONF), b"state@10")
        snapshots.save(SnapshotMeta(20, 2, CONF), b"state@20")
        wal.compact(10)
    flip_byte(tmp_path / "snap" / f"snap-{20:020d}-{2:020d}.data", 3)
    with WriteAheadLog(tmp_path / "wal") as wal:
        result = recover(wal, snapshots)
    assert result.snapshot_data == b"state@10"
    assert indexes(result.state.entries) == [(i, 2) for i in range(11, 31)]
