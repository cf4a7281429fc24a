"""The Ready/advance handshake: what the core hands the caller to persist, send
and apply (`ready`), and what the caller reports done (`advance`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from raftkv.raft import membership, replication
from raftkv.raft.types import Ready, SoftState, StateRole

if TYPE_CHECKING:
    from raftkv.raft.core import Raft


def has_ready(r: Raft) -> bool:
    if r.msgs or r.read_states or r._pending_snapshot is not None:
        return True
    if r._read_round_due and r.read_only.pending:
        return True
    if r.log.unstable_from <= r.log.last_index():
        return True
    if r._hard_state() != r._prev_hs:
        return True
    if r._applying < r.log.committed:
        return True
    return SoftState(r.leader, r.role) != r._prev_ss


def ready(r: Raft) -> Ready:
    rd = Ready()
    ss = SoftState(r.leader, r.role)
    if ss != r._prev_ss:
        rd.soft_state = ss
        r._prev_ss = ss
    hs = r._hard_state()
    if hs != r._prev_hs:
        rd.hard_state = hs
        r._prev_hs = hs
    rd.entries = r.log.unstable_entries()
    if r._pending_snapshot is not None:
        rd.snapshot = r._pending_snapshot
        r._pending_snapshot = None
        r._applying = max(r._applying, rd.snapshot.meta.index)
    if r.log.committed > r._applying:
        rd.committed_entries = r.log.slice(
            r._applying + 1, r.log.committed + 1, max_count=r.cfg.max_committed_per_ready
        )
        if rd.committed_entries:
            r._applying = rd.committed_entries[-1].index
    if r._read_round_due:
        # Only while requests wait: the acks of an earlier round may have answered
        # them all meanwhile (a request repeated with the same context).
        r._read_round_due = False
        if r.read_only.pending:
            r._bcast_heartbeat(r.read_only.last_ctx())
    rd.messages, r.msgs = r.msgs, []
    rd.read_states, r.read_states = r.read_states, []
    return rd


def advance(r: Raft, rd: Ready) -> None:
    if rd.snapshot is not None:
        r.log.applied = max(r.log.applied, rd.snapshot.meta.index)
        r._conf_applied = max(r._conf_applied, rd.snapshot.meta.index)
        r._applied_conf = rd.snapshot.meta.conf_state
    if rd.entries:
        last = rd.entries[-1]
        r.log.stable_to(last.index, last.term)
        # The leader's own ack: only now are its entries durable.
        if (
            r.role == StateRole.LEADER
            and r.log.match_term(last.index, last.term)
            and r.prs[r.id].maybe_update(last.index)
            and r._maybe_commit()
        ):
            replication.bcast_append(r)
    if rd.committed_entries:
        membership.on_applied(r, rd.committed_entries)
        r.log.applied = max(r.log.applied, rd.committed_entries[-1].index)
