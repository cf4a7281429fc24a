"""Errors raised by the storage layer.

Every error that means "the data on disk cannot be trusted" names the file
(and, for the WAL, the byte offset) so an operator can inspect it.
"""

from __future__ import annotations


class StorageError(Exception):
    """Base class of every storage failure."""


class CorruptWALError(StorageError):
    """A WAL record is damaged somewhere a torn write cannot explain.

    The node must refuse to start: dropping the record could lose acknowledged
    writes. `path` and `offset` locate the first bad record.
    """

    def __init__(self, path: str, offset: int, reason: str) -> None:
        super().__init__(f"corrupt WAL {path} at byte offset {offset}: {reason}")
        self.path = path
        self.offset = offset
        self.reason = reason


class WALUnusableError(StorageError):
    """A write or fsync failed earlier; the on-disk state is unknown.

    Retrying an fsync after a failure can report success while data was lost
    (the "fsyncgate" lesson), so the log refuses all further writes: restart
    the process and let recovery decide what is durable.
    """


class DirectoryLockedError(StorageError):
    """Another process (or another open store in this one) uses the directory."""


class InconsistentStorageError(StorageError):
    """The log and the snapshots do not fit together (e.g. the log starts after
    the newest usable snapshot): entries between them are missing."""


class LostLogError(InconsistentStorageError):
    """The log is missing, or ends before state the node durably had proves it
    reached (a snapshot, identity.json, checkpoints): WAL segments were deleted
    or cut short. Starting would forget the term and vote (and could vote twice
    in a term) and acknowledged writes, so the node refuses."""


class CorruptSnapshotError(StorageError):
    """A snapshot's data does not match its recorded size or checksum."""


class CorruptCheckpointError(StorageError):
    """A checkpoint's data or manifest is damaged or does not match."""


class CheckpointExistsError(StorageError):
    """A checkpoint with this id already exists for a different log index or content."""
