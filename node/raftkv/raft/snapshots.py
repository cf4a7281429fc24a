"""InstallSnapshot: shipping the leader's latest snapshot to a follower whose next
entry is compacted away, and installing one on the follower."""

from __future__ import annotations

from typing import TYPE_CHECKING

from raftkv.raft.progress import Progress, ProgressState
from raftkv.raft.types import Message, MsgType, Snapshot, StateRole

if TYPE_CHECKING:
    from raftkv.raft.core import Raft


def send_snapshot(r: Raft, to: int, pr: Progress) -> bool:
    if not pr.recent_active:
        return False  # don't ship a snapshot to a node that may be down
    meta = r.log.snapshot
    pr.become_snapshot(meta.index)
    r._send(Message(MsgType.SNAP, to=to, frm=r.id, snapshot=Snapshot(meta)))
    return True


def report_snapshot(r: Raft, node: int, ok: bool) -> None:
    """The runtime finished (or failed) streaming a snapshot to `node`."""
    pr = r.prs.get(node)
    if r.role != StateRole.LEADER or pr is None or pr.state != ProgressState.SNAPSHOT:
        return
    if not ok:
        pr.pending_snapshot = 0
    pr.become_probe()
    pr.probe_sent = True  # wait for a heartbeat response before probing again


def handle_snapshot(r: Raft, m: Message) -> None:
    snap = m.snapshot
    if snap is None:
        return
    index = r.log.last_index() if r._restore(snap) else r.log.committed
    r._send(Message(MsgType.APP_RESP, to=m.frm, frm=r.id, term=r.term, index=index))


def restore(r: Raft, snap: Snapshot) -> bool:
    """Install `snap` unless we already hold what it covers; True if installed."""
    meta = snap.meta
    if meta.index <= r.log.committed:
        return False
    # No "am I in its ConfState" check: the leader's latest snapshot may predate
    # our admission (a new learner); we learn our membership from the entries after it.
    if r.log.match_term(meta.index, meta.term):
        r.log.commit_to(meta.index)  # we already have it: fast-forward instead
        return False
    r.log.restore(meta)
    r.conf = meta.conf_state
    r._conf_applied = meta.index
    r._pending_snapshot = snap
    return True
