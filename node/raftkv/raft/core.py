"""The Raft state machine: synchronous, deterministic, IO-free.

Modelled on etcd-io/raft. Inputs: `tick()`, `step(msg)`, `propose(data)`,
`propose_conf_change(cc)`, `read_index(ctx)`, `transfer_leadership(to)`,
`report_unreachable(peer)`, `leader_unreachable(leader)`.
Output: `ready()` -> Ready; the caller persists, sends, applies, then calls
`advance(ready)`. Same inputs (and seed) give the same outputs.

Methods are small on purpose: the simulator's tests subclass `Raft` and
override one of them to inject a known bug, and must see it caught.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from dataclasses import dataclass

from raftkv.raft.log import CompactedError, RaftLog
from raftkv.raft.progress import Inflights, Progress, ProgressState
from raftkv.raft.types import (
    NONE,
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MsgType,
    NotLeader,
    ProposalDropped,
    ReadState,
    Ready,
    Snapshot,
    SnapshotMeta,
    SoftState,
    StateRole,
    conf_after,
    validate_conf_change,
)

CAMPAIGN_TRANSFER = b"transfer"
# What only the leader of a term sends to its followers.
_FROM_LEADER = frozenset(
    {MsgType.APP, MsgType.HEARTBEAT, MsgType.SNAP, MsgType.TIMEOUT_NOW, MsgType.READ_INDEX_RESP}
)  # VOTE context: a leadership transfer, skip the lease check


@dataclass(slots=True)
class Config:
    id: int
    election_tick: int = 10
    heartbeat_tick: int = 1
    max_entries_per_msg: int = 512
    max_bytes_per_msg: int = 1 << 20
    max_inflight_msgs: int = 256
    max_inflight_bytes: int = 32 << 20
    max_committed_per_ready: int = 8192
    pre_vote: bool = True
    check_quorum: bool = True
    lease_reads: bool = False  # ReadIndex answered without a heartbeat round (needs check_quorum)
    send_conflict_hints: bool = True  # off: the leader must bisect the follower's log
    seed: int | None = None  # randomized election timeout; default: the node id

    def validate(self) -> None:
        if self.id == NONE:
            raise ValueError("node id must be > 0")
        if self.heartbeat_tick <= 0 or self.election_tick <= self.heartbeat_tick:
            raise ValueError("need 0 < heartbeat_tick < election_tick")
        if self.lease_reads and not self.check_quorum:
            raise ValueError("lease reads are only safe with check_quorum")
        if self.max_inflight_msgs <= 0:
            raise ValueError("max_inflight_msgs must be > 0")


def bootstrap_entries(voters: list[int]) -> tuple[list[Entry], HardState]:
    """The identical first log every founding member writes: one ADD_VOTER per
    voter at term 1, all committed. Persist them, then build the Raft from them."""
    ids = sorted(set(voters))
    entries = [
        Entry(1, i + 1, EntryType.CONF_CHANGE, ConfChange(ConfChangeType.ADD_VOTER, v).encode())
        for i, v in enumerate(ids)
    ]
    return entries, HardState(term=1, vote=NONE, commit=len(entries))


class _ReadOnly:
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


class Raft:
    def __init__(
        self,
        config: Config,
        *,
        hard_state: HardState | None = None,
        snapshot: SnapshotMeta | None = None,
        entries: list[Entry] | None = None,
    ) -> None:
        config.validate()
        self.cfg = config
        self.id = config.id
        self._rng = random.Random(config.seed if config.seed is not None else config.id)
        hs = hard_state or HardState()
        self.log = RaftLog(snapshot, entries)
        self.term = hs.term
        self.vote = hs.vote
        if hs.commit:
            self.log.commit_to(min(hs.commit, self.log.last_index()))
        # Membership: the snapshot's, then every committed conf change, applied eagerly
        # (they will all be applied anyway; `_conf_applied` stops re-applying them).
        self.conf = snapshot.conf_state if snapshot else ConfState()
        # Membership as of `applied` (what a snapshot at `applied` must record): unlike
        # `conf`, it only moves as committed entries are handed back through advance().
        self._applied_conf = self.conf
        self._conf_applied = self.log.applied
        for e in (
            self.log.slice(self.log.applied + 1, self.log.committed + 1)
            if self.log.committed > self.log.applied
            else []
        ):
            if e.type == EntryType.CONF_CHANGE:
                self.conf = self._conf_after(self.conf, ConfChange.decode(e.data))
        self._conf_applied = self.log.committed

        self.role = StateRole.FOLLOWER
        self.leader = NONE
        self.prs: dict[int, Progress] = {}
        self.votes: dict[int, bool] = {}
        self.msgs: list[Message] = []
        self.read_states: list[ReadState] = []
        self.read_only = _ReadOnly()
        self.pending_reads: list[tuple[bytes, int]] = []  # until an entry of our term commits
        # ReadIndex requests arrived since the last heartbeat round: `ready()` sends ONE
        # round for all of them (its acks confirm every request queued before it).
        self._read_round_due = False
        self.pending_conf_index = 0
        self.lead_transferee = NONE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = config.election_tick
        self._pending_snapshot: Snapshot | None = None
        self._applying = self.log.applied  # committed entries handed out, not yet advanced
        self._prev_hs = HardState(self.term, self.vote, self.log.committed)
        self._prev_ss = SoftState(NONE, StateRole.FOLLOWER)
        self.become_follower(self.term, NONE)

    # ======================================================================
    # Public API
    # ======================================================================
    @property
    def commit(self) -> int:
        return self.log.committed

    @property
    def applied(self) -> int:
        return self.log.applied

    def last_index(self) -> int:
        return self.log.last_index()

    def is_voter(self, node: int | None = None) -> bool:
        return (self.id if node is None else node) in self.conf.voters

    def tick(self) -> None:
        if self.role == StateRole.LEADER:
            self._tick_heartbeat()
        else:
            self._tick_election()

    def campaign(self) -> None:
        """Start an election now (tests, or an operator's explicit request)."""
        self._hup(transfer=False)

    def propose(self, data: bytes) -> tuple[int, int]:
        """Append one entry. Returns (term, index); the proposal succeeded iff the
        entry applied at that index has that term."""
        return self.propose_batch([data])

    def propose_batch(self, datas: list[bytes]) -> tuple[int, int]:
        """Append several entries at once; returns (term, index of the first)."""
        self._check_can_propose()
        first = self.log.last_index() + 1
        self._append(
            [Entry(self.term, first + i, EntryType.NORMAL, d) for i, d in enumerate(datas)]
        )
        self._bcast_append()
        return self.term, first

    def propose_conf_change(self, cc: ConfChange) -> tuple[int, int]:
        self._check_can_propose()
        if self.pending_conf_index > self.log.applied:
            raise ProposalDropped("a membership change is already in progress")
        if not self._committed_entry_in_current_term():
            raise ProposalDropped("leader has not committed an entry of its term yet")
        self._validate_conf_change(cc)
        index = self.log.last_index() + 1
        self._append([Entry(self.term, index, EntryType.CONF_CHANGE, cc.encode())])
        self.pending_conf_index = index
        self._bcast_append()
        return self.term, index

    def read_index(self, ctx: bytes) -> None:
        """Ask for a linearizable read point; it arrives as a ReadState with `ctx`."""
        if self.role == StateRole.LEADER:
            if not self._committed_entry_in_current_term():
                self.pending_reads.append((ctx, self.id))
                return
            self._handle_read_index(ctx, self.id)
        elif self.leader != NONE:
            self._send(Message(MsgType.READ_INDEX, to=self.leader, frm=self.id, context=ctx))
        else:
            raise NotLeader(NONE)

    def transfer_leadership(self, to: int) -> None:
        if self.role == StateRole.LEADER:
            self._handle_transfer(to)
        elif self.leader != NONE:
            self._send(Message(MsgType.TRANSFER_LEADER, to=self.leader, frm=self.id, index=to))
        else:
            raise NotLeader(NONE)

    def report_unreachable(self, node: int) -> None:
        pr = self.prs.get(node)
        if self.role == StateRole.LEADER and pr and pr.state == ProgressState.REPLICATE:
            pr.become_probe()

    def leader_unreachable(self, leader: int) -> None:
        """The runtime saw its connection to `leader` end and a redial refused (the
        leader's process is gone). Expire our lease on it now and campaign within a
        few ticks instead of waiting out the election timeout.

        This cannot disrupt a live leader: our pre-vote is granted only by voters
        whose own lease on the leader has also expired (see `step`), and the leader
        never grants one. So an early campaign wins only when a quorum has stopped
        hearing from the leader too (it is dead for everyone), which is the point.
        Every follower sees a dead leader's connections close at the same instant:
        campaigning at once would split the vote (both pre-votes granted, then one
        vote each). So the remaining voters go in id order, two ticks apart (1, 3,
        5, ... ticks), which leaves the first a full tick or more to win before the
        next one starts; a later one still wins if the first cannot (a shorter log).
        A heartbeat from a leader that is alive after all restores the lease, and
        nothing else changed (no lingering shorter timeout).
        """
        if (
            self.role != StateRole.FOLLOWER
            or leader == NONE
            or leader != self.leader
            or not (self.cfg.pre_vote and self.cfg.check_quorum)
        ):
            return  # without pre-vote + check-quorum an early campaign could disrupt
        rank = sorted(self.conf.voters - {leader}).index(self.id) if self.is_voter() else 0
        fire_in = 1 + 2 * rank
        self.election_elapsed = max(
            self.election_elapsed,
            self.cfg.election_tick,
            self.randomized_election_timeout - fire_in,
        )

    def report_snapshot(self, node: int, ok: bool) -> None:
        pr = self.prs.get(node)
        if self.role != StateRole.LEADER or pr is None or pr.state != ProgressState.SNAPSHOT:
            return
        if not ok:
            pr.pending_snapshot = 0
        pr.become_probe()
        pr.probe_sent = True  # wait for a heartbeat response before probing again

    def snapshot_meta(self) -> SnapshotMeta:
        """Meta for a snapshot of the state machine as applied right now."""
        applied = self.log.applied
        return SnapshotMeta(applied, self.log.term(applied), self._applied_conf)

    def compact(self, meta: SnapshotMeta, keep: int = 0) -> None:
        """The application durably saved a snapshot at meta.index: drop older entries,
        keeping `keep` behind it for followers that are only a little behind."""
        self.log.compact(meta, keep)

    def status(self) -> dict[str, object]:
        return {
            "id": self.id,
            "term": self.term,
            "vote": self.vote,
            "role": str(self.role),
            "leader": self.leader,
            "commit": self.log.committed,
            "applied": self.log.applied,
            "last_index": self.log.last_index(),
            "voters": sorted(self.conf.voters),
            "learners": sorted(self.conf.learners),
            "progress": {
                i: {"match": p.match, "next": p.next, "state": p.state.name.lower()}
                for i, p in self.prs.items()
            }
            if self.role == StateRole.LEADER
            else {},
            "lead_transferee": self.lead_transferee,
        }

    # --- Ready / advance ---------------------------------------------------
    def has_ready(self) -> bool:
        if self.msgs or self.read_states or self._pending_snapshot is not None:
            return True
        if self._read_round_due and self.read_only.pending:
            return True
        if self.log.unstable_from <= self.log.last_index():
            return True
        if self._hard_state() != self._prev_hs:
            return True
        if self._applying < self.log.committed:
            return True
        return SoftState(self.leader, self.role) != self._prev_ss

    def ready(self) -> Ready:
        rd = Ready()
        ss = SoftState(self.leader, self.role)
        if ss != self._prev_ss:
            rd.soft_state = ss
            self._prev_ss = ss
        hs = self._hard_state()
        if hs != self._prev_hs:
            rd.hard_state = hs
            self._prev_hs = hs
        rd.entries = self.log.unstable_entries()
        if self._pending_snapshot is not None:
            rd.snapshot = self._pending_snapshot
            self._pending_snapshot = None
            self._applying = max(self._applying, rd.snapshot.meta.index)
        if self.log.committed > self._applying:
            rd.committed_entries = self.log.slice(
                self._applying + 1,
                self.log.committed + 1,
                max_count=self.cfg.max_committed_per_ready,
            )
            if rd.committed_entries:
                self._applying = rd.committed_entries[-1].index
        if self._read_round_due:
            # Only while requests wait: the acks of an earlier round may have answered
            # them all meanwhile (a request repeated with the same context).
            self._read_round_due = False
            if self.read_only.pending:
                self._bcast_heartbeat(self.read_only.last_ctx())
        rd.messages, self.msgs = self.msgs, []
        rd.read_states, self.read_states = self.read_states, []
        return rd

    def advance(self, rd: Ready) -> None:
        if rd.snapshot is not None:
            self.log.applied = max(self.log.applied, rd.snapshot.meta.index)
            self._conf_applied = max(self._conf_applied, rd.snapshot.meta.index)
            self._applied_conf = rd.snapshot.meta.conf_state
        if rd.entries:
            last = rd.entries[-1]
            self.log.stable_to(last.index, last.term)
            if (
                self.role == StateRole.LEADER
                and self.log.match_term(last.index, last.term)
                and self.prs[self.id].maybe_update(last.index)
                and self._maybe_commit()
            ):
                self._bcast_append()
        if rd.committed_entries:
            for e in rd.committed_entries:
                if e.type != EntryType.CONF_CHANGE:
                    continue
                cc = ConfChange.decode(e.data)
                self._applied_conf = self._conf_after(self._applied_conf, cc)
                if e.index > self._conf_applied:
                    self._apply_conf_change(cc)
                    self._conf_applied = e.index
            self.log.applied = max(self.log.applied, rd.committed_entries[-1].index)

    # ======================================================================
    # Messages in
    # ======================================================================
    def step(self, m: Message) -> None:
        if m.term <= 0:
            return  # every message between members carries its sender's term: drop
        if m.term > self.term:
            if m.type in (MsgType.VOTE, MsgType.PRE_VOTE):
                force = m.context == CAMPAIGN_TRANSFER
                in_lease = (
                    self.cfg.check_quorum
                    and self.leader != NONE
                    and self.election_elapsed < self.cfg.election_tick
                )
                if not force and in_lease:
                    return  # we heard from a leader recently: don't let a stray node disrupt it
            if m.type == MsgType.PRE_VOTE:
                pass  # a pre-vote never changes our term
            elif m.type == MsgType.PRE_VOTE_RESP and not m.reject:
                pass  # our term moves when the pre-vote wins, not per response
            elif m.type in (MsgType.APP, MsgType.HEARTBEAT, MsgType.SNAP):
                self.become_follower(m.term, m.frm)
            elif m.type == MsgType.VOTE:
                # Adopt the term but keep the election timer running: Raft resets it
                # only on granting the vote (below) or on hearing from a leader. A
                # refused candidate with a stale log on a faster clock would
                # otherwise keep the only voters that can win from ever campaigning.
                elapsed = self.election_elapsed
                self.become_follower(m.term, NONE)
                self.election_elapsed = elapsed
            else:
                self.become_follower(m.term, NONE)
        elif m.term < self.term:
            if (self.cfg.check_quorum or self.cfg.pre_vote) and m.type in (
                MsgType.HEARTBEAT,
                MsgType.APP,
            ):
                # Tell a stale leader our term so it steps down (it may be partitioned
                # from everyone else, and pre-vote would otherwise keep us from electing).
                self._send(Message(MsgType.APP_RESP, to=m.frm, frm=self.id, term=self.term))
            elif m.type == MsgType.PRE_VOTE:
                self._send(
                    Message(
                        MsgType.PRE_VOTE_RESP, to=m.frm, frm=self.id, term=self.term, reject=True
                    )
                )
            return

        if m.type in (MsgType.VOTE, MsgType.PRE_VOTE):
            self._handle_vote_request(m)
        elif self.role == StateRole.LEADER:
            self._step_leader(m)
        elif self.role in (StateRole.CANDIDATE, StateRole.PRE_CANDIDATE):
            self._step_candidate(m)
        else:
            self._step_follower(m)

    def _handle_vote_request(self, m: Message) -> None:
        can_vote = (
            self.vote == m.frm
            or (self.vote == NONE and self.leader == NONE)
            or (m.type == MsgType.PRE_VOTE and m.term > self.term)
        )
        resp_type = MsgType.VOTE_RESP if m.type == MsgType.VOTE else MsgType.PRE_VOTE_RESP
        if can_vote and self.log.is_up_to_date(m.index, m.log_term):
            self._send(Message(resp_type, to=m.frm, frm=self.id, term=m.term))
            if m.type == MsgType.VOTE:
                self.election_elapsed = 0
                self._record_vote(m.frm)
        else:
            self._send(Message(resp_type, to=m.frm, frm=self.id, term=self.term, reject=True))

    def _record_vote(self, candidate: int) -> None:
        self.vote = candidate

    def _step_leader(self, m: Message) -> None:
        t = m.type
        if t == MsgType.READ_INDEX:
            if not self._committed_entry_in_current_term():
                self.pending_reads.append((m.context, m.frm))
            else:
                self._handle_read_index(m.context, m.frm)
            return
        if t == MsgType.TRANSFER_LEADER:
            if m.frm in self.conf.voters:  # only a voter of our term may ask for it
                self._handle_transfer(m.index)
            return
        pr = self.prs.get(m.frm)
        if pr is None:
            return
        if t == MsgType.APP_RESP:
            pr.recent_active = True
            if m.reject:
                self._handle_append_reject(m, pr)
            else:
                self._handle_append_ack(m, pr)
        elif t == MsgType.HEARTBEAT_RESP:
            pr.recent_active = True
            pr.probe_sent = False
            if pr.state == ProgressState.REPLICATE and pr.inflights.full():
                pr.inflights.free_first()
            if pr.match < self.log.last_index():
                self._send_append(m.frm)
            if m.context and not self.cfg.lease_reads:
                acks = self.read_only.ack(m.context, m.frm)
                if acks is not None and self._has_quorum(acks | {self.id}):
                    for ctx, index, frm in self.read_only.advance(m.context):
                        self._respond_read(ctx, index, frm)

    def _handle_append_reject(self, m: Message, pr: Progress) -> None:
        rejected = m.index  # the prev index the follower could not match
        if rejected <= pr.match:
            return  # stale rejection
        # A real hint is below the rejected index or carries a term; 0/0 is a real
        # hint too ("nothing after 0 matches": an empty follower).
        if m.log_term > 0 or m.reject_hint < rejected:
            # Conflict hints: skip the follower's whole divergent term in one step.
            next_probe = m.reject_hint
            if m.log_term > 0:
                next_probe = self.log.find_conflict_by_term(m.reject_hint, m.log_term)
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
        self._send_append(m.frm)

    def _handle_append_ack(self, m: Message, pr: Progress) -> None:
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
        if self._maybe_commit():
            self._bcast_append()
        elif was_paused:
            self._send_append(m.frm)
        while self._maybe_send_append(m.frm, send_if_empty=False):
            pass
        if m.frm == self.lead_transferee and pr.match == self.log.last_index():
            self._send(Message(MsgType.TIMEOUT_NOW, to=m.frm, frm=self.id))

    def _step_candidate(self, m: Message) -> None:
        my_resp = (
            MsgType.PRE_VOTE_RESP if self.role == StateRole.PRE_CANDIDATE else MsgType.VOTE_RESP
        )
        if m.type == MsgType.APP:
            self.become_follower(m.term, m.frm)
            self._handle_append(m)
        elif m.type == MsgType.HEARTBEAT:
            self.become_follower(m.term, m.frm)
            self._handle_heartbeat(m)
        elif m.type == MsgType.SNAP:
            self.become_follower(m.term, m.frm)
            self._handle_snapshot(m)
        elif m.type == my_resp:
            if m.frm in self.conf.voters:
                self.votes.setdefault(m.frm, not m.reject)
            granted = sum(1 for v in self.votes.values() if v)
            rejected = sum(1 for v in self.votes.values() if not v)
            q = self._quorum()
            if granted >= q:
                if self.role == StateRole.PRE_CANDIDATE:
                    self._campaign(pre=False, transfer=False)
                else:
                    self.become_leader()
            elif rejected >= q:
                self.become_follower(self.term, NONE)
        elif m.type == MsgType.READ_INDEX or m.type == MsgType.TRANSFER_LEADER:
            pass  # no leader to forward to; the requester times out and retries

    def _step_follower(self, m: Message) -> None:
        t = m.type
        if t in _FROM_LEADER and self.leader != NONE and m.frm != self.leader:
            return  # one leader per term: a second one at our term is a forgery or a bug
        if t == MsgType.APP:
            self.election_elapsed = 0
            self.leader = m.frm
            self._handle_append(m)
        elif t == MsgType.HEARTBEAT:
            self.election_elapsed = 0
            self.leader = m.frm
            self._handle_heartbeat(m)
        elif t == MsgType.SNAP:
            self.election_elapsed = 0
            self.leader = m.frm
            self._handle_snapshot(m)
        elif t == MsgType.TIMEOUT_NOW:
            # Only the leader of our term can hand leadership over.
            if self.is_voter() and self.leader != NONE and m.frm == self.leader:
                self._hup(transfer=True)
        elif t == MsgType.READ_INDEX_RESP and m.frm == self.leader:
            self.read_states.append(ReadState(m.index, m.context))
        elif (
            t == MsgType.READ_INDEX
            and self.leader != NONE
            or t == MsgType.TRANSFER_LEADER
            and self.leader != NONE
        ):
            m.to = self.leader
            self._send(m)

    # --- follower handlers ---------------------------------------------------
    def _handle_append(self, m: Message) -> None:
        if m.index < self.log.committed:
            self._send(
                Message(
                    MsgType.APP_RESP,
                    to=m.frm,
                    frm=self.id,
                    term=self.term,
                    index=self.log.committed,
                )
            )
            return
        last_new = self._maybe_append(m.index, m.log_term, m.commit, m.entries)
        if last_new is not None:
            self._send(
                Message(MsgType.APP_RESP, to=m.frm, frm=self.id, term=self.term, index=last_new)
            )
            return
        # reject_hint == index with no term means "no hint": the leader bisects.
        resp = Message(
            MsgType.APP_RESP,
            to=m.frm,
            frm=self.id,
            term=self.term,
            index=m.index,
            reject=True,
            reject_hint=m.index,
        )
        if self.cfg.send_conflict_hints:
            hint = self.log.find_conflict_by_term(min(m.index, self.log.last_index()), m.log_term)
            resp.reject_hint = hint
            resp.log_term = self.log.term_or_zero(hint)
        self._send(resp)

    def _maybe_append(
        self, prev_index: int, prev_term: int, commit: int, entries: list[Entry]
    ) -> int | None:
        return self.log.maybe_append(prev_index, prev_term, commit, entries)

    def _handle_heartbeat(self, m: Message) -> None:
        self.log.commit_to(min(m.commit, self.log.last_index()))
        self._send(
            Message(
                MsgType.HEARTBEAT_RESP, to=m.frm, frm=self.id, term=self.term, context=m.context
            )
        )

    def _handle_snapshot(self, m: Message) -> None:
        snap = m.snapshot
        if snap is None:
            return
        index = self.log.last_index() if self._restore(snap) else self.log.committed
        self._send(Message(MsgType.APP_RESP, to=m.frm, frm=self.id, term=self.term, index=index))

    def _restore(self, snap: Snapshot) -> bool:
        meta = snap.meta
        if meta.index <= self.log.committed:
            return False
        # No "am I in its ConfState" check: the leader's latest snapshot may predate
        # our admission (a new learner); we learn our membership from the entries after it.
        if self.log.match_term(meta.index, meta.term):
            self.log.commit_to(meta.index)  # we already have it: fast-forward instead
            return False
        self.log.restore(meta)
        self.conf = meta.conf_state
        self._conf_applied = meta.index
        self._pending_snapshot = snap
        return True

    # ======================================================================
    # Leader machinery
    # ======================================================================
    def _append(self, entries: list[Entry]) -> None:
        self.log.append(entries)
        # The leader's own ack comes in advance(), once its entries are durable.

    def _send(self, m: Message) -> None:
        if m.term == 0 or m.type in (MsgType.READ_INDEX, MsgType.TRANSFER_LEADER):
            # Forwarded requests carry our term too: the receiver applies the same term
            # rules to them as to everything else (a term-0 message is dropped).
            m.term = self.term
        self.msgs.append(m)

    def _send_append(self, to: int) -> None:
        self._maybe_send_append(to, send_if_empty=True)

    def _maybe_send_append(self, to: int, send_if_empty: bool) -> bool:
        pr = self.prs[to]
        if pr.is_paused():
            return False
        prev = pr.next - 1
        try:
            prev_term = self.log.term(prev)
            ents = self.log.slice(
                pr.next,
                self.log.last_index() + 1,
                self.cfg.max_bytes_per_msg,
                self.cfg.max_entries_per_msg,
            )
        except CompactedError:
            return self._send_snapshot(to, pr)
        if not ents and not send_if_empty:
            return False
        self._send(
            Message(
                MsgType.APP,
                to=to,
                frm=self.id,
                index=prev,
                log_term=prev_term,
                entries=ents,
                commit=self.log.committed,
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

    def _send_snapshot(self, to: int, pr: Progress) -> bool:
        if not pr.recent_active:
            return False  # don't ship a snapshot to a node that may be down
        meta = self.log.snapshot
        pr.become_snapshot(meta.index)
        self._send(Message(MsgType.SNAP, to=to, frm=self.id, snapshot=Snapshot(meta)))
        return True

    def _bcast_append(self) -> None:
        for node in self.prs:
            if node != self.id:
                self._send_append(node)

    def _bcast_heartbeat(self, ctx: bytes = b"") -> None:
        if ctx and ctx == self.read_only.last_ctx():
            self._read_round_due = False  # this round confirms every queued request
        for node, pr in self.prs.items():
            if node == self.id:
                continue
            # Never tell a follower about a commit index beyond what it has.
            commit = min(pr.match, self.log.committed)
            self._send(Message(MsgType.HEARTBEAT, to=node, frm=self.id, commit=commit, context=ctx))

    def _quorum(self) -> int:
        return len(self.conf.voters) // 2 + 1

    def _has_quorum(self, nodes: set[int]) -> bool:
        return len(nodes & self.conf.voters) >= self._quorum()

    def _committed_index_by_quorum(self) -> int:
        matches = sorted(
            (self.prs[v].match for v in self.conf.voters if v in self.prs), reverse=True
        )
        q = self._quorum()
        return matches[q - 1] if len(matches) >= q else 0

    def _maybe_commit(self) -> bool:
        index = self._committed_index_by_quorum()
        # Raft figure 8: only entries of the current term are committed by counting.
        if index > self.log.committed and self.log.term_or_zero(index) == self.term:
            self.log.commit_to(index)
            self._on_commit_advanced()
            return True
        return False

    def _on_commit_advanced(self) -> None:
        if self.pending_reads and self._committed_entry_in_current_term():
            reads, self.pending_reads = self.pending_reads, []
            for ctx, frm in reads:
                self._handle_read_index(ctx, frm)

    def _committed_entry_in_current_term(self) -> bool:
        return self.log.term_or_zero(self.log.committed) == self.term

    def _quorum_active(self) -> bool:
        active = {self.id}
        for node, pr in self.prs.items():
            if node != self.id and pr.recent_active:
                active.add(node)
            pr.recent_active = False
        return self._has_quorum(active)

    def _handle_read_index(self, ctx: bytes, frm: int) -> None:
        if len(self.conf.voters) == 1 and self.id in self.conf.voters or self.cfg.lease_reads:
            self._respond_read(ctx, self.log.committed, frm)
            return
        self.read_only.add(self.log.committed, ctx, frm)
        self.read_only.ack(ctx, self.id)
        self._read_round_due = True  # batched: the round goes out with the next Ready

    def _respond_read(self, ctx: bytes, index: int, frm: int) -> None:
        if frm == self.id or frm == NONE:
            self.read_states.append(ReadState(index, ctx))
        else:
            self._send(
                Message(MsgType.READ_INDEX_RESP, to=frm, frm=self.id, index=index, context=ctx)
            )

    def _handle_transfer(self, to: int) -> None:
        if to == self.id or to not in self.conf.voters or to not in self.prs:
            return
        if self.lead_transferee == to:
            return
        self.lead_transferee = to
        self.election_elapsed = 0  # the transfer must finish within one election timeout
        if self.prs[to].match == self.log.last_index():
            self._send(Message(MsgType.TIMEOUT_NOW, to=to, frm=self.id))
        else:
            self._send_append(to)

    def _check_can_propose(self) -> None:
        if self.role != StateRole.LEADER:
            raise NotLeader(self.leader)
        if self.lead_transferee != NONE:
            raise ProposalDropped("leadership transfer in progress")
        if self.id not in self.conf.voters:
            raise ProposalDropped("this leader has been removed from the cluster")

    # ======================================================================
    # Timers and role changes
    # ======================================================================
    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self.election_elapsed >= self.randomized_election_timeout and self.is_voter():
            self.election_elapsed = 0
            self._hup(transfer=False)

    def _tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.cfg.election_tick:
            self.election_elapsed = 0
            if self.cfg.check_quorum and not self._quorum_active():
                self.become_follower(self.term, NONE)
                return
            if self.lead_transferee != NONE:
                self.lead_transferee = NONE  # transfer timed out: resume normal service
        if self.role != StateRole.LEADER:
            return
        if self.heartbeat_elapsed >= self.cfg.heartbeat_tick:
            self.heartbeat_elapsed = 0
            self._bcast_heartbeat(self.read_only.last_ctx())

    def _hup(self, transfer: bool) -> None:
        if self.role == StateRole.LEADER or not self.is_voter():
            return
        # A committed-but-unapplied membership change could make us campaign with
        # the wrong configuration: wait until it is applied.
        applied = max(self._conf_applied, self.log.applied)  # entries <= applied may be compacted
        if self.log.committed > applied:
            for e in self.log.slice(applied + 1, self.log.committed + 1):
                if e.type == EntryType.CONF_CHANGE:
                    return
        self._campaign(pre=self.cfg.pre_vote and not transfer, transfer=transfer)

    def _campaign(self, pre: bool, transfer: bool) -> None:
        if pre:
            self.become_pre_candidate()
            vote_type, term = MsgType.PRE_VOTE, self.term + 1
        else:
            self.become_candidate()
            vote_type, term = MsgType.VOTE, self.term
        self.votes[self.id] = True
        if self._quorum() <= 1:
            if pre:
                self._campaign(pre=False, transfer=transfer)
            else:
                self.become_leader()
            return
        ctx = CAMPAIGN_TRANSFER if transfer else b""
        for v in sorted(self.conf.voters):
            if v == self.id:
                continue
            self.msgs.append(
                Message(
                    vote_type,
                    to=v,
                    frm=self.id,
                    term=term,
                    index=self.log.last_index(),
                    log_term=self.log.last_term(),
                    context=ctx,
                )
            )

    def _reset(self, term: int) -> None:
        if self.term != term:
            self.term = term
            self.vote = NONE
        self.leader = NONE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = self.cfg.election_tick + self._rng.randrange(
            self.cfg.election_tick
        )
        self.lead_transferee = NONE
        self.votes = {}
        self.read_only = _ReadOnly()
        self.pending_reads = []
        self._read_round_due = False
        last = self.log.last_index()
        self.prs = {}
        for node in self.conf.voters | self.conf.learners:
            self.prs[node] = self._new_progress(node, last)

    def _new_progress(self, node: int, last: int) -> Progress:
        pr = Progress(
            last + 1,
            Inflights(self.cfg.max_inflight_msgs, self.cfg.max_inflight_bytes),
            is_learner=node in self.conf.learners,
        )
        if node == self.id:
            pr.match = last if self.log.unstable_from > last else self.log.unstable_from - 1
        return pr

    def become_follower(self, term: int, leader: int) -> None:
        self._reset(term)
        self.leader = leader
        self.role = StateRole.FOLLOWER

    def become_pre_candidate(self) -> None:
        # Pre-vote changes neither term nor vote: a node that cannot win disrupts nobody.
        self.votes = {}
        self.leader = NONE
        self.role = StateRole.PRE_CANDIDATE

    def become_candidate(self) -> None:
        self._reset(self.term + 1)
        self._record_vote(self.id)
        self.role = StateRole.CANDIDATE

    def become_leader(self) -> None:
        self._reset(self.term)
        self.leader = self.id
        self.role = StateRole.LEADER
        self.prs[self.id].become_replicate()
        self.prs[self.id].recent_active = True
        # Conservatively treat any conf change in the uncommitted tail as pending.
        self.pending_conf_index = self.log.last_index()
        # The no-op entry of the new term: committing it commits everything before it
        # and lets ReadIndex and membership changes proceed.
        self._append([Entry(self.term, self.log.last_index() + 1, EntryType.NORMAL, b"")])
        self._bcast_append()

    def _hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.log.committed)

    # ======================================================================
    # Membership
    # ======================================================================
    def _validate_conf_change(self, cc: ConfChange) -> None:
        validate_conf_change(self.conf, cc)

    @staticmethod
    def _conf_after(conf: ConfState, cc: ConfChange) -> ConfState:
        return conf_after(conf, cc)

    def _apply_conf_change(self, cc: ConfChange) -> None:
        self.conf = self._conf_after(self.conf, cc)
        if self.role != StateRole.LEADER:
            return
        last = self.log.last_index()
        for node in self.conf.members():
            if node not in self.prs:
                self.prs[node] = self._new_progress(node, last)
                self.prs[node].match = 0
            self.prs[node].is_learner = node in self.conf.learners
        for node in list(self.prs):
            if node not in self.conf.members():
                del self.prs[node]
        if self.lead_transferee != NONE and self.lead_transferee not in self.conf.voters:
            self.lead_transferee = NONE
        if self.id not in self.conf.voters:
            # A removed leader steps down; the rest elect a new one.
            self.become_follower(self.term, NONE)
            return
        if self._maybe_commit():  # the quorum may have shrunk
            self._bcast_append()
        else:
            self._bcast_append()
