"""The deterministic state machine every member applies identically.

`StateMachine.apply(index, term, data)` takes one committed NORMAL entry (the
command set and result shapes are documented in `raftkv.fsm.commands`);
`apply_conf_change(index, cc)` takes a CONF_CHANGE entry (membership directory).
Nothing here reads a clock, a random source or a file: the same log gives the
same state, results and snapshot bytes on every member.

The state is a few tables (kv.py, leases.py, locks.py, sessions.py, members.py);
keyspace.py holds the key-value operations on them, revoke.py lease revocation,
and snapshot.py the canonical snapshot encoding (its layout is documented there).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from raftkv.fsm import keyspace, snapshot
from raftkv.fsm.commands import (
    Checkpoint,
    Command,
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
    strip_request_id,
)
from raftkv.fsm.kv import KVStore
from raftkv.fsm.leases import LeaseTable
from raftkv.fsm.locks import HOLDER, WAITER, LockTable
from raftkv.fsm.members import MemberDirectory
from raftkv.fsm.results import (
    ApplyResult,
    KeyValue,
    LeaseGranted,
    LockGrant,
    LockWaitCancelled,
    WatchEvent,
    kv_dict,
)
from raftkv.fsm.revoke import revoke
from raftkv.fsm.sessions import DEFAULT_SESSION_CAPACITY, DUPLICATE, STALE, SessionTable
from raftkv.fsm.snapshot import SnapshotView, Tables
from raftkv.raft.types import ConfChange

INITIAL_REVISION = 1  # like etcd: an empty store is at revision 1, the first write makes 2

# error codes of results
INVALID_COMMAND = "invalid_command"
LEASE_NOT_FOUND = "lease_not_found"
LEASE_EXISTS = "lease_exists"
LOCK_NOT_HELD = "lock_not_held"
STALE_SEQUENCE = "stale_sequence"

# Commands this process encoded and has not applied yet (a busy leader has a few
# hundred in flight); past this many the cache starts over (see `encoded_here`).
DECODED_AHEAD_MAX = 4096
_LEASE_BYTES = 20  # a lease row in a snapshot: [id, ttl]


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
        self._decoded_ahead: dict[bytes, tuple[Command, Session | None]] = {}
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
        try:
            data = strip_request_id(data)  # a proposal's id is not part of its command
        except InvalidCommand as exc:
            return ApplyResult(index, self._error(INVALID_COMMAND, str(exc)))
        if not data:  # the leader's no-op entry
            return ApplyResult(index, {"revision": self.revision})
        ahead = self._decoded_ahead.pop(data, None) if self._decoded_ahead else None
        if ahead is not None:
            command, session = ahead
        else:
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

    def encoded_here(self, command: Command, session: Session | None = None) -> bytes:
        """`encode(command, session)`, remembered so that applying these bytes later
        skips decoding them: the leader's own proposals (~2 us a write). Safe because
        decoding is a function of the bytes alone and the command's constructor ran
        the same checks `decode` runs (tests/unit/fsm/test_decoded_ahead.py applies
        the same entries both ways). A cache, not state: a follower, a restart or a
        proposal that never applied (cleared past DECODED_AHEAD_MAX) decodes."""
        data = encode(command, session)
        ahead = self._decoded_ahead
        if len(ahead) >= DECODED_AHEAD_MAX:
            ahead.clear()
        ahead[data] = (command, session)
        return data

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

    def _missing_lease(self, lease: int) -> dict[str, Any]:
        return self._error(LEASE_NOT_FOUND, f"lease {lease} is not granted")

    def _apply_put(self, index: int, cmd: Put) -> ApplyResult:
        lease = cmd.lease
        if lease and lease not in self._leases:
            return ApplyResult(index, self._missing_lease(lease))
        revision = self.revision + 1
        events: list[WatchEvent] = []
        prev = keyspace.write(self._kv, self._leases, cmd.key, cmd.value, lease, revision, events)
        self.revision = revision
        result: dict[str, Any] = {"revision": revision}
        if cmd.prev_kv:
            result["prev_kv"] = None if prev is None else kv_dict(cmd.key, prev)
        return ApplyResult(index, result, events)

    def _apply_delete(self, index: int, cmd: Delete) -> ApplyResult:
        events: list[WatchEvent] = []
        out = keyspace.delete(self._kv, self._leases, cmd, self.revision + 1, events)
        if events:
            self.revision += 1
        return ApplyResult(index, {"revision": self.revision, **out}, events)

    def _apply_range(self, index: int, cmd: Range) -> ApplyResult:
        return ApplyResult(index, {"revision": self.revision, **keyspace.range_(self._kv, cmd)})

    def _apply_txn(self, index: int, cmd: Txn) -> ApplyResult:
        succeeded = all(keyspace.compare(self._kv, c) for c in cmd.compares)
        ops = cmd.success if succeeded else cmd.failure
        for op in ops:  # check before writing anything: a txn applies whole or not at all
            if type(op) is Put and op.lease and op.lease not in self._leases:
                return ApplyResult(index, self._missing_lease(op.lease))
        revision = self.revision + 1
        events: list[WatchEvent] = []
        responses: list[dict[str, Any]] = []
        for op in ops:
            if type(op) is Put:
                prev = keyspace.write(
                    self._kv, self._leases, op.key, op.value, op.lease, revision, events
                )
                response: dict[str, Any] = {"op": "put"}
                if op.prev_kv:
                    response["prev_kv"] = None if prev is None else kv_dict(op.key, prev)
            elif type(op) is Delete:
                response = {
                    "op": "delete",
                    **keyspace.delete(self._kv, self._leases, op, revision, events),
                }
            else:
                response = {"op": "range", **keyspace.range_(self._kv, op)}  # type: ignore[arg-type]
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
        done = revoke(self._kv, self._leases, self._locks, ids, revision)
        if done.changed:
            self.revision = revision
        outcome = ApplyResult(
            index,
            {"revision": self.revision},
            done.events,
            lock_grants=done.grants,
            lock_waits_cancelled=done.cancelled,
            revoked_leases=list(ids),
        )
        return outcome, len(done.events), sorted(name for name, _ in done.held)

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
        return {"revision": self.revision, **keyspace.range_(self._kv, query)}

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
        """The whole state, canonically encoded (see `raftkv.fsm.snapshot`)."""
        return snapshot.encode(self._tables())

    def snapshot_view(self) -> SnapshotView:
        """The state as of now, frozen by copying references only (about a tenth of
        `snapshot_bytes()`'s time at a million keys): its `pack()` gives exactly the
        bytes `snapshot_bytes()` gives now, and may run later, in another thread,
        while this machine goes on applying."""
        return SnapshotView.of(self._tables())

    def restore(self, data: bytes) -> None:
        """Replace the whole state with a snapshot's. Raises InvalidSnapshot (and
        keeps the current state) if `data` is not a valid snapshot."""
        t = snapshot.decode(data)
        self.applied_index = t.applied_index
        self.revision = t.revision
        self._members = t.members
        self._leases = t.leases
        self._locks = t.locks
        self._sessions = t.sessions
        self._kv = t.kv

    def _tables(self) -> Tables:
        return Tables(
            self.applied_index,
            self.revision,
            self._members,
            self._leases,
            self._locks,
            self._sessions,
            self._kv,
        )
