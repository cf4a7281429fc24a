"""Transactions: the compare matrix, branches, atomicity, one revision."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from raftkv.fsm import Compare, Delete, InvalidCommand, LeaseGrant, Put, Range, Txn
from tests.unit.fsm.support import Log, kv_of, state_apart_from_index

LEASE = 77


@pytest.fixture
def log() -> Log:
    """Key b"k": value b"m", create_revision 2, mod_revision 3, version 2, lease 77."""
    log = Log()
    log.ok(LeaseGrant(60, LEASE))
    log.ok(Put(b"k", b"a"))  # rev 2
    log.ok(Put(b"k", b"m", lease=LEASE))  # rev 3
    assert log.machine.revision == 3
    return log


# (target, operand below the actual value, equal, above)
OPERANDS = [
    ("value", b"l", b"m", b"n"),
    ("version", 1, 2, 3),
    ("create_revision", 1, 2, 3),
    ("mod_revision", 2, 3, 4),
    ("lease", LEASE - 1, LEASE, LEASE + 1),
]
# op -> expected outcome for operand (below, equal, above) the actual value;
# the compare reads "actual <op> operand".
EXPECTED = {
    "==": (False, True, False),
    "!=": (True, False, True),
    "<": (False, False, True),
    ">": (True, False, False),
}
MATRIX = [
    (target, op, operand, expected)
    for target, *operands in OPERANDS
    for op, outcomes in EXPECTED.items()
    for operand, expected in zip(operands, outcomes, strict=True)
]


def _succeeds(log: Log, *compares: Compare) -> bool:
    result = log.ok(Txn(list(compares), [], []))
    return bool(result["succeeded"])


@pytest.mark.parametrize(("target", "op", "operand", "expected"), MATRIX)
def test_compare_matrix_on_an_existing_key(
    log: Log, target: str, op: str, operand: object, expected: bool
) -> None:
    assert _succeeds(log, Compare(b"k", target, op, operand)) is expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("target", "op", "operand", "expected"),
    [
        ("version", "==", 0, True),  # the etcd idiom for "does not exist"
        ("create_revision", "==", 0, True),
        ("mod_revision", "<", 1, True),
        ("lease", "==", 0, True),
        ("version", ">", 0, False),
        ("value", "==", b"", False),  # etcd: a value compare on a missing key fails
        ("value", "!=", b"x", False),
        ("value", ">", b"", False),
        ("exists", "==", False, True),
        ("exists", "!=", False, False),
    ],
)
def test_compare_on_a_missing_key(
    log: Log, target: str, op: str, operand: object, expected: bool
) -> None:
    assert _succeeds(log, Compare(b"nope", target, op, operand)) is expected  # type: ignore[arg-type]


def test_exists_compare_on_an_existing_key(log: Log) -> None:
    assert _succeeds(log, Compare(b"k", "exists", "==", True)) is True
    assert _succeeds(log, Compare(b"k", "exists", "!=", True)) is False


def test_every_compare_must_hold(log: Log) -> None:
    holds = Compare(b"k", "version", "==", 2)
    fails = Compare(b"k", "value", "==", b"other")
    assert _succeeds(log, holds, holds) is True
    assert _succeeds(log, holds, fails) is False
    assert _succeeds(log) is True  # no compares: success, like etcd


def test_a_compare_over_a_range_holds_only_if_it_holds_for_every_key(log: Log) -> None:
    log.ok(Put(b"r/1", b"x"))
    log.ok(Put(b"r/2", b"x"))
    log.ok(Put(b"r/2", b"x"))  # version 2
    assert _succeeds(log, Compare(b"r/", "version", ">", 0, b"r0")) is True
    assert _succeeds(log, Compare(b"r/", "version", "==", 1, b"r0")) is False
    assert _succeeds(log, Compare(b"r/", "value", "==", b"x", b"r0")) is True
    # an empty range: numeric targets read 0, value compares fail
    assert _succeeds(log, Compare(b"s/", "version", "==", 0, b"s0")) is True
    assert _succeeds(log, Compare(b"s/", "value", "==", b"", b"s0")) is False


def test_success_branch_writes_atomically_at_one_revision(log: Log) -> None:
    outcome = log.apply(
        Txn(
            [Compare(b"k", "value", "==", b"m")],
            [Put(b"x", b"1"), Put(b"y", b"2"), Delete(b"k"), Range.prefix(b"")],
            [Put(b"failed", b"1")],
        )
    )
    result = outcome.result
    assert result["succeeded"] is True
    assert result["revision"] == 4
    assert [r["op"] for r in result["responses"]] == ["put", "put", "delete", "range"]
    assert result["responses"][2]["deleted"] == 1
    # the range inside the txn sees the txn's own writes
    assert [kv["key"] for kv in result["responses"][3]["kvs"]] == [b"x", b"y"]
    assert kv_of(log.machine, b"x") == (b"1", 4, 4, 1, 0)
    assert kv_of(log.machine, b"y") == (b"2", 4, 4, 1, 0)
    assert kv_of(log.machine, b"failed") is None
    assert [(e.type, e.key, e.mod_revision) for e in outcome.events] == [
        ("put", b"x", 4),
        ("put", b"y", 4),
        ("delete", b"k", 4),
    ]


def test_failure_branch_runs_when_a_compare_fails(log: Log) -> None:
    result = log.ok(
        Txn(
            [Compare(b"k", "version", "==", 1)],
            [Put(b"won", b"1")],
            [Put(b"lost", b"1", prev_kv=True), Range(b"k")],
        )
    )
    assert result["succeeded"] is False
    assert result["responses"][0] == {"op": "put", "prev_kv": None}
    assert result["responses"][1]["kvs"][0]["value"] == b"m"
    assert kv_of(log.machine, b"won") is None
    assert kv_of(log.machine, b"lost") == (b"1", 4, 4, 1, 0)


def test_a_txn_that_writes_nothing_keeps_the_revision(log: Log) -> None:
    result = log.ok(Txn([], [Range(b"k"), Delete(b"missing")], []))
    assert result["revision"] == 3
    assert log.machine.revision == 3


def test_a_txn_with_a_missing_lease_applies_nothing(log: Log) -> None:
    before = state_apart_from_index(log.machine)
    outcome = log.apply(Txn([], [Put(b"a", b"1"), Put(b"b", b"2", lease=999)], []))
    assert outcome.result["error"] == "lease_not_found"
    assert outcome.events == ()
    assert kv_of(log.machine, b"a") is None
    assert log.machine.revision == 3
    assert state_apart_from_index(log.machine) == before


def test_compare_and_swap_conflict_detection(log: Log) -> None:
    """The classic optimistic update: only one of two writers holding the same
    mod_revision wins."""
    seen = log.machine.get(b"k")
    assert seen is not None
    cas = Txn([Compare(b"k", "mod_revision", "==", seen.mod_revision)], [Put(b"k", b"w")], [])
    assert log.ok(cas)["succeeded"] is True
    assert log.ok(cas)["succeeded"] is False
    assert kv_of(log.machine, b"k") == (b"w", 2, 4, 3, 0)


@pytest.mark.parametrize(
    ("ops", "message"),
    [
        ([Put(b"a", b"1"), Put(b"a", b"2")], "twice"),
        ([Put(b"a", b"1"), Delete(b"a")], "deletes"),
        ([Delete.prefix(b""), Put(b"z", b"1")], "deletes"),
        ([Put(b"b", b"1"), Delete(b"a", b"c")], "deletes"),
    ],
)
def test_a_branch_may_not_write_a_key_twice(ops: list, message: str) -> None:
    with pytest.raises(InvalidCommand, match=message):
        Txn([], ops, [])
    with pytest.raises(InvalidCommand, match=message):
        Txn([], [], ops)


def test_the_two_branches_may_write_the_same_key() -> None:
    Txn([], [Put(b"a", b"1")], [Put(b"a", b"2")])  # only one branch runs


@pytest.mark.parametrize(
    "build",
    [
        lambda: Compare(b"k", "colour", "==", 1),
        lambda: Compare(b"k", "version", "<=", 1),
        lambda: Compare(b"k", "version", "==", b"1"),
        lambda: Compare(b"k", "value", "==", 1),
        lambda: Compare(b"k", "exists", "<", True),
        lambda: Compare(b"k", "exists", "==", 1),
        lambda: Compare(b"", "version", "==", 1),
        lambda: Txn([], [LeaseGrant(5)], []),  # type: ignore[list-item]
    ],
)
def test_malformed_compares_and_ops_are_rejected(build: Callable[[], object]) -> None:
    with pytest.raises(InvalidCommand):
        build()
