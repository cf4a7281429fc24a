"""ReadIndex: linearizable read points without writing to the log (Raft thesis 6.4).

The leader records its commit index, confirms it is still the leader with one
heartbeat round (or its lease), and only then hands the index out. A new leader
first waits for an entry of its own term to commit: until then its commit index
may lag what its predecessor acknowledged.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from raftkv.raft.types import NONE, Message, MsgType, NotLeader, ReadState, StateRole

if TYPE_CHECKING:
    from raftkv.raft.core import Raft


class ReadOnly:
    """ReadIndex requests waiting for a quorum of heartbeat acks, in arrival order."""

    __slots__ = ("pending",)

    def __init__(self) -> None:
        # ctx -> [commit index at request, requester id, acks]
        self.pending: OrderedDict[bytes, tuple[int, int, set[int]]] = OrderedDict()

    def add(self, index: int, ctx: bytes, frm: int) -> None:
        if ctx not in self.pending:
            self.pending[ctx] = (index, frm, set())

    def ack(self, ctx: bytes, frm: int) -> set[int] | None:
        req = self.pending.get(ctx)
        if req is None:
            return None
        req[2].add(frm)
        return req[2]

    def advance(self, ctx: bytes) -> list[tuple[bytes, int, int]]:
        """Pop every request up to and including ctx (a later quorum ack covers earlier ones)."""
        if ctx not in self.pending:
            return []
        out: list[tuple[bytes, int, int]] = []
        while self.pending:
            c, (index, frm, _) = self.pending.popitem(last=False)
            out.append((c, index, frm))
            if c == ctx:
                break
        return out

    def last_ctx(self) -> bytes:
        return next(reversed(self.pending)) if self.pending else b""


def read_index(r: Raft, ctx: bytes) -> None:
    """A local request: the leader serves it, a follower forwards it to the leader."""
    if r.role == StateRole.LEADER:
        leader_read(r, ctx, r.id)
    elif r.leader != NONE:
        r._send(Message(MsgType.READ_INDEX, to=r.leader, frm=r.id, context=ctx))
    else:
        raise NotLeader(NONE)


def leader_read(r: Raft, ctx: bytes, frm: int) -> None:
    """A request reached the leader (its own or forwarded by `frm`)."""
    if not r._committed_entry_in_current_term():
        r.pending_reads.append((ctx, frm))
    else:
        r._handle_read_index(ctx, frm)


def handle_read_index(r: Raft, ctx: bytes, frm: int) -> None:
    if len(r.conf.voters) == 1 and r.id in r.conf.voters or r.cfg.lease_reads:
        r._respond_read(ctx, r.log.committed, frm)
        return
    r.read_only.add(r.log.committed, ctx, frm)
    r.read_only.ack(ctx, r.id)
    r._read_round_due = True  # batched: the round goes out with the next Ready


def respond_read(r: Raft, ctx: bytes, index: int, frm: int) -> None:
    if frm == r.id or frm == NONE:
        r.read_states.append(ReadState(index, ctx))
    else:
        r._send(Message(MsgType.READ_INDEX_RESP, to=frm, frm=r.id, index=index, context=ctx))


def release_pending_reads(r: Raft) -> None:
    """The commit index moved: once an entry of our term is committed, the reads
    that waited for it can take their read point."""
    if r.pending_reads and r._committed_entry_in_current_term():
        reads, r.pending_reads = r.pending_reads, []
        for ctx, frm in reads:
            r._handle_read_index(ctx, frm)


def on_heartbeat_ack(r: Raft, m: Message) -> None:
    """A heartbeat response carrying a read round's context: count it, and answer
    every request up to that round once a quorum has acked it."""
    if not m.context or r.cfg.lease_reads:
        return
    acks = r.read_only.ack(m.context, m.frm)
    if acks is not None and r._has_quorum(acks | {r.id}):
        for ctx, index, frm in r.read_only.advance(m.context):
            r._respond_read(ctx, index, frm)
