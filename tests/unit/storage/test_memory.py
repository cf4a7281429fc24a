"""The in-memory twins: the semantics the WAL is checked against."""

from __future__ import annotations

import pytest

from raftkv.raft.types import ConfState, HardState, SnapshotMeta
from raftkv.storage.memory import MemoryRaftStore, MemorySnapshotStore

from .helpers import entries, summary


def test_save_then_load_returns_hard_state_and_entries() -> None:
    store = MemoryRaftStore()
    store.save(HardState(2, 1, 3), entries(1, 5, term=2))
    state = store.load()
    assert state.hard_state == HardState(2, 1, 3)
    assert state.snapshot is None
    assert state.entries == entries(1, 5, term=2)
    assert store.saves == 1


def test_overwrite_truncates_the_suffix() -> None:
    store = MemoryRaftStore()
    store.save(None, entries(1, 6, term=1))
    store.save(None, entries(4, 4, term=2))
    assert [(e.index, e.term) for e in store.load().entries] == [(1, 1), (2, 1), (3, 1), (4, 2)]


def test_compact_moves_the_base_and_keeps_later_entries() -> None:
    store = MemoryRaftStore()
    store.save(None, entries(1, 3, term=1) + entries(4, 6, term=2))
    store.compact(4)
    _, snap, log = summary(store.load())
    assert snap == (4, 2)
    assert log == [(5, 2), (6, 2)]
    store.compact(2)  # behind the base: nothing to do
    assert summary(store.load())[1] == (4, 2)


def test_reset_to_snapshot_discards_the_log() -> None:
    store = MemoryRaftStore()
    store.save(HardState(1, 1, 2), entries(1, 5))
    store.reset_to_snapshot(SnapshotMeta(50, 3), HardState(3, 0, 50))
    assert summary(store.load()) == (HardState(3, 0, 50), (50, 3), [])
    store.save(None, entries(51, 52, term=3))
    assert summary(store.load())[2] == [(51, 3), (52, 3)]


@pytest.mark.parametrize(
    ("setup_last", "compact_to", "append", "message"),
    [
        (5, 0, (7, 8, 1), "gap"),
        (5, 3, (2, 4, 1), "compacted"),
        (5, 0, (3, 3, 0), "backwards"),
    ],
)
def test_invalid_appends_are_refused_and_change_nothing(
    setup_last: int, compact_to: int, append: tuple[int, int, int], message: str
) -> None:
    store = MemoryRaftStore()
    store.save(HardState(1, 1, 0), entries(1, setup_last, term=1))
    store.compact(compact_to)
    before = summary(store.load())
    first, last, term = append
    with pytest.raises(ValueError, match=message):
        store.save(HardState(9, 9, 9), entries(first, last, term=term))
    assert summary(store.load()) == before


def test_non_contiguous_batch_is_refused() -> None:
    store = MemoryRaftStore()
    with pytest.raises(ValueError, match="contiguous"):
        store.save(None, entries(1, 2) + entries(4, 4))


def test_compact_beyond_the_log_is_refused() -> None:
    store = MemoryRaftStore()
    store.save(None, entries(1, 3))
    with pytest.raises(ValueError, match="cannot compact"):
        store.compact(4)


def test_copy_is_an_independent_crash_image() -> None:
    store = MemoryRaftStore()
    store.save(HardState(1, 1, 1), entries(1, 3))
    image = store.copy()
    store.save(HardState(2, 2, 2), entries(4, 6, term=2))
    store.compact(2)
    assert summary(image.load()) == (HardState(1, 1, 1), None, [(1, 1), (2, 1), (3, 1)])
    loaded = image.load()
    loaded.entries.clear()  # the caller owns what load() returns
    loaded.hard_state.term = 99
    assert len(image.load().entries) == 3 and image.load().hard_state.term == 1


def test_memory_snapshot_store_keeps_the_newest_two() -> None:
    snapshots = MemorySnapshotStore()
    assert snapshots.latest() is None and snapshots.open_latest() is None
    for index in (10, 30, 20):
        snapshots.save(SnapshotMeta(index, 1, ConfState(frozenset({1}))), f"s{index}".encode())
    assert [m.index for m, _ in snapshots.snapshots] == [20, 30]
    latest = snapshots.latest()
    assert latest is not None and latest[0].index == 30 and latest[1] == b"s30"
    opened = snapshots.open_latest()
    assert opened is not None
    meta, stream, size = opened
    assert (meta.index, stream.read(), size) == (30, b"s30", 3)
    assert meta.conf_state.voters == frozenset({1})
