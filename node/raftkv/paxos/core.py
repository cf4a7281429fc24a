"""The Multi-Paxos state machine: synchronous, deterministic, IO-free.

One node plays all three Paxos roles: acceptor (promises and accepts, durable),
learner (knows the chosen prefix, applies it) and, when distinguished, proposer
(leader). Inputs: `tick()`, `step(msg)`, `propose(data)`, `propose_batch`,
`propose_conf_change(cc)`, `read_index(ctx)`, `transfer_leadership(to)`,
`step_down()`. Output: `ready()` -> Ready; the caller persists, sends,
applies, then calls `advance(ready)`, exactly as for the Raft core, except that
every message waits for the fsync (`SENDS_BEFORE_PERSIST` is False).

The protocol, briefly (docs/consensus.md has the longer story):

- Ballots are ints ordered by (round, node id) (`types.ballot`), so two
  proposers never share one. `promised` is the acceptor's promise, durable.
- A node that has not heard from a leader for its randomized election timeout
  runs phase 1 once for every slot it does not know chosen: PREPARE(b, from =
  its commit + 1). Each PROMISE carries the acceptor's accepted values from
  that slot on, its commit index and its membership as of that index.
- With promises from a majority of every configuration that may decide an open
  slot (its own, the one of the most advanced reporter, and each one after a
  membership change among the reported values), it leads: slots a reporter
  knows chosen are learnt; every other slot up to the highest reported one is
  re-proposed at b with the value of the highest ballot reported for it, or a
  no-op (a hole); new proposals take the following slots. Phase 2 (ACCEPT) is
  pipelined: slots are sent as they are proposed, in batches, without waiting.
- A value is chosen when a majority of its slot's configuration accepted it at
  b (the leader's own accept counts only after its fsync, in `advance`). The
  leader's COMMIT (also its heartbeat) says "every slot <= c is chosen"; an
  acceptor holding slot s at ballot b knows that value is the chosen one (one
  value per slot per ballot); for any other slot it pulls the chosen values
  (CATCHUP), or a snapshot when the sender has compacted them.
- Membership changes go through the log one at a time (learner first, then
  promote), each decided under the configuration before it; no slot after a
  change is proposed until the change is chosen, so every slot has exactly
  one configuration.

`Paxos` holds the state and the public calls; the behaviour lives in one
module per concern, as functions of that state (like `raftkv.raft`):

  route.py        incoming messages, by type, to the concern that handles them
  election.py     timers, the leader's quorum check, the lease, role changes
  phase1.py       ballots and promises: PREPARE/PROMISE/NACK, becoming leader
  phase2.py       accept and choose: ACCEPT/ACCEPTED, pipelining, retransmits
  learn.py        the chosen prefix: COMMIT, learning, CATCHUP
  readbarrier.py  linearizable read points
  membership.py   conf changes: which configuration decides a slot
  transfer.py     leadership transfer, stepping down
  snapshots.py    compaction, installing a snapshot
  handoff.py      the Ready/advance handshake
  quorum.py       majorities

The underscore methods left on `Paxos` are seams: the simulator's broken cores
(tests/sim/paxos_broken.py) override one of them to inject a known bug, and must
see it caught; the modules call them through the instance so an override takes
effect.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from raftkv.paxos import (
    election,
    handoff,
    learn,
    membership,
    phase1,
    phase2,
    readbarrier,
    route,
    snapshots,
    transfer,
)
from raftkv.paxos.quorum import majority
from raftkv.paxos.types import Message, Ready, ballot_round
from raftkv.raft.types import (
    NONE,
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    NotLeader,
    ProposalDropped,
    ReadState,
    Snapshot,
    SnapshotMeta,
    SoftState,
    StateRole,
    validate_conf_change,
)

CAMPAIGN_TRANSFER = phase1.CAMPAIGN_TRANSFER

__all__ = ["CAMPAIGN_TRANSFER", "Config", "Paxos", "bootstrap_entries", "majority"]


@dataclass(slots=True)
class Config:
    id: int
    election_tick: int = 10
    heartbeat_tick: int = 1
    max_entries_per_msg: int = 512
    max_committed_per_ready: int = 8192
    # Acceptors refuse a PREPARE while they hear from a live leader (and a leader
    # steps down without a quorum): fewer duelling proposers. Safety never depends
    # on it; the simulator runs both ways.
    lease: bool = True
    seed: int | None = None  # randomized election timeout; default: the node id

    def validate(self) -> None:
        if self.id == NONE:
            raise ValueError("node id must be > 0")
        if self.heartbeat_tick <= 0 or self.election_tick <= self.heartbeat_tick:
            raise ValueError("need 0 < heartbeat_tick < election_tick")
        if self.max_entries_per_msg <= 0:
            raise ValueError("max_entries_per_msg must be > 0")


def bootstrap_entries(voters: list[int]) -> tuple[list[Entry], HardState]:
    """The identical first slots every founding member writes: one ADD_VOTER per
    voter at ballot 0 (below every real ballot), all chosen."""
    ids = sorted(set(voters))
    entries = [
        Entry(0, i + 1, EntryType.CONF_CHANGE, ConfChange(ConfChangeType.ADD_VOTER, v).encode())
        for i, v in enumerate(ids)
    ]
    return entries, HardState(term=0, vote=NONE, commit=len(entries))


class Paxos:
    # Every message waits for the Ready's fsync: promises and accepts are replies
    # that depend on the durable state (runtime.ready.plan(leader=False)).
    SENDS_BEFORE_PERSIST = False

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
        self.promised = hs.term
        self.snap_meta = snapshot or SnapshotMeta()
        self.base = self.snap_meta.index  # slots <= base are compacted (and chosen)
        self.log: dict[int, Entry] = {e.index: e for e in entries or () if e.index > self.base}
        self.commit = self.base
        self.applied = self.base
        self.conf = self.snap_meta.conf_state  # as of `commit`
        self._applied_conf = self.conf  # as of `applied`: what a snapshot there records
        self._known_chosen: set[int] = set()  # slots > commit known chosen
        self._unstable: set[int] = set()
        self._pending_snapshot: Snapshot | None = None
        self.msgs: list[Message] = []
        self.read_states: list[ReadState] = []
        self.role = StateRole.FOLLOWER
        self.leader = NONE
        self.max_seen_round = ballot_round(self.promised)
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = config.election_tick
        self._pull_wait = 0
        # candidate
        self._promises: dict[int, Message] = {}
        self._rejects: set[int] = set()
        self._prepared: set[int] = set()
        # leader
        self.next_slot = 0
        self._acks: dict[int, set[int]] = {}  # slot -> acceptors that accepted it at my ballot
        self._catchup_to = 0  # chosen slots the leader must learn before counting acks
        self._recent_active: set[int] = set()
        # The chosen prefix each acceptor last reported (COMMIT_RESP): a status view
        # (learner catch-up, lag gauges), never used for a decision.
        self.peer_commit: dict[int, int] = {}
        self._reads = readbarrier.ReadBarriers()
        self._pending_confs: list[tuple[int, ConfChange]] = []  # proposed, not chosen
        self.lead_transferee = NONE
        self._context = b""
        learn.advance_commit(self, hs.commit)  # the durable commit covers durable entries
        self._applying = self.applied
        self._prev_hs = HardState(self.promised, NONE, self.commit)
        self._prev_ss = SoftState(NONE, StateRole.FOLLOWER)
        election.reset_timer(self)

    # ======================================================================
    # Public API
    # ======================================================================
    @property
    def ballot(self) -> int:
        """The ballot this node leads (or campaigns) with; else its promise."""
        return self.promised

    @property
    def term(self) -> int:
        return self.promised

    def last_index(self) -> int:
        return max(self.log, default=self.base)

    def is_voter(self, node: int | None = None) -> bool:
        return (self.id if node is None else node) in self.conf.voters

    def tick(self) -> None:
        election.tick(self)

    def step(self, m: Message) -> None:
        route.step(self, m)

    def campaign(self, transfer: bool = False) -> None:
        """Run phase 1 now with a ballot above every one seen."""
        phase1.campaign(self, transfer)

    def propose(self, data: bytes) -> tuple[int, int]:
        """Propose one value. Returns (ballot, slot); it succeeded iff the value
        chosen at that slot is this one (compare the data: a later leader may
        choose it again at its own ballot)."""
        return self.propose_batch([data])

    def propose_batch(self, datas: list[bytes]) -> tuple[int, int]:
        self._check_can_propose()
        if self._pending_confs:
            raise ProposalDropped("a membership change is being decided")
        first = self.next_slot
        phase2.propose_values(self, [(EntryType.NORMAL, d) for d in datas])
        return self.promised, first

    def propose_conf_change(self, cc: ConfChange) -> tuple[int, int]:
        self._check_can_propose()
        membership.check_proposal(self, cc)
        slot = self.next_slot
        phase2.propose_values(self, [(EntryType.CONF_CHANGE, cc.encode())])
        self._pending_confs.append((slot, cc))
        return self.promised, slot

    def read_index(self, ctx: bytes) -> None:
        """A linearizable read point, delivered as a ReadState with `ctx`."""
        readbarrier.read_index(self, ctx)

    def transfer_leadership(self, to: int) -> None:
        transfer.transfer_leadership(self, to)

    def step_down(self) -> None:
        """Stop leading (an operator's request); the others elect after a timeout."""
        transfer.step_down(self)

    def snapshot_meta(self) -> SnapshotMeta:
        return snapshots.snapshot_meta(self)

    def compact(self, meta: SnapshotMeta, keep: int = 0) -> None:
        """The application durably saved a snapshot at meta.index (<= applied)."""
        snapshots.compact(self, meta, keep)

    def status(self) -> dict[str, object]:
        return {
            "id": self.id,
            "ballot": self.promised,
            "role": str(self.role),
            "leader": self.leader,
            "commit": self.commit,
            "applied": self.applied,
            "last_index": self.last_index(),
            "voters": sorted(self.conf.voters),
            "learners": sorted(self.conf.learners),
            "lead_transferee": self.lead_transferee,
        }

    def has_ready(self) -> bool:
        return handoff.has_ready(self)

    def ready(self) -> Ready:
        return handoff.ready(self)

    def advance(self, rd: Ready) -> None:
        handoff.advance(self, rd)

    # ======================================================================
    # Seams (see the module docstring): small on purpose, each one a place
    # where a known bug can be injected and must be caught.
    # ======================================================================
    def _send(self, m: Message) -> None:
        self.msgs.append(m)

    def _hard_state(self) -> HardState:
        return HardState(self.promised, NONE, self.commit)

    def _accepts(self, b: int) -> bool:
        """An acceptor accepts at a ballot no lower than its promise."""
        return b >= self.promised

    @staticmethod
    def _highest_accepted(promises: list[Message], above: int) -> dict[int, Entry]:
        return phase1.highest_accepted(promises, above)

    def _phase1_configs(self, promises: list[Message]) -> list[ConfState]:
        return phase1.phase1_configs(self, promises)

    def _read_quorum(self, acks: set[int]) -> bool:
        return readbarrier.read_quorum(self, acks)

    def _check_can_propose(self) -> None:
        if self.role != StateRole.LEADER:
            raise NotLeader(self.leader)
        if self.lead_transferee != NONE:
            raise ProposalDropped("leadership transfer in progress")
        if self.id not in self.conf.voters:
            raise ProposalDropped("this leader has been removed from the cluster")

    def _validate_conf_change(self, cc: ConfChange) -> None:
        validate_conf_change(self.conf, cc)
