"""Leases: grant, deterministic ids, attached keys, revoke and leader-proposed expiry."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from raftkv.fsm import (
    Delete,
    InvalidCommand,
    LeaseExpire,
    LeaseGrant,
    LeaseGranted,
    LeaseRevoke,
    Put,
    Session,
    WatchEvent,
)
from tests.unit.fsm.support import Log, kv_of


def test_grant_with_an_id_and_without_one() -> None:
    log = Log()
    assert log.ok(LeaseGrant(30, 1000)) == {"revision": 1, "id": 1000, "ttl": 30}
    # no id: the entry's index (2 here), the same on every member
    assert log.ok(LeaseGrant(10)) == {"revision": 1, "id": 2, "ttl": 10}
    assert log.machine.leases() == [(2, 10), (1000, 30)]


def test_auto_assigned_ids_skip_ids_already_granted() -> None:
    log = Log()
    log.ok(LeaseGrant(5, 2))
    log.ok(LeaseGrant(5, 3))
    assert log.ok(LeaseGrant(5))["id"] == 4  # index 3 is taken by the lease above; 4 is free


def test_granting_an_existing_id_is_an_error() -> None:
    log = Log()
    log.ok(LeaseGrant(5, 9))
    assert log.error(LeaseGrant(50, 9)) == "lease_exists"
    assert log.machine.leases() == [(9, 5)]


def test_a_grant_does_not_create_a_revision() -> None:
    log = Log()
    log.ok(LeaseGrant(5))
    assert log.machine.revision == 1


@pytest.mark.parametrize(
    "build",
    [
        lambda: LeaseGrant(0),
        lambda: LeaseGrant(-1),
        lambda: LeaseGrant(9_000_000_001),
        lambda: LeaseGrant(True),
        lambda: LeaseGrant(5, -3),
        lambda: LeaseGrant(5, 2**63),
        lambda: LeaseRevoke(0),
        lambda: LeaseExpire([]),
        lambda: LeaseExpire([1, 0]),
    ],
)
def test_malformed_lease_commands_are_rejected(build: Callable[[], object]) -> None:
    with pytest.raises(InvalidCommand):
        build()


def test_put_on_a_missing_lease_is_an_error_and_changes_nothing() -> None:
    log = Log()
    assert log.error(Put(b"k", b"v", lease=5)) == "lease_not_found"
    assert kv_of(log.machine, b"k") is None
    assert log.machine.revision == 1


def test_revoke_deletes_the_attached_keys_at_one_revision_in_key_order() -> None:
    log = Log()
    log.ok(LeaseGrant(60, 5))
    log.ok(LeaseGrant(60, 6))
    log.ok(Put(b"b", b"1", lease=5))  # rev 2
    log.ok(Put(b"a", b"1", lease=5))  # rev 3
    log.ok(Put(b"c", b"1", lease=6))  # rev 4
    log.ok(Put(b"plain", b"1"))  # rev 5
    outcome = log.apply(LeaseRevoke(5))
    assert outcome.result == {"revision": 6, "id": 5, "deleted": 2, "locks_released": []}
    assert outcome.events == [
        WatchEvent("delete", b"a", b"", 0, 6, 0, 0),
        WatchEvent("delete", b"b", b"", 0, 6, 0, 0),
    ]
    assert outcome.revoked_leases == [5]
    assert kv_of(log.machine, b"c") is not None
    assert kv_of(log.machine, b"plain") is not None
    assert log.machine.leases() == [(6, 60)]
    assert log.machine.lease_info(5) is None


def test_revoking_a_lease_without_keys_or_locks_keeps_the_revision() -> None:
    log = Log()
    log.ok(LeaseGrant(60, 5))
    assert log.ok(LeaseRevoke(5)) == {"revision": 1, "id": 5, "deleted": 0, "locks_released": []}


def test_revoking_an_unknown_lease_is_an_error() -> None:
    log = Log()
    assert log.error(LeaseRevoke(5)) == "lease_not_found"


def test_a_put_moves_a_key_between_leases_or_detaches_it() -> None:
    """Like etcd, a put sets the key's lease to the one given (0: none)."""
    log = Log()
    log.ok(LeaseGrant(60, 5))
    log.ok(LeaseGrant(60, 6))
    log.ok(Put(b"moved", b"1", lease=5))
    log.ok(Put(b"detached", b"1", lease=5))
    log.ok(Put(b"moved", b"2", lease=6))
    log.ok(Put(b"detached", b"2"))
    info = log.machine.lease_info(5)
    assert info == {"id": 5, "ttl": 60, "keys": [], "locks": []}
    log.ok(LeaseRevoke(5))
    assert kv_of(log.machine, b"moved") == (b"2", 2, 4, 2, 6)
    assert kv_of(log.machine, b"detached") == (b"2", 3, 5, 2, 0)
    log.ok(LeaseRevoke(6))
    assert kv_of(log.machine, b"moved") is None


def test_deleting_a_key_detaches_it_from_its_lease() -> None:
    log = Log()
    log.ok(LeaseGrant(60, 5))
    log.ok(Put(b"k", b"1", lease=5))
    log.ok(Put(b"other", b"1", lease=5))
    assert log.ok(Delete(b"k"))["deleted"] == 1
    assert log.machine.lease_info(5) == {"id": 5, "ttl": 60, "keys": [b"other"], "locks": []}


def test_expiry_revokes_granted_ids_and_skips_the_others() -> None:
    log = Log()
    for lease_id in (3, 4, 5):
        log.ok(LeaseGrant(1, lease_id))
    log.ok(Put(b"a", b"", lease=3))
    log.ok(Put(b"b", b"", lease=5))
    outcome = log.apply(LeaseExpire([5, 3, 99, 3]))
    assert outcome.result == {
        "revision": 4,
        "expired": [3, 5],
        "deleted": 2,
        "locks_released": [],
    }
    assert outcome.revoked_leases == [3, 5]
    assert [e.key for e in outcome.events] == [b"a", b"b"]
    assert log.machine.leases() == [(4, 1)]
    # expiring leases that are gone already is harmless (it races revoke)
    assert log.ok(LeaseExpire([3]))["expired"] == []


def test_lease_expire_ids_are_kept_sorted_and_unique() -> None:
    assert LeaseExpire([9, 2, 9, 4]).ids == [2, 4, 9]


def test_a_grant_reports_its_lease_as_a_typed_side_effect() -> None:
    """The runtime starts a lease's deadline from `ApplyResult.lease_granted`, never
    by recognising a grant's answer among the result dicts."""
    log = Log()
    assert log.apply(LeaseGrant(30, 1000)).lease_granted == LeaseGranted(1000, 30)
    assert log.apply(LeaseGrant(10)).lease_granted == LeaseGranted(2, 10)
    # A refused grant, and commands whose answers are not grants, start no deadline.
    assert log.apply(LeaseGrant(50, 1000)).lease_granted is None
    assert log.apply(Put(b"k", b"v", lease=1000)).lease_granted is None
    assert log.apply(LeaseRevoke(1000)).lease_granted is None
    # A session replay answers what it answered first, with no side effects.
    session = Session("client", 1)
    assert log.apply(LeaseGrant(7), session).lease_granted is not None
    replayed = log.apply(LeaseGrant(7), session)
    assert replayed.duplicate and replayed.lease_granted is None
