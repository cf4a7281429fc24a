"""Leadership transfer and stepping down. The leader stops proposing and sends
TIMEOUT_NOW; the transferee runs phase 1 at once, with a PREPARE the acceptors
promise even inside the old leader's lease. A transfer that does not finish in
one election timeout is dropped (election.tick_leader)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from raftkv.paxos import election
from raftkv.paxos.types import Message, MsgType
from raftkv.raft.types import NONE, NotLeader, StateRole

if TYPE_CHECKING:
    from raftkv.paxos.core import Paxos


def transfer_leadership(p: Paxos, to: int) -> None:
    if p.role == StateRole.LEADER:
        handle_transfer(p, to)
    elif p.leader != NONE:
        p._send(Message(MsgType.TRANSFER_LEADER, to=p.leader, frm=p.id, index=to))
    else:
        raise NotLeader(NONE)


def handle_transfer(p: Paxos, to: int) -> None:
    if to == p.id or to not in p.conf.voters or p.lead_transferee == to:
        return
    p.lead_transferee = to
    p.election_elapsed = 0  # it must finish within one election timeout
    p._send(Message(MsgType.TIMEOUT_NOW, to=to, frm=p.id, ballot=p.promised))


def on_timeout_now(p: Paxos, m: Message) -> None:
    if (
        p.role == StateRole.FOLLOWER
        and m.ballot == p.promised
        and m.frm == p.leader
        and p.is_voter()
    ):
        p.campaign(transfer=True)


def on_transfer_leader(p: Paxos, m: Message) -> None:
    if p.role == StateRole.LEADER and m.frm in p.conf.voters:
        handle_transfer(p, m.index)


def step_down(p: Paxos) -> None:
    if p.role != StateRole.FOLLOWER:
        election.become_follower(p, NONE)
