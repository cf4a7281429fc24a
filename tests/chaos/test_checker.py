"""The linearizability checker on hand-written histories, and the set and lock checkers."""

from __future__ import annotations

import random
import time
from typing import Any

import pytest

from tests.chaos.checker.linearizable import check
from tests.chaos.checker.locks import check_locks
from tests.chaos.checker.register import RegisterModel
from tests.chaos.checker.sets import check_set
from tests.chaos.history import Event, HistoryError, Operation, Recorder, pair

MODEL = RegisterModel()


class H:
    """A tiny history builder: times in abstract units, `ret=None` = indeterminate."""

    def __init__(self) -> None:
        self.ops: list[Operation] = []

    def add(
        self, f: str, key: str, inp: Any, out: Any, call: int, ret: int | None, status: str = "ok"
    ) -> Operation:
        if ret is None and status == "ok":
            status = "info"
        op = Operation(
            len(self.ops),
            len(self.ops),
            f,
            key,
            inp,
            None if status == "info" else out,
            call,
            ret,
            status,  # type: ignore[arg-type]
        )
        self.ops.append(op)
        return op

    def write(
        self, v: int, call: int, ret: int | None, key: str = "x", status: str = "ok"
    ) -> Operation:
        return self.add("write", key, v, None, call, ret, status)

    def read(self, v: int | None, call: int, ret: int, key: str = "x") -> Operation:
        return self.add("read", key, None, v, call, ret)

    def cas(
        self,
        expected: int | None,
        new: int,
        succeeded: bool | None,
        call: int,
        ret: int | None,
        current: int | None = None,
        key: str = "x",
    ) -> Operation:
        out = (
            None
            if succeeded is None
            else ({"succeeded": True} if succeeded else {"succeeded": False, "current": current})
        )
        return self.add("cas", key, [expected, new], out, call, ret)

    def check(self, timeout: float = 10.0) -> Any:
        return check(MODEL, self.ops, timeout)


# --- linearizable histories -----------------------------------------------------------


def test_sequential_writes_and_reads_are_linearizable() -> None:
    h = H()
    h.read(None, 0, 1)
    h.write(1, 2, 3)
    h.read(1, 4, 5)
    h.cas(1, 2, True, 6, 7)
    h.cas(1, 3, False, 8, 9, current=2)
    h.read(2, 10, 11)
    assert h.check().verdict == "ok"


@pytest.mark.parametrize("seen", [1, 2])
def test_a_read_concurrent_with_a_write_may_see_either_value(seen: int) -> None:
    h = H()
    h.write(1, 0, 1)
    h.write(2, 10, 20)
    h.read(seen, 12, 18)
    h.read(2, 21, 22)
    assert h.check().verdict == "ok"


def test_concurrent_operations_may_linearize_in_the_opposite_order_of_their_calls() -> None:
    h = H()
    h.write(1, 0, 100)
    h.write(2, 1, 100)
    h.read(1, 101, 102)  # write 2 first, then write 1
    assert h.check().verdict == "ok"


def test_an_indeterminate_write_must_be_assumed_applied_to_explain_a_later_read() -> None:
    h = H()
    h.write(1, 0, 10)
    h.write(2, 20, None)  # timed out
    h.read(2, 100, 110)
    h.read(2, 120, 130)
    assert h.check().verdict == "ok"


def test_an_indeterminate_write_may_never_have_happened() -> None:
    h = H()
    h.write(1, 0, 10)
    h.write(2, 20, None)
    h.read(1, 100, 110)
    h.read(1, 200, 210)
    result = h.check()
    assert result.verdict == "ok"
    assert result.parts[0].dropped == 1  # never observed: pruned before the search


def test_an_indeterminate_write_may_apply_long_after_it_was_invoked() -> None:
    h = H()
    h.write(1, 0, 10)
    h.write(2, 20, None)
    h.read(1, 100, 110)
    h.read(2, 200, 210)  # it took effect between the reads
    assert h.check().verdict == "ok"


def test_an_indeterminate_cas_applies_only_if_the_register_held_its_expected_value() -> None:
    h = H()
    h.write(1, 0, 10)
    h.cas(1, 5, None, 20, None)
    h.read(5, 30, 40)
    assert h.check().verdict == "ok"
    h2 = H()
    h2.write(1, 0, 10)
    h2.cas(7, 5, None, 20, None)  # 7 was never there: this cas can never have applied
    h2.read(5, 30, 40)
    assert h2.check().verdict == "violation"


def test_a_failed_operation_never_happened() -> None:
    h = H()
    h.write(1, 0, 10)
    h.write(2, 20, 30, status="fail")
    h.read(1, 40, 50)
    assert h.check().verdict == "ok"


def test_incomplete_reads_are_ignored() -> None:
    h = H()
    h.write(1, 0, 10)
    h.add("read", "x", None, None, 20, None, "info")
    h.read(1, 40, 50)
    assert h.check().verdict == "ok"


# --- violations -----------------------------------------------------------------------


def test_stale_read_is_a_violation_with_the_prefix_and_the_stuck_read() -> None:
    h = H()
    h.write(1, 0, 10)
    h.write(2, 20, 30)
    stale = h.read(1, 40, 50)
    result = h.check()
    assert result.verdict == "violation"
    part = result.violations[0]
    assert part.stuck is stale
    assert [op.input for op in part.prefix] == [1, 2]
    assert part.prefix_state == 2
    text = result.report(MODEL)
    assert "NOT linearizable" in text and "cannot linearize" in text and "read" in text


def test_lost_write_is_a_violation() -> None:
    h = H()
    h.write(1, 0, 10)
    h.read(None, 20, 30)
    assert h.check().verdict == "violation"


def test_read_of_a_never_written_value_is_a_violation() -> None:
    h = H()
    h.write(1, 0, 10)
    h.read(7, 5, 30)
    assert h.check().verdict == "violation"


def test_a_read_cannot_see_a_write_invoked_after_it_returned() -> None:
    h = H()
    h.read(2, 0, 10)
    h.write(2, 20, None)  # even indeterminate: it cannot act before its call
    assert h.check().verdict == "violation"


def test_a_cas_that_succeeded_twice_is_a_violation() -> None:
    h = H()
    h.write(1, 0, 10)
    h.cas(1, 2, True, 20, 40)
    h.cas(1, 3, True, 21, 41)
    assert h.check().verdict == "violation"


def test_a_failed_cas_must_have_seen_its_current_value() -> None:
    h = H()
    h.write(1, 0, 10)
    h.cas(5, 6, False, 20, 30, current=3)  # 3 was never written
    assert h.check().verdict == "violation"
    h2 = H()
    h2.write(1, 0, 10)
    h2.cas(1, 6, False, 20, 30, current=1)  # "failed" although the register held 1
    assert h2.check().verdict == "violation"


def test_an_applied_indeterminate_write_stays_applied() -> None:
    h = H()
    h.write(1, 0, 10)
    h.write(2, 20, None)
    h.read(2, 100, 110)
    h.read(1, 120, 130)  # back to 1 with nobody writing it
    assert h.check().verdict == "violation"


def test_keys_are_checked_independently_and_only_the_bad_key_is_reported() -> None:
    h = H()
    h.write(1, 0, 10, key="a")
    h.read(1, 20, 30, key="a")
    h.write(1, 0, 10, key="b")
    h.read(None, 20, 30, key="b")
    result = h.check()
    assert result.verdict == "violation"
    assert [p.name for p in result.violations] == ["key b"]
    assert {p.name: p.verdict for p in result.parts}["key a"] == "ok"


def _impossible_after_concurrent_writes(writers: int) -> H:
    # Many concurrent writes, then reads in an order no permutation satisfies (3 is
    # written once, so it cannot come back after 1): the search must exhaust every
    # subset of the writes to prove it.
    h = H()
    for v in range(1, writers + 1):
        h.write(v, 0, 1000)
    for i, v in enumerate([3, 1, 3]):
        h.read(v, 1001 + 10 * i, 1005 + 10 * i)
    return h


def test_running_out_of_time_answers_unknown_never_ok() -> None:
    started = time.monotonic()
    result = _impossible_after_concurrent_writes(40).check(timeout=0.5)
    assert result.verdict == "unknown"
    assert time.monotonic() - started < 5
    assert "UNKNOWN" in result.report(MODEL)
    assert _impossible_after_concurrent_writes(8).check(timeout=30).verdict == "violation"


# --- performance ----------------------------------------------------------------------


def test_thousands_of_concurrent_operations_per_key_check_quickly() -> None:
    from tests.chaos.gen import GenOptions, sequential_history

    ops = sequential_history(
        random.Random(7),
        GenOptions(ops=6000, keys=2, spread_ns=8_000, gap_ns=1_000, info_rate=0.03),
    )
    started = time.monotonic()
    result = check(MODEL, ops, timeout=60)
    elapsed = time.monotonic() - started
    assert result.verdict == "ok"
    assert min(p.operations for p in result.parts) > 2500
    assert elapsed < 30, f"checking {len(ops)} ops took {elapsed:.1f}s"


# --- history plumbing -----------------------------------------------------------------


def test_recorder_pairs_invocations_with_completions_and_leaves_open_ones_indeterminate() -> None:
    rec = Recorder()
    rec.invoke(1, "write", "x", 5)
    rec.invoke(2, "read", "x", None)
    rec.complete(2, "ok", 5)
    rec.invoke(3, "write", "x", 6)
    rec.close_open()
    ops = pair(rec.events)
    assert [(op.process, op.status) for op in ops] == [(1, "info"), (2, "ok"), (3, "info")]
    assert ops[0].ret is None and ops[1].ret is not None and ops[1].output == 5
    with pytest.raises(HistoryError):
        rec.invoke(2, "read", "x", None) and rec.invoke(2, "read", "x", None)


def test_pair_rejects_a_completion_without_an_invocation() -> None:
    with pytest.raises(HistoryError):
        pair([Event("ok", 1, "read", "x", 1, 0)])


# --- set and lock checkers ------------------------------------------------------------


def _op(
    f: str, inp: Any, out: Any, call: int, ret: int | None, status: str = "ok", key: str = "s"
) -> Operation:
    return Operation(0, 0, f, key, inp, out, call, ret, status)  # type: ignore[arg-type]


def test_set_checker_finds_lost_and_unexpected_elements() -> None:
    adds = [
        _op("add", 1, None, 0, 1),
        _op("add", 2, None, 0, 1),
        _op("add", 3, None, 0, None, "info"),
        _op("add", 4, None, 0, 1, "fail"),
    ]
    good = check_set([*adds, _op("read", None, [1, 2, 3], 10, 11)])
    assert good.verdict == "ok" and good.recovered == 1
    lost = check_set([*adds, _op("read", None, [1], 10, 11)])
    assert lost.verdict == "violation" and lost.lost == [2]
    phantom = check_set([*adds, _op("read", None, [1, 2, 4, 9], 10, 11)])
    assert phantom.verdict == "violation" and sorted(phantom.unexpected) == [4, 9]
    assert check_set(adds).verdict == "unknown"


def _acquire(lease: int, token: int, call: int, ret: int) -> Operation:
    return _op("acquire", {"lease": lease}, {"token": token}, call, ret, key="L")


def _release(lease: int, released: bool, call: int, ret: int) -> Operation:
    return _op("release", {"lease": lease}, {"released": released}, call, ret, key="L")


def test_lock_checker_accepts_increasing_tokens_and_disjoint_holds() -> None:
    ops = [
        _acquire(1, 10, 0, 5),
        _release(1, True, 8, 9),
        _acquire(2, 12, 6, 10),
        _release(2, True, 20, 21),
    ]
    assert check_locks(ops).verdict == "ok"


def test_lock_checker_finds_duplicate_tokens_backwards_tokens_and_two_holders() -> None:
    dup = [_acquire(1, 10, 0, 5), _acquire(2, 10, 0, 6)]
    assert "granted to leases" in check_locks(dup).report()
    backwards = [_acquire(1, 10, 0, 5), _acquire(2, 9, 6, 8)]
    assert check_locks(backwards).verdict == "violation"
    overlap = [
        _acquire(1, 10, 0, 5),
        _acquire(2, 12, 1, 6),
        _release(1, True, 7, 8),
        _release(2, True, 9, 10),
    ]
    result = check_locks(overlap)
    assert result.verdict == "violation" and "two holders" in result.report()
    # A holder whose lease expired (release says not held) is no proof of overlap.
    expired = [
        _acquire(1, 10, 0, 5),
        _acquire(2, 12, 1, 6),
        _release(1, False, 7, 8),
        _release(2, True, 9, 10),
    ]
    assert check_locks(expired).verdict == "ok"
