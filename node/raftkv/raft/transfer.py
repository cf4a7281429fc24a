"""Leadership transfer (Raft thesis 3.10): bring the transferee's log up to date,
then tell it to campaign at once (TIMEOUT_NOW). Proposals are refused meanwhile;
a transfer that does not finish within an election timeout is abandoned."""

from __future__ import annotations

from typing import TYPE_CHECKING

from raftkv.raft import replication
from raftkv.raft.types import NONE, Message, MsgType, NotLeader, StateRole

if TYPE_CHECKING:
    from raftkv.raft.core import Raft


def transfer_leadership(r: Raft, to: int) -> None:
    if r.role == StateRole.LEADER:
        handle_transfer(r, to)
    elif r.leader != NONE:
        r._send(Message(MsgType.TRANSFER_LEADER, to=r.leader, frm=r.id, index=to))
    else:
        raise NotLeader(NONE)


def handle_transfer(r: Raft, to: int) -> None:
    if to == r.id or to not in r.conf.voters or to not in r.prs:
        return
    if r.lead_transferee == to:
        return
    r.lead_transferee = to
    r.election_elapsed = 0  # the transfer must finish within one election timeout
    if r.prs[to].match == r.log.last_index():
        r._send(Message(MsgType.TIMEOUT_NOW, to=to, frm=r.id))
    else:
        replication.send_append(r, to)
