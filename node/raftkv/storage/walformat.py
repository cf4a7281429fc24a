"""The WAL's on-disk format: records and batches (writing), segment scanning and
replay (reading). The format, the segment chain and the recovery rules are
described in `raftkv.storage.wal`'s docstring; this module is their code."""

from __future__ import annotations

import os
import re
import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum

from raftkv.raft.types import Entry, EntryType, HardState
from raftkv.storage.errors import CorruptWALError

DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024
LOCK_NAME = "LOCK"
LEDGER_NAME = "SYNCED.json"
SEGMENT_SUFFIX = ".wal"
SEGMENT_NAME = re.compile(r"^([0-9]{16})\.wal$")

MAGIC = b"RKVW"
FORMAT_VERSION = 2  # the version new segments are written in
READABLE_VERSIONS = (1, 2)


class RecordType(IntEnum):
    SEGMENT_HEADER = 1
    ENTRY = 2
    HARD_STATE = 3
    BASE = 4
    RESET = 5
    COMMIT = 6
    SNAPSHOT = 7
    LOG_END = 8
    SEAL = 9


_FRAME = struct.Struct("<IBI")  # length, type, payload crc: covered by the header crc
_HEADER_CRC = struct.Struct("<I")
_RECORD_HEADER = struct.Struct("<IBII")  # the two above, for reading in one call
RECORD_HEADER_SIZE = _RECORD_HEADER.size  # 13
_SEGMENT_HEADER = struct.Struct("<4sHQ")  # magic, version, seq
_ENTRY_HEADER = struct.Struct("<QQB")  # index, term, entry type; the data follows
ENTRY_HEADER_SIZE = _ENTRY_HEADER.size  # 17
_HARD_STATE = struct.Struct("<QQQ")  # term, vote, commit
_POSITION = struct.Struct("<QQ")  # index, term
_COMMIT = struct.Struct("<I")  # records in the batch before the COMMIT
_SEAL = struct.Struct("<Q")  # seq of the segment that follows

_ENTRY_TYPES = tuple(EntryType)
_SECTOR = 512


def segment_name(seq: int) -> str:
    return f"{seq:016d}{SEGMENT_SUFFIX}"


def _frame(rtype: RecordType, payload: bytes) -> bytes:
    head = _FRAME.pack(len(payload), rtype, zlib.crc32(payload))
    return head + _HEADER_CRC.pack(zlib.crc32(head)) + payload


def encode_entries(parts: list[bytes], entries: list[Entry]) -> None:
    # The hot path of every save: a handful of C calls per entry, no copies of data.
    crc32 = zlib.crc32
    pack_frame = _FRAME.pack
    pack_hcrc = _HEADER_CRC.pack
    pack_entry = _ENTRY_HEADER.pack
    append = parts.append
    entry_type = int(RecordType.ENTRY)
    extra = ENTRY_HEADER_SIZE
    for entry in entries:
        data = entry.data
        eh = pack_entry(entry.index, entry.term, entry.type)
        head = pack_frame(extra + len(data), entry_type, crc32(data, crc32(eh)))
        append(head)
        append(pack_hcrc(crc32(head)))
        append(eh)
        append(data)


def commit_record(records: int) -> bytes:
    return _frame(RecordType.COMMIT, _COMMIT.pack(records))


def position_record(rtype: RecordType, position: tuple[int, int]) -> bytes:
    return _frame(rtype, _POSITION.pack(*position))


def hard_state_record(hard_state: HardState) -> bytes:
    return _frame(
        RecordType.HARD_STATE, _HARD_STATE.pack(hard_state.term, hard_state.vote, hard_state.commit)
    )


def header_batch(
    seq: int,
    hard_state: HardState,
    first: tuple[RecordType, int, int],
    log_end: tuple[int, int],
    snapshot: tuple[int, int] | None,
) -> bytes:
    """The first batch of a segment: who it is, the current hard state, base and
    newest snapshot record (so older segments can be deleted without losing
    them), and where the log ended (so a missing predecessor is noticed)."""
    rtype, index, term = first
    records = [
        _frame(RecordType.SEGMENT_HEADER, _SEGMENT_HEADER.pack(MAGIC, FORMAT_VERSION, seq)),
        position_record(rtype, (index, term)),
        hard_state_record(hard_state),
        position_record(RecordType.LOG_END, log_end),
    ]
    if snapshot is not None:
        records.append(position_record(RecordType.SNAPSHOT, snapshot))
    records.append(commit_record(len(records)))
    return b"".join(records)


def seal_batch(next_seq: int) -> bytes:
    return _frame(RecordType.SEAL, _SEAL.pack(next_seq)) + commit_record(1)


# --- replay ----------------------------------------------------------------------------


@dataclass(slots=True)
class Batch:
    segment: int  # position in the list of segments being replayed
    offset: int  # file offset of the batch's first record
    entries: list[Entry]
    hard_state: HardState | None
    base: tuple[int, int] | None  # BASE (index, term)
    reset: tuple[int, int] | None  # RESET (index, term)
    snapshot: tuple[int, int] | None = None  # SNAPSHOT (index, term)
    log_end: tuple[int, int] | None = None  # LOG_END (index, term): header batches only


@dataclass(slots=True)
class ScanResult:
    batches: list[Batch]
    valid_end: int  # end of the last complete batch
    torn: str | None  # why the bytes after valid_end were dropped (last segment only)
    torn_offset: int
    max_index: int  # highest entry index in the committed batches
    version: int = 0  # format version from the segment header (0: none survived)
    sealed: int | None = None  # offset of the SEAL batch, if the segment is sealed


class _Torn(Exception):
    def __init__(self, offset: int, reason: str) -> None:
        self.offset = offset
        self.reason = reason


def _all_zero(buf: bytes, start: int) -> bool:
    return buf.count(0, start) == len(buf) - start


def _zero_filled_from_sector(buf: bytes, record_start: int, record_end: int) -> bool:
    """A torn write that extended the file but never wrote the last sectors of
    the final record leaves zeros from a sector boundary to the end of file."""
    if not _all_zero(buf, record_end):
        return False
    last_nonzero_end = record_start + len(buf[record_start:record_end].rstrip(b"\x00"))
    boundary = -(-last_nonzero_end // _SECTOR) * _SECTOR
    return boundary < record_end


def scan_segment(position: int, path: str, buf: bytes, seq: int, may_be_torn: bool) -> ScanResult:
    """Parse one segment into committed batches, checking every checksum. Only a
    segment that `may_be_torn` (the last, or the one before it: see
    `_recover_segments`) may end in damage a crash explains."""
    n = len(buf)
    mv = memoryview(buf)
    crc32 = zlib.crc32
    unpack_header = _RECORD_HEADER.unpack_from
    unpack_entry = _ENTRY_HEADER.unpack_from
    entry_types = _ENTRY_TYPES
    max_entry_type = len(_ENTRY_TYPES) - 1
    header_size = RECORD_HEADER_SIZE
    entry_header_size = ENTRY_HEADER_SIZE
    t_entry = int(RecordType.ENTRY)

    batches: list[Batch] = []
    entries: list[Entry] = []
    hard_state: HardState | None = None
    base: tuple[int, int] | None = None
    reset: tuple[int, int] | None = None
    snapshot: tuple[int, int] | None = None
    log_end: tuple[int, int] | None = None
    seal_in_batch = False
    sealed: int | None = None
    version = 0
    records = 0
    batch_start = 0
    valid_end = 0
    max_index = 0
    next_index = 0  # index the next entry of the batch must have
    off = 0

    def corrupt(at: int, reason: str) -> CorruptWALError:
        return CorruptWALError(path, at, reason)

    try:
        if n == 0:
            raise _Torn(0, "empty segment (created, header never written)")
        while off < n:
            if n - off < header_size:
                if _all_zero(buf, off):
                    raise _Torn(off, "zero-filled tail")
                raise _Torn(off, "partial record header at end of file")
            length, rtype, payload_crc, header_crc = unpack_header(buf, off)
            if crc32(mv[off : off + 9]) != header_crc:
                if _all_zero(buf, off):
                    raise _Torn(off, "zero-filled tail")
                raise corrupt(off, "bad record header checksum")
            start = off + header_size
            end = start + length
            if end > n:
                raise _Torn(off, f"record of {length} bytes runs past end of file ({n} bytes)")
            if crc32(mv[start:end]) != payload_crc:
                if _zero_filled_from_sector(buf, off, end):
                    raise _Torn(off, "record zero-filled from a sector boundary to end of file")
                raise corrupt(off, "bad record checksum")
            if off == 0 and rtype != RecordType.SEGMENT_HEADER:
                raise corrupt(off, "segment does not start with a segment header")

            if rtype == t_entry:
                if length < entry_header_size:
                    raise corrupt(off, "entry record too short")
                index, term, etype = unpack_entry(buf, start)
                if etype > max_entry_type:
                    raise corrupt(off, f"unknown entry type {etype}")
                if index != next_index and entries:
                    raise corrupt(off, f"entry {index} does not follow {next_index - 1}")
                next_index = index + 1
                entries.append(
                    Entry(term, index, entry_types[etype], buf[start + entry_header_size : end])
                )
            elif rtype == RecordType.COMMIT:
                if length != _COMMIT.size:
                    raise corrupt(off, "malformed commit record")
                (expected,) = _COMMIT.unpack_from(buf, start)
                if expected != records:
                    raise corrupt(off, f"batch has {records} records, its commit says {expected}")
                if seal_in_batch:
                    if records != 1:
                        raise corrupt(batch_start, "a seal must be a batch of its own")
                    if end != n:
                        raise corrupt(end, "record after the segment's seal")
                    sealed = batch_start
                else:
                    batches.append(
                        Batch(
                            position,
                            batch_start,
                            entries,
                            hard_state,
                            base,
                            reset,
                            snapshot,
                            log_end,
                        )
                    )
                if entries:
                    max_index = max(max_index, entries[-1].index)
                entries, hard_state, base, reset = [], None, None, None
                snapshot, log_end = None, None
                records = -1  # the COMMIT itself is not counted
                valid_end = end
                batch_start = end
            elif rtype == RecordType.HARD_STATE:
                if length != _HARD_STATE.size:
                    raise corrupt(off, "malformed hard state record")
                hard_state = HardState(*_HARD_STATE.unpack_from(buf, start))
            elif rtype in (
                RecordType.BASE,
                RecordType.RESET,
                RecordType.SNAPSHOT,
                RecordType.LOG_END,
            ):
                if length != _POSITION.size:
                    raise corrupt(off, f"malformed {RecordType(rtype).name.lower()} record")
                position_record = _POSITION.unpack_from(buf, start)
                if rtype == RecordType.BASE:
                    base = position_record
                elif rtype == RecordType.RESET:
                    reset = position_record
                elif rtype == RecordType.SNAPSHOT:
                    snapshot = position_record
                else:
                    if batch_start != 0:
                        raise corrupt(off, "log end record outside the segment header")
                    log_end = position_record
            elif rtype == RecordType.SEAL:
                if length != _SEAL.size:
                    raise corrupt(off, "malformed seal record")
                (next_seq,) = _SEAL.unpack_from(buf, start)
                if next_seq != seq + 1:
                    raise corrupt(off, f"seal names segment {next_seq}, expected {seq + 1}")
                seal_in_batch = True
            elif rtype == RecordType.SEGMENT_HEADER:
                if off != 0 or length != _SEGMENT_HEADER.size:
                    raise corrupt(off, "misplaced or malformed segment header")
                magic, version, found_seq = _SEGMENT_HEADER.unpack_from(buf, start)
                if magic != MAGIC:
                    raise corrupt(off, "not a raftkv WAL segment (bad magic)")
                if version not in READABLE_VERSIONS:
                    raise corrupt(off, f"unsupported WAL format version {version}")
                if found_seq != seq:
                    raise corrupt(off, f"segment header says seq {found_seq}, file name {seq}")
            else:
                raise corrupt(off, f"unknown record type {rtype}")
            records += 1
            off = end
        if valid_end < n:
            raise _Torn(batch_start, "incomplete batch (no commit record) at end of file")
    except _Torn as torn:
        if not may_be_torn:
            raise corrupt(
                torn.offset, f"{torn.reason} (in a segment that is not the last)"
            ) from None
        return ScanResult(
            batches,
            valid_end,
            torn.reason,
            torn.offset,
            max_index,
            version if valid_end else 0,
            sealed,
        )
    return ScanResult(batches, valid_end, None, n, max_index, version, sealed)


# --- the log ---------------------------------------------------------------------------


@dataclass(slots=True)
class Segment:
    seq: int
    path: str
    size: int  # bytes written
    synced: int  # bytes known to be on stable storage
    header_size: int  # size of the header batch
    max_index: int  # highest entry index written to it (0 if none)


def check_seals(scans: list[ScanResult], segments: list[Segment]) -> Segment | None:
    """Every segment but the last is sealed and the last one is not (see the
    module docstring). Returns the segment to seal when a crash interrupted a
    roll-over: the one before the last, unsealed, while the last holds nothing
    but its header batch. (Format-1 segments never had seals.)"""
    last = len(scans) - 1
    seal_offset = scans[last].sealed
    if seal_offset is not None:
        raise CorruptWALError(
            segments[last].path,
            seal_offset,
            f"the segment is sealed, so {segment_name(segments[last].seq + 1)} must follow "
            "it, but that file is missing",
        )
    unsealed: Segment | None = None
    for i, scan in enumerate(scans[:last]):
        if scan.sealed is not None or scan.version < 2:
            continue
        if i == last - 1 and len(scans[last].batches) == 1:
            unsealed = segments[i]
            continue
        raise CorruptWALError(
            segments[i].path,
            scan.valid_end,
            f"the segment ends without its seal although {segment_name(segments[i].seq + 1)} "
            "follows: its end is missing (truncated?)",
        )
    return unsealed


@dataclass(slots=True)
class Replayed:
    hard_state: HardState
    base_index: int
    base_term: int
    entries: list[Entry]  # entries[0].index == base_index + 1
    first_kept: int  # position of the first segment still needed (older ones predate a reset)
    snapshot: tuple[int, int] | None  # the newest SNAPSHOT record


def check_chain(batches: list[Batch], segments: list[Segment]) -> tuple[int, int] | None:
    """Each segment header's LOG_END must be where replay of the segments before
    it ends; returns where the whole log ends (None if no record tells)."""
    end: tuple[int, int] | None = None  # (index, term) of the log's last entry so far
    for batch in batches:
        if batch.log_end is not None and batch.reset is None:
            if end is not None and batch.log_end != end:
                segment = segments[batch.segment]
                raise CorruptWALError(
                    segment.path,
                    batch.offset,
                    f"the segment starts after entry {batch.log_end[0]} (term "
                    f"{batch.log_end[1]}) but the segments before it end at entry {end[0]} "
                    f"(term {end[1]}): records of "
                    f"{segment_name(segment.seq - 1)} are missing",
                )
            end = batch.log_end
        if batch.reset is not None:
            end = batch.reset
        if batch.entries:
            last = batch.entries[-1]
            end = (last.index, last.term)
    return end


def replay(batches: list[Batch], segments: list[Segment]) -> Replayed:
    """Apply committed batches in order (after checking the chain of segments)."""
    log_end = check_chain(batches, segments)
    last_reset = -1
    for i, batch in enumerate(batches):
        if batch.reset is not None:
            last_reset = i
    first_kept = batches[last_reset].segment if last_reset >= 0 else 0
    live = batches[last_reset:] if last_reset >= 0 else batches

    # Compaction only moves forward, so the newest base decides which entries
    # are gone; applying it up front lets replay start in a deleted segment's shadow.
    base_index = base_term = 0
    for batch in live:
        position = batch.reset if batch.reset is not None else batch.base
        if position is not None and position[0] >= base_index:
            base_index, base_term = position

    hard_state = HardState()
    snapshot: tuple[int, int] | None = None
    for batch in batches:
        if batch.hard_state is not None:
            hard_state = batch.hard_state
        if batch.snapshot is not None:
            snapshot = batch.snapshot

    entries: list[Entry] = []  # entries[0].index == base_index + 1
    for batch in live:
        batch_entries = batch.entries
        if not batch_entries:
            continue
        first = batch_entries[0].index
        if entries and first <= entries[-1].index:
            # Overwrite: everything from `first` on is replaced, even when the
            # batch itself lies entirely in the compacted prefix.
            del entries[max(first - base_index - 1, 0) :]
        if batch_entries[-1].index <= base_index:
            continue
        if first <= base_index:
            batch_entries = batch_entries[base_index - first + 1 :]
            first = base_index + 1
        expected = entries[-1].index + 1 if entries else base_index + 1
        if first != expected:
            segment = segments[batch.segment]
            where = (
                f"{segment_name(segment.seq - 1)} is missing?"
                if not entries
                else "a segment is missing?"
            )
            raise CorruptWALError(
                segment.path,
                batch.offset,
                f"gap in the log: entry {first} follows {expected - 1} ({where})",
            )
        entries.extend(batch_entries)

    last_index = entries[-1].index if entries else base_index
    if log_end is not None and log_end[0] > last_index:
        # The first segment says the log reached further than anything left on
        # disk: the entries after the compaction point were in a segment before it.
        first_segment = segments[first_kept]
        raise CorruptWALError(
            first_segment.path,
            0,
            f"the log reached entry {log_end[0]} before this segment began, but entries "
            f"{last_index + 1}..{log_end[0]} are in no segment: "
            f"{segment_name(first_segment.seq - 1)} (or more) is missing",
        )
    return Replayed(hard_state, base_index, base_term, entries, first_kept, snapshot)


def list_segments(directory: str | os.PathLike[str]) -> list[tuple[int, str]]:
    """(seq, path) of every segment file in the directory, oldest first."""
    found = []
    for name in os.listdir(directory):
        match = SEGMENT_NAME.match(name)
        if match:
            found.append((int(match.group(1)), os.path.join(directory, name)))
    found.sort()
    return found
