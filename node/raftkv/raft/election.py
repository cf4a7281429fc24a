"""Elections: timers, pre-vote, voting, check-quorum and the early campaign after
a dead leader (etcd-io/raft's tickElection, tickHeartbeat, hup, campaign, poll)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from raftkv.raft import membership, quorum, replication
from raftkv.raft.readonly import ReadOnly
from raftkv.raft.types import NONE, Message, MsgType, StateRole

if TYPE_CHECKING:
    from raftkv.raft.core import Raft

# VOTE context: a leadership transfer, skip the lease check.
CAMPAIGN_TRANSFER = b"transfer"


def tick_election(r: Raft) -> None:
    r.election_elapsed += 1
    if r.election_elapsed >= r.randomized_election_timeout and r.is_voter():
        r.election_elapsed = 0
        r._hup(transfer=False)


def tick_heartbeat(r: Raft) -> None:
    """The leader's tick: check-quorum and a stale transfer every election timeout,
    a heartbeat every heartbeat timeout."""
    r.heartbeat_elapsed += 1
    r.election_elapsed += 1
    if r.election_elapsed >= r.cfg.election_tick:
        r.election_elapsed = 0
        if r.cfg.check_quorum and not quorum.quorum_active(r):
            r.become_follower(r.term, NONE)
            return
        if r.lead_transferee != NONE:
            r.lead_transferee = NONE  # transfer timed out: resume normal service
    if r.role != StateRole.LEADER:
        return
    if r.heartbeat_elapsed >= r.cfg.heartbeat_tick:
        r.heartbeat_elapsed = 0
        r._bcast_heartbeat(r.read_only.last_ctx())


def hup(r: Raft, transfer: bool) -> None:
    if r.role == StateRole.LEADER or not r.is_voter():
        return
    # A committed-but-unapplied membership change could make us campaign with
    # the wrong configuration: wait until it is applied.
    if membership.has_unapplied_conf_change(r):
        return
    campaign(r, pre=r.cfg.pre_vote and not transfer, transfer=transfer)


def campaign(r: Raft, pre: bool, transfer: bool) -> None:
    if pre:
        r.become_pre_candidate()
        vote_type, term = MsgType.PRE_VOTE, r.term + 1
    else:
        r.become_candidate()
        vote_type, term = MsgType.VOTE, r.term
    r.votes[r.id] = True
    if r._quorum() <= 1:
        if pre:
            campaign(r, pre=False, transfer=transfer)
        else:
            r.become_leader()
        return
    ctx = CAMPAIGN_TRANSFER if transfer else b""
    for v in sorted(r.conf.voters):
        if v == r.id:
            continue
        r.msgs.append(
            Message(
                vote_type,
                to=v,
                frm=r.id,
                term=term,
                index=r.log.last_index(),
                log_term=r.log.last_term(),
                context=ctx,
            )
        )


def handle_vote_request(r: Raft, m: Message) -> None:
    can_vote = (
        r.vote == m.frm
        or (r.vote == NONE and r.leader == NONE)
        or (m.type == MsgType.PRE_VOTE and m.term > r.term)
    )
    resp_type = MsgType.VOTE_RESP if m.type == MsgType.VOTE else MsgType.PRE_VOTE_RESP
    if can_vote and r.log.is_up_to_date(m.index, m.log_term):
        r._send(Message(resp_type, to=m.frm, frm=r.id, term=m.term))
        if m.type == MsgType.VOTE:
            r.election_elapsed = 0
            r._record_vote(m.frm)
    else:
        r._send(Message(resp_type, to=m.frm, frm=r.id, term=r.term, reject=True))


def handle_vote_response(r: Raft, m: Message) -> None:
    """A (pre-)candidate counts a response: a quorum for wins, a quorum against loses."""
    if m.frm in r.conf.voters:
        r.votes.setdefault(m.frm, not m.reject)
    granted = sum(1 for v in r.votes.values() if v)
    rejected = sum(1 for v in r.votes.values() if not v)
    q = r._quorum()
    if granted >= q:
        if r.role == StateRole.PRE_CANDIDATE:
            campaign(r, pre=False, transfer=False)
        else:
            r.become_leader()
    elif rejected >= q:
        r.become_follower(r.term, NONE)


def in_lease(r: Raft) -> bool:
    """Check-quorum's lease: we heard from a leader within the election timeout."""
    return r.cfg.check_quorum and r.leader != NONE and r.election_elapsed < r.cfg.election_tick


def expire_lease(r: Raft, leader: int) -> None:
    """The runtime saw its connection to `leader` end and a redial refused (the
    leader's process is gone). Expire our lease on it now and campaign within a
    few ticks instead of waiting out the election timeout.

    This cannot disrupt a live leader: our pre-vote is granted only by voters
    whose own lease on the leader has also expired (see `step`), and the leader
    never grants one. So an early campaign wins only when a quorum has stopped
    hearing from the leader too (it is dead for everyone), which is the point.
    Every follower sees a dead leader's connections close at the same instant:
    campaigning at once would split the vote (both pre-votes granted, then one
    vote each). So the remaining voters go in id order, two ticks apart (1, 3,
    5, ... ticks), which leaves the first a full tick or more to win before the
    next one starts; a later one still wins if the first cannot (a shorter log).
    A heartbeat from a leader that is alive after all restores the lease, and
    nothing else changed (no lingering shorter timeout).
    """
    if (
        r.role != StateRole.FOLLOWER
        or leader == NONE
        or leader != r.leader
        or not (r.cfg.pre_vote and r.cfg.check_quorum)
    ):
        return  # without pre-vote + check-quorum an early campaign could disrupt
    rank = sorted(r.conf.voters - {leader}).index(r.id) if r.is_voter() else 0
    fire_in = 1 + 2 * rank
    r.election_elapsed = max(
        r.election_elapsed, r.cfg.election_tick, r.randomized_election_timeout - fire_in
    )


def reset(r: Raft, term: int) -> None:
    """Everything a role change starts afresh: timers, votes, reads, progress."""
    if r.term != term:
        r.term = term
        r.vote = NONE
    r.leader = NONE
    r.election_elapsed = 0
    r.heartbeat_elapsed = 0
    r.randomized_election_timeout = r.cfg.election_tick + r._rng.randrange(r.cfg.election_tick)
    r.lead_transferee = NONE
    r.votes = {}
    r.read_only = ReadOnly()
    r.pending_reads = []
    r._read_round_due = False
    last = r.log.last_index()
    r.prs = {}
    for node in r.conf.voters | r.conf.learners:
        r.prs[node] = replication.new_progress(r, node, last)
