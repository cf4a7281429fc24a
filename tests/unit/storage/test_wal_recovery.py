"""WAL start-up recovery against REAL damaged files.

A torn tail of the last segment is truncated (and logged); every other kind of
damage refuses to start with the file and byte offset in the error, and leaves
the files untouched for inspection.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest

from raftkv.raft.types import Entry, HardState
from raftkv.storage.errors import CorruptWALError
from raftkv.storage.wal import RECORD_HEADER_SIZE

from .helpers import SMALL_SEGMENT, entries, flip_byte, open_wal, record_offset, summary

EXPECTED_BEFORE_LAST = (HardState(2, 1, 4), None, [(i, 2) for i in range(1, 7)])


def write_three_batches(directory: Path) -> tuple[str, int, int]:
    """Two batches, then a third one; returns the segment and its size before
    and after the third batch."""
    wal, _ = open_wal(directory)
    wal.save(HardState(2, 1, 0), entries(1, 3, term=2))
    wal.save(HardState(2, 1, 4), entries(4, 6, term=2))
    path = wal.segment_paths()[-1]
    before = os.path.getsize(path)
    wal.save(HardState(3, 1, 6), entries(7, 9, term=3, size=60))
    after = os.path.getsize(path)
    wal.close()
    return path, before, after


def test_torn_tail_is_truncated_at_every_cut_point(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path, before, after = write_three_batches(tmp_path)
    pristine = Path(path).read_bytes()
    assert after - before > 100
    for cut in range(before + 1, after):  # every byte of the last batch
        Path(path).write_bytes(pristine[:cut])
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="raftkv.storage.wal"):
            wal, state = open_wal(tmp_path)
        assert summary(state) == EXPECTED_BEFORE_LAST, f"cut at {cut}"
        assert os.path.getsize(path) == before, f"file truncated, cut at {cut}"
        assert any(
            "torn tail" in r.getMessage() and path in r.getMessage() for r in caplog.records
        ), f"cut at {cut} not logged"
        if cut % 16 == 0:
            # The log keeps working after the repair, and the repair is durable.
            wal.save(HardState(3, 1, 7), entries(7, 7, term=3))
            wal.close()
            wal, state = open_wal(tmp_path)
            assert summary(state)[2][-1] == (7, 3)
        wal.close()


def test_cut_exactly_at_a_batch_boundary_is_not_a_repair(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path, before, _ = write_three_batches(tmp_path)
    os.truncate(path, before)
    with caplog.at_level(logging.WARNING):
        wal, state = open_wal(tmp_path)
    assert summary(state) == EXPECTED_BEFORE_LAST
    assert not caplog.records
    wal.close()


def test_zero_filled_tail_is_truncated(tmp_path: Path) -> None:
    path, _, after = write_three_batches(tmp_path)
    with open(path, "ab") as f:
        f.write(b"\x00" * 5000)
    wal, state = open_wal(tmp_path)
    assert summary(state)[2][-1] == (9, 3)
    assert os.path.getsize(path) == after
    wal.close()


def test_last_record_zeroed_from_a_sector_boundary_is_torn(tmp_path: Path) -> None:
    wal, _ = open_wal(tmp_path)
    wal.save(HardState(1, 1, 0), entries(1, 2))
    path = wal.segment_paths()[-1]
    before = os.path.getsize(path)
    wal.save(None, [Entry(1, 3, data=b"\xff" * 3000)])
    wal.close()
    content = bytearray(Path(path).read_bytes())
    boundary = (before + RECORD_HEADER_SIZE + 600) // 512 * 512 + 512
    content[boundary:] = b"\x00" * (len(content) - boundary)  # size grew, sectors never written
    Path(path).write_bytes(bytes(content))
    wal, state = open_wal(tmp_path)
    assert summary(state)[2] == [(1, 1), (2, 1)]
    assert os.path.getsize(path) == before
    wal.close()


def test_complete_records_without_their_commit_are_dropped(tmp_path: Path) -> None:
    # Cut right after the entries of the last batch: every record complete,
    # but the batch never finished, so its hard state must not appear either.
    path, before, _ = write_three_batches(tmp_path)
    content = Path(path).read_bytes()
    end_of_entry_9 = record_offset(path, b"<e-000009-t3>") + RECORD_HEADER_SIZE + 17 + 60
    assert before < end_of_entry_9 < len(content)
    os.truncate(path, end_of_entry_9)
    wal, state = open_wal(tmp_path)
    assert summary(state) == EXPECTED_BEFORE_LAST
    wal.close()


def assert_refuses(directory: Path, path: str, offset: int, reason: str) -> None:
    content = {p: p.read_bytes() for p in directory.iterdir() if p.suffix == ".wal"}
    with pytest.raises(CorruptWALError) as caught:
        open_wal(directory)
    error = caught.value
    assert error.path == path
    assert error.offset == offset
    assert path in str(error) and f"offset {offset}" in str(error)
    assert reason in error.reason
    after = {p: p.read_bytes() for p in directory.iterdir() if p.suffix == ".wal"}
    assert after == content, "a refused log must be left untouched"


def test_bad_crc_in_the_middle_refuses_with_file_and_offset(tmp_path: Path) -> None:
    path, _, _ = write_three_batches(tmp_path)
    offset = record_offset(path, b"<e-000005-t2>")
    flip_byte(path, offset + RECORD_HEADER_SIZE + 17 + 20)  # inside the data
    assert_refuses(tmp_path, path, offset, "bad record checksum")


def test_bad_length_in_the_middle_is_not_mistaken_for_a_torn_tail(tmp_path: Path) -> None:
    path, _, _ = write_three_batches(tmp_path)
    offset = record_offset(path, b"<e-000002-t2>")
    flip_byte(path, offset + 3)  # high byte of the length: "runs past end of file"
    assert_refuses(tmp_path, path, offset, "header checksum")


def test_bad_crc_in_the_very_last_record_still_refuses(tmp_path: Path) -> None:
    # A complete record with a bad checksum is damage, not a torn write, even at
    # the end: it may be an acknowledged batch.
    path, _, after = write_three_batches(tmp_path)
    offset = record_offset(path, b"<e-000009-t3>")
    flip_byte(path, offset + RECORD_HEADER_SIZE + 17 + 1)
    assert_refuses(tmp_path, path, offset, "bad record checksum")


def test_garbage_after_the_last_batch_refuses(tmp_path: Path) -> None:
    path, _, after = write_three_batches(tmp_path)
    with open(path, "ab") as f:
        f.write(b"this is not a record, it is garbage")
    assert_refuses(tmp_path, path, after, "header checksum")


def many_segments(directory: Path) -> list[str]:
    wal, _ = open_wal(directory, segment_bytes=SMALL_SEGMENT)
    for first in range(1, 201, 10):
        wal.save(HardState(1, 1, first), entries(first, first + 9, size=100))
    paths = wal.segment_paths()
    wal.close()
    assert len(paths) >= 4
    return paths


def test_damage_in_an_earlier_segment_refuses(tmp_path: Path) -> None:
    paths = many_segments(tmp_path)
    offset = record_offset(paths[1], b"<e-000035-t1>")
    flip_byte(paths[1], offset + RECORD_HEADER_SIZE + 17 + 50)
    assert_refuses(tmp_path, paths[1], offset, "bad record checksum")


@pytest.mark.parametrize("cut_by", [1, 13, 100])
def test_a_truncated_earlier_segment_refuses(tmp_path: Path, cut_by: int) -> None:
    paths = many_segments(tmp_path)
    size = os.path.getsize(paths[0])
    os.truncate(paths[0], size - cut_by)
    with pytest.raises(CorruptWALError) as caught:
        open_wal(tmp_path)
    assert caught.value.path == paths[0]
    assert "not the last" in str(caught.value)
    assert os.path.getsize(paths[0]) == size - cut_by


def test_a_missing_middle_segment_refuses(tmp_path: Path) -> None:
    paths = many_segments(tmp_path)
    os.unlink(paths[2])
    with pytest.raises(CorruptWALError, match="missing"):
        open_wal(tmp_path)


def test_a_renamed_segment_refuses(tmp_path: Path) -> None:
    paths = many_segments(tmp_path)
    last = Path(paths[-1])
    following = last.with_name(f"{int(last.stem) + 1:016d}.wal")
    shutil.copy(paths[1], following)
    with pytest.raises(CorruptWALError, match="seq"):
        open_wal(tmp_path)


def test_a_file_that_is_not_a_wal_refuses(tmp_path: Path) -> None:
    path = tmp_path / "0000000000000000.wal"
    path.write_bytes(b"hello, I am a text file that happens to have the right name\n")
    with pytest.raises(CorruptWALError) as caught:
        open_wal(tmp_path)
    assert caught.value.path == str(path) and caught.value.offset == 0


def test_torn_header_of_a_new_segment_removes_it(tmp_path: Path) -> None:
    paths = many_segments(tmp_path)
    last = Path(paths[-1])
    next_segment = last.with_name(f"{int(last.stem) + 1:016d}.wal")
    next_segment.write_bytes(Path(paths[0]).read_bytes()[:20])  # died while rolling over
    wal, state = open_wal(tmp_path)
    assert not next_segment.exists()
    assert summary(state)[2][-1] == (200, 1)
    wal.save(None, entries(201, 201))
    wal.close()
    wal, state = open_wal(tmp_path)
    assert summary(state)[2][-1] == (201, 1)
    wal.close()


def test_an_empty_last_segment_is_removed(tmp_path: Path) -> None:
    paths = many_segments(tmp_path)
    last = Path(paths[-1])
    empty = last.with_name(f"{int(last.stem) + 1:016d}.wal")
    empty.touch()
    wal, state = open_wal(tmp_path)
    assert not empty.exists()
    assert summary(state)[2][-1] == (200, 1)
    wal.close()


def test_an_empty_earlier_segment_refuses(tmp_path: Path) -> None:
    paths = many_segments(tmp_path)
    os.truncate(paths[1], 0)
    with pytest.raises(CorruptWALError, match="empty segment") as caught:
        open_wal(tmp_path)
    assert caught.value.path == paths[1]
