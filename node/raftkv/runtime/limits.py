"""Limits an operator of a shared store needs: the backend size quota, caps on
leases, lock waiters and watches, and the nesting depth of JSON bodies.

Admission (quota, leases, lock waiters) is decided by the LEADER, before a
command is proposed, from its applied state and its own flags. Why there and not
in the state machine's apply path: the flags are per-node configuration, not
replicated state; members configured differently that each decided in apply
would apply different things and diverge (different snapshots, checkpoints that
no longer match). A decision before proposing needs no agreement: a refused
command never enters the log, so every member applies the same log, and a
refusal costs no WAL bytes (which matters most when the disk is filling up). The
quota counts what the leader admitted but has not applied yet (the entry bytes:
more than they add, for overwrites), so a burst of writes admitted at once cannot
overshoot it: the state passes the quota by one write at most. The caps on leases
and lock waiters read the applied state only: concurrent grants or acquisitions
admitted in the same instant may pass them by that many.

Lease expiry, revokes, deletes, releases, reads and checkpoints are never
refused: they are how a full store is emptied.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from raftkv.fsm import LeaseGrant, LockAcquire, Put, StateMachine, Txn, decode
from raftkv.fsm.commands import InvalidCommand, grows_state, op_of

# The quota's error, worded like etcd's ("etcdserver: mvcc: database space exceeded")
# so operators searching for it find the same remedy: delete data (or raise the quota).
QUOTA_MESSAGE = (
    "database space exceeded: the state is {size} bytes (+{pending} being "
    "written), --quota-backend-bytes is {quota}; delete keys or revoke "
    "leases (reads, deletes and checkpoints still work) or raise the quota"
)

_GUARDED_OPS = frozenset((Put.OP, Txn.OP, LeaseGrant.OP, LockAcquire.OP))


class LimitExceeded(Exception):
    """A request refused by a limit: answered `status` + `{"error": code, ...}`.
    `limit` names the limit (the label of raftkv_limit_refusals_total)."""

    def __init__(self, status: int, code: str, limit: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.limit = limit
        self.message = message


@dataclass(frozen=True, slots=True)
class AdmissionLimits:
    """The leader's admission limits; 0 turns a limit off."""

    quota_backend_bytes: int = 0
    max_leases: int = 0
    max_lock_waiters: int = 0


def over_quota(limits: AdmissionLimits, fsm: StateMachine, unapplied_bytes: int = 0) -> bool:
    """The alarm (with `unapplied_bytes` 0): the state has reached the quota.
    Admission adds the bytes of the writes it let through that are not applied yet."""
    quota = limits.quota_backend_bytes
    return bool(quota) and fsm.size_bytes + unapplied_bytes >= quota


def admission_refusal(
    limits: AdmissionLimits, fsm: StateMachine, data: bytes, unapplied_bytes: int = 0
) -> LimitExceeded | None:
    """Why the entry `data` must not be proposed now, or None to propose it.
    `unapplied_bytes`: client proposals admitted but not applied yet. Cheap for the
    common case: a put costs a few comparisons (no decoding)."""
    op = op_of(data)
    if op not in _GUARDED_OPS:
        return None
    if over_quota(limits, fsm, unapplied_bytes) and (op != Txn.OP or _txn_grows(data)):
        return LimitExceeded(
            507,
            "quota_exceeded",
            "quota",
            QUOTA_MESSAGE.format(
                size=fsm.size_bytes, pending=unapplied_bytes, quota=limits.quota_backend_bytes
            ),
        )
    if op == LeaseGrant.OP and limits.max_leases and fsm.lease_count() >= limits.max_leases:
        return LimitExceeded(
            429,
            "too_many_leases",
            "leases",
            (
                f"the cluster holds {fsm.lease_count()} leases, --max-leases is "
                f"{limits.max_leases}: revoke leases that are no longer used"
            ),
        )
    if op == LockAcquire.OP and limits.max_lock_waiters:
        command = _decoded(data)
        if type(command) is LockAcquire:
            waiting = fsm.lock_waiter_count(command.name)
            # Only a new waiter is refused: the holder and queued leases may ask again.
            if (
                waiting >= limits.max_lock_waiters
                and fsm.lock_status(command.name, command.lease) is None
            ):
                return LimitExceeded(
                    429,
                    "too_many_lock_waiters",
                    "lock_waiters",
                    (
                        f"lock {command.name!r} already has {waiting} waiters, "
                        f"--max-lock-waiters is {limits.max_lock_waiters}"
                    ),
                )
    return None


def _decoded(data: bytes) -> Any:
    try:
        return decode(data)[0]
    except InvalidCommand:
        return None  # the state machine answers it with invalid_command


def _txn_grows(data: bytes) -> bool:
    command = _decoded(data)
    return command is None or grows_state(command)


def parse_json(raw: bytes, max_depth: int) -> Any:
    """`json.loads(raw)` refusing documents nested deeper than `max_depth`
    (arrays and objects) with a LimitExceeded 400 `json_too_deep`: the stdlib
    parser recurses, and a body nested 100k deep would otherwise end in a
    RecursionError. Raises ValueError / UnicodeDecodeError for invalid JSON."""
    too_deep = LimitExceeded(
        400,
        "json_too_deep",
        "json_depth",
        (f"the JSON body is nested deeper than {max_depth} levels (--max-json-depth)"),
    )
    # Cheap pre-check: fewer brackets than the bound cannot nest deeper than it.
    shallow = raw.count(b"[") + raw.count(b"{") <= max_depth
    try:
        value = json.loads(raw)
    except RecursionError:
        raise too_deep from None
    if not shallow and json_depth(value, max_depth) > max_depth:
        raise too_deep
    return value


def json_depth(value: Any, stop_after: int) -> int:
    """Nesting depth of parsed JSON (a scalar is 0, `[]` is 1), without recursion;
    stops counting once past `stop_after`."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        depth += 1
        if depth > deepest:
            deepest = depth
            if deepest > stop_after:
                return deepest
        stack.extend((child, depth) for child in children if isinstance(child, dict | list))
    return deepest
