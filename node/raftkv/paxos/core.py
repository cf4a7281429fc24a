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

Methods are small on purpose: the simulator subclasses `Paxos` and overrides
one of them to inject a known bug, and must see it caught.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from dataclasses import dataclass

from raftkv.paxos.types import Message, MsgType, Ready, ballot, ballot_node, ballot_round
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
    conf_after,
    validate_conf_change,
)

CAMPAIGN_TRANSFER = b"transfer"


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


def majority(acks: set[int], conf: ConfState) -> bool:
    return len(acks & conf.voters) > len(conf.voters) // 2


class _ReadBarriers:
    """Read barriers waiting for a quorum round of the current ballot, in order."""

    __slots__ = ("pending",)

    def __init__(self) -> None:
        # ctx -> (read index, requester, acks)
        self.pending: OrderedDict[bytes, tuple[int, int, set[int]]] = OrderedDict()

    def last_ctx(self) -> bytes:
        return next(reversed(self.pending)) if self.pending else b""


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
        self._reads = _ReadBarriers()
        self._pending_confs: list[tuple[int, ConfChange]] = []  # proposed, not chosen
        self.lead_transferee = NONE
        self._context = b""
        self._advance_commit(hs.commit)  # the durable commit covers durable entries
        self._applying = self.applied
        self._prev_hs = HardState(self.promised, NONE, self.commit)
        self._prev_ss = SoftState(NONE, StateRole.FOLLOWER)
        self._reset_timer()

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
        if self._pull_wait:
            self._pull_wait -= 1
        if self.role == StateRole.LEADER:
            self._tick_leader()
        else:
            self._tick_election()

    def campaign(self, transfer: bool = False) -> None:
        """Run phase 1 now with a ballot above every one seen."""
        if not self.is_voter():
            return
        round_ = max(ballot_round(self.promised), self.max_seen_round) + 1
        self.max_seen_round = round_
        self._reset_leader_state()
        self.promised = ballot(round_, self.id)
        self.role = StateRole.CANDIDATE
        self.leader = NONE
        self._reset_timer()
        self._promises = {}
        self._rejects = set()
        self._prepared = set()
        self._context = CAMPAIGN_TRANSFER if transfer else b""
        self._maybe_lead()

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
        self._propose_values([(EntryType.NORMAL, d) for d in datas])
        return self.promised, first

    def propose_conf_change(self, cc: ConfChange) -> tuple[int, int]:
        self._check_can_propose()
        if self._pending_confs:
            raise ProposalDropped("a membership change is already in progress")
        if self.commit < self.next_slot - 1:
            # Like Raft's "an entry of the leader's term is committed": every slot
            # adopted or proposed so far is decided, under today's configuration.
            raise ProposalDropped("leader has open slots; retry once they are chosen")
        self._validate_conf_change(cc)
        slot = self.next_slot
        self._propose_values([(EntryType.CONF_CHANGE, cc.encode())])
        self._pending_confs.append((slot, cc))
        return self.promised, slot

    def read_index(self, ctx: bytes) -> None:
        """A linearizable read point, delivered as a ReadState with `ctx`."""
        if self.role == StateRole.LEADER:
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

    def step_down(self) -> None:
        """Stop leading (an operator's request); the others elect after a timeout."""
        if self.role != StateRole.FOLLOWER:
            self._become_follower(NONE)

    def snapshot_meta(self) -> SnapshotMeta:
        e = self.log.get(self.applied)
        b = e.term if e is not None else self.snap_meta.term
        return SnapshotMeta(self.applied, b, self._applied_conf)

    def compact(self, meta: SnapshotMeta, keep: int = 0) -> None:
        """The application durably saved a snapshot at meta.index (<= applied)."""
        if meta.index > self.applied or meta.index <= self.snap_meta.index:
            return
        self.snap_meta = meta
        cut = meta.index - keep
        if cut > self.base:
            for s in [s for s in self.log if s <= cut]:
                del self.log[s]
                self._unstable.discard(s)
            self.base = cut

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

    # --- Ready / advance ---------------------------------------------------
    def has_ready(self) -> bool:
        if (
            self.msgs
            or self.read_states
            or self._unstable
            or self._pending_snapshot is not None
            or self._applying < self.commit
        ):
            return True
        ss = self._prev_ss
        return (
            self._hard_state() != self._prev_hs or ss.leader != self.leader or ss.role != self.role
        )

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
        rd.entries = [self.log[s] for s in sorted(self._unstable) if s in self.log]
        self._unstable = set()
        if self._pending_snapshot is not None:
            rd.snapshot = self._pending_snapshot
            self._pending_snapshot = None
            self._applying = max(self._applying, rd.snapshot.meta.index)
        if self.commit > self._applying:
            end = min(self.commit, self._applying + self.cfg.max_committed_per_ready)
            rd.committed_entries = [self.log[s] for s in range(self._applying + 1, end + 1)]
            self._applying = end
        rd.messages, self.msgs = self.msgs, []
        rd.read_states, self.read_states = self.read_states, []
        return rd

    def advance(self, rd: Ready) -> None:
        if rd.snapshot is not None:
            self.applied = max(self.applied, rd.snapshot.meta.index)
            self._applied_conf = rd.snapshot.meta.conf_state
        if rd.entries and self.role == StateRole.LEADER:
            # The leader's own accepts count only now, once they are durable.
            for e in rd.entries:
                if e.term == self.promised and e.index in self._acks:
                    self._acks[e.index].add(self.id)
                    self._maybe_chosen(e.index)
            self._advance_known()
        for e in rd.committed_entries:
            if e.type == EntryType.CONF_CHANGE:
                self._applied_conf = conf_after(self._applied_conf, ConfChange.decode(e.data))
            self.applied = max(self.applied, e.index)

    # ======================================================================
    # Messages in
    # ======================================================================
    def step(self, m: Message) -> None:
        if m.frm == NONE or m.frm == self.id or m.ballot < 0:
            return
        if ballot_round(m.ballot) > self.max_seen_round:
            self.max_seen_round = ballot_round(m.ballot)
        name = _HANDLERS.get(m.type)
        if name is not None:
            getattr(self, name)(m)

    # --- acceptor ------------------------------------------------------------
    def _in_lease(self) -> bool:
        """We heard from a live leader within an election timeout (or lead)."""
        return (
            self.cfg.lease
            and self.leader != NONE
            and self.election_elapsed < self.cfg.election_tick
        )

    def _on_prepare(self, m: Message) -> None:
        force = m.context == CAMPAIGN_TRANSFER
        if m.ballot > self.promised and (force or not self._in_lease()):
            self._promise(m.ballot)
        if m.ballot == self.promised and self.role == StateRole.FOLLOWER:
            self._send(
                Message(
                    MsgType.PROMISE,
                    to=m.frm,
                    frm=self.id,
                    ballot=m.ballot,
                    entries=self._accepted_from(m.index),
                    commit=self.commit,
                    conf=self.conf,
                    index=self.base,
                )
            )
        else:
            self._send(Message(MsgType.NACK, to=m.frm, frm=self.id, ballot=self.promised))

    def _promise(self, b: int) -> None:
        """Promise `b`: no ballot below it will be accepted (durable before any reply)."""
        if self.role != StateRole.FOLLOWER:
            self._become_follower(NONE)
        self.promised = b
        self.leader = NONE

    def _accepted_from(self, slot: int) -> list[Entry]:
        return [self.log[s] for s in sorted(self.log) if s >= slot]

    def _on_accept(self, m: Message) -> None:
        if not self._accepts(m.ballot):
            self._send(Message(MsgType.NACK, to=m.frm, frm=self.id, ballot=self.promised))
            return
        self._follow(m.ballot)
        for e in m.entries:
            self._accept(m.ballot, e)
        if m.entries:
            self._send(
                Message(
                    MsgType.ACCEPTED,
                    to=m.frm,
                    frm=self.id,
                    ballot=m.ballot,
                    index=m.entries[0].index,
                    last=m.entries[-1].index,
                )
            )
        self._learn_commit(m.ballot, m.commit, m.frm)

    def _accepts(self, b: int) -> bool:
        return b >= self.promised

    def _follow(self, b: int) -> None:
        """A message from the leader of ballot b >= our promise."""
        if b > self.promised:
            self._promise(b)
        if self.role != StateRole.FOLLOWER:
            return  # our own ballot: nobody else sends it
        self.leader = ballot_node(b)
        self.election_elapsed = 0

    def _accept(self, b: int, e: Entry) -> None:
        s = e.index
        if s <= self.base:
            return  # compacted: chosen long ago, the same value by Paxos
        old = self.log.get(s)
        if old is not None and (s <= self.commit or s in self._known_chosen):
            # Chosen here already: the leader's value is the same; never lower a ballot.
            if b > old.term:
                self._store(Entry(b, s, old.type, old.data))
            return
        self._store(Entry(b, s, e.type, e.data))

    def _store(self, e: Entry) -> None:
        old = self.log.get(e.index)
        if old is not None and old.term == e.term and old.data == e.data and old.type == e.type:
            return
        self.log[e.index] = e
        self._unstable.add(e.index)

    def _learn_chosen(self, e: Entry) -> None:
        """`e` is the value chosen at its slot: store it (never lowering the ballot
        we report for the slot) and mark it chosen."""
        s = e.index
        if s <= self.commit or s <= self.base:
            return
        old = self.log.get(s)
        b = max(e.term, old.term) if old is not None else e.term
        self._store(Entry(b, s, e.type, e.data))
        self._known_chosen.add(s)

    def _learn_commit(self, b: int, c: int, frm: int) -> None:
        """The leader of b says every slot <= c is chosen: ours at b are its values."""
        s = self.commit + 1
        while s <= c:
            e = self.log.get(s)
            if e is None or (e.term != b and s not in self._known_chosen):
                break
            self._known_chosen.add(s)
            s += 1
        self._advance_known()
        if c > self.commit:
            self._pull(frm)

    def _pull(self, frm: int) -> None:
        if self._pull_wait == 0:
            self._pull_wait = max(2, self.cfg.election_tick // 2)
            self._send(Message(MsgType.CATCHUP, to=frm, frm=self.id, index=self.commit + 1))

    def _on_commit(self, m: Message) -> None:
        if m.ballot >= self.promised:
            self._follow(m.ballot)
            if self.role == StateRole.FOLLOWER:
                self._send(
                    Message(
                        MsgType.COMMIT_RESP,
                        to=m.frm,
                        frm=self.id,
                        ballot=m.ballot,
                        context=m.context,
                        commit=self.commit,
                    )
                )
        else:
            self._send(Message(MsgType.NACK, to=m.frm, frm=self.id, ballot=self.promised))
        self._learn_commit(m.ballot, m.commit, m.frm)

    def _on_catchup(self, m: Message) -> None:
        if m.index <= self.base:
            if self.snap_meta.index > 0:
                self._send(
                    Message(
                        MsgType.SNAP,
                        to=m.frm,
                        frm=self.id,
                        snapshot=Snapshot(self.snap_meta),
                        commit=self.commit,
                    )
                )
            return
        end = min(self.commit, m.index + self.cfg.max_entries_per_msg - 1)
        ents = [self.log[s] for s in range(m.index, end + 1)]
        self._send(
            Message(
                MsgType.CATCHUP_RESP,
                to=m.frm,
                frm=self.id,
                index=m.index,
                entries=ents,
                commit=self.commit,
            )
        )

    def _on_catchup_resp(self, m: Message) -> None:
        self._pull_wait = 0
        for e in m.entries:
            if e.index <= m.commit:
                self._learn_chosen(e)
        self._advance_known()
        if m.commit > self.commit and m.entries:
            self._pull(m.frm)

    def _on_snapshot(self, m: Message) -> None:
        self._pull_wait = 0
        snap = m.snapshot
        if snap is None or snap.meta.index <= self.commit:
            return
        meta = snap.meta
        for s in [s for s in self.log if s <= meta.index]:
            del self.log[s]
            self._unstable.discard(s)
        self._known_chosen = {s for s in self._known_chosen if s > meta.index}
        self.base = meta.index
        self.snap_meta = meta
        self.commit = meta.index
        self.conf = meta.conf_state
        if self.role != StateRole.FOLLOWER and self.id not in self.conf.voters:
            self._become_follower(NONE)  # the snapshot says we were removed
        self._pending_confs = [(s, cc) for s, cc in self._pending_confs if s > meta.index]
        for s in [s for s in self._acks if s <= meta.index]:
            del self._acks[s]
        self._pending_snapshot = snap
        self._recount()
        self._advance_known()
        if m.commit > self.commit:
            self._pull(m.frm)

    # --- proposer: phase 1 ---------------------------------------------------
    def _on_promise(self, m: Message) -> None:
        if self.role != StateRole.CANDIDATE or m.ballot != self.promised:
            return
        self._promises[m.frm] = m
        self._maybe_lead()

    def _on_nack(self, m: Message) -> None:
        if m.ballot > self.promised:
            # A higher ballot exists: stop proposing (our next ballot goes above it).
            if self.role != StateRole.FOLLOWER:
                self._become_follower(NONE)
            return
        if self.role == StateRole.CANDIDATE:
            self._rejects.add(m.frm)  # refused in its lease: a leader is alive
            if majority(self._rejects, self.conf):
                self._become_follower(NONE)

    def _own_promise(self) -> Message:
        return Message(
            MsgType.PROMISE,
            to=self.id,
            frm=self.id,
            ballot=self.promised,
            entries=self._accepted_from(self.commit + 1),
            commit=self.commit,
            conf=self.conf,
            index=self.base,
        )

    def _phase1_configs(self, promises: list[Message]) -> list[ConfState]:
        """Every configuration that may decide a slot this proposer must recover:
        its own, the most advanced reporter's, then one after each membership
        change among the values reported above that reporter's commit."""
        top = max(promises, key=lambda p: p.commit)
        confs = [self.conf]
        conf = top.conf if top.conf is not None else self.conf
        confs.append(conf)
        for _s, e in sorted(self._highest_accepted(promises, top.commit).items()):
            if e.type == EntryType.CONF_CHANGE:
                conf = conf_after(conf, ConfChange.decode(e.data))
                confs.append(conf)
        return confs

    @staticmethod
    def _highest_accepted(promises: list[Message], above: int) -> dict[int, Entry]:
        """Per slot above `above`: the value accepted at the highest ballot reported."""
        best: dict[int, Entry] = {}
        for p in promises:
            for e in p.entries:
                if e.index > above:
                    cur = best.get(e.index)
                    if cur is None or e.term > cur.term:
                        best[e.index] = e
        return best

    def _maybe_lead(self) -> None:
        if not self.is_voter():
            self._become_follower(NONE)  # removed while campaigning (learnt meanwhile)
            return
        promises = [*self._promises.values(), self._own_promise()]
        responders = {p.frm for p in promises}
        confs = self._phase1_configs(promises)
        members = set().union(*(c.voters for c in confs)) - {self.id}
        for to in sorted(members - self._prepared):
            self._prepared.add(to)
            self._send(
                Message(
                    MsgType.PREPARE,
                    to=to,
                    frm=self.id,
                    ballot=self.promised,
                    index=self.commit + 1,
                    context=self._context,
                )
            )
        if all(majority(responders, c) for c in confs):
            self._become_leader(promises)

    # --- proposer: becoming leader, phase 2 -----------------------------------
    def _become_leader(self, promises: list[Message]) -> None:
        self.role = StateRole.LEADER
        self.leader = self.id
        self._reset_leader_state()
        self._recent_active = {self.id}
        top = max(promises, key=lambda p: p.commit)
        # Slots a reporter knows chosen: learn them (its values there are the chosen ones).
        for p in promises:
            for known in p.entries:
                if known.index <= p.commit:
                    self._learn_chosen(known)
        self._catchup_to = max(self.commit, top.commit)
        self._advance_known()
        if self.role != StateRole.LEADER:
            return  # what it just learnt removed it from the cluster
        # What it knew chosen above the reporters' commit is learnt now too.
        self._catchup_to = max(self._catchup_to, self.commit)
        if self.commit < self._catchup_to:
            self._pull(top.frm)  # compacted there: catch up by log or snapshot
        # Every other slot up to the highest reported: the highest-ballot value, or a no-op.
        best = self._highest_accepted(promises, self._catchup_to)
        last = max(best, default=self._catchup_to)
        self.next_slot = self._catchup_to + 1
        values: list[tuple[EntryType, bytes]] = []
        for s in range(self._catchup_to + 1, last + 1):
            adopted = best.get(s)
            if adopted is None:
                values.append((EntryType.NORMAL, b""))  # a hole: fill it with a no-op
                continue
            values.append((adopted.type, adopted.data))
            if adopted.type == EntryType.CONF_CHANGE:
                self._pending_confs.append((s, ConfChange.decode(adopted.data)))
        self._propose_values(values)
        self._bcast_commit()

    def _propose_values(self, values: list[tuple[EntryType, bytes]]) -> None:
        if not values:
            return
        first = self.next_slot
        if first <= max(self.commit, self.base):
            raise AssertionError(f"proposing at slot {first}, chosen up to {self.commit}")
        ents = [Entry(self.promised, first + i, t, d) for i, (t, d) in enumerate(values)]
        for e in ents:
            self.log[e.index] = e
            self._unstable.add(e.index)
            self._acks[e.index] = set()
        self.next_slot = first + len(ents)
        self._bcast_accept(ents)

    def _bcast_accept(self, ents: list[Entry]) -> None:
        n = self.cfg.max_entries_per_msg
        for to in sorted(self._members() - {self.id}):
            for i in range(0, len(ents), n):
                self._send(
                    Message(
                        MsgType.ACCEPT,
                        to=to,
                        frm=self.id,
                        ballot=self.promised,
                        entries=ents[i : i + n],
                        commit=self.commit,
                    )
                )

    def _members(self) -> set[int]:
        out = set(self.conf.members())
        for _, cc in self._pending_confs:
            out.add(cc.node_id)
        return out

    def _on_accepted(self, m: Message) -> None:
        if self.role != StateRole.LEADER or m.ballot != self.promised:
            return
        self._recent_active.add(m.frm)
        for s in range(m.index, m.last + 1):
            acks = self._acks.get(s)
            if acks is not None:
                acks.add(m.frm)
                self._maybe_chosen(s)
        self._advance_known()

    def _conf_for(self, slot: int) -> ConfState:
        """The configuration that decides `slot`: the one after every change before it."""
        conf = self.conf
        for s, cc in self._pending_confs:
            if s < slot:
                conf = conf_after(conf, cc)
        return conf

    def _maybe_chosen(self, s: int) -> None:
        if self.commit < self._catchup_to:
            return  # our configuration may be stale until we know the chosen prefix
        acks = self._acks.get(s)
        if acks is not None and majority(acks, self._conf_for(s)):
            self._known_chosen.add(s)

    def _recount(self) -> None:
        """The leader now knows the chosen prefix it found in phase 1: count its acks."""
        if self.role == StateRole.LEADER:
            for s in sorted(self._acks):
                self._maybe_chosen(s)

    def _advance_known(self) -> None:
        c = self.commit
        while c + 1 in self._known_chosen and c + 1 in self.log:
            c += 1
        if c > self.commit:
            self._advance_commit(c)

    def _advance_commit(self, c: int) -> None:
        was_catching_up = self.commit < self._catchup_to
        for s in range(self.commit + 1, c + 1):
            e = self.log.get(s)
            if e is None:
                c = s - 1
                break
            if e.type == EntryType.CONF_CHANGE:
                self._apply_conf_change(ConfChange.decode(e.data))
            self._known_chosen.discard(s)
            self._acks.pop(s, None)
        if c <= self.commit:
            return
        self.commit = c
        self._pending_confs = [(s, cc) for s, cc in self._pending_confs if s > c]
        if self.role == StateRole.LEADER:
            if was_catching_up and self.commit >= self._catchup_to:
                self._recount()
                self._advance_known()
                return
            self._bcast_commit()

    def _apply_conf_change(self, cc: ConfChange) -> None:
        self.conf = conf_after(self.conf, cc)
        if self.role != StateRole.FOLLOWER and self.id not in self.conf.voters:
            self._become_follower(NONE)  # a removed leader (or candidate) steps down
        if self.lead_transferee != NONE and self.lead_transferee not in self.conf.voters:
            self.lead_transferee = NONE

    def _bcast_commit(self, ctx: bytes = b"") -> None:
        for to in sorted(self._members() - {self.id}):
            self._send(
                Message(
                    MsgType.COMMIT,
                    to=to,
                    frm=self.id,
                    ballot=self.promised,
                    commit=self.commit,
                    context=ctx,
                )
            )

    def _retransmit(self) -> None:
        """Slots not chosen yet: resend them to whoever has not accepted them (lost
        messages, a restarted acceptor, a new member)."""
        open_slots = sorted(self._acks)[: self.cfg.max_entries_per_msg]
        if not open_slots:
            return
        for to in sorted(self._members() - {self.id}):
            missing = [self.log[s] for s in open_slots if to not in self._acks[s]]
            run: list[Entry] = []
            for e in missing:
                if run and e.index != run[-1].index + 1:
                    self._send_accept(to, run)
                    run = []
                run.append(e)
            if run:
                self._send_accept(to, run)

    def _send_accept(self, to: int, ents: list[Entry]) -> None:
        self._send(
            Message(
                MsgType.ACCEPT,
                to=to,
                frm=self.id,
                ballot=self.promised,
                entries=ents,
                commit=self.commit,
            )
        )

    def _on_commit_resp(self, m: Message) -> None:
        if self.role != StateRole.LEADER or m.ballot != self.promised:
            return
        self._recent_active.add(m.frm)
        self.peer_commit[m.frm] = m.commit
        if m.commit > self.commit:
            self._pull(m.frm)  # it knows more of the chosen prefix (we are catching up)
        if m.context:
            self._ack_read(m.context, m.frm)

    # --- read barrier ----------------------------------------------------------
    def _handle_read_index(self, ctx: bytes, frm: int) -> None:
        """The read index is the last slot this leader has assigned. It is safe once a
        quorum has answered a round of our ballot sent after the read arrived: a higher
        ballot can only choose values after a quorum promised it, that quorum includes
        one of our answerers, which promised it after answering us; so every value
        chosen before the read arrived was chosen at a ballot <= ours, and this leader
        holds (re-proposed or proposed) every such value at a slot <= the read index."""
        index = self.next_slot - 1
        self._reads.pending[ctx] = (index, frm, {self.id})
        if self._read_quorum({self.id}):
            self._ack_read(ctx, self.id)
        else:
            self._bcast_commit(ctx)

    def _read_quorum(self, acks: set[int]) -> bool:
        return majority(acks, self.conf) and majority(acks, self._conf_for(self.next_slot))

    def _ack_read(self, ctx: bytes, frm: int) -> None:
        req = self._reads.pending.get(ctx)
        if req is None:
            return
        req[2].add(frm)
        if not self._read_quorum(req[2]):
            return
        while self._reads.pending:  # a later round's quorum covers earlier requests
            c, (index, requester, _) = self._reads.pending.popitem(last=False)
            self._respond_read(c, index, requester)
            if c == ctx:
                break

    def _respond_read(self, ctx: bytes, index: int, frm: int) -> None:
        if frm == self.id:
            self.read_states.append(ReadState(index, ctx))
        else:
            self._send(
                Message(
                    MsgType.READ_INDEX_RESP,
                    to=frm,
                    frm=self.id,
                    index=index,
                    context=ctx,
                    ballot=self.promised,
                )
            )

    def _on_read_index(self, m: Message) -> None:
        if self.role == StateRole.LEADER:
            self._handle_read_index(m.context, m.frm)
        elif self.leader != NONE and self.role == StateRole.FOLLOWER:
            self._send(Message(MsgType.READ_INDEX, to=self.leader, frm=m.frm, context=m.context))

    def _on_read_index_resp(self, m: Message) -> None:
        if m.frm == self.leader and ballot_node(m.ballot) == m.frm:
            self.read_states.append(ReadState(m.index, m.context))

    # --- leadership transfer -------------------------------------------------------
    def _handle_transfer(self, to: int) -> None:
        if to == self.id or to not in self.conf.voters or self.lead_transferee == to:
            return
        self.lead_transferee = to
        self.election_elapsed = 0  # it must finish within one election timeout
        self._send(Message(MsgType.TIMEOUT_NOW, to=to, frm=self.id, ballot=self.promised))

    def _on_timeout_now(self, m: Message) -> None:
        if (
            self.role == StateRole.FOLLOWER
            and m.ballot == self.promised
            and m.frm == self.leader
            and self.is_voter()
        ):
            self.campaign(transfer=True)

    def _on_transfer_leader(self, m: Message) -> None:
        if self.role == StateRole.LEADER and m.frm in self.conf.voters:
            self._handle_transfer(m.index)

    def _check_can_propose(self) -> None:
        if self.role != StateRole.LEADER:
            raise NotLeader(self.leader)
        if self.lead_transferee != NONE:
            raise ProposalDropped("leadership transfer in progress")
        if self.id not in self.conf.voters:
            raise ProposalDropped("this leader has been removed from the cluster")

    # ======================================================================
    # Timers and roles
    # ======================================================================
    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self.election_elapsed >= self.randomized_election_timeout and self.is_voter():
            self.campaign()

    def _tick_leader(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.cfg.election_tick:
            self.election_elapsed = 0
            if not majority(self._recent_active | {self.id}, self.conf):
                self._become_follower(NONE)  # cut off from a quorum: let others lead
                return
            self._recent_active = {self.id}
            self.lead_transferee = NONE  # a transfer that did not happen in time
        if self.heartbeat_elapsed >= self.cfg.heartbeat_tick:
            self.heartbeat_elapsed = 0
            self._bcast_commit(self._reads.last_ctx())
            self._retransmit()

    def _reset_timer(self) -> None:
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = self.cfg.election_tick + self._rng.randrange(
            self.cfg.election_tick
        )

    def _reset_leader_state(self) -> None:
        self._acks = {}
        self._catchup_to = 0
        self._reads = _ReadBarriers()
        self._pending_confs = []
        self.lead_transferee = NONE
        self._recent_active = set()
        self.peer_commit = {}

    def _become_follower(self, leader: int) -> None:
        self.role = StateRole.FOLLOWER
        self.leader = leader
        self._reset_leader_state()
        self._promises = {}
        self._reset_timer()

    def _hard_state(self) -> HardState:
        return HardState(self.promised, NONE, self.commit)

    def _send(self, m: Message) -> None:
        self.msgs.append(m)

    # ======================================================================
    # Membership
    # ======================================================================
    def _validate_conf_change(self, cc: ConfChange) -> None:
        validate_conf_change(self.conf, cc)


_HANDLERS = {
    MsgType.PREPARE: "_on_prepare",
    MsgType.PROMISE: "_on_promise",
    MsgType.ACCEPT: "_on_accept",
    MsgType.ACCEPTED: "_on_accepted",
    MsgType.NACK: "_on_nack",
    MsgType.COMMIT: "_on_commit",
    MsgType.COMMIT_RESP: "_on_commit_resp",
    MsgType.CATCHUP: "_on_catchup",
    MsgType.CATCHUP_RESP: "_on_catchup_resp",
    MsgType.SNAP: "_on_snapshot",
    MsgType.READ_INDEX: "_on_read_index",
    MsgType.READ_INDEX_RESP: "_on_read_index_resp",
    MsgType.TIMEOUT_NOW: "_on_timeout_now",
    MsgType.TRANSFER_LEADER: "_on_transfer_leader",
}
