"""Property tests: the machine against simple models, and fuzzed entries.

- KV: a plain dict of key -> (value, create, mod, version) plus a revision
  counter, written from etcd's rules, never from the machine's code.
- Locks: dict of name -> holder/token/FIFO list plus a set of live leases.
- Fuzz: arbitrary entry data never raises, and an error changes nothing.
"""

from __future__ import annotations

from typing import Any

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raftkv.fsm import (
    Compare,
    Delete,
    LeaseExpire,
    LeaseGrant,
    LeaseRevoke,
    LockAcquire,
    LockRelease,
    Put,
    Range,
    StateMachine,
    Txn,
)
from tests.unit.fsm.support import Log, state_apart_from_index

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KEYS = [b"a", b"a\x00", b"ab", b"a\xff", b"b", b"ba", b"c", b"\xff", b"\xff\xff"]
keys = st.sampled_from(KEYS)
values = st.binary(max_size=3)


class KVModel:
    def __init__(self) -> None:
        self.data: dict[bytes, tuple[bytes, int, int, int]] = {}
        self.revision = 1

    def in_range(self, start: bytes, end: bytes) -> list[bytes]:
        if not end:
            return [start] if start in self.data else []
        return sorted(k for k in self.data if k >= start and (end == b"\0" or k < end))

    def write(self, key: bytes, value: bytes, revision: int) -> None:
        old = self.data.get(key)
        if old is None:
            self.data[key] = (value, revision, revision, 1)
        else:
            self.data[key] = (value, old[1], revision, old[3] + 1)

    def kvs(self, keys_: list[bytes]) -> list[dict[str, Any]]:
        return [
            {
                "key": k,
                "value": self.data[k][0],
                "create_revision": self.data[k][1],
                "mod_revision": self.data[k][2],
                "version": self.data[k][3],
                "lease": 0,
            }
            for k in keys_
        ]


def _range_bounds() -> st.SearchStrategy[tuple[bytes, bytes]]:
    single = keys.map(lambda k: (k, b""))
    everything_from = keys.map(lambda k: (k, b"\0"))
    interval = st.tuples(keys, keys).filter(lambda p: p[0] < p[1])
    return st.one_of(single, everything_from, interval)


kv_ops = st.one_of(
    st.tuples(st.just("put"), keys, values),
    st.tuples(st.just("delete"), _range_bounds()),
    st.tuples(st.just("range"), _range_bounds(), st.integers(0, 3)),
    st.tuples(st.just("txn"), keys, st.integers(0, 3), keys, values, keys),
)


def _check_kv_step(log: Log, model: KVModel, op: tuple) -> None:
    kind = op[0]
    if kind == "put":
        _, key, value = op
        model.revision += 1
        model.write(key, value, model.revision)
        assert log.ok(Put(key, value)) == {"revision": model.revision}
    elif kind == "delete":
        (start, end) = op[1]
        doomed = model.in_range(start, end)
        for key in doomed:
            del model.data[key]
        if doomed:
            model.revision += 1
        result = log.ok(Delete(start, end))
        assert result == {"revision": model.revision, "deleted": len(doomed)}
    elif kind == "range":
        (start, end), limit = op[1], op[2]
        matching = model.in_range(start, end)
        shown = matching[:limit] if limit else matching
        assert log.ok(Range(start, end, limit)) == {
            "revision": model.revision,
            "kvs": model.kvs(shown),
            "count": len(matching),
            "more": len(shown) < len(matching),
        }
    else:
        _, compare_key, version, put_key, value, delete_key = op
        current = model.data.get(compare_key)
        succeeded = (current[3] if current else 0) == version
        if succeeded:
            model.revision += 1
            model.write(put_key, value, model.revision)
        elif delete_key in model.data:
            model.revision += 1
            del model.data[delete_key]
        txn = Txn(
            [Compare(compare_key, "version", "==", version)],
            [Put(put_key, value)],
            [Delete(delete_key)],
        )
        result = log.ok(txn)
        assert (result["succeeded"], result["revision"]) == (succeeded, model.revision)


@SETTINGS
@given(st.lists(kv_ops, max_size=60))
def test_kv_behaves_like_the_dict_model(ops: list[tuple]) -> None:
    log, model = Log(), KVModel()
    for op in ops:
        _check_kv_step(log, model, op)
    everything = log.ok(Range.all())
    assert everything["kvs"] == model.kvs(sorted(model.data))
    restored = StateMachine()
    restored.restore(log.machine.snapshot_bytes())
    assert restored.snapshot_bytes() == log.machine.snapshot_bytes()


LEASES = [1, 2, 3, 4]
LOCKS = ["x", "y"]
lock_ops = st.one_of(
    st.tuples(st.just("grant"), st.sampled_from(LEASES)),
    st.tuples(st.just("revoke"), st.sampled_from(LEASES)),
    st.tuples(st.just("expire"), st.lists(st.sampled_from(LEASES), min_size=1, max_size=3)),
    st.tuples(st.just("acquire"), st.sampled_from(LOCKS), st.sampled_from(LEASES)),
    st.tuples(st.just("release"), st.sampled_from(LOCKS), st.sampled_from(LEASES)),
)


class LockModel:
    def __init__(self) -> None:
        self.leases: set[int] = set()
        self.locks: dict[str, list[Any]] = {}  # name -> [holder, token, [waiters]]
        self.revision = 1

    def hand_over(self, name: str, revision: int) -> tuple[str, int, int] | None:
        lock = self.locks[name]
        if not lock[2]:
            del self.locks[name]
            return None
        lock[0], lock[1] = lock[2].pop(0), revision
        return (name, lock[0], revision)

    def drop(self, ids: list[int]) -> list[tuple[str, int, int]]:
        """Leases `ids` go: first out of every queue, then their locks pass on."""
        revision = self.revision + 1
        changed = False
        for lock in self.locks.values():
            before = len(lock[2])
            lock[2] = [w for w in lock[2] if w not in ids]
            changed |= len(lock[2]) != before
        grants = []
        for lease in sorted(ids):
            for name in sorted(self.locks):
                if name in self.locks and self.locks[name][0] == lease:
                    changed = True
                    grant = self.hand_over(name, revision)
                    if grant:
                        grants.append(grant)
        self.leases -= set(ids)
        if changed:
            self.revision = revision
        return grants


def _check_lock_step(log: Log, model: LockModel, op: tuple) -> None:
    kind = op[0]
    grants: list[tuple[str, int, int]] = []
    if kind == "grant":
        outcome = log.apply(LeaseGrant(5, op[1]))
        assert ("error" in outcome.result) == (op[1] in model.leases)
        model.leases.add(op[1])
    elif kind == "revoke":
        outcome = log.apply(LeaseRevoke(op[1]))
        assert ("error" in outcome.result) == (op[1] not in model.leases)
        grants = model.drop([op[1]]) if op[1] in model.leases else []
    elif kind == "expire":
        outcome = log.apply(LeaseExpire(op[1]))
        grants = model.drop([i for i in set(op[1]) if i in model.leases])
    elif kind == "acquire":
        _, name, lease = op
        outcome = log.apply(LockAcquire(name, lease))
        if lease not in model.leases:
            assert outcome.result["error"] == "lease_not_found"
        elif name not in model.locks:
            model.revision += 1
            model.locks[name] = [lease, model.revision, []]
            grants = [(name, lease, model.revision)]
            assert outcome.result["token"] == model.revision
        elif model.locks[name][0] == lease:
            assert outcome.result["token"] == model.locks[name][1]
        else:
            waiters = model.locks[name][2]
            if lease not in waiters:
                waiters.append(lease)
                model.revision += 1
            assert outcome.result["position"] == waiters.index(lease) + 1
    else:
        _, name, lease = op
        outcome = log.apply(LockRelease(name, lease))
        lock = model.locks.get(name)
        if lock is None or (lock[0] != lease and lease not in lock[2]):
            assert outcome.result["error"] == "lock_not_held"
        else:
            model.revision += 1
            if lock[0] == lease:
                grant = model.hand_over(name, model.revision)
                grants = [grant] if grant else []
            else:
                lock[2].remove(lease)
    assert [tuple(g) for g in outcome.lock_grants] == grants
    for grant in outcome.lock_grants:  # never a lock for a dead lease (etcd #11408)
        assert grant.lease in model.leases
    assert log.machine.revision == model.revision
    assert log.machine.locks() == [
        {"name": n, "holder": lk[0], "token": lk[1], "waiters": lk[2]}
        for n, lk in sorted(model.locks.items())
    ]


@SETTINGS
@given(st.lists(lock_ops, max_size=60))
def test_locks_behave_like_the_fifo_model(ops: list[tuple]) -> None:
    log, model = Log(), LockModel()
    tokens: dict[str, int] = {}
    for op in ops:
        _check_lock_step(log, model, op)
        for name, lock in model.locks.items():  # fencing tokens never go back
            assert lock[1] >= tokens.get(name, 0)
            tokens[name] = lock[1]


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.binary(max_size=6),
    st.text(max_size=4),
)
structures = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4), max_leaves=12)
entry_shaped = st.builds(
    lambda version, op, session, args: [version, op, session, *args],
    st.sampled_from([1, 1, 1, 2, True, 1.0]),
    st.integers(0, 12),
    st.one_of(st.none(), st.lists(scalars, max_size=3)),
    st.lists(structures, max_size=6),
)


@SETTINGS
@given(
    st.one_of(
        st.binary(max_size=40), entry_shaped.map(lambda e: msgpack.packb(e, use_bin_type=True))
    )
)
def test_arbitrary_entry_data_never_raises_and_errors_change_nothing(data: bytes) -> None:
    log = Log()
    log.ok(LeaseGrant(10, 1))
    log.ok(Put(b"k", b"v", lease=1))
    log.ok(LockAcquire("x", 1))
    state = state_apart_from_index(log.machine)
    outcome = log.apply(data)
    if "error" in outcome.result:  # mostly invalid_command; a valid command may fail too
        assert state_apart_from_index(log.machine) == state
    restored = StateMachine()
    restored.restore(log.machine.snapshot_bytes())
    assert restored.snapshot_bytes() == log.machine.snapshot_bytes()
