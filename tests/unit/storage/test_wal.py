"""WriteAheadLog behaviour with healthy files: round trips, overwrites,
segments, compaction, snapshots installs, and the write path's promises."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from raftkv.raft.types import HardState, SnapshotMeta
from raftkv.storage import wal as wal_module
from raftkv.storage.errors import DirectoryLockedError, StorageError, WALUnusableError
from raftkv.storage.memory import MemoryRaftStore
from raftkv.storage.wal import WriteAheadLog, list_segments

from .helpers import SMALL_SEGMENT, entries, open_wal, reopen, summary


def test_empty_directory_loads_empty_state(tmp_path: Path) -> None:
    wal, state = open_wal(tmp_path / "wal")
    assert summary(state) == (HardState(), None, [])
    wal.close()
    wal, state = open_wal(tmp_path / "wal")
    assert summary(state) == (HardState(), None, [])
    wal.close()


def test_round_trip_after_every_save(tmp_path: Path) -> None:
    wal, _ = open_wal(tmp_path)
    model = MemoryRaftStore()
    for step in range(1, 8):
        batch = entries(step * 3 - 2, step * 3, term=step, size=step * 7)
        hard_state = HardState(step, step % 3, step * 3 - 1)
        wal.save(hard_state, batch)
        model.save(hard_state, batch)
        wal, state = reopen(wal)
        assert state.entries == model.load().entries
        assert state.hard_state == model.load().hard_state
    wal.close()


def test_entry_types_and_binary_data_survive(tmp_path: Path) -> None:
    from raftkv.raft.types import Entry, EntryType

    batch = [
        Entry(1, 1, EntryType.CONF_CHANGE, bytes(range(256))),
        Entry(1, 2, data=b""),
        Entry(1, 3, data=b"\x00" * 1000),
    ]
    wal, _ = open_wal(tmp_path)
    wal.save(None, batch)
    wal, state = reopen(wal)
    assert state.entries == batch
    assert state.entries[0].type is EntryType.CONF_CHANGE
    wal.close()


def test_hard_state_only_save(tmp_path: Path) -> None:
    wal, _ = open_wal(tmp_path)
    wal.save(None, entries(1, 2))
    wal.save(HardState(7, 3, 2), [])
    wal, state = reopen(wal)
    assert summary(state) == (HardState(7, 3, 2), None, [(1, 1), (2, 1)])
    wal.close()


def test_overwrite_of_a_suffix_wins_on_replay(tmp_path: Path) -> None:
    wal, _ = open_wal(tmp_path)
    wal.save(HardState(1, 1, 2), entries(1, 10, term=1))
    wal.save(HardState(2, 2, 2), entries(5, 6, term=2, tag="new"))
    wal.save(None, entries(7, 7, term=2, tag="newer"))
    wal, state = reopen(wal)
    assert [(e.index, e.term) for e in state.entries] == [(i, 1) for i in range(1, 5)] + [
        (5, 2),
        (6, 2),
        (7, 2),
    ]
    assert state.entries[4].data.startswith(b"<new-000005")
    assert state.entries[6].data.startswith(b"<newer-000007")
    wal.close()


def test_overwrite_from_the_first_entry(tmp_path: Path) -> None:
    wal, _ = open_wal(tmp_path)
    wal.save(None, entries(1, 3, term=1))
    wal.save(None, entries(1, 1, term=2))
    wal, state = reopen(wal)
    assert summary(state)[2] == [(1, 2)]
    wal.close()


def test_segments_roll_over_and_replay_in_order(tmp_path: Path) -> None:
    wal, _ = open_wal(tmp_path, segment_bytes=SMALL_SEGMENT)
    for first in range(1, 201, 10):
        wal.save(HardState(1, 1, first), entries(first, first + 9, size=100))
    paths = wal.segment_paths()
    assert len(paths) >= 5
    assert all(os.path.getsize(p) <= SMALL_SEGMENT for p in paths)
    wal, state = reopen(wal)
    assert [e.index for e in state.entries] == list(range(1, 201))
    assert state.hard_state == HardState(1, 1, 191)
    wal.close()


def test_a_batch_larger_than_a_segment_goes_whole_into_one_segment(tmp_path: Path) -> None:
    wal, _ = open_wal(tmp_path, segment_bytes=SMALL_SEGMENT)
    wal.save(None, entries(1, 2))
    wal.save(None, entries(3, 100, size=200))  # ~21 KiB in one batch
    wal.save(None, entries(101, 101))
    sizes = [os.path.getsize(p) for p in wal.segment_paths()]
    assert len(sizes) == 3 and sizes[1] > SMALL_SEGMENT
    wal, state = reopen(wal)
    assert [e.index for e in state.entries] == list(range(1, 102))
    wal.close()


def test_compact_deletes_only_whole_old_segments(tmp_path: Path) -> None:
    wal, _ = open_wal(tmp_path, segment_bytes=SMALL_SEGMENT)
    for first in range(1, 301, 10):
        wal.save(HardState(3, 2, first), entries(first, first + 9, term=3, size=100))
    before = wal.segment_paths()
    wal.compact(150)
    after = wal.segment_paths()
    assert len(after) < len(before)
    assert after == before[len(before) - len(after) :], "only a prefix of segments goes"
    wal, state = reopen(wal)
    assert summary(state)[1] == (150, 3)
    assert [e.index for e in state.entries] == list(range(151, 301))
    assert state.hard_state == HardState(3, 2, 291)
    # The hard state written long ago survives the deletion of its segment.
    wal.compact(300)
    assert len(wal.segment_paths()) == 1
    wal, state = reopen(wal)
    assert summary(state) == (HardState(3, 2, 291), (300, 3), [])
    wal.close()


def test_compact_keeps_the_log_usable_for_appends_and_overwrites(tmp_path: Path) -> None:
    wal, _ = open_wal(tmp_path, segment_bytes=SMALL_SEGMENT)
    wal.save(None, entries(1, 100, term=1, size=100))
    wal.compact(60)
    wal.save(None, entries(80, 120, term=2, size=100))
    wal.compact(90)
    wal, state = reopen(wal)
    assert summary(state)[1] == (90, 2)
    assert [(e.index, e.term) for e in state.entries] == [(i, 2) for i in range(91, 121)]
    with pytest.raises(ValueError, match="compacted"):
        wal.save(None, entries(90, 91, term=2))
    wal.close()


def test_overwrite_in_the_shadow_of_deleted_segments(tmp_path: Path) -> None:
    # Old entries 1..N in early segments, an overwrite reaching back before the
    # current segment, then a compaction that deletes the early segments: replay
    # starts mid-log and must still end with the overwritten suffix.
    wal, _ = open_wal(tmp_path, segment_bytes=SMALL_SEGMENT)
    wal.save(None, entries(1, 60, term=1, size=150))
    wal.save(None, entries(61, 80, term=1, size=150))  # a segment of its own, stale later
    wal.save(None, entries(55, 90, term=2, size=150))
    wal.compact(75)
    seqs = [seq for seq, _ in list_segments(tmp_path)]
    assert seqs == [1, 2], "the first segment is gone, the stale one must stay"
    wal, state = reopen(wal)
    assert summary(state)[1] == (75, 2)
    assert [(e.index, e.term) for e in state.entries] == [(i, 2) for i in range(76, 91)]
    wal.close()


def test_reset_to_snapshot_replaces_every_segment(tmp_path: Path) -> None:
    wal, _ = open_wal(tmp_path, segment_bytes=SMALL_SEGMENT)
    wal.save(HardState(2, 1, 50), entries(1, 80, term=2, size=100))
    old = wal.segment_paths()
    wal.reset_to_snapshot(SnapshotMeta(500, 7), HardState(7, 0, 500))
    assert not set(old) & set(wal.segment_paths())
    wal.save(None, entries(501, 503, term=7))
    wal, state = reopen(wal)
    assert summary(state) == (HardState(7, 0, 500), (500, 7), [(501, 7), (502, 7), (503, 7)])
    wal.close()


def test_interrupted_reset_is_finished_on_load(tmp_path: Path) -> None:
    wal, _ = open_wal(tmp_path, segment_bytes=SMALL_SEGMENT)
    wal.save(HardState(2, 1, 50), entries(1, 80, term=2, size=100))
    old = {p: Path(p).read_bytes() for p in wal.segment_paths()}
    wal.reset_to_snapshot(SnapshotMeta(500, 7), HardState(7, 0, 500))
    wal.close()
    for path, content in old.items():  # as if the process died before deleting them
        Path(path).write_bytes(content)
    wal, state = open_wal(tmp_path)
    assert summary(state) == (HardState(7, 0, 500), (500, 7), [])
    assert not any(os.path.exists(p) for p in old)
    wal.close()


def test_one_write_and_one_fsync_per_save(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wal, _ = open_wal(tmp_path)
    wal.save(HardState(), [])  # the first write to a new log creates its first segment
    calls: list[str] = []
    real_write, real_sync = os.write, wal_module._datasync

    def counting_write(fd: int, data: bytes) -> int:
        calls.append("write")
        return real_write(fd, data)

    def counting_sync(fd: int) -> None:
        calls.append("sync")
        real_sync(fd)

    monkeypatch.setattr(os, "write", counting_write)
    monkeypatch.setattr(wal_module, "_datasync", counting_sync)
    wal.save(HardState(1, 1, 0), entries(1, 256, size=256))
    assert calls == ["write", "sync"]
    calls.clear()
    wal.save(None, [])  # nothing to persist: no IO at all
    assert calls == []
    monkeypatch.undo()
    wal.close()


def test_fsync_off_does_not_sync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wal, _ = open_wal(tmp_path, fsync=False)
    synced: list[int] = []
    monkeypatch.setattr(wal_module, "_datasync", synced.append)
    monkeypatch.setattr(os, "fsync", synced.append)
    wal.save(HardState(1, 1, 0), entries(1, 3))
    assert synced == []
    monkeypatch.undo()
    wal, state = reopen(wal)
    assert len(state.entries) == 3  # the data still reached the file (page cache)
    wal.close()


def test_a_failed_write_makes_the_log_refuse_further_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wal, _ = open_wal(tmp_path)
    wal.save(None, entries(1, 2))

    def failing_sync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(wal_module, "_datasync", failing_sync)
    with pytest.raises(WALUnusableError, match="write failed"):
        wal.save(None, entries(3, 3))
    monkeypatch.undo()
    with pytest.raises(WALUnusableError, match="restart"):
        wal.save(None, entries(3, 3))
    wal.close()


def test_directory_is_locked_while_open(tmp_path: Path) -> None:
    wal, _ = open_wal(tmp_path)
    with pytest.raises(DirectoryLockedError):
        WriteAheadLog(tmp_path)
    wal.close()
    WriteAheadLog(tmp_path).close()


def test_writes_before_load_or_after_close_are_refused(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path)
    with pytest.raises(StorageError, match="load"):
        wal.save(None, entries(1, 1))
    wal.load()
    wal.close()
    with pytest.raises(StorageError, match="closed"):
        wal.save(None, entries(1, 1))


def test_invalid_appends_are_refused_like_the_memory_store(tmp_path: Path) -> None:
    wal, _ = open_wal(tmp_path)
    model = MemoryRaftStore()
    for store in (wal, model):
        store.save(HardState(1, 1, 0), entries(1, 5, term=2))
        store.compact(2)
    bad = [
        entries(7, 8, term=2),
        entries(2, 3, term=2),
        entries(4, 4, term=1),
        entries(1, 1, term=2) + entries(3, 3, term=2),
    ]
    for batch in bad:
        with pytest.raises(ValueError) as from_model:
            model.save(None, batch)
        with pytest.raises(ValueError) as from_wal:
            wal.save(None, batch)
        assert str(from_wal.value) == str(from_model.value)
    with pytest.raises(ValueError, match="cannot compact"):
        wal.compact(6)
    wal, state = reopen(wal)
    assert summary(state) == summary(model.load())
    wal.close()


def test_segment_names_are_sequential(tmp_path: Path) -> None:
    wal, _ = open_wal(tmp_path, segment_bytes=SMALL_SEGMENT)
    wal.save(None, entries(1, 150, size=100))
    for first in range(151, 301, 10):
        wal.save(None, entries(first, first + 9, size=100))
    seqs = [seq for seq, _ in list_segments(tmp_path)]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    wal.close()


def test_compact_at_every_index_around_segment_boundaries(tmp_path: Path) -> None:
    pristine = tmp_path / "pristine"
    wal, _ = open_wal(pristine, segment_bytes=SMALL_SEGMENT)
    for first in range(1, 121, 6):
        wal.save(HardState(1, 1, first), entries(first, first + 5, size=120))
    wal.close()
    for index in range(1, 121):
        work = tmp_path / f"compact-{index}"
        shutil.copytree(pristine, work)
        wal, _ = open_wal(work, segment_bytes=SMALL_SEGMENT)
        wal.compact(index)
        wal, state = reopen(wal)
        assert summary(state)[1] == (index, 1)
        assert [e.index for e in state.entries] == list(range(index + 1, 121)), index
        wal.close()
        shutil.rmtree(work)
