"""A member that voted never votes for someone else in that term after a restart:
the WAL gives its vote back, or the start is refused. Real files: a Raft core
persisting to a WriteAheadLog and a FileSnapshotStore, then segments deleted,
emptied or the whole WAL directory removed beside the snapshot."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from raftkv.raft import Config, Raft
from raftkv.raft.types import ConfState, HardState, Message, MsgType, SnapshotMeta
from raftkv.storage.errors import LostLogError, StorageError
from raftkv.storage.recovery import recover
from raftkv.storage.snapshots import FileSnapshotStore
from raftkv.storage.wal import WriteAheadLog, list_segments

SNAPSHOT = SnapshotMeta(10, 2, ConfState(frozenset({1, 2, 3})))


def start(data: Path, *, prior_state: tuple[str, ...] = ()) -> tuple[Raft, WriteAheadLog]:
    wal = WriteAheadLog(data / "wal")
    try:
        recovered = recover(wal, FileSnapshotStore(data / "snapshots"), prior_state=prior_state)
    except BaseException:
        wal.close()
        raise
    state = recovered.state
    core = Raft(
        Config(id=1), hard_state=state.hard_state, snapshot=state.snapshot, entries=state.entries
    )
    return core, wal


def vote_request(candidate: int, term: int) -> Message:
    return Message(
        MsgType.VOTE, to=1, frm=candidate, term=term, log_term=SNAPSHOT.term, index=SNAPSHOT.index
    )


def answer(core: Raft, wal: WriteAheadLog, request: Message) -> bool:
    """Step a vote request, persist the Ready as the runtime does; True if granted."""
    core.step(request)
    rd = core.ready()
    wal.save(rd.hard_state, rd.entries)  # before any reply leaves
    replies = [m for m in rd.messages if m.type == MsgType.VOTE_RESP and m.to == request.frm]
    core.advance(rd)
    assert len(replies) == 1
    return not replies[0].reject


@pytest.fixture
def voted(tmp_path: Path) -> Path:
    """A member (id 1) that installed a snapshot at index 10, then voted for 2 in term 5."""
    snapshots = FileSnapshotStore(tmp_path / "snapshots")
    with WriteAheadLog(tmp_path / "wal") as wal:
        wal.load()
        wal.record_snapshot(SNAPSHOT, HardState(2, 0, 0))
        snapshots.save(SNAPSHOT, b"state@10")
        wal.reset_to_snapshot(SNAPSHOT, HardState(2, 0, 10))
    core, wal = start(tmp_path)
    assert answer(core, wal, vote_request(2, 5))
    wal.close()
    return tmp_path


def test_the_vote_survives_a_restart(voted: Path) -> None:
    core, wal = start(voted)
    assert (core.term, core.vote) == (5, 2)
    assert not answer(core, wal, vote_request(3, 5)), "voted twice in term 5"
    assert answer(core, wal, vote_request(3, 6))  # a new term is a new vote
    wal.close()


def snapshot_file(data: Path) -> str:
    return str(data / "snapshots" / f"snap-{10:020d}-{2:020d}.data")


def wal_files(data: Path) -> dict[str, bytes]:
    wal = data / "wal"
    return (
        {p.name: p.read_bytes() for p in wal.iterdir() if p.suffix == ".wal"}
        if wal.exists()
        else {}
    )


def assert_refused(data: Path) -> LostLogError:
    before = wal_files(data)
    with pytest.raises(LostLogError) as caught:
        start(data)
    message = str(caught.value)
    assert str(data / "wal") in message and snapshot_file(data) in message
    assert wal_files(data) == before, "a refused start leaves the WAL as it was"
    # And again: a refused start must not "repair" itself into a fresh log.
    with pytest.raises(LostLogError):
        start(data)
    return caught.value


def test_deleted_segment_beside_the_snapshot_refuses(voted: Path) -> None:
    # Before: the node came back at term 0 with no vote, and granted 3 in term 5.
    for _, path in list_segments(voted / "wal"):
        os.unlink(path)
    assert_refused(voted)


def test_emptied_segment_beside_the_snapshot_refuses(voted: Path) -> None:
    for _, path in list_segments(voted / "wal"):
        os.truncate(path, 0)
    assert_refused(voted)


@pytest.mark.parametrize("keep", [1, 20, 60])
def test_segment_cut_inside_its_header_beside_the_snapshot_refuses(voted: Path, keep: int) -> None:
    # Shorter than its first batch: it looks like a segment whose creation a crash
    # interrupted, which would be a new log; the snapshot proves otherwise.
    ((_, path),) = list_segments(voted / "wal")
    os.truncate(path, keep)
    assert_refused(voted)


def test_removed_wal_directory_beside_the_snapshot_refuses(voted: Path) -> None:
    shutil.rmtree(voted / "wal")
    assert_refused(voted)


def test_removed_wal_directory_beside_identity_refuses(tmp_path: Path) -> None:
    # No snapshot yet, but identity.json (the runtime passes it as prior state).
    core, wal = start(tmp_path)
    wal.close()
    identity = tmp_path / "identity.json"
    identity.write_text("{}")
    core, wal = start(tmp_path, prior_state=(str(identity),))  # the log exists: fine
    wal.close()
    shutil.rmtree(tmp_path / "wal")
    with pytest.raises(LostLogError, match=str(identity)):
        start(tmp_path, prior_state=(str(identity),))


def test_a_refused_start_is_a_storage_error_naming_the_files(voted: Path) -> None:
    # `raftkv serve` turns a StorageError into exit code 2 with the message on stderr.
    shutil.rmtree(voted / "wal")
    error = assert_refused(voted)
    assert isinstance(error, StorageError)
    assert "vote" in str(error)
