"""The deterministic replicated state machine: kv with etcd revisions, leases,
locks with fencing tokens, client sessions, the membership directory and the
checkpoint command. No clocks, randomness, sockets or files in here.

- `commands`: the log entry encoding, typed constructors, and the reference of
  every command and result shape (read its docstring first);
- `machine.StateMachine`: apply / apply_conf_change / reads / snapshot_bytes / restore;
- `snapshot`: the canonical snapshot encoding (its layout), `keyspace` the kv
  operations, `revoke` lease revocation; kv, leases, locks, sessions, members: the tables.
"""

from raftkv.fsm.commands import (
    Checkpoint,
    Compare,
    Delete,
    InvalidCommand,
    LeaseExpire,
    LeaseGrant,
    LeaseRevoke,
    LockAcquire,
    LockRelease,
    MemberClientUrl,
    Put,
    Range,
    Session,
    Txn,
    decode,
    encode,
    prefix_end,
    strip_request_id,
    with_request_id,
)
from raftkv.fsm.machine import StateMachine
from raftkv.fsm.results import (
    ApplyResult,
    KeyValue,
    LeaseGranted,
    LockGrant,
    LockWaitCancelled,
    WatchEvent,
    jsonable,
)
from raftkv.fsm.snapshot import InvalidSnapshot

__all__ = [
    "ApplyResult",
    "Checkpoint",
    "MemberClientUrl",
    "Compare",
    "Delete",
    "InvalidCommand",
    "InvalidSnapshot",
    "KeyValue",
    "LeaseExpire",
    "LeaseGranted",
    "LeaseGrant",
    "LeaseRevoke",
    "LockAcquire",
    "LockGrant",
    "LockRelease",
    "LockWaitCancelled",
    "Put",
    "Range",
    "Session",
    "StateMachine",
    "Txn",
    "WatchEvent",
    "decode",
    "encode",
    "jsonable",
    "prefix_end",
    "strip_request_id",
    "with_request_id",
]
