"""recover(): putting the log and the newest snapshot together at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from raftkv.raft.types import ConfState, HardState, SnapshotMeta
from raftkv.storage.errors import InconsistentStorageError, LostLogError
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
    meta = SnapshotMeta(20, 4, CONF)
    log.record_snapshot(meta, HardState(5, 2, 3))  # the install starts with its record
    snapshots.save(meta, b"state@20")  # crash before reset_to_snapshot
    result = recover(log, snapshots)
    assert result.state.entries == []
    assert result.state.hard_state == HardState(5, 2, 20)
    # recover() finished the reset: the log now starts after the snapshot.
    assert (log.durable.base_index, log.durable.base_term, log.durable.entries) == (20, 4, [])
    log.save(None, entries(21, 21, term=5))  # and takes the next entry


def test_log_that_diverges_from_the_snapshot_is_dropped() -> None:
    log, snapshots = MemoryRaftStore(), MemorySnapshotStore()
    log.save(HardState(2, 1, 3), entries(1, 8, term=2))  # 4..8 never committed
    meta = SnapshotMeta(6, 3, CONF)  # term 3 at index 6
    log.record_snapshot(meta)
    snapshots.save(meta, b"state@6")
    result = recover(log, snapshots)
    assert result.state.entries == []
    assert log.durable.base_index == 6 and log.durable.entries == []


def test_snapshot_newer_than_the_log_without_a_record_refuses() -> None:
    # A snapshot the node took itself is always inside its log; one it installed
    # is recorded first. So the log lost its end (a deleted or cut segment).
    log, snapshots = MemoryRaftStore(), MemorySnapshotStore()
    log.save(HardState(2, 1, 3), entries(1, 8, term=2))
    snapshots.save(SnapshotMeta(20, 4, CONF), b"state@20")
    before = log.durable.copy()
    with pytest.raises(LostLogError, match=r"index 20, term 4.*ends at index 8"):
        recover(log, snapshots)
    assert log.durable == before, "a refused start changes nothing"


def test_a_record_of_another_snapshot_does_not_count() -> None:
    log, snapshots = MemoryRaftStore(), MemorySnapshotStore()
    log.save(HardState(2, 1, 3), entries(1, 8, term=2))
    log.record_snapshot(SnapshotMeta(20, 3, CONF))  # same index, other term
    snapshots.save(SnapshotMeta(20, 4, CONF), b"state@20")
    with pytest.raises(LostLogError):
        recover(log, snapshots)


def test_snapshot_disagreeing_with_the_log_without_a_record_refuses() -> None:
    log, snapshots = MemoryRaftStore(), MemorySnapshotStore()
    log.save(HardState(2, 1, 3), entries(1, 8, term=2))
    snapshots.save(SnapshotMeta(6, 3, CONF), b"state@6")
    with pytest.raises(LostLogError, match="disagrees"):
        recover(log, snapshots)


def test_no_log_beside_a_snapshot_refuses() -> None:
    snapshots = MemorySnapshotStore()
    snapshots.save(SnapshotMeta(20, 4, CONF), b"state@20")
    with pytest.raises(LostLogError, match="there is no log"):
        recover(MemoryRaftStore(), snapshots)


def test_no_log_beside_other_state_refuses_and_stays_refused() -> None:
    log = MemoryRaftStore()
    with pytest.raises(LostLogError, match="/data/identity.json"):
        recover(log, MemorySnapshotStore(), prior_state=["/data/identity.json"])
    with pytest.raises(LostLogError):
        recover(log, MemorySnapshotStore(), prior_state=["/data/identity.json"])


def test_a_new_log_exists_after_its_first_start() -> None:
    # A new member that has not heard from anyone yet restarts: identity.json now
    # exists, and so does its (empty) log, so it is not mistaken for a lost one.
    log = MemoryRaftStore()
    result = recover(log, MemorySnapshotStore())
    assert result.state.hard_state == HardState() and result.state.entries == []
    assert not log.load().new_log
    recover(log, MemorySnapshotStore(), prior_state=["/data/identity.json"])


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
