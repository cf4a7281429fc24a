"""Recovery of a WAL directory when it is opened (`WriteAheadLog.load`): scan every
segment, check the chain, replay, repair what a crash can explain (a torn tail,
an interrupted roll-over or reset) and refuse the rest. The rules are in
`raftkv.storage.wal`'s docstring; this is the recovering half of the WAL, as a
function of its state."""

from __future__ import annotations

import gc
import logging
import os
from typing import TYPE_CHECKING

from raftkv.raft.types import ConfState, HardState, SnapshotMeta
from raftkv.storage.errors import CorruptWALError
from raftkv.storage.fsutil import fsync_directory
from raftkv.storage.protocols import InitialState
from raftkv.storage.walformat import (
    FORMAT_VERSION,
    ScanResult,
    Segment,
    check_seals,
    list_segments,
    replay,
    scan_segment,
    segment_name,
)

if TYPE_CHECKING:
    from raftkv.storage.wal import WriteAheadLog

log = logging.getLogger("raftkv.storage.wal")  # the WAL's own log, as before the split


def recover(wal: WriteAheadLog) -> InitialState:
    """Recover the WAL's directory (see `raftkv.storage.wal`: what is repaired, what
    is refused) and set its state from what survived."""
    # Replay allocates an object per entry and frees almost none: the cyclic
    # GC would rescan them over and over (~20% of a million-entry load).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _recover_segments(wal)
    finally:
        if gc_was_enabled:
            gc.enable()


def _recover_segments(wal: WriteAheadLog) -> InitialState:
    found = list_segments(wal.directory)
    for previous, following in zip(found, found[1:], strict=False):
        if following[0] != previous[0] + 1:
            raise CorruptWALError(
                following[1],
                0,
                f"segment {segment_name(previous[0] + 1)} is missing "
                f"(have {previous[0]} then {following[0]})",
            )

    scans: list[ScanResult] = []
    segments: list[Segment] = []
    torn: tuple[str, ScanResult, int] | None = None  # repaired once all checks passed
    # The one before the last may be torn too: by a crash while writing its seal.
    torn_before_last: tuple[str, ScanResult, int] | None = None
    for position, (seq, path) in enumerate(found):
        with open(path, "rb") as f:
            buf = f.read()
            if wal.fsync:
                # A killed process (or an earlier fsync=False run) may have left
                # writes only in the page cache; from now on the node treats
                # them as its log and may acknowledge them: make them durable.
                os.fsync(f.fileno())
        is_last = position == len(found) - 1
        scan = scan_segment(position, path, buf, seq, position >= len(found) - 2)
        if scan.torn is not None and not is_last:
            torn_before_last = (path, scan, len(buf))
        elif scan.torn is not None:
            torn = (path, scan, len(buf))
            if scan.valid_end == 0:
                break  # nothing of this last segment survived: it is gone
        header_size = scan.batches[1].offset if len(scan.batches) > 1 else scan.valid_end
        scans.append(scan)
        synced = scan.valid_end if wal.fsync else 0
        segments.append(Segment(seq, path, scan.valid_end, synced, header_size, scan.max_index))

    wal._term_starts, wal._term_values = [], []
    wal._snapshot_record = None
    if torn_before_last is not None and len(segments) == len(found):
        path, scan, _ = torn_before_last
        # A crash while sealing it leaves its batches and a header-only last one.
        if scan.valid_end == 0 or len(scans[-1].batches) != 1:
            raise CorruptWALError(
                path, scan.torn_offset, f"{scan.torn} (in a segment that is not the last)"
            )
    if segments:
        unsealed = check_seals(scans, segments)
        replayed = replay([batch for scan in scans for batch in scan.batches], segments)
    wal._unfinished_first = None
    if torn is not None and not segments:
        # The only segment has no complete batch: its creation was interrupted
        # (a new log), or it was emptied. Storage.recovery decides which; the
        # file goes only with the first write, so a refused start keeps it.
        path, scan, size = torn
        log.warning(
            "WAL %s: no complete batch (%s at offset %d, %d bytes): replaced on the first write",
            path,
            scan.torn,
            scan.torn_offset,
            size,
        )
        wal._unfinished_first = path
    elif torn is not None:
        _truncate_torn_tail(wal.directory, *torn)
    if torn_before_last is not None:
        # Its seal (then written below), or, when the last segment was an empty
        # new one, the torn tail of what is now the last segment.
        _truncate_torn_tail(wal.directory, *torn_before_last)
    if not segments:
        # No log at all: a new node, or one whose log was deleted. Whoever
        # starts the node decides which (storage.recovery); nothing is written yet.
        wal._segments = []
        wal._hard_state = HardState()
        wal._base_index = wal._base_term = wal._last_index = 0
        wal._first_seq = found[0][0] if found else 0
        wal._write_ledger()
        what = "no segment with a complete batch" if found else "no segment files"
        return InitialState(
            HardState(), None, [], new_log=True, origin=f"WAL {wal.directory} ({what})"
        )

    wal._segments = segments
    if unsealed is not None:
        # A crash between creating the last segment and sealing the one before.
        log.warning("WAL %s: completing an interrupted roll-over: sealing it", unsealed.path)
        wal._seal(unsealed, unsealed.seq + 1)
    if replayed.first_kept > 0:
        # A reset to a snapshot was interrupted before it deleted the old segments.
        wal._segments = segments
        wal._delete_segments(segments[: replayed.first_kept])
        segments = segments[replayed.first_kept :]
    wal._segments = segments
    wal._first_seq = segments[0].seq
    wal._hard_state = replayed.hard_state
    wal._base_index, wal._base_term = replayed.base_index, replayed.base_term
    entries = replayed.entries
    wal._last_index = entries[-1].index if entries else replayed.base_index
    wal._snapshot_record = replayed.snapshot
    wal._record_terms(entries)
    wal._fd = os.open(wal._segments[-1].path, os.O_WRONLY | os.O_APPEND)
    wal._write_ledger()
    if scans[-1].version < FORMAT_VERSION:
        log.warning(
            "WAL %s: format %d segment; new writes go to a format %d segment",
            wal._segments[-1].path,
            scans[-1].version,
            FORMAT_VERSION,
        )
        wal._roll()
    base = replayed.base_index
    snapshot = SnapshotMeta(base, replayed.base_term, ConfState()) if base else None
    first, last = os.path.basename(segments[0].path), os.path.basename(segments[-1].path)
    names = first if first == last else f"{first}..{last}"
    return InitialState(
        wal._hard_state.copy(),
        snapshot,
        entries,
        snapshot_record=replayed.snapshot,
        origin=f"WAL {wal.directory} ({names})",
    )


def _truncate_torn_tail(directory: str, path: str, scan: ScanResult, size: int) -> None:
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
        fsync_directory(directory)
        return
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, scan.valid_end)
        os.fsync(fd)
    finally:
        os.close(fd)
