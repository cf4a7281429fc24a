"""FileSnapshotStore: durable publish, retention, fallback from damaged files,
streaming in and out."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from raftkv.raft.types import ConfState, SnapshotMeta
from raftkv.storage.errors import CorruptSnapshotError
from raftkv.storage.snapshots import FileSnapshotStore

from .helpers import flip_byte


def meta(index: int, term: int = 1) -> SnapshotMeta:
    return SnapshotMeta(index, term, ConfState(frozenset({1, 2, 3}), frozenset({4})))


def payload(index: int) -> bytes:
    return f"state-at-{index}|".encode() * 1000


def data_file(directory: Path, index: int, term: int = 1) -> Path:
    return directory / f"snap-{index:020d}-{term:020d}.data"


def meta_file(directory: Path, index: int, term: int = 1) -> Path:
    return directory / f"snap-{index:020d}-{term:020d}.meta.json"


def test_save_then_latest_round_trips_meta_and_data(tmp_path: Path) -> None:
    store = FileSnapshotStore(tmp_path)
    assert store.latest() is None and store.open_latest() is None
    store.save(meta(10, 2), payload(10))
    found = FileSnapshotStore(tmp_path).latest()  # a fresh store: it is on disk
    assert found == (meta(10, 2), payload(10))


def test_keeps_the_newest_two(tmp_path: Path) -> None:
    store = FileSnapshotStore(tmp_path)
    for index in (10, 20, 30, 40):
        store.save(meta(index), payload(index))
    assert [m.index for m in store.metas()] == [40, 30]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for i in (30, 40) for p in (data_file(tmp_path, i), meta_file(tmp_path, i))
    )


def test_damaged_newest_falls_back_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = FileSnapshotStore(tmp_path)
    store.save(meta(10), payload(10))
    store.save(meta(20), payload(20))
    flip_byte(data_file(tmp_path, 20), 1234)
    with caplog.at_level(logging.WARNING, logger="raftkv.storage.snapshots"):
        found = store.latest()
    assert found == (meta(10), payload(10))
    assert any(
        "damaged" in r.getMessage() and str(data_file(tmp_path, 20)) in r.getMessage()
        for r in caplog.records
    )
    opened = store.open_latest()
    assert opened is not None
    found_meta, stream, size = opened
    with stream:
        assert (found_meta.index, stream.read(), size) == (10, payload(10), len(payload(10)))


@pytest.mark.parametrize("damage", ["truncate", "delete-data", "bad-meta-json", "meta-lies"])
def test_other_damage_also_falls_back(tmp_path: Path, damage: str) -> None:
    store = FileSnapshotStore(tmp_path)
    store.save(meta(10), payload(10))
    store.save(meta(20), payload(20))
    if damage == "truncate":
        os.truncate(data_file(tmp_path, 20), 100)
    elif damage == "delete-data":
        data_file(tmp_path, 20).unlink()
    elif damage == "bad-meta-json":
        meta_file(tmp_path, 20).write_text("{not json")
    else:
        text = meta_file(tmp_path, 20).read_text().replace('"index": 20', '"index": 99')
        meta_file(tmp_path, 20).write_text(text)
    found = store.latest()
    assert found is not None and found[0].index == 10


def test_all_damaged_means_no_snapshot(tmp_path: Path) -> None:
    store = FileSnapshotStore(tmp_path)
    store.save(meta(10), payload(10))
    flip_byte(data_file(tmp_path, 10), 0)
    assert store.latest() is None
    assert store.open_latest() is None


def test_receive_in_chunks(tmp_path: Path) -> None:
    store = FileSnapshotStore(tmp_path)
    data = payload(77)
    import hashlib

    with store.receive(
        meta(77, 3), size=len(data), sha256=hashlib.sha256(data).hexdigest()
    ) as receiver:
        for at in range(0, len(data), 1000):
            receiver.write(data[at : at + 1000])
            assert store.latest() is None, "nothing is visible before finish()"
        receiver.finish()
    assert store.latest() == (meta(77, 3), data)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_receive_abandoned_or_mismatched_leaves_nothing(tmp_path: Path) -> None:
    store = FileSnapshotStore(tmp_path)
    with pytest.raises(RuntimeError), store.receive(meta(5)) as receiver:
        receiver.write(b"partial")
        raise RuntimeError("peer went away")
    with (
        pytest.raises(CorruptSnapshotError, match="expected 100"),
        store.receive(meta(6), size=100) as receiver,
    ):
        receiver.write(b"short")
        receiver.finish()
    with (
        pytest.raises(CorruptSnapshotError, match="sha256"),
        store.receive(meta(7), sha256="0" * 64) as receiver,
    ):
        receiver.write(b"whatever")
        receiver.finish()
    assert list(tmp_path.iterdir()) == []
    assert store.latest() is None


def test_interrupted_writes_are_cleaned_up_on_open(tmp_path: Path) -> None:
    store = FileSnapshotStore(tmp_path)
    store.save(meta(10), payload(10))
    (tmp_path / ".tmp-deadbeef.data").write_bytes(b"half a snapshot")
    data_file(tmp_path, 20).write_bytes(b"data renamed, meta never written")
    store = FileSnapshotStore(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [data_file(tmp_path, 10).name, meta_file(tmp_path, 10).name]
    )
    assert store.latest() == (meta(10), payload(10))


def test_saving_the_same_snapshot_again_replaces_it(tmp_path: Path) -> None:
    store = FileSnapshotStore(tmp_path)
    store.save(meta(10), b"first")
    store.save(meta(10), b"second")
    assert store.latest() == (meta(10), b"second")
    assert len(list(tmp_path.iterdir())) == 2
