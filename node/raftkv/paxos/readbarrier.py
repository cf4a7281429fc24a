"""The read barrier: a linearizable read point without writing to the log.

The read index is the last slot the leader has assigned. It is safe once a
quorum has answered a round of the leader's ballot sent after the read
arrived: a higher ballot can only choose values after a quorum promised it,
that quorum includes one of our answerers, which promised it after answering
us; so every value chosen before the read arrived was chosen at a ballot <=
ours, and this leader holds (re-proposed or proposed) every such value at a
slot <= the read index. The round is a COMMIT carrying the read's context.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from raftkv.paxos import learn, membership
from raftkv.paxos.quorum import majority
from raftkv.paxos.types import Message, MsgType, ballot_node
from raftkv.raft.types import NONE, NotLeader, ReadState, StateRole

if TYPE_CHECKING:
    from raftkv.paxos.core import Paxos


class ReadBarriers:
    """Read barriers waiting for a quorum round of the current ballot, in order."""

    __slots__ = ("pending",)

    def __init__(self) -> None:
        # ctx -> (read index, requester, acks)
        self.pending: OrderedDict[bytes, tuple[int, int, set[int]]] = OrderedDict()

    def last_ctx(self) -> bytes:
        return next(reversed(self.pending)) if self.pending else b""


def read_index(p: Paxos, ctx: bytes) -> None:
    if p.role == StateRole.LEADER:
        handle_read_index(p, ctx, p.id)
    elif p.leader != NONE:
        p._send(Message(MsgType.READ_INDEX, to=p.leader, frm=p.id, context=ctx))
    else:
        raise NotLeader(NONE)


def handle_read_index(p: Paxos, ctx: bytes, frm: int) -> None:
    index = p.next_slot - 1
    p._reads.pending[ctx] = (index, frm, {p.id})
    if p._read_quorum({p.id}):
        ack_read(p, ctx, p.id)
    else:
        learn.bcast_commit(p, ctx)


def read_quorum(p: Paxos, acks: set[int]) -> bool:
    """A majority of today's configuration and of the one deciding the next slot."""
    return majority(acks, p.conf) and majority(acks, membership.conf_for(p, p.next_slot))


def ack_read(p: Paxos, ctx: bytes, frm: int) -> None:
    req = p._reads.pending.get(ctx)
    if req is None:
        return
    req[2].add(frm)
    if not p._read_quorum(req[2]):
        return
    while p._reads.pending:  # a later round's quorum covers earlier requests
        c, (index, requester, _) = p._reads.pending.popitem(last=False)
        respond_read(p, c, index, requester)
        if c == ctx:
            break


def respond_read(p: Paxos, ctx: bytes, index: int, frm: int) -> None:
    if frm == p.id:
        p.read_states.append(ReadState(index, ctx))
    else:
        p._send(
            Message(
                MsgType.READ_INDEX_RESP,
                to=frm,
                frm=p.id,
                index=index,
                context=ctx,
                ballot=p.promised,
            )
        )


def on_read_index(p: Paxos, m: Message) -> None:
    if p.role == StateRole.LEADER:
        handle_read_index(p, m.context, m.frm)
    elif p.leader != NONE and p.role == StateRole.FOLLOWER:
        p._send(Message(MsgType.READ_INDEX, to=p.leader, frm=m.frm, context=m.context))


def on_read_index_resp(p: Paxos, m: Message) -> None:
    if m.frm == p.leader and ballot_node(m.ballot) == m.frm:
        p.read_states.append(ReadState(m.index, m.context))
