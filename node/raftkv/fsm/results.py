"""What applying an entry gives back to the runtime, and the read-side records."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

# A stored key's record, kept as a plain tuple because the hot path makes one per
# put: (value, create_revision, mod_revision, version, lease).
Record = tuple[bytes, int, int, int, int]
VALUE, CREATE_REVISION, MOD_REVISION, VERSION, LEASE = range(5)

EVENT_PUT = "put"
EVENT_DELETE = "delete"


class KeyValue(NamedTuple):
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int


class WatchEvent(NamedTuple):
    """One change for watchers, like etcd's: a delete carries the key, the
    deletion's revision as `mod_revision`, and zeros elsewhere."""

    type: str  # EVENT_PUT | EVENT_DELETE
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int


class LockGrant(NamedTuple):
    """`lease` now holds lock `name` with fencing `token` (answer its waiter)."""

    name: str
    lease: int
    token: int


class LeaseGranted(NamedTuple):
    """Lease `id` was granted with `ttl` seconds (the leader starts its clock)."""

    id: int
    ttl: int


class LockWaitCancelled(NamedTuple):
    """`lease` no longer waits for lock `name` (its lease was revoked or it let go)."""

    name: str
    lease: int


@dataclass(slots=True)
class ApplyResult:
    """The outcome of one applied entry.

    `result` is the command's answer (see `commands` for the shapes). The other
    fields are side effects the runtime acts on, typed so it never reads them
    out of `result`: notify watchers of `events`, answer lock waiters in
    `lock_grants` / `lock_waits_cancelled`, start the deadline of `lease_granted`,
    forget the deadlines of `revoked_leases`, write checkpoint `checkpoint` now. A
    duplicate (session replay) has the recorded `result` and no side effects.
    """

    index: int
    result: dict[str, Any]
    # Sequences default to a shared empty tuple: no allocation for the common case.
    events: Sequence[WatchEvent] = ()
    lock_grants: Sequence[LockGrant] = ()
    lock_waits_cancelled: Sequence[LockWaitCancelled] = ()
    revoked_leases: Sequence[int] = ()
    lease_granted: LeaseGranted | None = None
    checkpoint: str | None = None
    duplicate: bool = False

    @property
    def ok(self) -> bool:
        return "error" not in self.result


def kv_dict(key: bytes, record: Record, keys_only: bool = False) -> dict[str, Any]:
    return {
        "key": key,
        "value": b"" if keys_only else record[VALUE],
        "create_revision": record[CREATE_REVISION],
        "mod_revision": record[MOD_REVISION],
        "version": record[VERSION],
        "lease": record[LEASE],
    }


def jsonable(value: Any) -> Any:
    """`value` ready for `json.dumps`: bytes become base64 text (as etcd's JSON
    gateway does), tuples (events, grants) become lists, dict keys become text."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value
