"""Snapshots are canonical (checkpoint sha256 are compared across members) and
restore exactly."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

import msgpack
import pytest

from raftkv.fsm import (
    Checkpoint,
    InvalidSnapshot,
    LeaseGrant,
    LeaseRevoke,
    LockAcquire,
    Put,
    Session,
    StateMachine,
    Txn,
)
from raftkv.raft.types import ConfChange, ConfChangeType
from tests.unit.fsm.support import Log


def _context(name: str) -> bytes:
    return json.dumps(
        {"name": name, "peer_url": f"{name}:7380", "client_url": f"http://{name}:7379"}
    ).encode()


def _busy_history() -> Log:
    """A log touching every part of the state."""
    log = Log()
    log.machine.apply_conf_change(1, ConfChange(ConfChangeType.ADD_VOTER, 7, _context("n7")))
    log.ok(LeaseGrant(30, 100))
    log.ok(LeaseGrant(60))
    for i in range(50):
        lease = 100 if i % 3 == 0 else 0
        log.ok(Put(b"key/%03d" % ((i * 37) % 50), b"v%d" % i, lease=lease), Session(f"c{i % 4}", i))
    log.ok(LockAcquire("job", 100))
    log.ok(LockAcquire("job", 3))
    log.ok(LockAcquire("other", 3))
    log.ok(Txn([], [Put(b"t1", b"x"), Put(b"t2", b"y")], []), Session("c9", 1))
    return log


def _replay_with_members(log: Log) -> StateMachine:
    machine = StateMachine()
    machine.apply_conf_change(1, ConfChange(ConfChangeType.ADD_VOTER, 7, _context("n7")))
    for data in log.entries:
        machine.apply(machine.applied_index + 1, 1, data)
    return machine


def test_the_same_log_gives_byte_identical_snapshots() -> None:
    log = _busy_history()
    other = _replay_with_members(log)
    data = log.machine.snapshot_bytes()
    assert other.snapshot_bytes() == data
    assert hashlib.sha256(other.snapshot_bytes()).digest() == hashlib.sha256(data).digest()


def test_restore_then_snapshot_gives_the_same_bytes() -> None:
    data = _busy_history().machine.snapshot_bytes()
    restored = StateMachine()
    restored.restore(data)
    assert restored.snapshot_bytes() == data
    assert restored.applied_index == msgpack.unpackb(data)[2]


def _tail(log: Log) -> list[tuple]:
    outcomes = [
        log.apply(LeaseRevoke(100)),
        log.apply(Put(b"key/001", b"new", lease=3), Session("c1", 1000)),
        log.apply(Put(b"key/001", b"new", lease=3), Session("c1", 1000)),
        log.apply(LeaseRevoke(3)),
    ]
    return [
        (o.result, o.events, o.lock_grants, o.lock_waits_cancelled, o.duplicate) for o in outcomes
    ]


def test_a_restored_member_continues_exactly_like_one_that_never_stopped() -> None:
    log = _busy_history()
    restored = StateMachine()
    restored.restore(log.machine.snapshot_bytes())
    assert _tail(Log(restored)) == _tail(log)
    assert restored.snapshot_bytes() == log.machine.snapshot_bytes()


def test_equivalent_histories_with_different_insertion_orders_give_identical_bytes() -> None:
    """Dict and set insertion orders differ between these two members; their
    state does not, and neither may their bytes or the events of a revoke."""
    first, second = Log(), Log()
    first.ok(LeaseGrant(10, 5))
    first.ok(LeaseGrant(20, 6))
    second.ok(LeaseGrant(20, 6))
    second.ok(LeaseGrant(10, 5))
    keys = [b"k%02d" % i for i in range(20)]
    first.ok(Txn([], [Put(k, b"v", lease=5) for k in keys], []))
    second.ok(Txn([], [Put(k, b"v", lease=5) for k in reversed(keys)], []))
    first.machine.apply_conf_change(4, ConfChange(ConfChangeType.ADD_VOTER, 1, _context("a")))
    first.machine.apply_conf_change(5, ConfChange(ConfChangeType.ADD_LEARNER, 2, _context("b")))
    second.machine.apply_conf_change(4, ConfChange(ConfChangeType.ADD_LEARNER, 2, _context("b")))
    second.machine.apply_conf_change(5, ConfChange(ConfChangeType.ADD_VOTER, 1, _context("a")))
    assert first.machine.snapshot_bytes() == second.machine.snapshot_bytes()
    revoked = [log.apply(LeaseRevoke(5)) for log in (first, second)]
    assert revoked[0].events == revoked[1].events
    assert [e.key for e in revoked[0].events] == keys


def test_the_applied_index_is_part_of_the_state() -> None:
    log = Log()
    before = log.machine.snapshot_bytes()
    log.apply(b"")
    assert log.machine.snapshot_bytes() != before
    assert msgpack.unpackb(log.machine.snapshot_bytes())[2] == 1


def test_restore_replaces_everything_the_machine_had() -> None:
    source = Log()
    source.ok(Put(b"only-in-source", b"1"))
    target = _busy_history().machine
    target.restore(source.machine.snapshot_bytes())
    assert target.get(b"key/000") is None
    assert target.get(b"only-in-source") is not None
    assert target.leases() == [] and target.locks() == [] and target.members == {}
    assert target.snapshot_bytes() == source.machine.snapshot_bytes()


def test_a_checkpoint_entry_is_a_point_in_the_log_every_member_agrees_on() -> None:
    log = _busy_history()
    outcome = log.apply(Checkpoint("daily-1"))
    at_checkpoint = log.machine.snapshot_bytes()
    other = _replay_with_members(log)
    assert other.snapshot_bytes() == at_checkpoint
    assert outcome.checkpoint == "daily-1"


def _tamper(data: bytes, section: int, value: object) -> bytes:
    state = msgpack.unpackb(data, raw=False)
    state[section] = value
    return msgpack.packb(state, use_bin_type=True)


def _snapshot_with_keys() -> bytes:
    log = Log()
    log.ok(LeaseGrant(10, 5))
    log.ok(Put(b"a", b"1", lease=5))
    log.ok(Put(b"b", b"2"))
    log.ok(LockAcquire("job", 5))
    return log.machine.snapshot_bytes()


@pytest.mark.parametrize(
    ("make_bad", "message"),
    [
        (lambda good: b"", "not msgpack"),
        (lambda good: b"\xc1garbage", "not msgpack"),
        (lambda good: good[: len(good) // 2], "not msgpack"),
        (lambda good: msgpack.packb({"a": 1}), "not a raftkv"),
        (lambda good: _tamper(good, 0, "etcd"), "not a raftkv"),
        (lambda good: _tamper(good, 1, 2), "unsupported snapshot format version 2"),
        (lambda good: _tamper(good, 3, -1), "header"),
        (
            lambda good: _tamper(good, 9, [[b"b", [b"2", 3, 3, 1, 0]], [b"a", [b"1", 2, 2, 1, 5]]]),
            "increasing",
        ),
        (
            lambda good: _tamper(good, 9, [[b"a", [b"1", 2, 2, 1, 0]], [b"a", [b"1", 2, 2, 1, 0]]]),
            "increasing",
        ),
        (lambda good: _tamper(good, 9, [[b"a", [b"1", 2, 2, 1, 42]]]), "KeyError"),
        (lambda good: _tamper(good, 9, [[b"a", [b"1", 2]]]), "record"),
        (lambda good: _tamper(good, 9, [[5, [b"1", 2, 2, 1, 0]]]), "non-empty bytes"),
        (lambda good: _tamper(good, 9, [[b"", [b"1", 2, 2, 1, 0]]]), "non-empty bytes"),
        (lambda good: _tamper(good, 7, [["job", 42, 4, []]]), "unknown lease"),
        (lambda good: _tamper(good, 7, [["job", 5, 4, [5]]]), "waiters"),
        (lambda good: _tamper(good, 6, [[5, 10], [5, 10]]), "lease row"),
        (lambda good: _tamper(good, 5, [[1, "n", "p", "c", "boss"]]), "member row"),
        (lambda good: _tamper(good, 8, [["c", 1, 5, {}], ["d", 1, 4, {}]]), "order"),
    ],
)
def test_a_bad_snapshot_is_refused_and_the_state_kept(
    make_bad: Callable[[bytes], bytes], message: str
) -> None:
    good = _snapshot_with_keys()
    machine = StateMachine()
    Log(machine).ok(Put(b"mine", b"1"))
    before = machine.snapshot_bytes()
    with pytest.raises(InvalidSnapshot, match=message):
        machine.restore(make_bad(good))
    assert machine.snapshot_bytes() == before


def test_the_good_snapshot_of_the_tamper_tests_restores() -> None:
    good = _snapshot_with_keys()
    machine = StateMachine()
    machine.restore(good)
    assert machine.lease_info(5) == {"id": 5, "ttl": 10, "keys": [b"a"], "locks": ["job"]}


def test_a_moderately_large_store_round_trips() -> None:
    log = Log()
    log.ok(LeaseGrant(10, 1))
    for i in range(20_000):
        log.apply(Put(b"bulk/%06d" % (i * 7919 % 20_000), b"x" * 64, lease=1 if i % 5 == 0 else 0))
    data = log.machine.snapshot_bytes()
    restored = StateMachine()
    restored.restore(data)
    assert restored.snapshot_bytes() == data
    assert restored.stats() == log.machine.stats()
    assert len(restored.lease_info(1)["keys"]) == 4_000  # type: ignore[index]
