"""Phase 1: ballots and promises.

The acceptor's side: a PREPARE above its promise (and outside a live leader's
lease) is promised, durably before the PROMISE leaves, with every value it
accepted from the proposer's first open slot on. The proposer's side: a fresh
ballot above every one seen, PREPARE to every member of every configuration
that may decide an open slot, and, with a majority of each, leadership: slots a
reporter knows chosen are learnt, every other slot up to the highest reported
is re-proposed with the value of the highest ballot reported for it, or a no-op.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from raftkv.paxos import election, learn, phase2
from raftkv.paxos.quorum import majority
from raftkv.paxos.types import Message, MsgType, ballot, ballot_round
from raftkv.raft.types import NONE, ConfChange, ConfState, Entry, EntryType, StateRole, conf_after

if TYPE_CHECKING:
    from raftkv.paxos.core import Paxos

CAMPAIGN_TRANSFER = b"transfer"


# --- proposer: a new ballot ---------------------------------------------------
def campaign(p: Paxos, transfer: bool) -> None:
    if not p.is_voter():
        return
    round_ = max(ballot_round(p.promised), p.max_seen_round) + 1
    p.max_seen_round = round_
    election.reset_leader_state(p)
    p.promised = ballot(round_, p.id)
    p.role = StateRole.CANDIDATE
    p.leader = NONE
    election.reset_timer(p)
    p._promises = {}
    p._rejects = set()
    p._prepared = set()
    p._context = CAMPAIGN_TRANSFER if transfer else b""
    maybe_lead(p)


# --- acceptor -------------------------------------------------------------------
def on_prepare(p: Paxos, m: Message) -> None:
    force = m.context == CAMPAIGN_TRANSFER
    if m.ballot > p.promised and (force or not election.in_lease(p)):
        promise(p, m.ballot)
    if m.ballot == p.promised and p.role == StateRole.FOLLOWER:
        p._send(
            Message(
                MsgType.PROMISE,
                to=m.frm,
                frm=p.id,
                ballot=m.ballot,
                entries=accepted_from(p, m.index),
                commit=p.commit,
                conf=p.conf,
                index=p.base,
            )
        )
    else:
        p._send(Message(MsgType.NACK, to=m.frm, frm=p.id, ballot=p.promised))


def promise(p: Paxos, b: int) -> None:
    """Promise `b`: no ballot below it will be accepted (durable before any reply)."""
    if p.role != StateRole.FOLLOWER:
        election.become_follower(p, NONE)
    p.promised = b
    p.leader = NONE


def accepted_from(p: Paxos, slot: int) -> list[Entry]:
    return [p.log[s] for s in sorted(p.log) if s >= slot]


# --- proposer: promises in ----------------------------------------------------------
def on_promise(p: Paxos, m: Message) -> None:
    if p.role != StateRole.CANDIDATE or m.ballot != p.promised:
        return
    p._promises[m.frm] = m
    maybe_lead(p)


def on_nack(p: Paxos, m: Message) -> None:
    if m.ballot > p.promised:
        # A higher ballot exists: stop proposing (our next ballot goes above it).
        if p.role != StateRole.FOLLOWER:
            election.become_follower(p, NONE)
        return
    if p.role == StateRole.CANDIDATE:
        p._rejects.add(m.frm)  # refused in its lease: a leader is alive
        if majority(p._rejects, p.conf):
            election.become_follower(p, NONE)


def own_promise(p: Paxos) -> Message:
    return Message(
        MsgType.PROMISE,
        to=p.id,
        frm=p.id,
        ballot=p.promised,
        entries=accepted_from(p, p.commit + 1),
        commit=p.commit,
        conf=p.conf,
        index=p.base,
    )


def phase1_configs(p: Paxos, promises: list[Message]) -> list[ConfState]:
    """Every configuration that may decide a slot this proposer must recover:
    its own, the most advanced reporter's, then one after each membership
    change among the values reported above that reporter's commit."""
    top = max(promises, key=lambda q: q.commit)
    confs = [p.conf]
    conf = top.conf if top.conf is not None else p.conf
    confs.append(conf)
    for _s, e in sorted(p._highest_accepted(promises, top.commit).items()):
        if e.type == EntryType.CONF_CHANGE:
            conf = conf_after(conf, ConfChange.decode(e.data))
            confs.append(conf)
    return confs


def highest_accepted(promises: list[Message], above: int) -> dict[int, Entry]:
    """Per slot above `above`: the value accepted at the highest ballot reported."""
    best: dict[int, Entry] = {}
    for q in promises:
        for e in q.entries:
            if e.index > above:
                cur = best.get(e.index)
                if cur is None or e.term > cur.term:
                    best[e.index] = e
    return best


def maybe_lead(p: Paxos) -> None:
    if not p.is_voter():
        election.become_follower(p, NONE)  # removed while campaigning (learnt meanwhile)
        return
    promises = [*p._promises.values(), own_promise(p)]
    responders = {q.frm for q in promises}
    confs = p._phase1_configs(promises)
    members = set().union(*(c.voters for c in confs)) - {p.id}
    for to in sorted(members - p._prepared):
        p._prepared.add(to)
        p._send(
            Message(
                MsgType.PREPARE,
                to=to,
                frm=p.id,
                ballot=p.promised,
                index=p.commit + 1,
                context=p._context,
            )
        )
    if all(majority(responders, c) for c in confs):
        become_leader(p, promises)


# --- proposer: leading ----------------------------------------------------------------
def become_leader(p: Paxos, promises: list[Message]) -> None:
    p.role = StateRole.LEADER
    p.leader = p.id
    election.reset_leader_state(p)
    p._recent_active = {p.id}
    top = max(promises, key=lambda q: q.commit)
    # Slots a reporter knows chosen: learn them (its values there are the chosen ones).
    for q in promises:
        for known in q.entries:
            if known.index <= q.commit:
                learn.learn_chosen(p, known)
    p._catchup_to = max(p.commit, top.commit)
    learn.advance_known(p)
    if p.role != StateRole.LEADER:
        return  # what it just learnt removed it from the cluster
    # What it knew chosen above the reporters' commit is learnt now too.
    p._catchup_to = max(p._catchup_to, p.commit)
    if p.commit < p._catchup_to:
        learn.pull(p, top.frm)  # compacted there: catch up by log or snapshot
    # Every other slot up to the highest reported: the highest-ballot value, or a no-op.
    best = p._highest_accepted(promises, p._catchup_to)
    last = max(best, default=p._catchup_to)
    p.next_slot = p._catchup_to + 1
    values: list[tuple[EntryType, bytes]] = []
    for s in range(p._catchup_to + 1, last + 1):
        adopted = best.get(s)
        if adopted is None:
            values.append((EntryType.NORMAL, b""))  # a hole: fill it with a no-op
            continue
        values.append((adopted.type, adopted.data))
        if adopted.type == EntryType.CONF_CHANGE:
            p._pending_confs.append((s, ConfChange.decode(adopted.data)))
    phase2.propose_values(p, values)
    learn.bcast_commit(p)
