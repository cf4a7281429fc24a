"""Key-value operations of the state machine on its tables (the kv store and the
lease table that indexes keys by lease): writes, deletes, ranges and compares,
each recording the watch events it causes. Revisions are the caller's to move."""

from __future__ import annotations

from typing import Any

from raftkv.fsm.commands import Compare, Delete, Range
from raftkv.fsm.kv import KVStore
from raftkv.fsm.leases import LeaseTable
from raftkv.fsm.results import EVENT_DELETE, EVENT_PUT, Record, WatchEvent, kv_dict

_RECORD_FIELD = {"version": 3, "create_revision": 1, "mod_revision": 2, "lease": 4}


def write(
    kv: KVStore,
    leases: LeaseTable,
    key: bytes,
    value: bytes,
    lease: int,
    revision: int,
    events: list[WatchEvent],
) -> Record | None:
    prev = kv.put(key, value, lease, revision)
    if prev is None:
        events.append(WatchEvent(EVENT_PUT, key, value, revision, revision, 1, lease))
        if lease:
            leases.attach(lease, key)
    else:
        events.append(WatchEvent(EVENT_PUT, key, value, prev[1], revision, prev[3] + 1, lease))
        old_lease = prev[4]
        if old_lease != lease:
            if old_lease:
                leases.detach(old_lease, key)
            if lease:
                leases.attach(lease, key)
    return prev


def remove(
    kv: KVStore, leases: LeaseTable, key: bytes, revision: int, events: list[WatchEvent]
) -> Record | None:
    prev = kv.delete(key)
    if prev is not None:
        if prev[4]:
            leases.detach(prev[4], key)
        events.append(WatchEvent(EVENT_DELETE, key, b"", 0, revision, 0, 0))
    return prev


def delete(
    kv: KVStore, leases: LeaseTable, op: Delete, revision: int, events: list[WatchEvent]
) -> dict[str, Any]:
    keys = kv.keys(op.key, op.range_end)
    prev_kvs = []
    for key in keys:
        prev = remove(kv, leases, key, revision, events)
        if op.prev_kv:
            assert prev is not None
            prev_kvs.append(kv_dict(key, prev))
    out: dict[str, Any] = {"deleted": len(keys)}
    if op.prev_kv:
        out["prev_kvs"] = prev_kvs
    return out


def range_(kv: KVStore, op: Range) -> dict[str, Any]:
    count = kv.count(op.key, op.range_end)
    if op.count_only:
        return {"kvs": [], "count": count, "more": False}
    keys = kv.keys(op.key, op.range_end, op.limit)
    get = kv.get
    kvs = [kv_dict(key, get(key), op.keys_only) for key in keys]  # type: ignore[arg-type]
    return {"kvs": kvs, "count": count, "more": len(kvs) < count}


def compare(kv: KVStore, c: Compare) -> bool:
    if not c.range_end:
        return compare_holds(c, kv.get(c.key))
    keys = kv.keys(c.key, c.range_end)
    if not keys:
        return compare_holds(c, None)
    return all(compare_holds(c, kv.get(key)) for key in keys)


def compare_holds(c: Compare, record: Record | None) -> bool:
    target = c.target
    actual: bytes | int | bool
    if target == "value":
        if record is None:  # etcd: a value compare on a missing key is false
            return False
        actual = record[0]
    elif target == "exists":
        actual = record is not None
    else:
        actual = 0 if record is None else record[_RECORD_FIELD[target]]
    operand = c.operand
    op = c.op
    if op == "==":
        return actual == operand
    if op == "!=":
        return actual != operand
    if op == "<":
        return actual < operand  # type: ignore[operator]
    return actual > operand  # type: ignore[operator]
