"""The state machine's own bounds: the session table keeps only small results
(bigger ones as a marker that still says "applied"), and the state knows its size
(what the backend quota limits), the same on every member."""

from __future__ import annotations

import msgpack
import pytest

from raftkv.fsm import (
    Checkpoint,
    Delete,
    LeaseGrant,
    LeaseRevoke,
    LockAcquire,
    LockRelease,
    Put,
    Range,
    Session,
    StateMachine,
    Txn,
    encode,
)
from raftkv.fsm.commands import LeaseExpire, grows_state, op_of
from raftkv.fsm.sessions import RESULT_LIMIT, RESULT_NOT_RETAINED, bounded_size
from tests.unit.fsm.support import Log, kv_of, replay

# The case, scaled down: ranges over every key, each answer ~0.5 MB.
KEYS = 66
VALUE = b"v" * 1000


def _store_of_keys(log: Log) -> None:
    for i in range(KEYS):
        log.ok(Put(b"key-%03d" % i, VALUE))


def _big_txn(tag: bytes) -> Txn:
    return Txn([], [Put(b"marker-" + tag, b"x")] + [Range.all()] * 8, [])


def test_a_big_result_is_answered_once_then_kept_as_an_applied_marker() -> None:
    log = Log()
    _store_of_keys(log)
    first = log.apply(_big_txn(b"1"), Session("c1", 1))
    assert len(first.result["responses"]) == 9  # the first answer is whole
    assert len(first.result["responses"][1]["kvs"]) == KEYS + 1  # and the txn's own put
    log.ok(Put(b"other", b"x"))  # the world moves on
    retry = log.apply(_big_txn(b"1"), Session("c1", 1))
    assert retry.duplicate is True and retry.events == ()
    assert retry.result["error"] == RESULT_NOT_RETAINED
    assert retry.result["applied"] is True
    assert retry.result["revision"] == first.result["revision"]
    assert retry.result["index"] == first.index
    assert retry.result["succeeded"] is True
    assert str(first.result["revision"]) in retry.result["message"]
    assert kv_of(log.machine, b"marker-1") is not None
    assert kv_of(log.machine, b"marker-1")[3] == 1  # type: ignore[index]  # applied once
    # And never again, whatever happens after.
    assert log.apply(_big_txn(b"1"), Session("c1", 1)).result == retry.result


def test_small_results_are_still_kept_whole() -> None:
    log = Log()
    log.ok(Put(b"k", b"v" * 100))
    first = log.ok(Put(b"k", b"w", prev_kv=True), Session("c1", 1))
    assert log.ok(Put(b"k", b"w", prev_kv=True), Session("c1", 1)) == first
    grant = log.ok(LeaseGrant(30), Session("c1", 2))
    assert log.ok(LeaseGrant(30), Session("c1", 2)) == grant
    lock = log.ok(LockAcquire("job", grant["id"]), Session("c1", 3))
    assert log.ok(LockAcquire("job", grant["id"]), Session("c1", 3)) == lock


def test_a_put_with_a_big_prev_kv_is_kept_as_a_marker_without_succeeded() -> None:
    log = Log()
    log.ok(Put(b"k", b"v" * (2 * RESULT_LIMIT)))
    first = log.ok(Put(b"k", b"w", prev_kv=True), Session("c1", 1))
    assert first["prev_kv"]["value"] == b"v" * (2 * RESULT_LIMIT)
    retry = log.apply(Put(b"k", b"w", prev_kv=True), Session("c1", 1)).result
    assert retry["error"] == RESULT_NOT_RETAINED and retry["applied"] is True
    assert "succeeded" not in retry
    assert kv_of(log.machine, b"k") == (b"w", 2, 3, 2, 0)


def test_the_session_table_no_longer_grows_with_the_answers() -> None:
    log = Log()
    _store_of_keys(log)
    before = len(log.machine.snapshot_bytes())
    for i in range(10):
        outcome = log.apply(_big_txn(b"%d" % i), Session(f"client-{i}", 1))
        assert bounded_size(outcome.result, 1 << 40) > 100 * RESULT_LIMIT
    after = len(log.machine.snapshot_bytes())
    # Ten sessions, each a marker of a few hundred bytes (and the ten marker keys):
    # the answers (~5 MB in all) are not in the state.
    assert after - before < 10 * (RESULT_LIMIT // 2)


def test_markers_are_the_same_on_every_member_and_survive_a_snapshot() -> None:
    log = Log()
    _store_of_keys(log)
    log.apply(_big_txn(b"a"), Session("c1", 1))
    log.ok(Put(b"small", b"s"), Session("c2", 1))
    other = replay(log.entries)
    data = log.machine.snapshot_bytes()
    assert other.snapshot_bytes() == data
    restored = StateMachine()
    restored.restore(data)
    assert restored.snapshot_bytes() == data
    assert restored.size_bytes == log.machine.size_bytes
    index = restored.applied_index + 1
    retry = restored.apply(index, 1, encode(_big_txn(b"a"), Session("c1", 1)))
    assert retry.result["error"] == RESULT_NOT_RETAINED and retry.duplicate


def test_bounded_size_stops_counting_past_the_limit() -> None:
    huge = {"kvs": [{"key": b"k", "value": b"v" * 1000}] * 10_000}
    assert bounded_size(huge, 1 << 40) > 10_000_000
    partial = bounded_size(huge, 5000)
    assert 5000 < partial < 5000 + 1100  # stopped within one item of the limit
    assert bounded_size({"revision": 7}, 100) == bounded_size({"revision": 8}, 100)


def _mixed_history() -> Log:
    log = Log()
    lease = log.ok(LeaseGrant(30))["id"]
    for i in range(200):
        log.ok(
            Put(b"k%04d" % i, b"x" * (i % 50), lease=lease if i % 7 == 0 else 0),
            Session(f"c{i % 13}", i),
        )
    for i in range(0, 200, 3):
        log.ok(Put(b"k%04d" % i, b"longer value " * 5))
    log.ok(Delete(b"k0100", b"k0150"))
    other = log.ok(LeaseGrant(30))["id"]
    log.ok(LockAcquire("a-lock", lease))
    log.ok(LockAcquire("a-lock", other))
    log.ok(Checkpoint("c1"))
    return log


def test_size_bytes_follows_the_snapshot_size() -> None:
    log = _mixed_history()
    machine = log.machine
    snapshot = len(machine.snapshot_bytes())
    # An estimate that errs on the big side (every int counts as 9 bytes, where a
    # young store's small revisions take 1-3), close enough for a quota.
    assert snapshot - 200 <= machine.size_bytes <= snapshot * 3 // 2
    restored = StateMachine()
    restored.restore(machine.snapshot_bytes())
    assert restored.size_bytes == machine.size_bytes


def test_size_bytes_goes_back_down_when_state_goes_away() -> None:
    log = Log()
    empty = log.machine.size_bytes
    lease = log.ok(LeaseGrant(30))["id"]
    other = log.ok(LeaseGrant(30))["id"]
    log.ok(Put(b"big", b"v" * 100_000, lease=lease))
    log.ok(LockAcquire("name", lease))
    log.ok(LockAcquire("name", other))
    assert log.machine.size_bytes > empty + 100_000
    log.ok(LockRelease("name", other))
    log.ok(LockRelease("name", lease))
    log.apply(LeaseExpire([lease, other]))
    assert log.machine.size_bytes == empty
    log.ok(Put(b"k", b"v" * 1000))
    log.ok(Put(b"k", b"v"))  # an overwrite with a smaller value shrinks it
    assert log.machine.size_bytes < empty + 100
    log.ok(Delete(b"k"))
    assert log.machine.size_bytes == empty


@pytest.mark.parametrize(
    "command",
    [
        Put(b"k", b"v"),
        Delete(b"k"),
        Range(b"k"),
        Txn([], [], []),
        LeaseGrant(5),
        LeaseRevoke(3),
        LeaseExpire([3]),
        LockAcquire("n", 1),
        LockRelease("n", 1),
        Checkpoint("c"),
    ],
)
def test_op_of_reads_the_op_without_decoding(command: object) -> None:
    assert op_of(encode(command)) == command.OP  # type: ignore[arg-type, attr-defined]
    assert op_of(encode(command, Session("c" * 200, 2**64 - 1))) == command.OP  # type: ignore[arg-type, attr-defined]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x93",
        b"\x93\x01\x63",
        b"\x93\x02\x01",
        msgpack.packb({"a": 1}),
        msgpack.packb([1, "put", None]),
    ],
)
def test_op_of_anything_else_is_zero(data: bytes) -> None:
    assert op_of(data) == 0


def test_which_commands_grow_the_state() -> None:
    assert grows_state(Put(b"k", b"v"))
    assert grows_state(LeaseGrant(5))
    assert grows_state(LockAcquire("n", 1))
    assert grows_state(Txn([], [Range(b"k")], [Put(b"k", b"v")]))  # either branch
    for command in (
        Delete(b"k"),
        Range(b"k"),
        LeaseRevoke(3),
        LeaseExpire([3]),
        LockRelease("n", 1),
        Checkpoint("c"),
        Txn([], [Range(b"k"), Delete(b"a")], [Delete(b"k")]),
    ):
        assert not grows_state(command), command


def test_the_one_walk_copy_sizes_like_bounded_size() -> None:
    """Recorded results are sized while copied, loaded ones by bounded_size: the two
    must agree, or a restored member would see another state size than the others."""
    from raftkv.fsm.sessions import _canonical_within, canonical

    log = _mixed_history()
    samples: list[object] = [
        {"revision": 3},
        {"revision": 3, "prev_kv": None},
        {"b": [1, (2, b"x")], "a": {"z": "text", "y": True}},
        log.apply(Range.all()).result,
        log.apply(_big_txn(b"x")).result,
    ]
    for value in samples:
        copy, size = _canonical_within(value, 1 << 40)
        assert copy == canonical(value)
        assert size == bounded_size(value, 1 << 40)
