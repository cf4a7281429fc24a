"""Timers and role changes: the follower's election timer (phase 1 when it runs
out), the leader's heartbeat and its check that a quorum still answers, the
lease that makes acceptors refuse a disruptive PREPARE, and stepping down."""

from __future__ import annotations

from typing import TYPE_CHECKING

from raftkv.paxos import learn, phase2, readbarrier
from raftkv.paxos.quorum import majority
from raftkv.raft.types import NONE, StateRole

if TYPE_CHECKING:
    from raftkv.paxos.core import Paxos


def tick(p: Paxos) -> None:
    if p._pull_wait:
        p._pull_wait -= 1
    if p.role == StateRole.LEADER:
        tick_leader(p)
    else:
        tick_election(p)


def tick_election(p: Paxos) -> None:
    p.election_elapsed += 1
    if p.election_elapsed >= p.randomized_election_timeout and p.is_voter():
        p.campaign()


def tick_leader(p: Paxos) -> None:
    p.heartbeat_elapsed += 1
    p.election_elapsed += 1
    if p.election_elapsed >= p.cfg.election_tick:
        p.election_elapsed = 0
        if not majority(p._recent_active | {p.id}, p.conf):
            become_follower(p, NONE)  # cut off from a quorum: let others lead
            return
        p._recent_active = {p.id}
        p.lead_transferee = NONE  # a transfer that did not happen in time
    if p.heartbeat_elapsed >= p.cfg.heartbeat_tick:
        p.heartbeat_elapsed = 0
        learn.bcast_commit(p, p._reads.last_ctx())
        phase2.retransmit(p)


def in_lease(p: Paxos) -> bool:
    """We heard from a live leader within an election timeout (or lead)."""
    return p.cfg.lease and p.leader != NONE and p.election_elapsed < p.cfg.election_tick


def reset_timer(p: Paxos) -> None:
    p.election_elapsed = 0
    p.heartbeat_elapsed = 0
    p.randomized_election_timeout = p.cfg.election_tick + p._rng.randrange(p.cfg.election_tick)


def reset_leader_state(p: Paxos) -> None:
    p._acks = {}
    p._catchup_to = 0
    p._reads = readbarrier.ReadBarriers()
    p._pending_confs = []
    p.lead_transferee = NONE
    p._recent_active = set()
    p.peer_commit = {}


def become_follower(p: Paxos, leader: int) -> None:
    p.role = StateRole.FOLLOWER
    p.leader = leader
    reset_leader_state(p)
    p._promises = {}
    reset_timer(p)
