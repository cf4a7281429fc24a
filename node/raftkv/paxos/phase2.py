"""Phase 2: accept and choose.

The leader proposes values at its ballot, pipelined (slots go out as they are
proposed, in batches, without waiting) and resends what an acceptor has not
accepted yet on every heartbeat. An acceptor accepts a value at a ballot no
lower than its promise and answers ACCEPTED once it is durable. A slot is
chosen when a majority of the configuration that decides it accepted it at the
leader's ballot; the leader's own accept counts only after its fsync
(handoff.advance).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from raftkv.paxos import learn, membership, phase1
from raftkv.paxos.quorum import majority
from raftkv.paxos.types import Message, MsgType, ballot_node
from raftkv.raft.types import Entry, EntryType, StateRole

if TYPE_CHECKING:
    from raftkv.paxos.core import Paxos


# --- proposer ---------------------------------------------------------------------
def propose_values(p: Paxos, values: list[tuple[EntryType, bytes]]) -> None:
    if not values:
        return
    first = p.next_slot
    if first <= max(p.commit, p.base):
        raise AssertionError(f"proposing at slot {first}, chosen up to {p.commit}")
    ents = [Entry(p.promised, first + i, t, d) for i, (t, d) in enumerate(values)]
    for e in ents:
        p.log[e.index] = e
        p._unstable.add(e.index)
        p._acks[e.index] = set()
    p.next_slot = first + len(ents)
    bcast_accept(p, ents)


def bcast_accept(p: Paxos, ents: list[Entry]) -> None:
    n = p.cfg.max_entries_per_msg
    for to in sorted(membership.members(p) - {p.id}):
        for i in range(0, len(ents), n):
            p._send(
                Message(
                    MsgType.ACCEPT,
                    to=to,
                    frm=p.id,
                    ballot=p.promised,
                    entries=ents[i : i + n],
                    commit=p.commit,
                )
            )


def retransmit(p: Paxos) -> None:
    """Slots not chosen yet: resend them to whoever has not accepted them (lost
    messages, a restarted acceptor, a new member)."""
    open_slots = sorted(p._acks)[: p.cfg.max_entries_per_msg]
    if not open_slots:
        return
    for to in sorted(membership.members(p) - {p.id}):
        missing = [p.log[s] for s in open_slots if to not in p._acks[s]]
        run: list[Entry] = []
        for e in missing:
            if run and e.index != run[-1].index + 1:
                send_accept(p, to, run)
                run = []
            run.append(e)
        if run:
            send_accept(p, to, run)


def send_accept(p: Paxos, to: int, ents: list[Entry]) -> None:
    p._send(
        Message(
            MsgType.ACCEPT,
            to=to,
            frm=p.id,
            ballot=p.promised,
            entries=ents,
            commit=p.commit,
        )
    )


def on_accepted(p: Paxos, m: Message) -> None:
    if p.role != StateRole.LEADER or m.ballot != p.promised:
        return
    p._recent_active.add(m.frm)
    for s in range(m.index, m.last + 1):
        acks = p._acks.get(s)
        if acks is not None:
            acks.add(m.frm)
            maybe_chosen(p, s)
    learn.advance_known(p)


def maybe_chosen(p: Paxos, s: int) -> None:
    if p.commit < p._catchup_to:
        return  # our configuration may be stale until we know the chosen prefix
    acks = p._acks.get(s)
    if acks is not None and majority(acks, membership.conf_for(p, s)):
        p._known_chosen.add(s)


def recount(p: Paxos) -> None:
    """The leader now knows the chosen prefix it found in phase 1: count its acks."""
    if p.role == StateRole.LEADER:
        for s in sorted(p._acks):
            maybe_chosen(p, s)


# --- acceptor ----------------------------------------------------------------------
def on_accept(p: Paxos, m: Message) -> None:
    if not p._accepts(m.ballot):
        p._send(Message(MsgType.NACK, to=m.frm, frm=p.id, ballot=p.promised))
        return
    follow(p, m.ballot)
    for e in m.entries:
        accept(p, m.ballot, e)
    if m.entries:
        p._send(
            Message(
                MsgType.ACCEPTED,
                to=m.frm,
                frm=p.id,
                ballot=m.ballot,
                index=m.entries[0].index,
                last=m.entries[-1].index,
            )
        )
    learn.learn_commit(p, m.ballot, m.commit, m.frm)


def follow(p: Paxos, b: int) -> None:
    """A message from the leader of ballot b >= our promise."""
    if b > p.promised:
        phase1.promise(p, b)
    if p.role != StateRole.FOLLOWER:
        return  # our own ballot: nobody else sends it
    p.leader = ballot_node(b)
    p.election_elapsed = 0


def accept(p: Paxos, b: int, e: Entry) -> None:
    s = e.index
    if s <= p.base:
        return  # compacted: chosen long ago, the same value by Paxos
    old = p.log.get(s)
    if old is not None and (s <= p.commit or s in p._known_chosen):
        # Chosen here already: the leader's value is the same; never lower a ballot.
        if b > old.term:
            store(p, Entry(b, s, old.type, old.data))
        return
    store(p, Entry(b, s, e.type, e.data))


def store(p: Paxos, e: Entry) -> None:
    old = p.log.get(e.index)
    if old is not None and old.term == e.term and old.data == e.data and old.type == e.type:
        return
    p.log[e.index] = e
    p._unstable.add(e.index)
