"""The Ready/advance handshake: what changed since the last Ready (promise and
commit, role and leader, accepted values to persist, a snapshot to install,
chosen values to apply, messages, read states), and what the caller reports
back once it persisted and applied them. Every message waits for the persist
(`Paxos.SENDS_BEFORE_PERSIST` is False); the leader's own accepts count only
after it (`advance`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from raftkv.paxos import learn, phase2
from raftkv.paxos.types import Ready
from raftkv.raft.types import ConfChange, EntryType, SoftState, StateRole, conf_after

if TYPE_CHECKING:
    from raftkv.paxos.core import Paxos


def has_ready(p: Paxos) -> bool:
    if (
        p.msgs
        or p.read_states
        or p._unstable
        or p._pending_snapshot is not None
        or p._applying < p.commit
    ):
        return True
    ss = p._prev_ss
    return p._hard_state() != p._prev_hs or ss.leader != p.leader or ss.role != p.role


def ready(p: Paxos) -> Ready:
    rd = Ready()
    ss = SoftState(p.leader, p.role)
    if ss != p._prev_ss:
        rd.soft_state = ss
        p._prev_ss = ss
    hs = p._hard_state()
    if hs != p._prev_hs:
        rd.hard_state = hs
        p._prev_hs = hs
    rd.entries = [p.log[s] for s in sorted(p._unstable) if s in p.log]
    p._unstable = set()
    if p._pending_snapshot is not None:
        rd.snapshot = p._pending_snapshot
        p._pending_snapshot = None
        p._applying = max(p._applying, rd.snapshot.meta.index)
    if p.commit > p._applying:
        end = min(p.commit, p._applying + p.cfg.max_committed_per_ready)
        rd.committed_entries = [p.log[s] for s in range(p._applying + 1, end + 1)]
        p._applying = end
    rd.messages, p.msgs = p.msgs, []
    rd.read_states, p.read_states = p.read_states, []
    return rd


def advance(p: Paxos, rd: Ready) -> None:
    if rd.snapshot is not None:
        p.applied = max(p.applied, rd.snapshot.meta.index)
        p._applied_conf = rd.snapshot.meta.conf_state
    if rd.entries and p.role == StateRole.LEADER:
        # The leader's own accepts count only now, once they are durable.
        for e in rd.entries:
            if e.term == p.promised and e.index in p._acks:
                p._acks[e.index].add(p.id)
                phase2.maybe_chosen(p, e.index)
        learn.advance_known(p)
    for e in rd.committed_entries:
        if e.type == EntryType.CONF_CHANGE:
            p._applied_conf = conf_after(p._applied_conf, ConfChange.decode(e.data))
        p.applied = max(p.applied, e.index)
