"""CheckpointStore: atomic, idempotent writes, retention, safe ids."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from raftkv.storage import checkpoints as checkpoints_module
from raftkv.storage.checkpoints import CheckpointStore, read_checkpoint, validate_checkpoint_id
from raftkv.storage.errors import CheckpointExistsError, CorruptCheckpointError

MEMBERS = ["demo-0", "demo-1", "demo-2"]
TIME = "2024-05-01T12:00:00Z"


def write(
    store: CheckpointStore, checkpoint_id: str, index: int, data: bytes | None = None
) -> dict:
    return store.write(
        checkpoint_id,
        index,
        3,
        data if data is not None else f"state@{index}".encode(),
        MEMBERS,
        TIME,
    )


def test_write_produces_the_contract_layout_and_manifest(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "checkpoints")
    manifest = write(store, "daily-1", 42, b"some state")
    assert manifest == {
        "id": "daily-1",
        "index": 42,
        "term": 3,
        "sha256": hashlib.sha256(b"some state").hexdigest(),
        "size": 10,
        "time": TIME,
        "members": MEMBERS,
    }
    directory = tmp_path / "checkpoints" / "daily-1"
    assert sorted(p.name for p in directory.iterdir()) == ["data", "manifest.json"]
    assert (directory / "data").read_bytes() == b"some state"
    assert json.loads((directory / "manifest.json").read_text()) == manifest
    assert store.get("daily-1") == manifest
    assert store.data_path("daily-1") == directory / "data"
    assert store.verify("daily-1") == manifest
    assert read_checkpoint(directory) == (manifest, b"some state")


def test_rewriting_the_same_checkpoint_is_a_no_op(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    first = write(store, "cp", 42)
    inode = os.stat(tmp_path / "cp" / "data").st_ino
    again = CheckpointStore(tmp_path).write("cp", 42, 3, b"state@42", MEMBERS, "later")
    assert again == first  # the stored manifest, time included
    assert os.stat(tmp_path / "cp" / "data").st_ino == inode
    assert [m["id"] for m in store.list()] == ["cp"]


def test_same_id_for_another_index_or_content_is_refused(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    write(store, "cp", 42)
    with pytest.raises(CheckpointExistsError, match="index 42"):
        write(store, "cp", 43)
    with pytest.raises(CheckpointExistsError, match="different content"):
        write(store, "cp", 42, b"not the same state")
    assert store.verify("cp")["index"] == 42


def test_retention_keeps_the_newest_by_index(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, retain=3)
    for index, checkpoint_id in [(10, "a"), (50, "b"), (30, "c"), (40, "d"), (20, "e")]:
        write(store, checkpoint_id, index)
    assert [(m["id"], m["index"]) for m in store.list()] == [("c", 30), ("d", 40), ("b", 50)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "c", "d"]
    assert store.get("a") is None and store.data_path("a") is None


def test_a_crash_mid_write_leaves_no_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = CheckpointStore(tmp_path)

    def crash(*args: object) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(checkpoints_module.os, "rename", crash)
    with pytest.raises(OSError, match="disk on fire"):
        write(store, "cp", 1)
    monkeypatch.undo()
    assert store.get("cp") is None and store.list() == []
    assert list(tmp_path.iterdir()) == []
    # A temp dir left by a killed process is removed on the next start.
    (tmp_path / ".tmp-cp-1234").mkdir()
    (tmp_path / ".tmp-cp-1234" / "data").write_bytes(b"half")
    store = CheckpointStore(tmp_path)
    assert list(tmp_path.iterdir()) == []
    assert write(store, "cp", 1)["index"] == 1


@pytest.mark.parametrize(
    "bad_id",
    [
        "",
        ".",
        "..",
        "../etc",
        "a/b",
        "a\\b",
        "/abs",
        ".hidden",
        "x" * 129,
        "caf\u00e9",
        "a b",
        "nul\x00",
        "new\nline",
    ],
)
def test_unsafe_ids_are_refused(tmp_path: Path, bad_id: str) -> None:
    store = CheckpointStore(tmp_path / "checkpoints")
    with pytest.raises(ValueError, match="invalid checkpoint id"):
        write(store, bad_id, 1)
    with pytest.raises(ValueError):
        store.get(bad_id)
    with pytest.raises(ValueError):
        store.data_path(bad_id)
    assert list((tmp_path / "checkpoints").iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoints"]


@pytest.mark.parametrize("good_id", ["a", "cp-2024-05-01T12.00.00", "x" * 128, "A_b.c-9"])
def test_safe_ids_are_accepted(good_id: str) -> None:
    assert validate_checkpoint_id(good_id) == good_id


def test_damaged_checkpoints_are_detected(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    write(store, "good", 1)
    write(store, "bad-data", 2)
    write(store, "bad-manifest", 3)
    with open(tmp_path / "bad-data" / "data", "r+b") as f:
        f.write(b"X")
    (tmp_path / "bad-manifest" / "manifest.json").write_text('{"id": "bad-manifest"}')
    with pytest.raises(CorruptCheckpointError, match="sha256"):
        store.verify("bad-data")
    with pytest.raises(CorruptCheckpointError, match="field"):
        store.get("bad-manifest")
    assert [m["id"] for m in store.list()] == ["good", "bad-data"]  # unreadable one skipped
