"""Client sessions: a retried (client_id, seq) applies once and answers the same."""

from __future__ import annotations

import pytest

from raftkv.fsm import (
    InvalidCommand,
    LeaseGrant,
    LockAcquire,
    LockRelease,
    Put,
    Range,
    Session,
    StateMachine,
    encode,
)
from tests.unit.fsm.support import Log, kv_of, replay, state_apart_from_index


def test_a_duplicate_answers_the_recorded_result_without_applying_again() -> None:
    log = Log()
    first = log.apply(Put(b"k", b"v", prev_kv=True), Session("c1", 1))
    log.ok(Put(b"other", b"x"))  # the world moves on between the retries
    state = state_apart_from_index(log.machine)
    retry = log.apply(Put(b"k", b"v", prev_kv=True), Session("c1", 1))
    assert retry.duplicate is True
    assert retry.result == first.result == {"revision": 2, "prev_kv": None}
    assert retry.events == ()
    assert kv_of(log.machine, b"k") == (b"v", 2, 2, 1, 0)  # version 1: applied once
    assert state_apart_from_index(log.machine) == state


def test_a_retried_auto_id_lease_grant_returns_the_same_lease() -> None:
    log = Log()
    first = log.ok(LeaseGrant(30), Session("c1", 7))
    again = log.ok(LeaseGrant(30), Session("c1", 7))
    assert again == first
    assert log.machine.leases() == [(first["id"], 30)]


def test_error_results_are_recorded_too() -> None:
    log = Log()
    assert log.error(Put(b"k", b"v", lease=5), Session("c1", 1)) == "lease_not_found"
    log.ok(LeaseGrant(30, 5))
    # same seq: still the recorded answer, even though it would succeed now
    assert log.error(Put(b"k", b"v", lease=5), Session("c1", 1)) == "lease_not_found"
    assert kv_of(log.machine, b"k") is None
    log.ok(Put(b"k", b"v", lease=5), Session("c1", 2))
    assert kv_of(log.machine, b"k") is not None


def test_a_newer_seq_applies_and_an_older_one_is_stale() -> None:
    log = Log()
    log.ok(Put(b"k", b"1"), Session("c1", 1))
    log.ok(Put(b"k", b"2"), Session("c1", 2))
    assert log.error(Put(b"k", b"1"), Session("c1", 1)) == "stale_sequence"
    assert kv_of(log.machine, b"k") == (b"2", 2, 3, 2, 0)


def test_clients_are_independent() -> None:
    log = Log()
    log.ok(Put(b"a", b"1"), Session("c1", 1))
    result = log.ok(Put(b"b", b"1"), Session("c2", 1))
    assert result == {"revision": 3}
    assert kv_of(log.machine, b"b") is not None


def test_reads_are_not_recorded_and_do_not_disturb_dedup() -> None:
    log = Log()
    log.ok(Put(b"k", b"1"), Session("c1", 5))
    log.ok(Range(b"k"), Session("c1", 6))
    assert log.apply(Put(b"k", b"1"), Session("c1", 5)).duplicate is True


def test_a_duplicate_lock_acquire_answers_the_first_answer_and_status_tells_now() -> None:
    log = Log()
    log.ok(LeaseGrant(10, 1))
    log.ok(LeaseGrant(10, 2))
    log.ok(LockAcquire("job", 1))
    queued = log.ok(LockAcquire("job", 2), Session("w", 1))
    assert queued["acquired"] is False
    log.ok(LockAcquire("job", 1))  # no-op re-acquire
    log.ok(LockRelease("job", 1))
    retry = log.apply(LockAcquire("job", 2), Session("w", 1))
    assert retry.duplicate and retry.result == queued
    assert log.machine.lock_status("job", 2) == {"acquired": True, "token": log.machine.revision}


def test_sessions_are_dropped_least_recently_applied_first() -> None:
    log = Log(StateMachine(session_capacity=2))
    log.ok(Put(b"k", b"a"), Session("c1", 1))
    log.ok(Put(b"k", b"b"), Session("c2", 1))
    log.ok(Put(b"k", b"c"), Session("c1", 2))  # c1 is now the most recent
    log.ok(Put(b"k", b"d"), Session("c3", 1))  # evicts c2
    assert log.machine.stats()["sessions"] == 2
    assert log.apply(Put(b"k", b"c"), Session("c1", 2)).duplicate is True
    assert log.apply(Put(b"k", b"d"), Session("c3", 1)).duplicate is True
    # c2's record is gone: its retry applies again (the documented cost of the bound)
    assert log.apply(Put(b"k", b"b"), Session("c2", 1)).duplicate is False


def test_eviction_is_the_same_on_every_member() -> None:
    log = Log(StateMachine(session_capacity=3))
    for i in range(20):
        log.ok(Put(b"k%d" % (i % 4), b"v"), Session(f"c{i % 7}", i))
    other = replay(log.entries, StateMachine(session_capacity=3))
    assert other.snapshot_bytes() == log.machine.snapshot_bytes()


def test_the_caller_mutating_a_result_cannot_change_what_is_recorded() -> None:
    log = Log()
    result = log.ok(Put(b"k", b"v", prev_kv=True), Session("c1", 1))
    snapshot = log.machine.snapshot_bytes()
    result["revision"] = 999
    result["injected"] = True
    assert log.machine.snapshot_bytes() == snapshot
    retry = log.apply(Put(b"k", b"v", prev_kv=True), Session("c1", 1))
    assert retry.result == {"prev_kv": None, "revision": 2}
    retry.result["revision"] = 1000
    assert log.apply(Put(b"k", b"v"), Session("c1", 1)).result == {"prev_kv": None, "revision": 2}


def test_sessions_survive_snapshot_and_restore() -> None:
    log = Log()
    first = log.ok(LeaseGrant(30), Session("c1", 1))
    restored = StateMachine()
    restored.restore(log.machine.snapshot_bytes())
    retry = restored.apply(restored.applied_index + 1, 1, encode(LeaseGrant(30), Session("c1", 1)))
    assert retry.duplicate and retry.result == first


@pytest.mark.parametrize(
    ("client_id", "seq"),
    [("", 1), (b"c", 1), ("c", -1), ("c", True), ("c", 2**64), ("x" * 257, 1)],
)
def test_malformed_sessions_are_rejected(client_id: object, seq: object) -> None:
    with pytest.raises(InvalidCommand):
        Session(client_id, seq)  # type: ignore[arg-type]


def test_session_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity"):
        StateMachine(session_capacity=0)
