"""The deterministic state machine every member applies identically.

`StateMachine.apply(index, term, data)` takes one committed NORMAL entry (the
command set and result shapes are documented in `raftkv.fsm.commands`);
`apply_conf_change(index, cc)` takes a CONF_CHANGE entry (membership directory).
Nothing here reads a clock, a random source or a file: the same log gives the
same state, results and snapshot bytes on every member.

Snapshots
=========
`snapshot_bytes()` is canonical: byte-identical on every member holding the same
state, because checkpoints' sha256 are compared across members. It is one
msgpack array, every section sorted by its key, no timestamps::

    ["raftkv-fsm", 1, applied_index, revision, session_capacity,
     members  [[id, name, peer_url, client_url, role]]          by id,
              (role "removed": a tombstone of a removed id, urls empty)
     leases   [[id, ttl]]                                       by id,
     locks    [[name, holder_lease, token, [waiter_lease]]]     by name,
     sessions [[client_id, seq, index, result]]                 by index,
              (result: the answer, or the result_not_retained marker
               of a big one: see `sessions`)
     kvs      [[key, [value, create_rev, mod_rev, version, lease]]]  by key]

Derived indexes (keys per lease, locks per lease, the sorted key index) are
rebuilt by `restore`, never stored.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import msgpack

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
    Txn,
    decode,
)
from raftkv.fsm.kv import KVStore
from raftkv.fsm.leases import LeaseTable
from raftkv.fsm.locks import HOLDER, WAITER, LockTable
from raftkv.fsm.members import MemberDirectory
from raftkv.fsm.results import (
    EVENT_DELETE,
    EVENT_PUT,
    ApplyResult,
    KeyValue,
    LeaseGranted,
    LockGrant,
    LockWaitCancelled,
    Record,
    WatchEvent,
    kv_dict,
)
from raftkv.fsm.sessions import DEFAULT_SESSION_CAPACITY, DUPLICATE, STALE, SessionTable
from raftkv.raft.types import ConfChange

SNAPSHOT_MAGIC = "raftkv-fsm"
SNAPSHOT_VERSION = 1
INITIAL_REVISION = 1  # like etcd: an empty store is at revision 1, the first write makes 2

# error codes of results
INVALID_COMMAND = "invalid_command"
LEASE_NOT_FOUND = "lease_not_found"
LEASE_EXISTS = "lease_exists"
LOCK_NOT_HELD = "lock_not_held"
STALE_SEQUENCE = "stale_sequence"

_LEASE_BYTES = 20  # a lease row in a snapshot: [id, ttl]

_RECORD_FIELD = {"version": 3, "create_revision": 1, "mod_revision": 2, "lease": 4}


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while building millions of acyclic tuples: otherwise
    it rescans the growing heap again and again (restore of 1M keys: 2.4 s of
    unpacking becomes 0.3 s)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class InvalidSnapshot(ValueError):
    """Bytes that are not a snapshot this version of the state machine can restore."""


def _compare_holds(compare: Compare, record: Record | None) -> bool:
    target = compare.target
    actual: bytes | int | bool
    if target == "value":
        if record is None:  # etcd: a value compare on a missing key is false
            return False
        actual = record[0]
    elif target == "exists":
        actual = record is not None
    else:
        actual = 0 if record is None else record[_RECORD_FIELD[target]]
    operand = compare.operand
    op = compare.op
    if op == "==":
        return actual == operand
    if op == "!=":
        return actual != operand
    if op == "<":
        return actual < operand  # type: ignore[operator]
    return actual > operand  # type: ignore[operator]


class SnapshotView:
    """See `StateMachine.snapshot_view`."""

    CHUNK = 1024  # key-values per msgpack call (~1 ms): between two calls, others may run

    __slots__ = ("_head", "_keys", "_records")

    def __init__(self, head: list[Any], keys: list[bytes], records: dict[bytes, Any]) -> None:
        self._head = head
        self._keys = keys
        self._records = records

    def pack(self, between_chunks: Callable[[], None] | None = None) -> bytes:
        """`snapshot_bytes()` of the frozen state. msgpack arrays concatenate: the
        state is the head's items, then the key-values' array header and items,
        packed CHUNK at a time (each chunk's own array header stripped), so a
        caller in a thread can let the event loop run between chunks."""
        packer = msgpack.Packer(use_bin_type=True)
        # The head plus an empty KV array: drop that array's one-byte header (0x90).
        parts = [msgpack.packb([*self._head, []], use_bin_type=True)[:-1]]
        keys, records = self._keys, self._records
        parts.append(packer.pack_array_header(len(keys)))
        get = records.__getitem__
        with _gc_paused():
            for start in range(0, len(keys), self.CHUNK):
                chunk = keys[start : start + self.CHUNK]
                packed = msgpack.packb(
                    list(zip(chunk, map(get, chunk), strict=True)), use_bin_type=True
                )
                parts.append(packed[len(packer.pack_array_header(len(chunk))) :])
                if between_chunks is not None:
                    between_chunks()
        return b"".join(parts)


class StateMachine:
    """KV with etcd revisions, leases, locks with fencing tokens, client
    sessions and the membership directory. Not thread-safe: the runtime applies
    and reads from one thread (its event loop)."""

    def __init__(self, session_capacity: int = DEFAULT_SESSION_CAPACITY) -> None:
        self.applied_index = 0
        self.revision = INITIAL_REVISION
        self._kv = KVStore()
        self._leases = LeaseTable()
        self._locks = LockTable()
        self._sessions = SessionTable(session_capacity)
        self._members = MemberDirectory()
        self._handlers: dict[type, Callable[[int, Any], ApplyResult]] = {
            Put: self._apply_put,
            Delete: self._apply_delete,
            Range: self._apply_range,
            Txn: self._apply_txn,
            LeaseGrant: self._apply_lease_grant,
            LeaseRevoke: self._apply_lease_revoke,
            LeaseExpire: self._apply_lease_expire,
            LockAcquire: self._apply_lock_acquire,
            LockRelease: self._apply_lock_release,
            Checkpoint: self._apply_checkpoint,
            MemberClientUrl: self._apply_member_client_url,
        }

    # --- applying entries ------------------------------------------------------

    def apply(self, index: int, term: int, data: bytes) -> ApplyResult:
        """Apply the committed NORMAL entry `index`. Malformed data gives an
        `invalid_command` result and changes nothing but `applied_index`.
        Raises ValueError if `index` was already applied (a runtime bug)."""
        if index <= self.applied_index:
            raise ValueError(f"entry {index} is not after applied index {self.applied_index}")
        self.applied_index = index
        if not data:  # the leader's no-op entry
            return ApplyResult(index, {"revision": self.revision})
        try:
            command, session = decode(data)
        except InvalidCommand as exc:
            return ApplyResult(index, self._error(INVALID_COMMAND, str(exc)))
        handler = self._handlers[type(command)]
        if session is None or type(command) is Range:  # reads are idempotent: not recorded
            return handler(index, command)
        status, recorded = self._sessions.lookup(session.client_id, session.seq)
        if status is DUPLICATE:
            assert recorded is not None
            return ApplyResult(index, recorded, duplicate=True)
        if status is STALE:
            message = f"client {session.client_id!r} already applied a later seq than {session.seq}"
            return ApplyResult(index, self._error(STALE_SEQUENCE, message))
        outcome = handler(index, command)
        self._sessions.record(session.client_id, session.seq, index, outcome.result)
        return outcome

    def apply_conf_change(self, index: int, cc: ConfChange) -> ApplyResult:
        """Apply the committed CONF_CHANGE entry `index` to the member directory."""
        if index <= self.applied_index:
            raise ValueError(f"entry {index} is not after applied index {self.applied_index}")
        self.applied_index = index
        return ApplyResult(index, {"revision": self.revision, **self._members.apply(cc)})

    def _apply_member_client_url(self, index: int, cmd: MemberClientUrl) -> ApplyResult:
        updated = self._members.set_client_url(cmd.member, cmd.client_url)
        return ApplyResult(
            index, {"revision": self.revision, "member": cmd.member, "updated": updated}
        )

    def _error(self, code: str, message: str) -> dict[str, Any]:
        return {"revision": self.revision, "error": code, "message": message}

    # --- kv ------------------------------------------------------------------

    def _write(
        self, key: bytes, value: bytes, lease: int, revision: int, events: list[WatchEvent]
    ) -> Record | None:
        prev = self._kv.put(key, value, lease, revision)
        if prev is None:
            events.append(WatchEvent(EVENT_PUT, key, value, revision, revision, 1, lease))
            if lease:
                self._leases.attach(lease, key)
        else:
            events.append(WatchEvent(EVENT_PUT, key, value, prev[1], revision, prev[3] + 1, lease))
            old_lease = prev[4]
            if old_lease != lease:
                if old_lease:
                    self._leases.detach(old_lease, key)
                if lease:
                    self._leases.attach(lease, key)
        return prev

    def _remove(self, key: bytes, revision: int, events: list[WatchEvent]) -> Record | None:
        prev = self._kv.delete(key)
        if prev is not None:
            if prev[4]:
                self._leases.detach(prev[4], key)
            events.append(WatchEvent(EVENT_DELETE, key, b"", 0, revision, 0, 0))
        return prev

    def _delete_op(self, op: Delete, revision: int, events: list[WatchEvent]) -> dict[str, Any]:
        keys = self._kv.keys(op.key, op.range_end)
        prev_kvs = []
        for key in keys:
            prev = self._remove(key, revision, events)
            if op.prev_kv:
                assert prev is not None
                prev_kvs.append(kv_dict(key, prev))
        out: dict[str, Any] = {"deleted": len(keys)}
        if op.prev_kv:
            out["prev_kvs"] = prev_kvs
        return out

    def _range_op(self, op: Range) -> dict[str, Any]:
        kv = self._kv
        count = kv.count(op.key, op.range_end)
        if op.count_only:
            return {"kvs": [], "count": count, "more": False}
        keys = kv.keys(op.key, op.range_end, op.limit)
        get = kv.get
        kvs = [kv_dict(key, get(key), op.keys_only) for key in keys]  # type: ignore[arg-type]
        return {"kvs": kvs, "count": count, "more": len(kvs) < count}

    def _compare(self, compare: Compare) -> bool:
        kv = self._kv
        if not compare.range_end:
            return _compare_holds(compare, kv.get(compare.key))
        keys = kv.keys(compare.key, compare.range_end)
        if not keys:
            return _compare_holds(compare, None)
        return all(_compare_holds(compare, kv.get(key)) for key in keys)

    def _missing_lease(self, lease: int) -> dict[str, Any]:
        return self._error(LEASE_NOT_FOUND, f"lease {lease} is not granted")

    def _apply_put(self, index: int, cmd: Put) -> ApplyResult:
        lease = cmd.lease
        if lease and lease not in self._leases:
            return ApplyResult(index, self._missing_lease(lease))
        revision = self.revision + 1
        events: list[WatchEvent] = []
        prev = self._write(cmd.key, cmd.value, lease, revision, events)
        self.revision = revision
        result: dict[str, Any] = {"revision": revision}
        if cmd.prev_kv:
            result["prev_kv"] = None if prev is None else kv_dict(cmd.key, prev)
        return ApplyResult(index, result, events)

    def _apply_delete(self, index: int, cmd: Delete) -> ApplyResult:
        events: list[WatchEvent] = []
        out = self._delete_op(cmd, self.revision + 1, events)
        if events:
            self.revision += 1
        return ApplyResult(index, {"revision": self.revision, **out}, events)

    def _apply_range(self, index: int, cmd: Range) -> ApplyResult:
        return ApplyResult(index, {"revision": self.revision, **self._range_op(cmd)})

    def _apply_txn(self, index: int, cmd: Txn) -> ApplyResult:
        succeeded = all(self._compare(c) for c in cmd.compares)
        ops = cmd.success if succeeded else cmd.failure
        for op in ops:  # check before writing anything: a txn applies whole or not at all
            if type(op) is Put and op.lease and op.lease not in self._leases:
                return ApplyResult(index, self._missing_lease(op.lease))
        revision = self.revision + 1
        events: list[WatchEvent] = []
        responses: list[dict[str, Any]] = []
        for op in ops:
            if type(op) is Put:
                prev = self._write(op.key, op.value, op.lease, revision, events)
                response: dict[str, Any] = {"op": "put"}
                if op.prev_kv:
                    response["prev_kv"] = None if prev is None else kv_dict(op.key, prev)
            elif type(op) is Delete:
                response = {"op": "delete", **self._delete_op(op, revision, events)}
            else:
                response = {"op": "range", **self._range_op(op)}  # type: ignore[arg-type]
            responses.append(response)
        if events:
            self.revision = revision
        result = {"revision": self.revision, "succeeded": succeeded, "responses": responses}
        return ApplyResult(index, result, events)

    # --- leases ----------------------------------------------------------------

    def _apply_lease_grant(self, index: int, cmd: LeaseGrant) -> ApplyResult:
        lease_id = cmd.id or self._leases.free_id(index)
        if lease_id in self._leases:
            return ApplyResult(index, self._error(LEASE_EXISTS, f"lease {lease_id} exists"))
        self._leases.grant(lease_id, cmd.ttl)
        return ApplyResult(
            index,
            {"revision": self.revision, "id": lease_id, "ttl": cmd.ttl},
            lease_granted=LeaseGranted(lease_id, cmd.ttl),
        )

    def _apply_lease_revoke(self, index: int, cmd: LeaseRevoke) -> ApplyResult:
        if cmd.id not in self._leases:
            return ApplyResult(index, self._missing_lease(cmd.id))
        outcome, deleted, released = self._revoke(index, [cmd.id])
        outcome.result.update(id=cmd.id, deleted=deleted, locks_released=released)
        return outcome

    def _apply_lease_expire(self, index: int, cmd: LeaseExpire) -> ApplyResult:
        # Leases revoked since the leader decided are skipped: expiry races revoke.
        ids = [lease_id for lease_id in cmd.ids if lease_id in self._leases]
        outcome, deleted, released = self._revoke(index, ids)
        outcome.result.update(expired=ids, deleted=deleted, locks_released=released)
        return outcome

    def _revoke(self, index: int, ids: list[int]) -> tuple[ApplyResult, int, list[str]]:
        """Revoke granted leases `ids` (sorted) as one change at one revision."""
        revision = self.revision + 1
        locks = self._locks
        # 1. Every doomed lease leaves every queue before any lock changes hands,
        #    so none of them can be promoted below (etcd #11408).
        cancelled: list[LockWaitCancelled] = []
        held: list[tuple[str, int]] = []
        for lease_id in ids:
            for name in locks.names_for(lease_id):
                if locks.role(name, lease_id) == HOLDER:
                    held.append((name, lease_id))
                else:
                    locks.dequeue(name, lease_id)
                    cancelled.append(LockWaitCancelled(name, lease_id))
        # 2. Attached keys go, in key order.
        events: list[WatchEvent] = []
        for lease_id in ids:
            lease = self._leases.pop(lease_id)
            for key in sorted(lease.keys):
                self._remove(key, revision, events)
        # 3. Held locks pass to their next (live) waiter.
        grants: list[LockGrant] = []
        for name, lease_id in held:
            grant = locks.release(name, lease_id, revision)
            if grant is not None:
                grants.append(grant)
        if events or cancelled or held:
            self.revision = revision
        outcome = ApplyResult(
            index,
            {"revision": self.revision},
            events,
            lock_grants=grants,
            lock_waits_cancelled=cancelled,
            revoked_leases=list(ids),
        )
        return outcome, len(events), sorted(name for name, _ in held)

    # --- locks -----------------------------------------------------------------

    def _apply_lock_acquire(self, index: int, cmd: LockAcquire) -> ApplyResult:
        if cmd.lease not in self._leases:
            return ApplyResult(index, self._missing_lease(cmd.lease))
        revision = self.revision + 1
        acquired, token_or_position, changed = self._locks.acquire(cmd.name, cmd.lease, revision)
        if changed:
            self.revision = revision
        result: dict[str, Any] = {
            "revision": self.revision,
            "name": cmd.name,
            "lease": cmd.lease,
            "acquired": acquired,
        }
        if acquired:
            result["token"] = token_or_position
        else:
            result["position"] = token_or_position
        grants = [LockGrant(cmd.name, cmd.lease, revision)] if acquired and changed else []
        return ApplyResult(index, result, lock_grants=grants)

    def _apply_lock_release(self, index: int, cmd: LockRelease) -> ApplyResult:
        role = self._locks.role(cmd.name, cmd.lease)
        if role is None:
            message = f"lease {cmd.lease} neither holds nor waits for lock {cmd.name!r}"
            return ApplyResult(index, self._error(LOCK_NOT_HELD, message))
        self.revision += 1
        grants: list[LockGrant] = []
        cancelled: list[LockWaitCancelled] = []
        if role == HOLDER:
            grant = self._locks.release(cmd.name, cmd.lease, self.revision)
            if grant is not None:
                grants.append(grant)
        else:
            self._locks.dequeue(cmd.name, cmd.lease)
            cancelled.append(LockWaitCancelled(cmd.name, cmd.lease))
        result = {
            "revision": self.revision,
            "name": cmd.name,
            "lease": cmd.lease,
            "released": role == HOLDER,
            "dequeued": role == WAITER,
        }
        return ApplyResult(index, result, lock_grants=grants, lock_waits_cancelled=cancelled)

    def _apply_checkpoint(self, index: int, cmd: Checkpoint) -> ApplyResult:
        result = {"revision": self.revision, "checkpoint": cmd.id, "index": index}
        return ApplyResult(index, result, checkpoint=cmd.id)

    # --- reads (serve local / ReadIndex reads; change nothing) ----------------

    def get(self, key: bytes) -> KeyValue | None:
        record = self._kv.get(key)
        return None if record is None else KeyValue(key, *record)

    def range(self, query: Range) -> dict[str, Any]:
        """The result applying `query` would give, without a log entry."""
        return {"revision": self.revision, **self._range_op(query)}

    def lease_info(self, lease_id: int) -> dict[str, Any] | None:
        """`{"id", "ttl", "keys": [sorted], "locks": [sorted names]}` or None."""
        lease = self._leases.get(lease_id)
        if lease is None:
            return None
        return {
            "id": lease_id,
            "ttl": lease.ttl,
            "keys": sorted(lease.keys),
            "locks": self._locks.names_for(lease_id),
        }

    def leases(self) -> list[tuple[int, int]]:
        """(id, granted ttl) of every lease, by id: a new leader starts a full TTL
        deadline for each (keep-alives are not in the log)."""
        return self._leases.dump()

    def lock_info(self, name: str) -> dict[str, Any] | None:
        """`{"name", "holder": lease, "token", "waiters": [lease, FIFO]}` or None if free."""
        return self._locks.info(name)

    def lock_status(self, name: str, lease: int) -> dict[str, Any] | None:
        """Where `lease` stands on lock `name` now: `{"acquired": true, "token"}`,
        `{"acquired": false, "position"}`, or None (neither holds nor waits)."""
        role = self._locks.role(name, lease)
        if role == HOLDER:
            lock = self._locks.get(name)
            assert lock is not None
            return {"acquired": True, "token": lock.token}
        if role == WAITER:
            return {"acquired": False, "position": self._locks.position(name, lease)}
        return None

    def lock_waiter_count(self, name: str) -> int:
        """How many leases wait in the queue of lock `name` (0 if it is free)."""
        return self._locks.waiters_of(name)

    def lease_count(self) -> int:
        return len(self._leases)

    def locks(self) -> list[dict[str, Any]]:
        return [info for name in self._locks.names() if (info := self._locks.info(name))]

    @property
    def members(self) -> dict[int, dict[str, str]]:
        """{id: {"name", "peer_url", "client_url", "role"}} (a copy, by id)."""
        return self._members.as_dict()

    @property
    def removed_members(self) -> dict[int, str]:
        """{id: name} of every member id ever removed (tombstones, kept in snapshots)."""
        return self._members.removed()

    @property
    def session_capacity(self) -> int:
        return self._sessions.capacity

    @property
    def size_bytes(self) -> int:
        """Estimated size of the state as a snapshot encodes it (keys, values and
        their records, kept session results, leases, locks): what a snapshot or a
        checkpoint of this state writes, and what the backend quota limits. The
        same on every member (a function of the applied log)."""
        return (
            self._kv.size_bytes
            + self._sessions.result_bytes
            + _LEASE_BYTES * len(self._leases)
            + self._locks.size_bytes()
        )

    def stats(self) -> dict[str, int]:
        return {
            "size_bytes": self.size_bytes,
            "keys": len(self._kv),
            "leases": len(self._leases),
            "locks_held": len(self._locks),
            "lock_waiters": self._locks.waiter_count(),
            "sessions": len(self._sessions),
            "members": len(self._members),
            "revision": self.revision,
            "applied_index": self.applied_index,
        }

    # --- snapshots ---------------------------------------------------------------

    def snapshot_bytes(self) -> bytes:
        """The whole state, canonically encoded (see the module docstring)."""
        with _gc_paused():
            return self._pack_state()

    def snapshot_view(self) -> SnapshotView:
        """The state as of now, frozen by copying references only (about a tenth of
        `snapshot_bytes()`'s time at a million keys): its `pack()` gives exactly the
        bytes `snapshot_bytes()` gives now, and may run later, in another thread,
        while this machine goes on applying."""
        with _gc_paused():
            head = self._state_head()
            keys, records = self._kv.frozen()
        return SnapshotView(head, keys, records)

    def _pack_state(self) -> bytes:
        return msgpack.packb([*self._state_head(), self._kv.dump()], use_bin_type=True)

    def _state_head(self) -> list[Any]:
        """Every snapshot section but the last, the key-values (shared with
        `snapshot_view`, so the two encodings cannot drift apart)."""
        return [
            SNAPSHOT_MAGIC,
            SNAPSHOT_VERSION,
            self.applied_index,
            self.revision,
            self._sessions.capacity,
            self._members.dump(),
            self._leases.dump(),
            self._locks.dump(),
            self._sessions.dump(),
        ]

    def restore(self, data: bytes) -> None:
        """Replace the whole state with a snapshot's. Raises InvalidSnapshot (and
        keeps the current state) if `data` is not a valid snapshot."""
        with _gc_paused():
            self._restore(data)

    def _restore(self, data: bytes) -> None:
        try:
            raw = msgpack.unpackb(data, raw=False, use_list=False)
        except Exception as exc:  # any msgpack failure means the same: not a snapshot
            raise InvalidSnapshot(f"snapshot is not msgpack: {exc}") from None
        if type(raw) is not tuple or len(raw) != 10 or raw[0] != SNAPSHOT_MAGIC:
            raise InvalidSnapshot("not a raftkv state machine snapshot")
        if raw[1] != SNAPSHOT_VERSION:
            raise InvalidSnapshot(f"unsupported snapshot format version {raw[1]!r}")
        applied_index, revision, capacity = raw[2], raw[3], raw[4]
        if any(type(n) is not int or n < 0 for n in (applied_index, revision, capacity)):
            raise InvalidSnapshot("snapshot header fields are not non-negative ints")
        try:
            members = MemberDirectory.load(raw[5])
            leases = LeaseTable.load(raw[6])
            locks = LockTable.load(raw[7])
            sessions = SessionTable.load(capacity, raw[8])
            kv = KVStore.load(raw[9])
            for key, record in kv.items():
                if len(record) != 5:
                    raise ValueError(f"bad record of key {key!r}")
                if record[4]:
                    leases.attach(record[4], key)  # KeyError: a key on an unknown lease
            if not locks.leases() <= {lease_id for lease_id, _ in leases.dump()}:
                raise ValueError("a lock is held or awaited by an unknown lease")
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise InvalidSnapshot(f"corrupt snapshot: {type(exc).__name__}: {exc}") from None
        self.applied_index = applied_index
        self.revision = revision
        self._members = members
        self._leases = leases
        self._locks = locks
        self._sessions = sessions
        self._kv = kv
