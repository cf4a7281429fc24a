"""The applier: committed entries into the state machine, the proposals they
answer (only the entry proposed: same index and term), and the side effects it
takes from the typed fields of each result."""

from __future__ import annotations

import asyncio

import pytest

from raftkv.fsm import (
    Checkpoint,
    LeaseGrant,
    LeaseRevoke,
    LockAcquire,
    LockRelease,
    Session,
    StateMachine,
    encode,
)
from raftkv.raft import ConfChange, ConfChangeType, Entry, EntryType
from raftkv.runtime.applier import Applier
from raftkv.runtime.leases import LeaseClock
from raftkv.runtime.metrics import NodeMetrics
from raftkv.runtime.outcomes import ProposalLost
from raftkv.runtime.waiters import Waiters
from raftkv.runtime.watch import WatchHub


class Parts:
    def __init__(self, leader: bool = True) -> None:
        self.fsm = StateMachine()
        self.waiters = Waiters()
        self.leases = LeaseClock()
        self.leader = leader
        self.conf_changes: list[ConfChange] = []
        self.checkpoints: list[tuple[str, int, int]] = []
        self.applier = Applier(
            self.fsm,
            WatchHub(max_watchers=10, max_per_client=10),
            self.waiters,
            self.leases,
            NodeMetrics("t"),
            is_leader=lambda: self.leader,
            on_conf_change=self.conf_changes.append,
            on_checkpoint=lambda *args: self.checkpoints.append(args),
        )
        self.index = 0

    def entry(self, data: bytes, term: int = 1, kind: EntryType = EntryType.NORMAL) -> Entry:
        self.index += 1
        return Entry(term, self.index, kind, data)


def test_a_lease_grant_starts_its_deadline_on_the_leader_only() -> None:
    for leader in (True, False):
        parts = Parts(leader=leader)
        parts.applier.apply([parts.entry(encode(LeaseGrant(10, 7)))])
        assert (7 in parts.leases.deadlines) is leader
        assert parts.leases.ttls.get(7) == (10 if leader else None)


def test_a_replayed_grant_does_not_restart_the_deadline() -> None:
    parts = Parts()
    grant = encode(LeaseGrant(10, 7), Session("c", 1))
    parts.applier.apply([parts.entry(grant)])
    parts.leases.forget(7)
    parts.applier.apply([parts.entry(grant)])  # the same session and seq: a duplicate
    assert 7 not in parts.leases.deadlines


def test_a_revoke_forgets_the_deadline() -> None:
    parts = Parts()
    parts.applier.apply(
        [parts.entry(encode(LeaseGrant(10, 7))), parts.entry(encode(LeaseRevoke(7)))]
    )
    assert 7 not in parts.leases.deadlines


async def test_proposals_learn_their_entry_and_lock_waiters_their_grant() -> None:
    parts = Parts()
    parts.applier.apply(
        [
            parts.entry(encode(LeaseGrant(10, 1))),
            parts.entry(encode(LeaseGrant(10, 2))),
            parts.entry(encode(LockAcquire("l", 1))),
        ]
    )
    waiting = parts.waiters.wait_lock("l", 2)
    kept = parts.waiters.wait_lock("l", 2)
    kept.cancel()  # an abandoned waiter is skipped, not answered
    mine = asyncio.get_running_loop().create_future()
    replaced = asyncio.get_running_loop().create_future()
    parts.waiters.expect(parts.index + 1, 1, mine, 0.0)
    parts.waiters.expect(parts.index + 2, 1, replaced, 0.0)
    parts.applier.apply(
        [
            parts.entry(encode(LockAcquire("l", 2))),  # queues behind 1
            parts.entry(encode(LockRelease("l", 1)), term=2),
        ]
    )
    assert mine.result().result["acquired"] is False
    with pytest.raises(ProposalLost):
        replaced.result()  # its index holds another leader's entry (term 2)
    assert waiting.result() == parts.fsm.revision  # the release's revision is the token
    assert parts.waiters.proposals == {}


def test_conf_changes_and_checkpoints_reach_their_callbacks() -> None:
    parts = Parts()
    cc = ConfChange(ConfChangeType.ADD_VOTER, 5)
    parts.applier.apply(
        [
            parts.entry(cc.encode(), kind=EntryType.CONF_CHANGE),
            parts.entry(encode(Checkpoint("daily")), term=3),
        ]
    )
    assert parts.conf_changes == [cc]
    assert parts.checkpoints == [("daily", 2, 3)]
    assert 5 in parts.fsm.members
