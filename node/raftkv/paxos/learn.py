"""Learning the chosen prefix, and catching up on it.

The leader's COMMIT (also its heartbeat) says "every slot <= c is chosen": an
acceptor holding a slot at the leader's ballot knows its value is the chosen
one (one value per slot per ballot); any other slot it pulls (CATCHUP) from a
member that knows more, which answers with chosen values or, when it has
compacted them, a snapshot. `commit` only moves over a contiguous run of slots
known chosen, applying membership changes as it passes them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from raftkv.paxos import membership, phase2, readbarrier
from raftkv.paxos.types import Message, MsgType
from raftkv.raft.types import ConfChange, Entry, EntryType, Snapshot, StateRole

if TYPE_CHECKING:
    from raftkv.paxos.core import Paxos


# --- knowing a slot chosen ------------------------------------------------------------
def learn_chosen(p: Paxos, e: Entry) -> None:
    """`e` is the value chosen at its slot: store it (never lowering the ballot
    we report for the slot) and mark it chosen."""
    s = e.index
    if s <= p.commit or s <= p.base:
        return
    old = p.log.get(s)
    b = max(e.term, old.term) if old is not None else e.term
    phase2.store(p, Entry(b, s, e.type, e.data))
    p._known_chosen.add(s)


def learn_commit(p: Paxos, b: int, c: int, frm: int) -> None:
    """The leader of b says every slot <= c is chosen: ours at b are its values."""
    s = p.commit + 1
    while s <= c:
        e = p.log.get(s)
        if e is None or (e.term != b and s not in p._known_chosen):
            break
        p._known_chosen.add(s)
        s += 1
    advance_known(p)
    if c > p.commit:
        pull(p, frm)


def advance_known(p: Paxos) -> None:
    c = p.commit
    while c + 1 in p._known_chosen and c + 1 in p.log:
        c += 1
    if c > p.commit:
        advance_commit(p, c)


def advance_commit(p: Paxos, c: int) -> None:
    was_catching_up = p.commit < p._catchup_to
    for s in range(p.commit + 1, c + 1):
        e = p.log.get(s)
        if e is None:
            c = s - 1
            break
        if e.type == EntryType.CONF_CHANGE:
            membership.apply_conf_change(p, ConfChange.decode(e.data))
        p._known_chosen.discard(s)
        p._acks.pop(s, None)
    if c <= p.commit:
        return
    p.commit = c
    p._pending_confs = [(s, cc) for s, cc in p._pending_confs if s > c]
    if p.role == StateRole.LEADER:
        if was_catching_up and p.commit >= p._catchup_to:
            phase2.recount(p)
            advance_known(p)
            return
        bcast_commit(p)


# --- COMMIT: the leader's heartbeat -------------------------------------------------------
def bcast_commit(p: Paxos, ctx: bytes = b"") -> None:
    for to in sorted(membership.members(p) - {p.id}):
        p._send(
            Message(
                MsgType.COMMIT,
                to=to,
                frm=p.id,
                ballot=p.promised,
                commit=p.commit,
                context=ctx,
            )
        )


def on_commit(p: Paxos, m: Message) -> None:
    if m.ballot >= p.promised:
        phase2.follow(p, m.ballot)
        if p.role == StateRole.FOLLOWER:
            p._send(
                Message(
                    MsgType.COMMIT_RESP,
                    to=m.frm,
                    frm=p.id,
                    ballot=m.ballot,
                    context=m.context,
                    commit=p.commit,
                )
            )
    else:
        p._send(Message(MsgType.NACK, to=m.frm, frm=p.id, ballot=p.promised))
    learn_commit(p, m.ballot, m.commit, m.frm)


def on_commit_resp(p: Paxos, m: Message) -> None:
    if p.role != StateRole.LEADER or m.ballot != p.promised:
        return
    p._recent_active.add(m.frm)
    p.peer_commit[m.frm] = m.commit
    if m.commit > p.commit:
        pull(p, m.frm)  # it knows more of the chosen prefix (we are catching up)
    if m.context:
        readbarrier.ack_read(p, m.context, m.frm)


# --- CATCHUP: pulling chosen values -------------------------------------------------------
def pull(p: Paxos, frm: int) -> None:
    if p._pull_wait == 0:
        p._pull_wait = max(2, p.cfg.election_tick // 2)
        p._send(Message(MsgType.CATCHUP, to=frm, frm=p.id, index=p.commit + 1))


def on_catchup(p: Paxos, m: Message) -> None:
    if m.index <= p.base:
        if p.snap_meta.index > 0:
            p._send(
                Message(
                    MsgType.SNAP,
                    to=m.frm,
                    frm=p.id,
                    snapshot=Snapshot(p.snap_meta),
                    commit=p.commit,
                )
            )
        return
    end = min(p.commit, m.index + p.cfg.max_entries_per_msg - 1)
    ents = [p.log[s] for s in range(m.index, end + 1)]
    p._send(
        Message(
            MsgType.CATCHUP_RESP,
            to=m.frm,
            frm=p.id,
            index=m.index,
            entries=ents,
            commit=p.commit,
        )
    )


def on_catchup_resp(p: Paxos, m: Message) -> None:
    p._pull_wait = 0
    for e in m.entries:
        if e.index <= m.commit:
            learn_chosen(p, e)
    advance_known(p)
    if m.commit > p.commit and m.entries:
        pull(p, m.frm)
