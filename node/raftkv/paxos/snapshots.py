"""Snapshots: compacting the chosen prefix the application saved, and installing
one a member sent in answer to our CATCHUP (learn.on_catchup sends it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from raftkv.paxos import election, learn, phase2
from raftkv.paxos.types import Message
from raftkv.raft.types import NONE, SnapshotMeta, StateRole

if TYPE_CHECKING:
    from raftkv.paxos.core import Paxos


def snapshot_meta(p: Paxos) -> SnapshotMeta:
    e = p.log.get(p.applied)
    b = e.term if e is not None else p.snap_meta.term
    return SnapshotMeta(p.applied, b, p._applied_conf)


def compact(p: Paxos, meta: SnapshotMeta, keep: int) -> None:
    if meta.index > p.applied or meta.index <= p.snap_meta.index:
        return
    p.snap_meta = meta
    cut = meta.index - keep
    if cut > p.base:
        for s in [s for s in p.log if s <= cut]:
            del p.log[s]
            p._unstable.discard(s)
        p.base = cut


def on_snapshot(p: Paxos, m: Message) -> None:
    p._pull_wait = 0
    snap = m.snapshot
    if snap is None or snap.meta.index <= p.commit:
        return
    meta = snap.meta
    for s in [s for s in p.log if s <= meta.index]:
        del p.log[s]
        p._unstable.discard(s)
    p._known_chosen = {s for s in p._known_chosen if s > meta.index}
    p.base = meta.index
    p.snap_meta = meta
    p.commit = meta.index
    p.conf = meta.conf_state
    if p.role != StateRole.FOLLOWER and p.id not in p.conf.voters:
        election.become_follower(p, NONE)  # the snapshot says we were removed
    p._pending_confs = [(s, cc) for s, cc in p._pending_confs if s > meta.index]
    for s in [s for s in p._acks if s <= meta.index]:
        del p._acks[s]
    p._pending_snapshot = snap
    phase2.recount(p)
    learn.advance_known(p)
    if m.commit > p.commit:
        learn.pull(p, m.frm)
