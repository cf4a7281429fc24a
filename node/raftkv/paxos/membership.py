"""Membership changes: through the log, one at a time (learner first, then
promote), each decided under the configuration before it. No slot after a
change is proposed until the change is chosen, so every slot has exactly one
configuration: the one after every change below it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from raftkv.paxos import election
from raftkv.raft.types import NONE, ConfChange, ConfState, ProposalDropped, StateRole, conf_after

if TYPE_CHECKING:
    from raftkv.paxos.core import Paxos


def check_proposal(p: Paxos, cc: ConfChange) -> None:
    """Raise unless `cc` may be proposed now (the caller checked it leads)."""
    if p._pending_confs:
        raise ProposalDropped("a membership change is already in progress")
    if p.commit < p.next_slot - 1:
        # Like Raft's "an entry of the leader's term is committed": every slot
        # adopted or proposed so far is decided, under today's configuration.
        raise ProposalDropped("leader has open slots; retry once they are chosen")
    p._validate_conf_change(cc)


def members(p: Paxos) -> set[int]:
    """Who the leader talks to: today's members and any being added."""
    out = set(p.conf.members())
    for _, cc in p._pending_confs:
        out.add(cc.node_id)
    return out


def conf_for(p: Paxos, slot: int) -> ConfState:
    """The configuration that decides `slot`: the one after every change before it."""
    conf = p.conf
    for s, cc in p._pending_confs:
        if s < slot:
            conf = conf_after(conf, cc)
    return conf


def apply_conf_change(p: Paxos, cc: ConfChange) -> None:
    """A chosen change, as `commit` passes it."""
    p.conf = conf_after(p.conf, cc)
    if p.role != StateRole.FOLLOWER and p.id not in p.conf.voters:
        election.become_follower(p, NONE)  # a removed leader (or candidate) steps down
    if p.lead_transferee != NONE and p.lead_transferee not in p.conf.voters:
        p.lead_transferee = NONE
