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
import json
import logging
import os
from pathlib import Path

from raftkv.raft.types import Entry, HardState, SnapshotMeta
from raftkv.storage import walrecover
from raftkv.storage.errors import (
    DirectoryLockedError,
    StorageError,
    WALUnusableError,
)
from raftkv.storage.fsutil import fsync_directory, make_directory, write_all
from raftkv.storage.logshape import check_append, check_compact
from raftkv.storage.protocols import InitialState
from raftkv.storage.walformat import (
    DEFAULT_SEGMENT_BYTES,
    ENTRY_HEADER_SIZE,
    FORMAT_VERSION,
    LEDGER_NAME,
    LOCK_NAME,
    READABLE_VERSIONS,
    RECORD_HEADER_SIZE,
    SEGMENT_SUFFIX,
    RecordType,
    Segment,
    commit_record,
    encode_entries,
    hard_state_record,
    header_batch,
    list_segments,
    position_record,
    seal_batch,
    segment_name,
)

__all__ = [  # the format's names that callers and tests read through this module
    "DEFAULT_SEGMENT_BYTES",
    "ENTRY_HEADER_SIZE",
    "FORMAT_VERSION",
    "LOCK_NAME",
    "READABLE_VERSIONS",
    "RECORD_HEADER_SIZE",
    "SEGMENT_SUFFIX",
    "RecordType",
    "WriteAheadLog",
    "list_segments",
    "segment_name",
    "simulate_power_loss",
]

log = logging.getLogger(__name__)
_datasync = getattr(os, "fdatasync", os.fsync)  # tests count and fail it


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

        self._segments: list[Segment] = []
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
        state = walrecover.recover(self)
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
            encode_entries(parts, entries)
            records = len(entries)
        if hard_state is not None:
            parts.append(hard_state_record(hard_state))
            records += 1
        parts.append(commit_record(records))
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
        batch = [position_record(RecordType.SNAPSHOT, position)]
        if hard_state is not None:
            batch.append(hard_state_record(hard_state))
        batch.append(commit_record(len(batch)))
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
        self._append(
            self._active_segment(),
            position_record(RecordType.BASE, (index, term)) + commit_record(1),
        )
        self._base_index, self._base_term = index, term
        if index >= self._last_index:
            self._term_starts, self._term_values = [], []
        else:
            keep_from = bisect.bisect_right(self._term_starts, index + 1) - 1
            self._term_starts = self._term_starts[keep_from:]
            self._term_values = self._term_values[keep_from:]
            self._term_starts[0] = index + 1

        doomed: list[Segment] = []
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

    # -- writing ------------------------------------------------------------------------

    def _append(self, segment: Segment, data: bytes) -> None:
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

    def _active_segment(self) -> Segment:
        """The segment appends go to; the first write to a new log creates it."""
        if not self._segments:
            self._start_segment(
                self._first_seq,
                self._hard_state,
                (RecordType.BASE, self._base_index, self._base_term),
                (self._last_index, self._last_term()),
            )
        return self._segments[-1]

    def _roll(self) -> Segment:
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
    ) -> Segment:
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

    def _seal(self, segment: Segment, next_seq: int) -> None:
        data = seal_batch(next_seq)
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
    ) -> Segment:
        path = os.path.join(self.directory, segment_name(seq))
        header = header_batch(seq, hard_state, first, log_end, self._snapshot_record)
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
        segment = Segment(seq, path, len(header), len(header) if self.fsync else 0, len(header), 0)
        self._segments.append(segment)
        self._write_ledger()
        return segment

    def _delete_segments(self, doomed: list[Segment]) -> None:
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
