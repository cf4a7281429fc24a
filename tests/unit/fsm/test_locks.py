"""Locks: FIFO waiters, fencing tokens, release on unlock and on lease loss.

The etcd #11408 family (a waiter whose lease expired is told it holds the lock)
must be impossible here: a revoked/expired lease leaves every queue before any
lock changes hands.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from raftkv.fsm import (
    InvalidCommand,
    LeaseExpire,
    LeaseGrant,
    LeaseRevoke,
    LockAcquire,
    LockGrant,
    LockRelease,
    LockWaitCancelled,
    Put,
)
from tests.unit.fsm.support import Log

A, B, C, D = 11, 12, 13, 14


@pytest.fixture
def log() -> Log:
    log = Log()
    for lease_id in (A, B, C, D):
        log.ok(LeaseGrant(10, lease_id))
    return log


def test_acquiring_a_free_lock_gives_the_revision_as_token(log: Log) -> None:
    outcome = log.apply(LockAcquire("job", A))
    assert outcome.result == {
        "revision": 2,
        "name": "job",
        "lease": A,
        "acquired": True,
        "token": 2,
    }
    assert outcome.lock_grants == [LockGrant("job", A, 2)]
    assert log.machine.lock_info("job") == {"name": "job", "holder": A, "token": 2, "waiters": []}
    assert log.machine.lock_status("job", A) == {"acquired": True, "token": 2}


def test_waiters_queue_in_fifo_order_with_their_position(log: Log) -> None:
    log.ok(LockAcquire("job", A))
    assert log.ok(LockAcquire("job", B))["position"] == 1
    assert log.ok(LockAcquire("job", C))["position"] == 2
    result = log.ok(LockAcquire("job", D))
    assert (result["acquired"], result["position"]) == (False, 3)
    assert log.machine.lock_info("job")["waiters"] == [B, C, D]  # type: ignore[index]
    assert log.machine.lock_status("job", C) == {"acquired": False, "position": 2}


def test_release_hands_the_lock_to_waiters_in_order_with_increasing_tokens(log: Log) -> None:
    log.ok(LockAcquire("job", A))
    for lease_id in (B, C, D):
        log.ok(LockAcquire("job", lease_id))
    log.ok(Put(b"unrelated", b"x"))  # other writes also advance the revision
    holders = [A]
    tokens = [log.machine.lock_info("job")["token"]]  # type: ignore[index]
    for _ in range(3):
        outcome = log.apply(LockRelease("job", holders[-1]))
        assert outcome.result["released"] is True and outcome.result["dequeued"] is False
        (grant,) = outcome.lock_grants
        assert grant.token == outcome.result["revision"] == log.machine.revision
        holders.append(grant.lease)
        tokens.append(grant.token)
    assert holders == [A, B, C, D]
    assert tokens == sorted(set(tokens)), tokens  # strictly increasing
    last = log.apply(LockRelease("job", D))
    assert last.lock_grants == []
    assert log.machine.lock_info("job") is None


def test_tokens_increase_across_holders_of_a_reacquired_lock(log: Log) -> None:
    tokens = []
    for lease_id in (A, B, A, C):
        tokens.append(log.ok(LockAcquire("job", lease_id))["token"])
        log.ok(LockRelease("job", lease_id))
    assert tokens == sorted(set(tokens)), tokens


def test_reacquire_by_the_holder_or_a_waiter_is_idempotent(log: Log) -> None:
    first = log.ok(LockAcquire("job", A))
    log.ok(LockAcquire("job", B))
    revision = log.machine.revision
    again = log.apply(LockAcquire("job", A))
    assert again.result["token"] == first["token"]
    assert again.lock_grants == []
    assert log.ok(LockAcquire("job", B))["position"] == 1
    assert log.machine.revision == revision
    assert log.machine.lock_info("job")["waiters"] == [B]  # type: ignore[index]


def test_a_waiter_can_give_up_its_place(log: Log) -> None:
    log.ok(LockAcquire("job", A))
    log.ok(LockAcquire("job", B))
    log.ok(LockAcquire("job", C))
    outcome = log.apply(LockRelease("job", B))
    assert outcome.result["released"] is False and outcome.result["dequeued"] is True
    assert outcome.lock_waits_cancelled == [LockWaitCancelled("job", B)]
    assert log.machine.lock_status("job", C) == {"acquired": False, "position": 1}
    assert log.machine.lock_status("job", B) is None
    (grant,) = log.apply(LockRelease("job", A)).lock_grants
    assert grant.lease == C


def test_releasing_a_lock_one_does_not_hold_is_an_error(log: Log) -> None:
    assert log.error(LockRelease("job", A)) == "lock_not_held"
    log.ok(LockAcquire("job", A))
    assert log.error(LockRelease("job", B)) == "lock_not_held"
    assert log.machine.lock_info("job")["holder"] == A  # type: ignore[index]


def test_acquiring_with_an_unknown_lease_is_an_error(log: Log) -> None:
    assert log.error(LockAcquire("job", 999)) == "lease_not_found"
    assert log.machine.lock_info("job") is None


def test_revoking_the_holders_lease_passes_the_lock_on(log: Log) -> None:
    log.ok(LockAcquire("job", A))
    log.ok(LockAcquire("other", A))
    log.ok(LockAcquire("job", B))
    outcome = log.apply(LeaseRevoke(A))
    assert outcome.result["locks_released"] == ["job", "other"]
    assert outcome.lock_grants == [LockGrant("job", B, outcome.result["revision"])]
    assert log.machine.lock_info("other") is None
    assert log.machine.lock_info("job")["holder"] == B  # type: ignore[index]


def test_waiter_whose_lease_expires_is_dequeued_and_never_granted(log: Log) -> None:
    """etcd #11408: B waits, B's lease expires, then A releases: B must not get it."""
    log.ok(LockAcquire("job", A))
    log.ok(LockAcquire("job", B))
    log.ok(LockAcquire("job", C))
    expired = log.apply(LeaseExpire([B]))
    assert expired.lock_waits_cancelled == [LockWaitCancelled("job", B)]
    assert expired.lock_grants == []
    assert log.machine.lock_info("job")["waiters"] == [C]  # type: ignore[index]
    released = log.apply(LockRelease("job", A))
    assert [g.lease for g in released.lock_grants] == [C]


def test_holder_and_waiter_expiring_together_grants_nothing_to_the_waiter(log: Log) -> None:
    """The same entry expires the holder A and the waiter B: B is dequeued first,
    so the lock goes to the first live waiter (C), never to B."""
    log.ok(LockAcquire("job", A))
    log.ok(LockAcquire("job", B))
    log.ok(LockAcquire("job", C))
    outcome = log.apply(LeaseExpire([A, B]))
    assert [(g.name, g.lease) for g in outcome.lock_grants] == [("job", C)]
    assert outcome.lock_waits_cancelled == [LockWaitCancelled("job", B)]
    assert log.machine.lock_info("job") == {
        "name": "job",
        "holder": C,
        "token": outcome.result["revision"],
        "waiters": [],
    }


def test_when_every_waiter_expires_with_the_holder_the_lock_is_free(log: Log) -> None:
    log.ok(LockAcquire("job", B))  # B, the higher id, holds
    log.ok(LockAcquire("job", A))
    outcome = log.apply(LeaseExpire([A, B]))
    assert outcome.lock_grants == []
    assert log.machine.lock_info("job") is None
    assert log.error(LockAcquire("job", A)) == "lease_not_found"


def test_queries_list_locks_in_name_order(log: Log) -> None:
    log.ok(LockAcquire("b", A))
    log.ok(LockAcquire("a", B))
    log.ok(LockAcquire("a", C))
    assert [lock["name"] for lock in log.machine.locks()] == ["a", "b"]
    assert log.machine.lease_info(C)["locks"] == ["a"]  # type: ignore[index]
    stats = log.machine.stats()
    assert (stats["locks_held"], stats["lock_waiters"]) == (2, 1)


@pytest.mark.parametrize(
    "build",
    [
        lambda: LockAcquire("", A),
        lambda: LockAcquire(b"job", A),  # type: ignore[arg-type]
        lambda: LockAcquire("job", 0),
        lambda: LockRelease("job", -1),
        lambda: LockRelease("job", False),
    ],
)
def test_malformed_lock_commands_are_rejected(build: Callable[[], object]) -> None:
    with pytest.raises(InvalidCommand):
        build()
