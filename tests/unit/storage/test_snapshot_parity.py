"""The in-memory and file snapshot stores behave the same through the protocol."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from raftkv.raft.types import ConfState, SnapshotMeta
from raftkv.storage.errors import CorruptSnapshotError
from raftkv.storage.memory import MemorySnapshotStore
from raftkv.storage.protocols import SnapshotStore
from raftkv.storage.snapshots import FileSnapshotStore

Factory = Callable[[Path], SnapshotStore]
FACTORIES: dict[str, Factory] = {
    "memory": lambda _: MemorySnapshotStore(),
    "file": lambda directory: FileSnapshotStore(directory),
}


@pytest.fixture(params=sorted(FACTORIES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> SnapshotStore:
    return FACTORIES[request.param](tmp_path)


def meta(index: int) -> SnapshotMeta:
    return SnapshotMeta(index, 2, ConfState(frozenset({1, 2}), frozenset({3})))


def test_save_latest_and_retention(store: SnapshotStore) -> None:
    for index in (5, 15, 10):
        store.save(meta(index), b"s%d" % index)
    assert store.latest() == (meta(15), b"s15")
    opened = store.open_latest()
    assert opened is not None
    found, stream, size = opened
    with stream:
        assert (found, stream.read(), size) == (meta(15), b"s15", 3)


def test_receive_verifies_and_publishes(store: SnapshotStore) -> None:
    data = bytes(range(256)) * 64
    with store.receive(meta(9), size=len(data), sha256=hashlib.sha256(data).hexdigest()) as sink:
        for at in range(0, len(data), 1000):
            sink.write(data[at : at + 1000])
        assert store.latest() is None
        assert sink.finish() == meta(9)
    assert store.latest() == (meta(9), data)


def test_receive_refuses_a_wrong_size_or_checksum(store: SnapshotStore) -> None:
    with pytest.raises(CorruptSnapshotError), store.receive(meta(3), size=10) as sink:
        sink.write(b"12345")
        sink.finish()
    with pytest.raises(CorruptSnapshotError), store.receive(meta(4), sha256="f" * 64) as sink:
        sink.write(b"12345")
        sink.finish()
    with store.receive(meta(5)) as sink:
        sink.write(b"abandoned without finish()")
    assert store.latest() is None
