"""Messages in: note the highest ballot round seen, then hand the message to the
concern that handles its type (phase 1, phase 2, learning, snapshots, reads,
transfer)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from raftkv.paxos import learn, phase1, phase2, readbarrier, snapshots, transfer
from raftkv.paxos.types import Message, MsgType, ballot_round
from raftkv.raft.types import NONE

if TYPE_CHECKING:
    from raftkv.paxos.core import Paxos

_HANDLERS: dict[MsgType, Callable[[Paxos, Message], None]] = {
    MsgType.PREPARE: phase1.on_prepare,
    MsgType.PROMISE: phase1.on_promise,
    MsgType.ACCEPT: phase2.on_accept,
    MsgType.ACCEPTED: phase2.on_accepted,
    MsgType.NACK: phase1.on_nack,
    MsgType.COMMIT: learn.on_commit,
    MsgType.COMMIT_RESP: learn.on_commit_resp,
    MsgType.CATCHUP: learn.on_catchup,
    MsgType.CATCHUP_RESP: learn.on_catchup_resp,
    MsgType.SNAP: snapshots.on_snapshot,
    MsgType.READ_INDEX: readbarrier.on_read_index,
    MsgType.READ_INDEX_RESP: readbarrier.on_read_index_resp,
    MsgType.TIMEOUT_NOW: transfer.on_timeout_now,
    MsgType.TRANSFER_LEADER: transfer.on_transfer_leader,
}


def step(p: Paxos, m: Message) -> None:
    if m.frm == NONE or m.frm == p.id or m.ballot < 0:
        return
    if ballot_round(m.ballot) > p.max_seen_round:
        p.max_seen_round = ballot_round(m.ballot)
    handler = _HANDLERS.get(m.type)
    if handler is not None:
        handler(p, m)
