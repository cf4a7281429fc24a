"""The WAL notices what is missing, against REAL deleted and cut files.

Format 2 chains its segments (see raftkv.storage.wal): every segment but the
last ends with a SEAL written only once its successor is durable, and every
header records where the log ended. So a deleted first, middle or last
segment, or a non-last segment cut short, refuses to start with the file
named, while a torn tail of the LAST segment (a crash mid-write) is still
repaired as normal crash recovery.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest

from raftkv.raft.types import Entry, HardState
from raftkv.storage.errors import CorruptWALError
from raftkv.storage.wal import FORMAT_VERSION, RECORD_HEADER_SIZE, list_segments

from .helpers import SMALL_SEGMENT, entries, open_wal, record_offset, summary

FORMAT1_DATA = Path(__file__).parent / "data" / "wal-format1"
SEAL_BATCH = RECORD_HEADER_SIZE + 8 + RECORD_HEADER_SIZE + 4  # SEAL + COMMIT


def write_chain(directory: Path) -> list[str]:
    """Segments of entries 1..200 (10 per save), the term and vote moving along."""
    wal, _ = open_wal(directory, segment_bytes=SMALL_SEGMENT)
    for first in range(1, 201, 10):
        term = 1 + first // 50
        wal.save(
            HardState(term, term % 3 + 1, first), entries(first, first + 9, term=term, size=100)
        )
    paths = wal.segment_paths()
    wal.close()
    assert len(paths) >= 5
    return paths


FINAL = HardState(4, 2, 191)


def files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.suffix == ".wal"}


def refuse(directory: Path) -> CorruptWALError:
    """Opening must fail and leave every segment exactly as it was."""
    before = files(directory)
    with pytest.raises(CorruptWALError) as caught:
        open_wal(directory, segment_bytes=SMALL_SEGMENT)
    assert files(directory) == before, "a refused log must be left untouched"
    error = caught.value
    assert error.path in str(error)
    return error


def test_every_segment_ends_with_a_seal_but_the_last(tmp_path: Path) -> None:
    paths = write_chain(tmp_path)
    wal, state = open_wal(tmp_path, segment_bytes=SMALL_SEGMENT)
    assert state.hard_state == FINAL and summary(state)[2][-1] == (200, 4)
    wal.close()
    for path in paths[:-1]:
        tail = Path(path).read_bytes()[-SEAL_BATCH:]
        assert tail[4] == 9, f"{path} does not end with a SEAL record"
    assert Path(paths[-1]).read_bytes()[-SEAL_BATCH:][4] != 9


def test_deleted_last_segment_refuses_naming_it(tmp_path: Path) -> None:
    # Before format 2 this started silently from the segment before: an older
    # term and vote, and without the entries of the last segment.
    paths = write_chain(tmp_path)
    os.unlink(paths[-1])
    error = refuse(tmp_path)
    assert error.path == paths[-2]
    assert os.path.basename(paths[-1]) in str(error) and "missing" in str(error)


def test_deleted_middle_segment_refuses(tmp_path: Path) -> None:
    paths = write_chain(tmp_path)
    os.unlink(paths[2])
    error = refuse(tmp_path)
    assert os.path.basename(paths[2]) in str(error) and "missing" in str(error)


def test_deleted_first_segment_refuses_naming_it(tmp_path: Path) -> None:
    paths = write_chain(tmp_path)
    os.unlink(paths[0])
    error = refuse(tmp_path)
    assert error.path == paths[1]
    assert os.path.basename(paths[0]) in str(error) and "missing" in str(error)


def test_deleted_first_segment_whose_successor_has_no_entries_refuses(tmp_path: Path) -> None:
    # The second segment holds only hard states: nothing in it shows a gap in
    # the entries; its header's LOG_END says the log had reached entry 2.
    wal, _ = open_wal(tmp_path, segment_bytes=SMALL_SEGMENT)
    wal.save(HardState(1, 1, 0), entries(1, 1))
    first = wal.segment_paths()[0]
    room = SMALL_SEGMENT - os.path.getsize(first) - 10
    one_entry_batch = RECORD_HEADER_SIZE + 17 + RECORD_HEADER_SIZE + 4
    wal.save(None, [Entry(1, 2, data=b"x" * (room - one_entry_batch))])
    assert os.path.getsize(first) == SMALL_SEGMENT - 10
    wal.save(HardState(2, 3, 2), [])  # does not fit: rolls over
    paths = wal.segment_paths()
    wal.close()
    assert len(paths) == 2
    os.unlink(paths[0])
    error = refuse(tmp_path)
    assert error.path == paths[1]
    assert "1..2" in str(error) and os.path.basename(paths[0]) in str(error)


def test_compacted_first_segment_may_be_gone(tmp_path: Path) -> None:
    # compact() deletes old segments itself; the same state by hand is fine too.
    paths = write_chain(tmp_path)
    wal, _ = open_wal(tmp_path, segment_bytes=SMALL_SEGMENT)
    wal.compact(150)
    kept = wal.segment_paths()
    wal.close()
    assert paths[0] not in kept
    wal, state = open_wal(tmp_path, segment_bytes=SMALL_SEGMENT)
    assert state.hard_state == FINAL and summary(state)[1] == (150, 3)
    wal.close()


@pytest.mark.parametrize("position", [0, 1, 2])
def test_non_last_segment_without_its_seal_refuses(tmp_path: Path, position: int) -> None:
    paths = write_chain(tmp_path)
    size = os.path.getsize(paths[position])
    os.truncate(paths[position], size - SEAL_BATCH)  # a clean cut at a batch boundary
    error = refuse(tmp_path)
    assert error.path == paths[position] and "seal" in str(error)


def test_non_last_segment_cut_at_an_earlier_batch_boundary_refuses(tmp_path: Path) -> None:
    paths = write_chain(tmp_path)
    content = Path(paths[1]).read_bytes()
    # The last entry batch of the segment starts with the entry after the last one
    # of the previous batch; cut right there.
    last_batch_first = max(
        index for index in range(1, 201, 10) if f"<e-{index:06d}-".encode() in content
    )
    cut = record_offset(paths[1], f"<e-{last_batch_first:06d}-".encode())
    os.truncate(paths[1], cut)
    error = refuse(tmp_path)
    assert error.path == paths[1]


def test_last_segment_emptied_after_a_seal_refuses(tmp_path: Path) -> None:
    # A new segment with nothing in it is a crash while creating it, but then
    # the one before is never sealed yet: a seal proves the file had content.
    paths = write_chain(tmp_path)
    os.truncate(paths[-1], 0)
    error = refuse(tmp_path)
    assert error.path == paths[-2] and "missing" in str(error)
    assert os.path.exists(paths[-1])


def test_torn_tail_of_the_last_segment_is_still_crash_recovery(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    paths = write_chain(tmp_path)
    last = Path(paths[-1])
    pristine = last.read_bytes()
    cut_from = record_offset(last, b"<e-000191-")
    for cut in range(cut_from + 1, len(pristine), 37):  # inside the last batch
        last.write_bytes(pristine[:cut])
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="raftkv.storage.wal"):
            wal, state = open_wal(tmp_path, segment_bytes=SMALL_SEGMENT)
        assert summary(state)[2][-1] == (190, 4), f"cut at {cut}"
        assert state.hard_state == HardState(4, 2, 181)
        assert last.stat().st_size == cut_from
        assert any("torn tail" in r.getMessage() for r in caplog.records)
        wal.close()


def test_every_cut_of_the_last_segment_at_a_batch_boundary_keeps_a_written_state(
    tmp_path: Path,
) -> None:
    # Such a cut looks exactly like a crash before those batches: it cannot be
    # refused by the WAL alone (a snapshot newer than the rest is, see
    # test_recovery). The state must then be one that was really written.
    paths = write_chain(tmp_path)
    last = Path(paths[-1])
    pristine = last.read_bytes()
    written = [HardState(1 + f // 50, (1 + f // 50) % 3 + 1, f) for f in range(1, 201, 10)]
    for index in range(1, 201, 10):
        marker = f"<e-{index:06d}-".encode()
        if marker not in pristine:
            continue
        last.write_bytes(pristine)
        last.write_bytes(pristine[: record_offset(last, marker)])
        wal, state = open_wal(tmp_path, segment_bytes=SMALL_SEGMENT)
        assert state.hard_state in written and state.hard_state.term > 0
        assert summary(state)[2][-1][0] == index - 1
        wal.close()


def test_interrupted_roll_over_is_completed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Crash after the new segment was created (durably) but before the previous
    # one was sealed: the new one holds only its header batch.
    paths = write_chain(tmp_path)
    last, previous = Path(paths[-1]), Path(paths[-2])
    content = last.read_bytes()
    last.write_bytes(content[: _header_batch_end(content)])
    previous_size = previous.stat().st_size
    os.truncate(previous, previous_size - SEAL_BATCH)
    entries_in_previous = max(
        i for i in range(1, 201) if f"<e-{i:06d}-".encode() in previous.read_bytes()
    )
    with caplog.at_level(logging.WARNING, logger="raftkv.storage.wal"):
        wal, state = open_wal(tmp_path, segment_bytes=SMALL_SEGMENT)
    assert summary(state)[2][-1][0] == entries_in_previous
    assert any("interrupted roll" in r.getMessage() for r in caplog.records)
    assert previous.stat().st_size == previous_size, "the seal was written"
    wal.save(HardState(6, 1, 0), entries(entries_in_previous + 1, entries_in_previous + 1, term=6))
    wal.close()
    wal, state = open_wal(tmp_path, segment_bytes=SMALL_SEGMENT)
    assert state.hard_state.term == 6
    wal.close()


def _header_batch_end(content: bytes) -> int:
    """End of the first batch (the segment header batch): after its COMMIT record."""
    off = 0
    while True:
        length = int.from_bytes(content[off : off + 4], "little")
        rtype = content[off + 4]
        off += RECORD_HEADER_SIZE + length
        if rtype == 6:  # COMMIT
            return off


def test_crash_after_the_seal_before_the_first_batch_is_fine(tmp_path: Path) -> None:
    paths = write_chain(tmp_path)
    last = Path(paths[-1])
    content = last.read_bytes()
    last.write_bytes(content[: _header_batch_end(content)])
    wal, state = open_wal(tmp_path, segment_bytes=SMALL_SEGMENT)
    assert state.hard_state.term > 0
    wal.close()


@pytest.mark.parametrize("victim", ["first", "middle", "last"])
def test_a_deleted_segment_never_comes_back_with_an_older_vote(tmp_path: Path, victim: str) -> None:
    # The promise a vote makes: the WAL either returns the newest term and vote
    # or refuses. Never an older one.
    paths = write_chain(tmp_path)
    doomed = {"first": paths[0], "middle": paths[len(paths) // 2], "last": paths[-1]}[victim]
    os.unlink(doomed)
    with pytest.raises(CorruptWALError):
        open_wal(tmp_path, segment_bytes=SMALL_SEGMENT)


# -- format 1 ---------------------------------------------------------------------------


def copy_format1(tmp_path: Path) -> Path:
    directory = tmp_path / "wal"
    shutil.copytree(FORMAT1_DATA, directory)
    return directory


def segment_version(path: str) -> int:
    content = Path(path).read_bytes()
    return int.from_bytes(content[RECORD_HEADER_SIZE + 4 : RECORD_HEADER_SIZE + 6], "little")


def test_a_format1_directory_is_read_and_continues_in_format2(tmp_path: Path) -> None:
    directory = copy_format1(tmp_path)
    old = [path for _, path in list_segments(directory)]
    assert [segment_version(p) for p in old] == [1, 1, 1]
    wal, state = open_wal(directory, segment_bytes=SMALL_SEGMENT)
    assert state.hard_state == HardState(3, 2, 56)
    assert summary(state)[1] == (12, 2)
    assert summary(state)[2] == [(i, 2 if i <= 40 else 3) for i in range(13, 61)]
    assert state.entries[0].data.startswith(b"<v1-000013-t2>")
    paths = wal.segment_paths()
    assert paths[:3] == old and len(paths) == 4
    assert segment_version(paths[3]) == FORMAT_VERSION
    wal.save(HardState(4, 1, 60), entries(61, 62, term=4))
    wal.close()

    wal, state = open_wal(directory, segment_bytes=SMALL_SEGMENT)
    assert summary(state)[2][-1] == (62, 4) and state.hard_state == HardState(4, 1, 60)
    assert len(wal.segment_paths()) == 4, "no second roll-over"
    wal.close()

    # From now on the chain is checked: the format-2 segment cannot vanish unnoticed.
    os.unlink(paths[3])
    error = refuse(directory)
    assert error.path == paths[2] and os.path.basename(paths[3]) in str(error)


def test_format1_segments_without_seals_are_accepted(tmp_path: Path) -> None:
    directory = copy_format1(tmp_path)
    before = files(directory)
    wal, _ = open_wal(directory, segment_bytes=SMALL_SEGMENT)
    wal.close()
    after = files(directory)
    for name in ("0000000000000000.wal", "0000000000000001.wal"):
        assert after[name] == before[name], "older format-1 segments are not rewritten"


@pytest.mark.parametrize("keep", [1, 12, SEAL_BATCH - 1])
def test_crash_while_writing_the_seal_is_completed(tmp_path: Path, keep: int) -> None:
    # The new segment is durable (header only); the seal of the one before was
    # being written: a torn seal there is crash damage, not corruption.
    paths = write_chain(tmp_path)
    last, previous = Path(paths[-1]), Path(paths[-2])
    content = last.read_bytes()
    last.write_bytes(content[: _header_batch_end(content)])
    sealed_size = previous.stat().st_size
    os.truncate(previous, sealed_size - SEAL_BATCH + keep)
    wal, state = open_wal(tmp_path, segment_bytes=SMALL_SEGMENT)
    assert previous.stat().st_size == sealed_size
    assert state.hard_state.term > 0
    wal.close()


def test_torn_segment_before_a_last_one_with_batches_refuses(tmp_path: Path) -> None:
    paths = write_chain(tmp_path)
    previous = Path(paths[-2])
    os.truncate(previous, previous.stat().st_size - 5)
    error = refuse(tmp_path)
    assert error.path == str(previous) and "not the last" in str(error)


def test_an_empty_new_segment_after_a_torn_one_leaves_that_one_last(tmp_path: Path) -> None:
    # Not a state a crash leaves (the roll-over starts only after the previous
    # batch is durable), but a torn tail of what is then the last segment is
    # still only a torn tail.
    paths = write_chain(tmp_path)
    last, previous = Path(paths[-1]), Path(paths[-2])
    last.write_bytes(b"")
    os.truncate(previous, previous.stat().st_size - SEAL_BATCH - 5)
    wal, state = open_wal(tmp_path, segment_bytes=SMALL_SEGMENT)
    assert not last.exists()
    assert state.hard_state.term > 0
    wal.close()


def test_bytes_after_a_seal_refuse(tmp_path: Path) -> None:
    paths = write_chain(tmp_path)
    with open(paths[1], "ab") as f:
        f.write(Path(paths[1]).read_bytes()[-SEAL_BATCH:])  # a second seal
    error = refuse(tmp_path)
    assert error.path == paths[1] and "after the segment's seal" in str(error)


@pytest.mark.parametrize("first_write", ["save", "reset_to_snapshot", "record_snapshot"])
def test_a_segment_whose_creation_was_interrupted_is_replaced_by_the_first_write(
    tmp_path: Path, first_write: str
) -> None:
    from raftkv.raft.types import SnapshotMeta

    path = tmp_path / "0000000000000000.wal"
    path.write_bytes(b"RKVW\x00\x00")  # died while writing the header
    wal, state = open_wal(tmp_path)
    assert state.new_log and "no segment with a complete batch" in state.origin
    assert path.read_bytes() == b"RKVW\x00\x00", "kept until the first write"
    if first_write == "save":
        wal.save(HardState(1, 1, 0), entries(1, 1))
    elif first_write == "reset_to_snapshot":
        wal.reset_to_snapshot(SnapshotMeta(5, 1), HardState(1, 0, 5))
    else:
        wal.record_snapshot(SnapshotMeta(5, 1), HardState(1, 0, 0))
    wal.close()
    wal, state = open_wal(tmp_path)
    assert not state.new_log and state.hard_state.term == 1
    assert [p for _, p in list_segments(tmp_path)] == [str(path)]
    wal.close()


def test_an_emptied_segment_before_a_header_only_last_one_refuses(tmp_path: Path) -> None:
    paths = write_chain(tmp_path)
    last = Path(paths[-1])
    content = last.read_bytes()
    last.write_bytes(content[: _header_batch_end(content)])
    os.truncate(paths[-2], 0)
    error = refuse(tmp_path)
    assert error.path == paths[-2] and "empty segment" in str(error)


def test_a_torn_batch_before_a_header_only_last_one_refuses(tmp_path: Path) -> None:
    # Torn beyond its seal, into a batch of entries the last header says existed.
    paths = write_chain(tmp_path)
    last = Path(paths[-1])
    content = last.read_bytes()
    last.write_bytes(content[: _header_batch_end(content)])
    os.truncate(paths[-2], os.path.getsize(paths[-2]) - SEAL_BATCH - 5)
    error = refuse(tmp_path)
    assert error.path == paths[-1] and os.path.basename(paths[-2]) in str(error)
