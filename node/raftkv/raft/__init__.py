"""The pure Raft protocol core: no IO, no clock, no event loop.

Drive it with `tick()`, `step(msg)`, `propose(data)`, `read_index(ctx)`;
collect work with `ready()`; persist, send, apply, then `advance(ready)`.
"""

from raftkv.raft.core import Config, Raft
from raftkv.raft.types import (
    NONE,
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MsgType,
    NotLeader,
    ProposalDropped,
    ReadState,
    Ready,
    Snapshot,
    SnapshotMeta,
    SoftState,
    StateRole,
)

__all__ = [
    "NONE",
    "Config",
    "ConfChange",
    "ConfChangeType",
    "ConfState",
    "Entry",
    "EntryType",
    "HardState",
    "Message",
    "MsgType",
    "NotLeader",
    "ProposalDropped",
    "Raft",
    "Ready",
    "ReadState",
    "Snapshot",
    "SnapshotMeta",
    "SoftState",
    "StateRole",
]
