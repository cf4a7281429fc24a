"""The segmented write-ahead log: the durable RaftStore of a node.

Layout: `<dir>/<seq:016d>.wal` segment files, `<dir>/LOCK` (flock'ed while
open). Every record is framed as

    length u32 | type u8 | crc32(payload) u32 | crc32(first 9 bytes) u32 | payload

(little endian). The header checksum makes the length trustworthy: a record
that claims to run past the end of the file with a valid header really is a
torn write, not a damaged length field.

Records:
    SEGMENT_HEADER  magic, version, seq        first record of every segment
    ENTRY           index, term, type, data
    HARD_STATE      term, vote, commit
    BASE            index, term                entries <= index are compacted
    RESET           index, term                discard the whole log (snapshot installed)
    COMMIT          number of records before it in the batch
    SNAPSHOT        index, term                a snapshot beyond the log is being saved (v2)
    LOG_END         index, term                where the log ended when the segment began (v2)
    SEAL            next seq                   this segment is complete; the next one exists (v2)

A batch (one `save`) is its records followed by COMMIT, written with one
os.write and made durable with one fdatasync (group commit). On replay a batch
counts only if its COMMIT is there, so a half-written batch never leaves a
hard state without its entries (or the reverse).

Replay rules: later records win. An ENTRY batch starting at or below the last
index truncates the log there (the Raft "overwrite a suffix" case). BASE and
RESET move the start of the log. Every segment starts with the current hard
state, base, log end and newest SNAPSHOT record (its header batch), so whole
old segments can be deleted by `compact`.

The segment chain (format 2): a new segment is created (and fsynced, with its
directory) BEFORE the previous one gets its SEAL, and nothing is written after
a SEAL. So on disk every segment but the last is sealed, the last one is not,
and each header's LOG_END is exactly where replay of the segments before it
ends. That is what lets recovery notice what is missing:

- a gap in the sequence numbers: a middle segment is gone;
- the last segment is sealed: its successor (the real last one) is gone;
- a non-last segment without its seal: it lost its tail;
- a LOG_END the segments before it do not reach (or, for the first segment,
  entries after the compaction point that no segment holds): an earlier
  segment is gone or cut short;
- no segment at all: `InitialState.new_log`; recovery (storage.recovery)
  refuses that when a snapshot or other state of the node exists.

The one legitimate exception is a crash in the middle of a roll: the new last
segment holds only its header batch and its predecessor has no seal yet (and
the header's LOG_END matches it); recovery then writes the missing seal.

Recovery (`load`): damage at the end of the LAST segment that a crash can
explain (a partial record, a zero-filled tail, complete records without their
COMMIT) is truncated, fsynced and logged: that is normal crash recovery.
Anything else (a bad checksum or a malformed record anywhere, damage in an
older segment, a missing or cut-short segment) raises CorruptWALError naming
the file and byte offset: the node refuses to start rather than come back with
an older term or vote, or without acknowledged writes, and leaves the files
as they are. (A last segment cut exactly at a batch boundary is, by itself,
indistinguishable from a crash before those batches were written; recovery
catches it when a snapshot is newer than what is left, see storage.recovery.)

Format versions: segments of format 1 (before the chain records) are still
read; their missing seals and LOG_END cannot be checked. On open, a log whose
last segment is format 1 rolls over to a new format-2 segment (sealing the
old one), so from then on every new segment is checked. A format-2 log cannot
be read by a raftkv that only knows format 1 (it refuses with "unsupported WAL
format version 2").

Crash tests: `crash_test_ledger=True` keeps `<dir>/SYNCED.json`, the number
of bytes of each segment known to be on stable storage (updated after every
fsync, itself not fsynced, so it survives kill -9 but not a real power cut).
After the process is dead (or the WAL closed), `simulate_power_loss(dir)`
truncates every segment to its synced length and deletes files that were
never synced: exactly what a power cut would leave. With `fsync=False`
nothing is ever synced, so a simulated power loss wipes the log: that is the
point of calling that mode unsafe.

Not thread-safe: one caller at a time (the runtime calls it from one thread).
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import gc
import json
import logging
import os
import re
import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from raftkv.raft.types import ConfState, Entry, EntryType, HardState, SnapshotMeta
from raftkv.storage.errors import (
    CorruptWALError,
    DirectoryLockedError,
    StorageError,
    WALUnusableError,
)
from raftkv.storage.fsutil import fsync_directory, make_directory, write_all
from raftkv.storage.logshape import check_append, check_compact
from raftkv.storage.protocols import InitialState

log = logging.getLogger(__name__)

DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024
LOCK_NAME = "LOCK"
LEDGER_NAME = "SYNCED.json"
SEGMENT_SUFFIX = ".wal"
_SEGMENT_NAME = re.compile(r"^([0-9]{16})\.wal$")

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


def _encode_entries(parts: list[bytes], entries: list[Entry]) -> None:
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


def _commit(records: int) -> bytes:
    return _frame(RecordType.COMMIT, _COMMIT.pack(records))


def _position(rtype: RecordType, position: tuple[int, int]) -> bytes:
    return _frame(rtype, _POSITION.pack(*position))


def _hard_state_record(hard_state: HardState) -> bytes:
    return _frame(
        RecordType.HARD_STATE, _HARD_STATE.pack(hard_state.term, hard_state.vote, hard_state.commit)
    )


def _header_batch(
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
        _position(rtype, (index, term)),
        _hard_state_record(hard_state),
        _position(RecordType.LOG_END, log_end),
    ]
    if snapshot is not None:
        records.append(_position(RecordType.SNAPSHOT, snapshot))
    records.append(_commit(len(records)))
    return b"".join(records)


def _seal_batch(next_seq: int) -> bytes:
    return _frame(RecordType.SEAL, _SEAL.pack(next_seq)) + _commit(1)


_datasync = getattr(os, "fdatasync", os.fsync)


# --- replay ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Batch:
    segment: int  # position in the list of segments being replayed
    offset: int  # file offset of the batch's first record
    entries: list[Entry]
    hard_state: HardState | None
    base: tuple[int, int] | None  # BASE (index, term)
    reset: tuple[int, int] | None  # RESET (index, term)
    snapshot: tuple[int, int] | None = None  # SNAPSHOT (index, term)
    log_end: tuple[int, int] | None = None  # LOG_END (index, term): header batches only


@dataclass(slots=True)
class _ScanResult:
    batches: list[_Batch]
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


def _scan_segment(position: int, path: str, buf: bytes, seq: int, may_be_torn: bool) -> _ScanResult:
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

    batches: list[_Batch] = []
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
                        _Batch(
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
        return _ScanResult(
            batches,
            valid_end,
            torn.reason,
            torn.offset,
            max_index,
            version if valid_end else 0,
            sealed,
        )
    return _ScanResult(batches, valid_end, None, n, max_index, version, sealed)


# --- the log ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Segment:
    seq: int
    path: str
    size: int  # bytes written
    synced: int  # bytes known to be on stable storage
    header_size: int  # size of the header batch
    max_index: int  # highest entry index written to it (0 if none)


class WriteAheadLog:
    """RaftStore in a directory of WAL segments.

    Call `load()` once before anything else: it recovers the directory and
    returns what the node starts from. `fsync=False` is the UNSAFE
    `--unsafe-no-fsync` mode. `crash_test_ledger` is for tests only (see the
    module docstring and `simulate_power_loss`).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        fsync: bool = True,
        crash_test_ledger: bool = False,
    ) -> None:
        if segment_bytes < 4096:
            raise ValueError("segment_bytes must be at least 4096")
        self.directory = os.fspath(directory)
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self.crash_test_ledger = crash_test_ledger
        if not fsync:
            log.warning(
                "WAL %s: fsync is OFF (unsafe): acknowledged writes can be lost", self.directory
            )
        make_directory(self.directory)
        self._lock_fd: int | None = _lock_directory(self.directory)

        self._segments: list[_Segment] = []
        self._fd: int | None = None  # the active (last) segment, opened for appends
        self._loaded = False
        self._failed: BaseException | None = None
        self._hard_state = HardState()
        self._base_index = 0
        self._base_term = 0
        self._last_index = 0
        self._term_starts: list[int] = []  # runs of equal terms: first index of each run
        self._term_values: list[int] = []  # ... and its term
        self._snapshot_record: tuple[int, int] | None = None  # newest SNAPSHOT record
        self._unfinished_first: str | None = None  # see _recover_segments
        self._first_seq = 0  # seq of the first segment, once one is created

    # -- public API ---------------------------------------------------------------------

    @property
    def base_index(self) -> int:
        return self._base_index

    @property
    def last_index(self) -> int:
        return self._last_index

    def segment_paths(self) -> list[str]:
        return [segment.path for segment in self._segments]

    def load(self) -> InitialState:
        """Recover the directory (truncating a torn tail) and return its state.

        An empty directory is reported as `new_log` and left empty: the first
        write creates the first segment, so a start refused after looking at the
        rest of the node's state (storage.recovery) changes nothing on disk."""
        self._check_open()
        self._close_active()
        self._failed = None
        state = self._recover()
        self._loaded = True
        return state

    def save(self, hard_state: HardState | None, entries: list[Entry]) -> None:
        self._check_writable()
        if not entries and hard_state is None:
            return
        parts: list[bytes] = []
        records = 0
        if entries:
            first = entries[0].index
            check_append(entries, self._base_index, self._last_index, self._term_before(first))
            _encode_entries(parts, entries)
            records = len(entries)
        if hard_state is not None:
            parts.append(_hard_state_record(hard_state))
            records += 1
        parts.append(_commit(records))
        batch = b"".join(parts)

        active = self._segments[-1] if self._segments else self._active_segment()
        if active.size > active.header_size and active.size + len(batch) > self.segment_bytes:
            active = self._roll()
        self._append(active, batch)
        if entries:
            active.max_index = max(active.max_index, entries[-1].index)
            self._record_terms(entries)
        if hard_state is not None:
            self._hard_state = hard_state.copy()

    def record_snapshot(self, meta: SnapshotMeta, hard_state: HardState | None = None) -> None:
        """Durably note that a snapshot at (meta.index, meta.term) is about to be
        saved (with `hard_state`, if given, in the same batch and fsync). Call it
        BEFORE saving a snapshot that lies beyond the log (installed from the
        leader, or restored at bootstrap): recovery then accepts that snapshot
        even if the node crashes before `reset_to_snapshot`, and refuses a
        snapshot newer than the log that the log has no record of."""
        self._check_writable()
        position = (meta.index, meta.term)
        batch = [_position(RecordType.SNAPSHOT, position)]
        if hard_state is not None:
            batch.append(_hard_state_record(hard_state))
        batch.append(_commit(len(batch)))
        self._append(self._active_segment(), b"".join(batch))
        self._snapshot_record = position
        if hard_state is not None:
            self._hard_state = hard_state.copy()

    def compact(self, index: int) -> None:
        """Mark entries <= index compacted, then delete whole old segments that
        hold nothing newer. Call only once a snapshot covering `index` is durable."""
        self._check_writable()
        if index <= self._base_index:
            return
        check_compact(index, self._last_index)
        term = self._term_at(index)
        # The marker must be durable before any segment goes, or replay would find a gap.
        self._append(self._active_segment(), _position(RecordType.BASE, (index, term)) + _commit(1))
        self._base_index, self._base_term = index, term
        if index >= self._last_index:
            self._term_starts, self._term_values = [], []
        else:
            keep_from = bisect.bisect_right(self._term_starts, index + 1) - 1
            self._term_starts = self._term_starts[keep_from:]
            self._term_values = self._term_values[keep_from:]
            self._term_starts[0] = index + 1

        doomed: list[_Segment] = []
        for segment in self._segments[:-1]:
            if segment.max_index > index:
                break
            doomed.append(segment)
        if doomed:
            self._delete_segments(doomed)

    def reset_to_snapshot(self, meta: SnapshotMeta, hard_state: HardState) -> None:
        """Discard the whole log: it now starts after the installed snapshot."""
        self._check_writable()
        old = list(self._segments)
        position = (meta.index, meta.term)
        self._start_segment(
            old[-1].seq + 1 if old else self._first_seq,
            hard_state,
            (RecordType.RESET, meta.index, meta.term),
            position,
        )
        self._hard_state = hard_state.copy()
        self._base_index, self._base_term = position
        self._last_index = meta.index
        self._term_starts, self._term_values = [], []
        if old:
            self._delete_segments(old)

    def close(self) -> None:
        self._close_active()
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> WriteAheadLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- recovery -----------------------------------------------------------------------

    def _recover(self) -> InitialState:
        # Replay allocates an object per entry and frees almost none: the cyclic
        # GC would rescan them over and over (~20% of a million-entry load).
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            return self._recover_segments()
        finally:
            if gc_was_enabled:
                gc.enable()

    def _recover_segments(self) -> InitialState:
        found = list_segments(self.directory)
        for previous, following in zip(found, found[1:], strict=False):
            if following[0] != previous[0] + 1:
                raise CorruptWALError(
                    following[1],
                    0,
                    f"segment {segment_name(previous[0] + 1)} is missing "
                    f"(have {previous[0]} then {following[0]})",
                )

        scans: list[_ScanResult] = []
        segments: list[_Segment] = []
        torn: tuple[str, _ScanResult, int] | None = None  # repaired once all checks passed
        # The one before the last may be torn too: by a crash while writing its seal.
        torn_before_last: tuple[str, _ScanResult, int] | None = None
        for position, (seq, path) in enumerate(found):
            with open(path, "rb") as f:
                buf = f.read()
                if self.fsync:
                    # A killed process (or an earlier fsync=False run) may have left
                    # writes only in the page cache; from now on the node treats
                    # them as its log and may acknowledge them: make them durable.
                    os.fsync(f.fileno())
            is_last = position == len(found) - 1
            scan = _scan_segment(position, path, buf, seq, position >= len(found) - 2)
            if scan.torn is not None and not is_last:
                torn_before_last = (path, scan, len(buf))
            elif scan.torn is not None:
                torn = (path, scan, len(buf))
                if scan.valid_end == 0:
                    break  # nothing of this last segment survived: it is gone
            header_size = scan.batches[1].offset if len(scan.batches) > 1 else scan.valid_end
            scans.append(scan)
            synced = scan.valid_end if self.fsync else 0
            segments.append(
                _Segment(seq, path, scan.valid_end, synced, header_size, scan.max_index)
            )

        self._term_starts, self._term_values = [], []
        self._snapshot_record = None
        if torn_before_last is not None and len(segments) == len(found):
            path, scan, _ = torn_before_last
            # A crash while sealing it leaves its batches and a header-only last one.
            if scan.valid_end == 0 or len(scans[-1].batches) != 1:
                raise CorruptWALError(
                    path, scan.torn_offset, f"{scan.torn} (in a segment that is not the last)"
                )
        if segments:
            unsealed = _check_seals(scans, segments)
            replayed = _replay([batch for scan in scans for batch in scan.batches], segments)
        self._unfinished_first = None
        if torn is not None and not segments:
            # The only segment has no complete batch: its creation was interrupted
            # (a new log), or it was emptied. Storage.recovery decides which; the
            # file goes only with the first write, so a refused start keeps it.
            path, scan, size = torn
            log.warning(
                "WAL %s: no complete batch (%s at offset %d, %d bytes): "
                "replaced on the first write",
                path,
                scan.torn,
                scan.torn_offset,
                size,
            )
            self._unfinished_first = path
        elif torn is not None:
            self._truncate_torn_tail(*torn)
        if torn_before_last is not None:
            # Its seal (then written below), or, when the last segment was an empty
            # new one, the torn tail of what is now the last segment.
            self._truncate_torn_tail(*torn_before_last)
        if not segments:
            # No log at all: a new node, or one whose log was deleted. Whoever
            # starts the node decides which (storage.recovery); nothing is written yet.
            self._segments = []
            self._hard_state = HardState()
            self._base_index = self._base_term = self._last_index = 0
            self._first_seq = found[0][0] if found else 0
            self._write_ledger()
            what = "no segment with a complete batch" if found else "no segment files"
            return InitialState(
                HardState(), None, [], new_log=True, origin=f"WAL {self.directory} ({what})"
            )

        self._segments = segments
        if unsealed is not None:
            # A crash between creating the last segment and sealing the one before.
            log.warning("WAL %s: completing an interrupted roll-over: sealing it", unsealed.path)
            self._seal(unsealed, unsealed.seq + 1)
        if replayed.first_kept > 0:
            # A reset to a snapshot was interrupted before it deleted the old segments.
            self._segments = segments
            self._delete_segments(segments[: replayed.first_kept])
            segments = segments[replayed.first_kept :]
        self._segments = segments
        self._first_seq = segments[0].seq
        self._hard_state = replayed.hard_state
        self._base_index, self._base_term = replayed.base_index, replayed.base_term
        entries = replayed.entries
        self._last_index = entries[-1].index if entries else replayed.base_index
        self._snapshot_record = replayed.snapshot
        self._record_terms(entries)
        self._fd = os.open(self._segments[-1].path, os.O_WRONLY | os.O_APPEND)
        self._write_ledger()
        if scans[-1].version < FORMAT_VERSION:
            log.warning(
                "WAL %s: format %d segment; new writes go to a format %d segment",
                self._segments[-1].path,
                scans[-1].version,
                FORMAT_VERSION,
            )
            self._roll()
        base = replayed.base_index
        snapshot = SnapshotMeta(base, replayed.base_term, ConfState()) if base else None
        first, last = os.path.basename(segments[0].path), os.path.basename(segments[-1].path)
        names = first if first == last else f"{first}..{last}"
        return InitialState(
            self._hard_state.copy(),
            snapshot,
            entries,
            snapshot_record=replayed.snapshot,
            origin=f"WAL {self.directory} ({names})",
        )

    def _truncate_torn_tail(self, path: str, scan: _ScanResult, size: int) -> None:
        log.warning(
            "WAL %s: torn tail (%s at offset %d): truncating %d bytes from offset %d",
            path,
            scan.torn,
            scan.torn_offset,
            size - scan.valid_end,
            scan.valid_end,
        )
        if scan.valid_end == 0:
            os.unlink(path)
            fsync_directory(self.directory)
            return
        fd = os.open(path, os.O_WRONLY)
        try:
            os.ftruncate(fd, scan.valid_end)
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- writing ------------------------------------------------------------------------

    def _append(self, segment: _Segment, data: bytes) -> None:
        assert self._fd is not None
        try:
            write_all(self._fd, data)
            segment.size += len(data)
            if self.fsync:
                _datasync(self._fd)
                segment.synced = segment.size
        except OSError as exc:
            self._failed = exc
            raise WALUnusableError(
                f"WAL {segment.path}: write failed ({exc}); the log refuses further writes"
            ) from exc
        self._write_ledger()

    def _active_segment(self) -> _Segment:
        """The segment appends go to; the first write to a new log creates it."""
        if not self._segments:
            self._start_segment(
                self._first_seq,
                self._hard_state,
                (RecordType.BASE, self._base_index, self._base_term),
                (self._last_index, self._last_term()),
            )
        return self._segments[-1]

    def _roll(self) -> _Segment:
        return self._start_segment(
            self._segments[-1].seq + 1,
            self._hard_state,
            (RecordType.BASE, self._base_index, self._base_term),
            (self._last_index, self._last_term()),
        )

    def _start_segment(
        self,
        seq: int,
        hard_state: HardState,
        first: tuple[RecordType, int, int],
        log_end: tuple[int, int],
    ) -> _Segment:
        """Create segment `seq` durably, THEN seal the current one (see the module
        docstring: a seal always has its successor on disk)."""
        if self._unfinished_first is not None:
            os.unlink(self._unfinished_first)  # see _recover_segments
            self._unfinished_first = None
        previous = self._segments[-1] if self._segments else None
        previous_fd, self._fd = self._fd, None
        try:
            segment = self._create_segment(seq, hard_state, first, log_end)
        except BaseException:
            self._fd = previous_fd
            raise
        if previous is not None and previous_fd is not None:
            os.close(previous_fd)
            self._seal(previous, seq)
        return segment

    def _seal(self, segment: _Segment, next_seq: int) -> None:
        data = _seal_batch(next_seq)
        try:
            fd = os.open(segment.path, os.O_WRONLY | os.O_APPEND)
            try:
                write_all(fd, data)
                segment.size += len(data)
                if self.fsync:
                    _datasync(fd)
                    segment.synced = segment.size
            finally:
                os.close(fd)
        except OSError as exc:
            self._failed = exc
            raise WALUnusableError(f"cannot seal WAL segment {segment.path}: {exc}") from exc
        self._write_ledger()

    def _create_segment(
        self,
        seq: int,
        hard_state: HardState,
        first: tuple[RecordType, int, int],
        log_end: tuple[int, int],
    ) -> _Segment:
        path = os.path.join(self.directory, segment_name(seq))
        header = _header_batch(seq, hard_state, first, log_end, self._snapshot_record)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        except FileExistsError:
            raise StorageError(f"WAL segment {path} already exists") from None
        except OSError as exc:
            self._failed = exc
            raise WALUnusableError(f"cannot create WAL segment {path}: {exc}") from exc
        try:
            write_all(fd, header)
            if self.fsync:
                os.fsync(fd)
                fsync_directory(self.directory)
        except OSError as exc:
            os.close(fd)
            self._failed = exc
            raise WALUnusableError(f"cannot write WAL segment {path}: {exc}") from exc
        self._close_active()
        self._fd = fd
        segment = _Segment(seq, path, len(header), len(header) if self.fsync else 0, len(header), 0)
        self._segments.append(segment)
        self._write_ledger()
        return segment

    def _delete_segments(self, doomed: list[_Segment]) -> None:
        try:
            for segment in doomed:
                os.unlink(segment.path)
            if self.fsync:
                fsync_directory(self.directory)
        except OSError as exc:
            self._failed = exc
            raise WALUnusableError(f"cannot delete old WAL segments: {exc}") from exc
        gone = {id(segment) for segment in doomed}
        self._segments = [s for s in self._segments if id(s) not in gone]
        self._write_ledger()

    def _close_active(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _write_ledger(self) -> None:
        if not self.crash_test_ledger:
            return
        ledger = {os.path.basename(s.path): s.synced for s in self._segments}
        tmp = os.path.join(self.directory, LEDGER_NAME + ".tmp")
        with open(tmp, "w") as f:
            json.dump(ledger, f)
        os.replace(tmp, os.path.join(self.directory, LEDGER_NAME))

    # -- terms --------------------------------------------------------------------------

    def _record_terms(self, entries: list[Entry]) -> None:
        """Track terms as runs (terms change rarely): enough for compact() and
        for checking that an append's terms do not go backwards."""
        if not entries:
            return
        first = entries[0].index
        cut = bisect.bisect_left(self._term_starts, first)
        del self._term_starts[cut:]
        del self._term_values[cut:]
        starts, values = self._term_starts, self._term_values
        current = values[-1] if values else -1
        for entry in entries:
            if entry.term != current:
                current = entry.term
                starts.append(entry.index)
                values.append(current)
        self._last_index = entries[-1].index

    def _term_at(self, index: int) -> int:
        if index == self._base_index:
            return self._base_term
        if not self._base_index < index <= self._last_index:
            raise IndexError(f"index {index} outside the log")
        return self._term_values[bisect.bisect_right(self._term_starts, index) - 1]

    def _last_term(self) -> int:
        return self._term_at(self._last_index)

    def _term_before(self, first: int) -> int:
        previous = first - 1
        if self._base_index <= previous <= self._last_index:
            return self._term_at(previous)
        return 0

    # -- guards -------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._lock_fd is None:
            raise StorageError(f"WAL {self.directory} is closed")

    def _check_writable(self) -> None:
        self._check_open()
        if not self._loaded:
            raise StorageError("call load() before writing to the WAL")
        if self._failed is not None:
            raise WALUnusableError(
                f"WAL {self.directory} failed earlier ({self._failed}); restart to recover"
            )


def _check_seals(scans: list[_ScanResult], segments: list[_Segment]) -> _Segment | None:
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
    unsealed: _Segment | None = None
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
class _Replayed:
    hard_state: HardState
    base_index: int
    base_term: int
    entries: list[Entry]  # entries[0].index == base_index + 1
    first_kept: int  # position of the first segment still needed (older ones predate a reset)
    snapshot: tuple[int, int] | None  # the newest SNAPSHOT record


def _check_chain(batches: list[_Batch], segments: list[_Segment]) -> tuple[int, int] | None:
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


def _replay(batches: list[_Batch], segments: list[_Segment]) -> _Replayed:
    """Apply committed batches in order (after checking the chain of segments)."""
    log_end = _check_chain(batches, segments)
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
    return _Replayed(hard_state, base_index, base_term, entries, first_kept, snapshot)


def list_segments(directory: str | os.PathLike[str]) -> list[tuple[int, str]]:
    """(seq, path) of every segment file in the directory, oldest first."""
    found = []
    for name in os.listdir(directory):
        match = _SEGMENT_NAME.match(name)
        if match:
            found.append((int(match.group(1)), os.path.join(directory, name)))
    found.sort()
    return found


def simulate_power_loss(directory: str | os.PathLike[str]) -> dict[str, int]:
    """TEST ONLY: make the WAL directory look like a power cut happened.

    Needs a WAL written with `crash_test_ledger=True` and no longer open (closed
    or its process killed). Truncates each segment to the bytes the ledger says
    were synced and deletes segments that were never synced. Returns the number
    of bytes dropped per file."""
    ledger_path = Path(directory, LEDGER_NAME)
    if not ledger_path.exists():
        raise StorageError(
            f"{ledger_path} not found: the WAL was not opened with crash_test_ledger=True"
        )
    ledger: dict[str, int] = json.loads(ledger_path.read_text())
    dropped: dict[str, int] = {}
    for _seq, path in list_segments(directory):
        name = os.path.basename(path)
        size = os.path.getsize(path)
        synced = ledger.get(name, 0)
        if synced == 0:
            os.unlink(path)
            dropped[name] = size
        elif synced < size:
            os.truncate(path, synced)
            dropped[name] = size - synced
    return dropped


def _lock_directory(directory: str) -> int:
    fd = os.open(os.path.join(directory, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DirectoryLockedError(
            f"WAL directory {directory} is in use by another store"
        ) from None
    return fd
