"""Log replication: the leader's appends, heartbeats and flow control per follower,
and the follower's side of AppendEntries and heartbeats.

Flow control is etcd-io/raft's: a follower in PROBE gets one message until we
learn where its log matches ours (conflict hints, or bisection without them); in
REPLICATE the leader pipelines, capped by the follower's `Inflights`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from raftkv.raft import snapshots
from raftkv.raft.log import CompactedError
from raftkv.raft.progress import Inflights, Progress, ProgressState
from raftkv.raft.types import Message, MsgType

if TYPE_CHECKING:
    from raftkv.raft.core import Raft


# --- leader ------------------------------------------------------------------
def new_progress(r: Raft, node: int, last: int) -> Progress:
    pr = Progress(
        last + 1,
        Inflights(r.cfg.max_inflight_msgs, r.cfg.max_inflight_bytes),
        is_learner=node in r.conf.learners,
    )
    if node == r.id:
        pr.match = last if r.log.unstable_from > last else r.log.unstable_from - 1
    return pr


def send_append(r: Raft, to: int) -> None:
    maybe_send_append(r, to, send_if_empty=True)


def maybe_send_append(r: Raft, to: int, send_if_empty: bool) -> bool:
    pr = r.prs[to]
    if pr.is_paused():
        return False
    prev = pr.next - 1
    try:
        prev_term = r.log.term(prev)
        ents = r.log.slice(
            pr.next, r.log.last_index() + 1, r.cfg.max_bytes_per_msg, r.cfg.max_entries_per_msg
        )
    except CompactedError:
        return snapshots.send_snapshot(r, to, pr)
    if not ents and not send_if_empty:
        return False
    r._send(
        Message(
            MsgType.APP,
            to=to,
            frm=r.id,
            index=prev,
            log_term=prev_term,
            entries=ents,
            commit=r.log.committed,
        )
    )
    if ents:
        last = ents[-1].index
        if pr.state == ProgressState.REPLICATE:
            pr.next = last + 1
            pr.inflights.add(last, sum(len(e.data) + 16 for e in ents))
        elif pr.state == ProgressState.PROBE:
            pr.probe_sent = True
    elif pr.state == ProgressState.PROBE:
        pr.probe_sent = True
    return True


def bcast_append(r: Raft) -> None:
    for node in r.prs:
        if node != r.id:
            send_append(r, node)


def bcast_heartbeat(r: Raft, ctx: bytes = b"") -> None:
    if ctx and ctx == r.read_only.last_ctx():
        r._read_round_due = False  # this round confirms every queued request
    for node, pr in r.prs.items():
        if node == r.id:
            continue
        # Never tell a follower about a commit index beyond what it has.
        commit = min(pr.match, r.log.committed)
        r._send(Message(MsgType.HEARTBEAT, to=node, frm=r.id, commit=commit, context=ctx))


def handle_append_reject(r: Raft, m: Message, pr: Progress) -> None:
    rejected = m.index  # the prev index the follower could not match
    if rejected <= pr.match:
        return  # stale rejection
    # A real hint is below the rejected index or carries a term; 0/0 is a real
    # hint too ("nothing after 0 matches": an empty follower).
    if m.log_term > 0 or m.reject_hint < rejected:
        # Conflict hints: skip the follower's whole divergent term in one step.
        next_probe = m.reject_hint
        if m.log_term > 0:
            next_probe = r.log.find_conflict_by_term(m.reject_hint, m.log_term)
        next_prev = min(rejected - 1, next_probe)
    else:
        # No hints: bisect between what is known to match and what is known not to.
        hi = min(rejected, pr.probe_hi) if pr.probe_hi else rejected
        pr.probe_hi = hi
        next_prev = (pr.match + hi) // 2
    next_prev = max(next_prev, pr.match)
    if pr.state == ProgressState.REPLICATE:
        pr.become_probe()
    pr.next = next_prev + 1
    pr.probe_sent = False
    send_append(r, m.frm)


def handle_append_ack(r: Raft, m: Message, pr: Progress) -> None:
    was_paused = pr.is_paused()
    # A probe acked exactly at the known match also proves where the logs agree.
    if not pr.maybe_update(m.index) and not (
        pr.state == ProgressState.PROBE and pr.match == m.index
    ):
        return
    if pr.state == ProgressState.PROBE:
        pr.become_replicate()
    elif pr.state == ProgressState.SNAPSHOT and pr.match >= pr.pending_snapshot:
        pr.become_probe()
        pr.become_replicate()
    elif pr.state == ProgressState.REPLICATE:
        pr.inflights.free_le(m.index)
    if r._maybe_commit():
        bcast_append(r)
    elif was_paused:
        send_append(r, m.frm)
    while maybe_send_append(r, m.frm, send_if_empty=False):
        pass
    if m.frm == r.lead_transferee and pr.match == r.log.last_index():
        r._send(Message(MsgType.TIMEOUT_NOW, to=m.frm, frm=r.id))  # transfer: caught up


def handle_heartbeat_resp(r: Raft, m: Message, pr: Progress) -> None:
    pr.recent_active = True
    pr.probe_sent = False
    if pr.state == ProgressState.REPLICATE and pr.inflights.full():
        pr.inflights.free_first()
    if pr.match < r.log.last_index():
        send_append(r, m.frm)


# --- follower ----------------------------------------------------------------
def handle_append(r: Raft, m: Message) -> None:
    if m.index < r.log.committed:
        r._send(Message(MsgType.APP_RESP, to=m.frm, frm=r.id, term=r.term, index=r.log.committed))
        return
    last_new = r._maybe_append(m.index, m.log_term, m.commit, m.entries)
    if last_new is not None:
        r._send(Message(MsgType.APP_RESP, to=m.frm, frm=r.id, term=r.term, index=last_new))
        return
    # reject_hint == index with no term means "no hint": the leader bisects.
    resp = Message(
        MsgType.APP_RESP,
        to=m.frm,
        frm=r.id,
        term=r.term,
        index=m.index,
        reject=True,
        reject_hint=m.index,
    )
    if r.cfg.send_conflict_hints:
        hint = r.log.find_conflict_by_term(min(m.index, r.log.last_index()), m.log_term)
        resp.reject_hint = hint
        resp.log_term = r.log.term_or_zero(hint)
    r._send(resp)


def handle_heartbeat(r: Raft, m: Message) -> None:
    r.log.commit_to(min(m.commit, r.log.last_index()))
    r._send(Message(MsgType.HEARTBEAT_RESP, to=m.frm, frm=r.id, term=r.term, context=m.context))
