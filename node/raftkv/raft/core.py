"""The Raft state machine: synchronous, deterministic, IO-free.

Modelled on etcd-io/raft. Inputs: `tick()`, `step(msg)`, `propose(data)`,
`propose_conf_change(cc)`, `read_index(ctx)`, `transfer_leadership(to)`,
`report_unreachable(peer)`, `leader_unreachable(leader)`.
Output: `ready()` -> Ready; the caller persists, sends, applies, then calls
`advance(ready)`. Same inputs (and seed) give the same outputs.

`Raft` holds the state; the behaviour lives in one module per concern, as
functions of that state (etcd-io/raft's style):

  route.py        term rules and routing of incoming messages by role
  election.py     timers, pre-vote, votes, check-quorum, the early campaign
  replication.py  appends, heartbeats, flow control (leader and follower side)
  quorum.py       majorities: the quorum's commit index, check-quorum's count
  readonly.py     ReadIndex
  membership.py   conf changes
  transfer.py     leadership transfer
  snapshots.py    InstallSnapshot, both sides
  handoff.py      the Ready/advance handshake

The underscore methods left on `Raft` are seams: the simulator's broken cores
(tests/sim/broken.py) and the transcript mutants override them to inject a known
bug, and the modules call them through the instance so an override takes effect.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from raftkv.raft import (
    election,
    handoff,
    membership,
    quorum,
    readonly,
    replication,
    route,
    snapshots,
    transfer,
)
from raftkv.raft.log import RaftLog
from raftkv.raft.progress import Progress, ProgressState
from raftkv.raft.readonly import ReadOnly
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
)

CAMPAIGN_TRANSFER = election.CAMPAIGN_TRANSFER


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
        # Membership: the snapshot's, then every committed conf change, applied eagerly.
        self.conf = snapshot.conf_state if snapshot else ConfState()
        # Membership as of `applied` (what a snapshot at `applied` must record): unlike
        # `conf`, it only moves as committed entries are handed back through advance().
        self._applied_conf = self.conf
        self._conf_applied = self.log.applied  # the last conf change `conf` has applied
        membership.replay_committed(self)

        self.role = StateRole.FOLLOWER
        self.leader = NONE
        self.prs: dict[int, Progress] = {}
        self.votes: dict[int, bool] = {}
        self.msgs: list[Message] = []
        self.read_states: list[ReadState] = []
        self.read_only = ReadOnly()
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
            election.tick_heartbeat(self)
        else:
            election.tick_election(self)

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
        # The leader's own ack comes in advance(), once its entries are durable.
        self.log.append(
            [Entry(self.term, first + i, EntryType.NORMAL, d) for i, d in enumerate(datas)]
        )
        replication.bcast_append(self)
        return self.term, first

    def propose_conf_change(self, cc: ConfChange) -> tuple[int, int]:
        self._check_can_propose()
        membership.check_proposal(self, cc)
        index = self.log.last_index() + 1
        self.log.append([Entry(self.term, index, EntryType.CONF_CHANGE, cc.encode())])
        self.pending_conf_index = index
        replication.bcast_append(self)
        return self.term, index

    def read_index(self, ctx: bytes) -> None:
        """Ask for a linearizable read point; it arrives as a ReadState with `ctx`."""
        readonly.read_index(self, ctx)

    def transfer_leadership(self, to: int) -> None:
        transfer.transfer_leadership(self, to)

    def report_unreachable(self, node: int) -> None:
        pr = self.prs.get(node)
        if self.role == StateRole.LEADER and pr and pr.state == ProgressState.REPLICATE:
            pr.become_probe()

    def leader_unreachable(self, leader: int) -> None:
        """The runtime saw its connection to `leader` end and a redial refused:
        campaign within a few ticks, safely (`election.expire_lease` says why)."""
        election.expire_lease(self, leader)

    def report_snapshot(self, node: int, ok: bool) -> None:
        snapshots.report_snapshot(self, node, ok)

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

    def has_ready(self) -> bool:
        return handoff.has_ready(self)

    def ready(self) -> Ready:
        return handoff.ready(self)

    def advance(self, rd: Ready) -> None:
        handoff.advance(self, rd)

    def step(self, m: Message) -> None:
        route.step(self, m)

    # --- role changes --------------------------------------------------------
    def become_follower(self, term: int, leader: int) -> None:
        election.reset(self, term)
        self.leader = leader
        self.role = StateRole.FOLLOWER

    def become_pre_candidate(self) -> None:
        # Pre-vote changes neither term nor vote: a node that cannot win disrupts nobody.
        self.votes = {}
        self.leader = NONE
        self.role = StateRole.PRE_CANDIDATE

    def become_candidate(self) -> None:
        election.reset(self, self.term + 1)
        self._record_vote(self.id)
        self.role = StateRole.CANDIDATE

    def become_leader(self) -> None:
        election.reset(self, self.term)
        self.leader = self.id
        self.role = StateRole.LEADER
        self.prs[self.id].become_replicate()
        self.prs[self.id].recent_active = True
        # Conservatively treat any conf change in the uncommitted tail as pending.
        self.pending_conf_index = self.log.last_index()
        # The no-op entry of the new term: committing it commits everything before it
        # and lets ReadIndex and membership changes proceed.
        self.log.append([Entry(self.term, self.log.last_index() + 1, EntryType.NORMAL, b"")])
        replication.bcast_append(self)

    # ======================================================================
    # Seams (see the module docstring): small on purpose, each one a place
    # where a known bug can be injected and must be caught.
    # ======================================================================
    def _send(self, m: Message) -> None:
        if m.term == 0 or m.type in (MsgType.READ_INDEX, MsgType.TRANSFER_LEADER):
            # Forwarded requests carry our term too: the receiver applies the same term
            # rules to them as to everything else (a term-0 message is dropped).
            m.term = self.term
        self.msgs.append(m)

    def _hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.log.committed)

    def _record_vote(self, candidate: int) -> None:
        self.vote = candidate

    def _check_can_propose(self) -> None:
        if self.role != StateRole.LEADER:
            raise NotLeader(self.leader)
        if self.lead_transferee != NONE:
            raise ProposalDropped("leadership transfer in progress")
        if self.id not in self.conf.voters:
            raise ProposalDropped("this leader has been removed from the cluster")

    def _hup(self, transfer: bool) -> None:
        election.hup(self, transfer)

    def _handle_vote_request(self, m: Message) -> None:
        election.handle_vote_request(self, m)

    def _step_follower(self, m: Message) -> None:
        route.step_follower(self, m)

    def _maybe_append(
        self, prev_index: int, prev_term: int, commit: int, entries: list[Entry]
    ) -> int | None:
        return self.log.maybe_append(prev_index, prev_term, commit, entries)

    def _handle_append_reject(self, m: Message, pr: Progress) -> None:
        replication.handle_append_reject(self, m, pr)

    def _bcast_heartbeat(self, ctx: bytes = b"") -> None:
        replication.bcast_heartbeat(self, ctx)

    def _restore(self, snap: Snapshot) -> bool:
        return snapshots.restore(self, snap)

    def _quorum(self) -> int:
        return quorum.quorum(self)

    def _has_quorum(self, nodes: set[int]) -> bool:
        return quorum.has_quorum(self, nodes)

    def _committed_index_by_quorum(self) -> int:
        return quorum.committed_index_by_quorum(self)

    def _maybe_commit(self) -> bool:
        return quorum.maybe_commit(self)

    def _on_commit_advanced(self) -> None:
        readonly.release_pending_reads(self)

    def _committed_entry_in_current_term(self) -> bool:
        return self.log.term_or_zero(self.log.committed) == self.term

    def _handle_read_index(self, ctx: bytes, frm: int) -> None:
        readonly.handle_read_index(self, ctx, frm)

    def _respond_read(self, ctx: bytes, index: int, frm: int) -> None:
        readonly.respond_read(self, ctx, index, frm)

    @staticmethod
    def _conf_after(conf: ConfState, cc: ConfChange) -> ConfState:
        return conf_after(conf, cc)
