"""Messages in: the term rules every message passes first, then routing by role
(etcd-io/raft's Step, stepLeader, stepCandidate, stepFollower). The handlers
themselves live with their concern (election, replication, snapshots, readonly,
transfer)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from raftkv.raft import election, readonly, replication, snapshots, transfer
from raftkv.raft.types import NONE, Message, MsgType, ReadState, StateRole

if TYPE_CHECKING:
    from raftkv.raft.core import Raft

# What only the leader of a term sends to its followers.
_FROM_LEADER = frozenset(
    {MsgType.APP, MsgType.HEARTBEAT, MsgType.SNAP, MsgType.TIMEOUT_NOW, MsgType.READ_INDEX_RESP}
)


def step(r: Raft, m: Message) -> None:
    if not _passes_term_rules(r, m):
        return
    if m.type in (MsgType.VOTE, MsgType.PRE_VOTE):
        r._handle_vote_request(m)
    elif r.role == StateRole.LEADER:
        step_leader(r, m)
    elif r.role in (StateRole.CANDIDATE, StateRole.PRE_CANDIDATE):
        step_candidate(r, m)
    else:
        r._step_follower(m)


def _passes_term_rules(r: Raft, m: Message) -> bool:
    """Adopt a higher term (or refuse to, within a leader's lease); answer a stale
    term so its sender learns ours. False: the message goes no further."""
    if m.term <= 0:
        return False  # every message between members carries its sender's term: drop
    if m.term > r.term:
        if m.type in (MsgType.VOTE, MsgType.PRE_VOTE):
            force = m.context == election.CAMPAIGN_TRANSFER
            if not force and election.in_lease(r):
                return False  # we heard from a leader recently: don't let a stray node disrupt it
        if m.type == MsgType.PRE_VOTE:
            pass  # a pre-vote never changes our term
        elif m.type == MsgType.PRE_VOTE_RESP and not m.reject:
            pass  # our term moves when the pre-vote wins, not per response
        elif m.type in (MsgType.APP, MsgType.HEARTBEAT, MsgType.SNAP):
            r.become_follower(m.term, m.frm)
        elif m.type == MsgType.VOTE:
            # Adopt the term but keep the election timer running: Raft resets it
            # only on granting the vote or on hearing from a leader. A refused
            # candidate with a stale log on a faster clock would otherwise keep
            # the only voters that can win from ever campaigning.
            elapsed = r.election_elapsed
            r.become_follower(m.term, NONE)
            r.election_elapsed = elapsed
        else:
            r.become_follower(m.term, NONE)
    elif m.term < r.term:
        if (r.cfg.check_quorum or r.cfg.pre_vote) and m.type in (MsgType.HEARTBEAT, MsgType.APP):
            # Tell a stale leader our term so it steps down (it may be partitioned
            # from everyone else, and pre-vote would otherwise keep us from electing).
            r._send(Message(MsgType.APP_RESP, to=m.frm, frm=r.id, term=r.term))
        elif m.type == MsgType.PRE_VOTE:
            r._send(Message(MsgType.PRE_VOTE_RESP, to=m.frm, frm=r.id, term=r.term, reject=True))
        return False
    return True


def step_leader(r: Raft, m: Message) -> None:
    t = m.type
    if t == MsgType.READ_INDEX:
        readonly.leader_read(r, m.context, m.frm)
        return
    if t == MsgType.TRANSFER_LEADER:
        if m.frm in r.conf.voters:  # only a voter of our term may ask for it
            transfer.handle_transfer(r, m.index)
        return
    pr = r.prs.get(m.frm)
    if pr is None:
        return
    if t == MsgType.APP_RESP:
        pr.recent_active = True
        if m.reject:
            r._handle_append_reject(m, pr)
        else:
            replication.handle_append_ack(r, m, pr)
    elif t == MsgType.HEARTBEAT_RESP:
        replication.handle_heartbeat_resp(r, m, pr)
        readonly.on_heartbeat_ack(r, m)


def step_candidate(r: Raft, m: Message) -> None:
    my_resp = MsgType.PRE_VOTE_RESP if r.role == StateRole.PRE_CANDIDATE else MsgType.VOTE_RESP
    if m.type == MsgType.APP:
        r.become_follower(m.term, m.frm)
        replication.handle_append(r, m)
    elif m.type == MsgType.HEARTBEAT:
        r.become_follower(m.term, m.frm)
        replication.handle_heartbeat(r, m)
    elif m.type == MsgType.SNAP:
        r.become_follower(m.term, m.frm)
        snapshots.handle_snapshot(r, m)
    elif m.type == my_resp:
        election.handle_vote_response(r, m)
    elif m.type == MsgType.READ_INDEX or m.type == MsgType.TRANSFER_LEADER:
        pass  # no leader to forward to; the requester times out and retries


def step_follower(r: Raft, m: Message) -> None:
    t = m.type
    if t in _FROM_LEADER and r.leader != NONE and m.frm != r.leader:
        return  # one leader per term: a second one at our term is a forgery or a bug
    if t == MsgType.APP:
        r.election_elapsed = 0
        r.leader = m.frm
        replication.handle_append(r, m)
    elif t == MsgType.HEARTBEAT:
        r.election_elapsed = 0
        r.leader = m.frm
        replication.handle_heartbeat(r, m)
    elif t == MsgType.SNAP:
        r.election_elapsed = 0
        r.leader = m.frm
        snapshots.handle_snapshot(r, m)
    elif t == MsgType.TIMEOUT_NOW:
        # Only the leader of our term can hand leadership over.
        if r.is_voter() and r.leader != NONE and m.frm == r.leader:
            r._hup(transfer=True)
    elif t == MsgType.READ_INDEX_RESP and m.frm == r.leader:
        r.read_states.append(ReadState(m.index, m.context))
    elif t in (MsgType.READ_INDEX, MsgType.TRANSFER_LEADER) and r.leader != NONE:
        m.to = r.leader
        r._send(m)
