"""Shared helpers for the storage tests."""

from __future__ import annotations

import os
from pathlib import Path

from raftkv.raft.types import Entry, EntryType, HardState
from raftkv.storage.protocols import InitialState
from raftkv.storage.wal import ENTRY_HEADER_SIZE, RECORD_HEADER_SIZE, WriteAheadLog

SMALL_SEGMENT = 4096  # the smallest segment size the WAL accepts: rolls over quickly


def entries(first: int, last: int, term: int = 1, size: int = 40, tag: str = "e") -> list[Entry]:
    """Entries first..last whose data is unique and findable in the files."""
    out = []
    for index in range(first, last + 1):
        head = f"<{tag}-{index:06d}-t{term}>".encode()
        out.append(Entry(term, index, EntryType.NORMAL, head + b"." * max(size - len(head), 0)))
    return out


def open_wal(directory: Path, **options: object) -> tuple[WriteAheadLog, InitialState]:
    wal = WriteAheadLog(directory, **options)  # type: ignore[arg-type]
    return wal, wal.load()


def reopen(wal: WriteAheadLog, **options: object) -> tuple[WriteAheadLog, InitialState]:
    wal.close()
    return open_wal(Path(wal.directory), segment_bytes=wal.segment_bytes, **options)


def record_offset(path: str | os.PathLike[str], data: bytes) -> int:
    """File offset of the ENTRY record whose data starts with `data` (must be unique)."""
    content = Path(path).read_bytes()
    at = content.find(data)
    assert at >= 0 and content.find(data, at + 1) < 0, "marker must occur exactly once"
    return at - ENTRY_HEADER_SIZE - RECORD_HEADER_SIZE


def flip_byte(path: str | os.PathLike[str], offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        value = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([value ^ 0x40]))


def summary(state: InitialState) -> tuple[HardState, tuple[int, int] | None, list[tuple[int, int]]]:
    snap = (state.snapshot.index, state.snapshot.term) if state.snapshot else None
    return state.hard_state, snap, [(e.index, e.term) for e in state.entries]
