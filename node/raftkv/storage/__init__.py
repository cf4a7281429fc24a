"""Durable state of a node: the WAL (log + hard state), snapshots, checkpoints.

Start a node with `recover(WriteAheadLog(dir), FileSnapshotStore(dir))`; the
simulator and unit tests use the in-memory twins from `memory`.
"""

from raftkv.storage.checkpoints import CheckpointStore, read_checkpoint, validate_checkpoint_id
from raftkv.storage.errors import (
    CheckpointExistsError,
    CorruptCheckpointError,
    CorruptSnapshotError,
    CorruptWALError,
    DirectoryLockedError,
    InconsistentStorageError,
    LostLogError,
    StorageError,
    WALUnusableError,
)
from raftkv.storage.memory import (
    DurableRaftState,
    MemoryRaftStore,
    MemorySnapshotSink,
    MemorySnapshotStore,
)
from raftkv.storage.protocols import InitialState, RaftStore, SnapshotSink, SnapshotStore
from raftkv.storage.recovery import RecoveredState, merge_log_and_snapshot, recover
from raftkv.storage.snapshots import FileSnapshotStore, SnapshotReceiver
from raftkv.storage.wal import WriteAheadLog, simulate_power_loss

__all__ = [
    "CheckpointExistsError",
    "CheckpointStore",
    "CorruptCheckpointError",
    "CorruptSnapshotError",
    "CorruptWALError",
    "DirectoryLockedError",
    "DurableRaftState",
    "FileSnapshotStore",
    "InconsistentStorageError",
    "InitialState",
    "LostLogError",
    "MemoryRaftStore",
    "MemorySnapshotSink",
    "MemorySnapshotStore",
    "RaftStore",
    "RecoveredState",
    "SnapshotReceiver",
    "SnapshotSink",
    "SnapshotStore",
    "StorageError",
    "WALUnusableError",
    "WriteAheadLog",
    "merge_log_and_snapshot",
    "read_checkpoint",
    "recover",
    "simulate_power_loss",
    "validate_checkpoint_id",
]
