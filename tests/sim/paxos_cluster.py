"""The deterministic simulator for the Multi-Paxos engine (`raftkv.paxos.Paxos`).

Same world as tests/sim/cluster.py (which drives the Raft core), kept separate
because the cores' messages and logs differ: a seeded event queue, the same
fake network (loss, duplication, delay, partitions), crashes that keep only
what was persisted (also inside a Ready: at a step boundary of its plan, or a
torn write), competing proposers, leadership transfer, membership changes,
snapshots, clients that write and read. Every Ready runs through production's
`raftkv.runtime.ready.plan` with `leader=Paxos.SENDS_BEFORE_PERSIST` (False),
so the order that the node loop would use is the one checked here.

The invariants (tests/sim/paxos_invariants.py) are checked at every event.
Then everything heals and a value must be chosen and applied on every member
within a bounded number of election timeouts.
"""

from __future__ import annotations

import dataclasses
import heapq
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from raftkv.paxos import Config, Message, MsgType, Paxos, bootstrap_entries, fmt_ballot
from raftkv.raft import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    ProposalDropped,
    Snapshot,
    SnapshotMeta,
    StateRole,
)
from raftkv.runtime import ready
from tests.sim.invariants import Violation
from tests.sim.network import Network
from tests.sim.node import decode_sm, encode_sm
from tests.sim.paxos_invariants import PaxosChecker

TICK = 10
LIVENESS_ELECTIONS = 40
PaxosFactory = Callable[..., Paxos]

(E_TICK, E_DELIVER, E_IO, E_CLIENT, E_NEMESIS, E_RESTART, E_HEAL, E_PROBE, E_MEMBERSHIP, E_STOP) = (
    range(10)
)


@dataclass(slots=True)
class Profile:
    nodes: int
    election_tick: int
    heartbeat_tick: int
    max_entries_per_msg: int
    max_committed_per_ready: int
    max_delay: int
    io_delay: int
    snap_interval: int
    snap_keep: int
    client_gap: int
    clients: int
    nemesis_gap: int
    membership: bool
    lease: bool
    weights: dict[str, int] = field(default_factory=dict)

    @staticmethod
    def draw(rng: random.Random, nodes: int) -> Profile:
        w = {
            "partition": rng.choice((0, 2, 4)),
            "isolate_leader": rng.choice((1, 3)),
            "heal_net": 3,
            "net_params": 2,
            "crash": rng.choice((1, 3)),
            "crash_point": rng.choice((0, 2, 4)),
            "promise_amnesia": rng.choice((0, 1, 3)),  # crash right after promising
            "depose": rng.choice((0, 2, 4)),  # a follower campaigns, another forgets a promise
            "compete": rng.choice((0, 2, 4)),  # two proposers run phase 1 at once
            "transfer": rng.choice((0, 2)),
            "step_down": rng.choice((0, 1)),
        }
        return Profile(
            nodes=nodes,
            election_tick=rng.choice((6, 10, 10, 16)),
            heartbeat_tick=rng.choice((1, 1, 2)),
            max_entries_per_msg=rng.choice((1, 2, 8, 64)),
            max_committed_per_ready=rng.choice((8192, 8192, 2)),
            max_delay=rng.choice((4, 8, 20)),
            io_delay=rng.choice((0, 2, 6)),
            snap_interval=rng.choice((5, 15, 40)),
            snap_keep=rng.choice((0, 0, 3)),
            client_gap=rng.choice((3, 8, 20)),
            clients=rng.choice((1, 3, 8)),
            nemesis_gap=rng.choice((20, 50, 100)),
            membership=rng.random() < 0.5,
            lease=rng.random() < 0.6,
            weights=w,
        )


@dataclass(slots=True)
class Result:
    seed: int
    nodes: int
    steps: int
    invariant: str = ""
    detail: str = ""
    trace: list[str] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.invariant


class Durable:
    """What a node finds on disk after a crash: the promise and chosen prefix
    (HardState), the accepted value per slot, and the latest snapshot."""

    __slots__ = ("hard_state", "entries", "base", "snapshot")

    def __init__(
        self, hard_state: HardState | None = None, entries: list[Entry] | None = None
    ) -> None:
        self.hard_state = hard_state.copy() if hard_state else HardState()
        self.entries: dict[int, Entry] = {e.index: e for e in entries or ()}
        self.base = 0
        self.snapshot: tuple[SnapshotMeta, bytes] | None = None

    def save(self, hs: HardState | None, entries: list[Entry]) -> None:
        for e in entries:
            if e.index > self.base:
                self.entries[e.index] = e
        if hs is not None:
            if hs.term < self.hard_state.term:
                raise Violation(
                    "promise decreased (persisted)",
                    f"persisting ballot {hs.term} after {self.hard_state.term}",
                )
            self.hard_state = hs.copy()

    def install(self, meta: SnapshotMeta, data: bytes, hs: HardState) -> None:
        self.snapshot = (meta, data)
        self.entries = {s: e for s, e in self.entries.items() if s > meta.index}
        self.base = meta.index
        self.save(hs, [])

    def save_local_snapshot(self, meta: SnapshotMeta, data: bytes, keep: int) -> None:
        if self.snapshot is None or meta.index > self.snapshot[0].index:
            self.snapshot = (meta, data)
        cut = meta.index - keep
        if cut > self.base:
            self.entries = {s: e for s, e in self.entries.items() if s > cut}
            self.base = cut


class PNode:
    def __init__(self, node_id: int, config: Config, durable: Durable) -> None:
        self.id = node_id
        self.config = config
        self.durable = durable
        self.core: Paxos | None = None
        self.sm: list[bytes] = []
        self.applied = 0
        self.incarnation = 0
        self.io_pending = False
        self.crash_point = False
        self.crash_after_promise = False  # crash right after a PROMISE leaves, restart at once
        self.stopped = False
        self.deferred_hs: HardState | None = None
        self.pending_writes: dict[int, bytes] = {}
        self.pending_confs: dict[int, ConfChange] = {}
        self.reads: dict[bytes, int] = {}
        self.read_waiters: list[tuple[int, bytes, int]] = []
        self.seen_commit = 0
        self.seen_promise = 0
        self.led_ballot = -1


def _fmt_event(item: tuple[int, str, int, Any]) -> str:
    now, what, node, detail = item
    if isinstance(detail, Message):
        detail = fmt_msg(detail)
    return f"{now:>6} {what:<8} n{node} {detail}"


def fmt_msg(m: Message) -> str:
    s = f"{m.type.name} {m.frm}->{m.to} b{fmt_ballot(m.ballot)}"
    if m.entries:
        s += f" slots[{m.entries[0].index}..{m.entries[-1].index}]"
    if m.type in (MsgType.ACCEPTED,):
        s += f" [{m.index}..{m.last}]"
    if m.type in (MsgType.ACCEPT, MsgType.COMMIT, MsgType.PROMISE, MsgType.CATCHUP_RESP):
        s += f" c{m.commit}"
    if m.type in (MsgType.PREPARE, MsgType.CATCHUP, MsgType.READ_INDEX_RESP):
        s += f" i{m.index}"
    if m.context:
        s += f" ctx={m.context!r}"
    return s


class PaxosCluster:
    def __init__(
        self,
        seed: int,
        nodes: int = 3,
        steps: int = 300,
        factory: PaxosFactory = Paxos,
        trace: bool = False,
        planner: ready.Planner = ready.plan,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.profile = Profile.draw(self.rng, nodes)
        self.steps = steps
        self.factory = factory
        self.planner = planner
        self.live_trace = trace
        self.trace: deque[tuple[int, str, int, Any]] = deque(maxlen=80)
        self.net = Network(random.Random(self.rng.getrandbits(64)), 1, self.profile.max_delay)
        self.now = 0
        self.seq = 0
        self.heap: list[tuple[int, int, int, Any, Any]] = []
        self.nodes: dict[int, PNode] = {}
        self.next_id = nodes + 1
        self.phase = "faults"
        self.write_seq = 0
        self.outstanding: dict[bytes, int] = {}  # write in flight -> when its client gives up
        self.read_seq = 0
        self.marker = b""
        self.marker_node = 0
        self.marker_slot = 0
        self.done = False
        self.deadline = 0
        self.stats = {
            k: 0
            for k in (
                "writes",
                "reads",
                "crashes",
                "crashes_in_ready",
                "elections",
                "competing",
                "transfers",
                "snapshots_installed",
                "added",
                "promoted",
                "removed",
                "hard_states_deferred",
                "failed_writes",
            )
        }
        founders = list(range(1, nodes + 1))
        entries, hs = bootstrap_entries(founders)
        self.checker = PaxosChecker(ConfState(frozenset(founders), frozenset()))
        for i in founders:
            self._add_node(i, Durable(hs, entries))

    # ======================================================================
    def run(self) -> Result:
        try:
            for n in list(self.nodes.values()):
                self._start(n)
            self._at(self.rng.randint(1, 5), E_CLIENT)
            self._at(self.rng.randint(5, 50), E_NEMESIS)
            if self.profile.membership:
                self._at(self.rng.randint(5, 20) * TICK, E_MEMBERSHIP)
            self._at(self.steps * TICK, E_HEAL)
            self._loop()
            if not self.done:
                raise Violation("liveness", "event queue ran dry")
        except (Violation, AssertionError) as exc:
            # A core's own assertion (a broken variant reaching a state the correct core
            # never does) is a failed seed with its trace, not a crash of the sweep.
            v = (
                exc
                if isinstance(exc, Violation)
                else Violation("core assertion", f"AssertionError: {exc}")
            )
            return Result(
                self.seed,
                self.profile.nodes,
                self.steps,
                v.invariant,
                v.detail,
                self.format_trace(),
                self._stats(),
            )
        return Result(self.seed, self.profile.nodes, self.steps, stats=self._stats())

    def _stats(self) -> dict[str, int]:
        s = dict(self.stats)
        s["acked_writes"] = self.checker.writes_acked
        s["reads_checked"] = self.checker.reads_checked
        s["max_chosen"] = self.checker.max_chosen
        return s

    def _loop(self) -> None:
        handlers = {
            E_TICK: self._tick,
            E_DELIVER: self._deliver,
            E_IO: self._io,
            E_CLIENT: self._client,
            E_NEMESIS: self._nemesis,
            E_RESTART: self._restart,
            E_HEAL: self._heal,
            E_PROBE: self._probe,
            E_MEMBERSHIP: self._membership,
            E_STOP: self._stop,
        }
        same_instant = 0
        while self.heap and not self.done:
            t, _, kind, a, b = heapq.heappop(self.heap)
            same_instant = same_instant + 1 if t == self.now else 0
            if same_instant > 100_000:
                raise Violation("liveness", f"time stands still at {t}: a node always has a Ready")
            self.now = t
            handlers[kind](a, b)

    def _at(self, delay: int, kind: int, a: Any = None, b: Any = None) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (self.now + delay, self.seq, kind, a, b))

    def _log(self, what: str, node: int, detail: Any = "") -> None:
        item = (self.now, what, node, detail)  # formatted only when shown
        self.trace.append(item)
        if self.live_trace:
            print(_fmt_event(item))

    def format_trace(self) -> list[str]:
        return [_fmt_event(item) for item in self.trace]

    # ======================================================================
    # Nodes
    # ======================================================================
    def _add_node(self, node_id: int, durable: Durable) -> PNode:
        p = self.profile
        cfg = Config(
            id=node_id,
            election_tick=p.election_tick,
            heartbeat_tick=p.heartbeat_tick,
            max_entries_per_msg=p.max_entries_per_msg,
            max_committed_per_ready=p.max_committed_per_ready,
            lease=p.lease,
        )
        node = PNode(node_id, cfg, durable)
        self.nodes[node_id] = node
        return node

    def _start(self, node: PNode) -> None:
        d = node.durable
        node.incarnation += 1
        cfg = dataclasses.replace(node.config, seed=self.rng.getrandbits(32))
        meta = d.snapshot[0] if d.snapshot else None
        core = self._call(
            node,
            lambda: self.factory(
                cfg,
                hard_state=d.hard_state.copy(),
                snapshot=meta,
                entries=[e for e in d.entries.values() if meta is None or e.index > meta.index],
            ),
        )
        node.core = core
        node.sm = decode_sm(d.snapshot[1]) if d.snapshot else []
        node.applied = meta.index if meta else 0
        if node.applied:
            self.checker.on_state(node.id, node.applied, len(node.sm))
        node.seen_commit = core.commit
        node.seen_promise = core.promised
        node.led_ballot = -1
        node.io_pending = False
        node.deferred_hs = None
        self._log("start", node.id, f"promised {fmt_ballot(core.promised)} commit {core.commit}")
        self._at(self.rng.randint(1, TICK), E_TICK, node.id, node.incarnation)
        self._touch(node)

    def _crash(self, node: PNode, why: str) -> None:
        node.core = None
        node.sm = []
        for data in node.pending_writes.values():
            self.outstanding_done(data)
        node.pending_writes.clear()
        node.pending_confs.clear()
        node.reads.clear()
        node.read_waiters.clear()
        node.io_pending = False
        node.crash_point = False
        node.crash_after_promise = False
        node.deferred_hs = None
        self.stats["crashes"] += 1
        self._log("CRASH", node.id, why)

    def outstanding_done(self, data: bytes) -> None:
        # The outcome of a write in flight on a crashed node is unknown: no check; its
        # client moves on (closed loop).
        self.outstanding.pop(data, None)

    def _restart(self, node_id: int, _: Any = None) -> None:
        node = self.nodes[node_id]
        if node.core is None and not node.stopped:
            self._start(node)

    def _stop(self, node_id: int, _: Any = None) -> None:
        node = self.nodes[node_id]
        if node.core is not None:
            self._crash(node, "removed: shut down")
        node.stopped = True

    def _call(self, node: PNode, fn: Any) -> Any:
        try:
            return fn()
        except (ProposalDropped, Violation):
            raise
        except Exception as e:  # a core bug: report it with the trace
            raise Violation("core raised", f"node {node.id}: {type(e).__name__}: {e}") from e

    def _tick(self, node_id: int, incarnation: int) -> None:
        node = self.nodes[node_id]
        if node.incarnation != incarnation or node.core is None:
            return
        core = node.core
        self._call(node, core.tick)
        self._touch(node)
        self._at(TICK, E_TICK, node_id, incarnation)

    def _deliver(self, m: Message, _: Any = None) -> None:
        node = self.nodes.get(m.to)
        if node is None or node.core is None or not self.net.link_ok(m.frm, m.to):
            return
        core = node.core
        self._log("recv", node.id, m)
        self._call(node, lambda: core.step(m))
        self._touch(node)

    def _touch(self, node: PNode) -> None:
        core = node.core
        if core is None:
            return
        self._observe(node, core)
        if not node.io_pending and core.has_ready():
            node.io_pending = True
            self._at(self.rng.randint(0, self.profile.io_delay), E_IO, node.id, node.incarnation)

    def _observe(self, node: PNode, core: Paxos) -> None:
        if core.promised < node.seen_promise:
            raise Violation(
                "promise decreased", f"node {node.id}: {node.seen_promise} -> {core.promised}"
            )
        node.seen_promise = core.promised
        if core.role == StateRole.LEADER and node.led_ballot != core.promised:
            node.led_ballot = core.promised
            self.stats["elections"] += 1
            self._log(
                "LEADER",
                node.id,
                f"ballot {fmt_ballot(core.promised)} commit {core.commit} next {core.next_slot}",
            )
        c = core.commit
        if c < node.seen_commit:
            raise Violation("commit decreased", f"node {node.id}: {node.seen_commit} -> {c}")
        for s in range(max(node.seen_commit + 1, core.base + 1), c + 1):
            self.checker.on_learn(node.id, s, core.log[s])
        node.seen_commit = c

    # ======================================================================
    # Ready: the production plan's steps
    # ======================================================================
    def _io(self, node_id: int, incarnation: int) -> None:
        node = self.nodes[node_id]
        if node.incarnation != incarnation or node.core is None:
            return
        node.io_pending = False
        core = node.core
        for _ in range(16):
            if not core.has_ready():
                break
            if not self._handle_ready(node, core):
                return
        self._touch(node)

    def _handle_ready(self, node: PNode, core: Paxos) -> bool:
        rd = self._call(node, core.ready)
        steps = self.planner(
            rd,
            leader=core.SENDS_BEFORE_PERSIST,
            durable=node.durable.hard_state,
            deferred=node.deferred_hs,
        )
        crash_at = self.rng.randint(0, len(steps) - 1) if node.crash_point else len(steps)
        for i, step in enumerate(steps):
            if i == crash_at:
                if isinstance(step, ready.Persist) and self.rng.random() < 0.5:
                    kept = self.rng.randint(0, len(step.entries))
                    node.durable.save(None, step.entries[:kept])
                    self._log("torn", node.id, f"{kept}/{len(step.entries)} entries on disk")
                self.stats["crashes_in_ready"] += 1
                self._crash(node, f"before step {i} of {[type(s).__name__ for s in steps]}")
                self._at(self.rng.randint(1, 20 * TICK), E_RESTART, node.id)
                return False
            if self._execute(node, core, rd, step):
                self.stats["crashes_in_ready"] += 1
                self._crash(node, "right after promising")
                self._at(self.rng.randint(0, 2), E_RESTART, node.id)
                return False
        snap_index = node.durable.snapshot[0].index if node.durable.snapshot else 0
        if node.applied - snap_index >= self.profile.snap_interval:
            meta = core.snapshot_meta()
            if meta.index != node.applied:
                raise Violation("snapshot meta", f"core applied {meta.index}, node {node.applied}")
            node.durable.save_local_snapshot(meta, encode_sm(node.sm), self.profile.snap_keep)
            core.compact(meta, self.profile.snap_keep)
        self._observe(node, core)
        return True

    def _execute(self, node: PNode, core: Paxos, rd: Any, step: ready.Step) -> bool:
        """One step of the plan; True if an armed crash-after-promise is due."""
        d = node.durable
        if isinstance(step, ready.Send):
            promised = False
            for m in step.messages:
                if m.type == MsgType.PROMISE:
                    promised = True
                    self.checker.on_promise_sent(node.id, m, d.hard_state.term)
                elif m.type == MsgType.ACCEPTED:
                    chosen_below = max(d.base, d.snapshot[0].index if d.snapshot else 0)
                    self.checker.on_accepted_sent(node.id, m, d.entries, chosen_below)
                self._send(node, m)
            return promised and node.crash_after_promise
        if isinstance(step, ready.Apply):
            for e in step.entries:
                self._apply(node, e)
        elif isinstance(step, ready.Persist):
            d.save(step.hard_state, step.entries)
            if step.hard_state is not None:
                node.deferred_hs = None
        elif isinstance(step, ready.PersistSnapshot):
            snap = step.snapshot
            assert snap.data is not None
            d.install(snap.meta, snap.data, step.hard_state)
            node.deferred_hs = None
        elif isinstance(step, ready.DeferHardState):
            node.deferred_hs = step.hard_state
            self.stats["hard_states_deferred"] += 1
        elif isinstance(step, ready.RestoreSnapshot):
            snap = step.snapshot
            assert snap.data is not None
            node.sm = decode_sm(snap.data)
            node.applied = snap.meta.index
            self.checker.on_state(node.id, node.applied, len(node.sm))
            self.stats["snapshots_installed"] += 1
            self._log("restore", node.id, f"snapshot at {snap.meta.index}")
        elif isinstance(step, ready.Advance):
            self._call(node, lambda: core.advance(rd))
        elif isinstance(step, ready.ReleaseReads):
            for rs in step.read_states:
                floor = node.reads.pop(rs.context, None)
                if floor is not None:
                    node.read_waiters.append((rs.index, rs.context, floor))
            self._serve_reads(node)
        return False

    def _apply(self, node: PNode, e: Entry) -> None:
        if e.index != node.applied + 1:
            raise Violation("apply order", f"node {node.id} applies {e.index} after {node.applied}")
        self.checker.on_apply(node.id, e)
        node.applied = e.index
        if e.type == EntryType.NORMAL and e.data:
            node.sm.append(e.data)
        self.checker.on_state(node.id, e.index, len(node.sm))
        data = node.pending_writes.pop(e.index, None)
        if data is not None:
            self.outstanding.pop(data, None)
            if data == e.data:
                self.checker.on_write_acked(len(node.sm))
                if data == self.marker:
                    self._log("marker", node.id, f"chosen at {e.index}")
            else:
                self.stats["failed_writes"] += 1
                self.checker.on_write_failed(data)
        cc = node.pending_confs.pop(e.index, None)
        if cc is not None and e.type == EntryType.CONF_CHANGE and e.data == cc.encode():
            self._conf_chosen(cc)

    def _serve_reads(self, node: PNode) -> None:
        waiting = []
        for index, ctx, floor in node.read_waiters:
            if index <= node.applied:
                self.checker.on_read_served(node.id, floor, len(node.sm), index)
                self._log(
                    "read",
                    node.id,
                    f"{ctx!r} index {index} -> {len(node.sm)} writes (floor {floor})",
                )
            else:
                waiting.append((index, ctx, floor))
        node.read_waiters = waiting

    def _send(self, node: PNode, m: Message) -> None:
        if m.type == MsgType.SNAP:
            stored = node.durable.snapshot
            assert stored is not None and m.snapshot is not None
            if stored[0].index < m.snapshot.meta.index:
                raise Violation("snapshot sent before it was saved", f"node {node.id}")
            m = dataclasses.replace(m, snapshot=Snapshot(stored[0], stored[1]))
        for delay in self.net.delays(m.frm, m.to):
            self._at(delay, E_DELIVER, m)

    # ======================================================================
    # Clients
    # ======================================================================
    def _up(self) -> list[PNode]:
        return [n for n in self.nodes.values() if n.core is not None]

    def _leaders(self) -> list[PNode]:
        return [n for n in self._up() if n.core is not None and n.core.role == StateRole.LEADER]

    def _client(self, _a: Any = None, _b: Any = None) -> None:
        if self.phase != "faults":
            return
        gave_up = [d for d, t in self.outstanding.items() if t <= self.now]
        for d in gave_up:
            del self.outstanding[d]
        if len(self.outstanding) < self.profile.clients:
            self._write()
        if self.rng.random() < 0.4:
            self._read()
        self._at(self.rng.randint(1, self.profile.client_gap), E_CLIENT)

    def _target(self) -> PNode | None:
        leaders = self._leaders()
        if leaders and self.rng.random() < 0.8:
            return self.rng.choice(leaders)
        up = self._up()
        return self.rng.choice(up) if up else None

    def _write(self) -> None:
        node = self._target()
        if node is None or node.core is None:
            return
        self.write_seq += 1
        datas = [f"w{self.write_seq}.{i}".encode() for i in range(self.rng.choice((1, 1, 3)))]
        core = node.core
        try:
            _, first = core.propose_batch(datas)
        except ProposalDropped:
            return
        self.stats["writes"] += len(datas)
        for i, data in enumerate(datas):
            node.pending_writes[first + i] = data
            self.outstanding[data] = self.now + 5 * self.profile.election_tick * TICK
        self._touch(node)

    def _read(self) -> None:
        node = self._target()
        if node is None or node.core is None:
            return
        self.read_seq += 1
        ctx = f"r{self.read_seq}".encode()
        node.reads[ctx] = self.checker.lin_floor
        core = node.core
        try:
            core.read_index(ctx)
        except ProposalDropped:
            node.reads.pop(ctx, None)
            return
        self.stats["reads"] += 1
        self._touch(node)

    # ======================================================================
    # Membership: learner first, then promote; remove; one at a time
    # ======================================================================
    def _membership(self, _a: Any = None, _b: Any = None) -> None:
        if self.phase != "faults":
            return
        self._at(self.rng.randint(5, 30) * TICK, E_MEMBERSHIP)
        leaders = self._leaders()
        if not leaders:
            return
        leader = leaders[0]
        core = leader.core
        assert core is not None
        conf = core.conf
        learners = sorted(conf.learners)
        voters = sorted(conf.voters)
        if learners:
            n = learners[0]
            lagging = self.nodes[n].core
            if lagging is not None and lagging.commit >= core.commit - 2:
                self._propose_conf(leader, ConfChange(ConfChangeType.PROMOTE, n))
        elif len(voters) < self.profile.nodes + 2 and self.rng.random() < 0.5:
            n = self.next_id
            cc = ConfChange(ConfChangeType.ADD_LEARNER, n)
            if self._propose_conf(leader, cc):
                self.next_id += 1
                new = self._add_node(n, Durable())
                self._start(new)
                self.stats["added"] += 1
        elif len(voters) > 2:
            victim = self.rng.choice(voters)
            self._propose_conf(leader, ConfChange(ConfChangeType.REMOVE, victim))

    def _propose_conf(self, leader: PNode, cc: ConfChange) -> bool:
        core = leader.core
        assert core is not None
        try:
            _, slot = core.propose_conf_change(cc)
        except ProposalDropped:
            return False
        leader.pending_confs[slot] = cc
        self._log("conf", leader.id, f"{cc.type.name} {cc.node_id} at slot {slot}")
        self._touch(leader)
        return True

    def _conf_chosen(self, cc: ConfChange) -> None:
        if cc.type == ConfChangeType.PROMOTE:
            self.stats["promoted"] += 1
        elif cc.type == ConfChangeType.REMOVE:
            self.stats["removed"] += 1
            self._at(self.rng.randint(0, 10) * TICK, E_STOP, cc.node_id)

    # ======================================================================
    # Nemesis
    # ======================================================================
    def _nemesis(self, _a: Any = None, _b: Any = None) -> None:
        if self.phase != "faults":
            return
        w = self.profile.weights
        kinds = [k for k in sorted(w) if w[k]]
        kind = self.rng.choices(kinds, weights=[w[k] for k in kinds])[0]
        getattr(self, f"_nem_{kind}")()
        self._at(self.rng.randint(1, self.profile.nemesis_gap), E_NEMESIS)

    def _live_ids(self) -> list[int]:
        return sorted(n.id for n in self.nodes.values() if not n.stopped)

    def _nem_partition(self) -> None:
        ids = self._live_ids()
        self.rng.shuffle(ids)
        cut = self.rng.randint(1, max(1, len(ids) - 1))
        self.net.partition([ids[:cut], ids[cut:]], ids)
        self._log("nemesis", 0, f"partition {sorted(ids[:cut])} | {sorted(ids[cut:])}")

    def _nem_isolate_leader(self) -> None:
        leaders = self._leaders()
        if leaders:
            n = leaders[0].id
            self.net.partition([[n], [i for i in self._live_ids() if i != n]], self._live_ids())
            self._log("nemesis", n, "isolate leader")

    def _nem_heal_net(self) -> None:
        self.net.heal()
        self._log("nemesis", 0, "heal network")

    def _nem_net_params(self) -> None:
        self.net.loss = self.rng.choice((0.0, 0.05, 0.2))
        self.net.dup = self.rng.choice((0.0, 0.05, 0.2))

    def _nem_crash(self) -> None:
        up = [n for n in self._up() if not n.stopped]
        if up:
            node = self.rng.choice(up)
            self._crash(node, "nemesis")
            self._at(self.rng.randint(1, 30) * TICK, E_RESTART, node.id)

    def _nem_crash_point(self) -> None:
        up = self._up()
        if up:
            self.rng.choice(up).crash_point = True

    def _nem_promise_amnesia(self) -> None:
        up = self._up()
        if up:
            self.rng.choice(up).crash_after_promise = True

    def _nem_depose(self) -> None:
        """A follower runs phase 1 against a live leader while another follower is
        armed to crash right after its promise leaves (and restart at once): the
        old leader may then still reach that acceptor."""
        followers = [
            n
            for n in self._up()
            if n.core is not None and n.core.is_voter() and n.core.role != StateRole.LEADER
        ]
        if len(followers) < 2:
            return
        candidate, forgetful = self.rng.sample(followers, 2)
        forgetful.crash_after_promise = True
        core = candidate.core
        assert core is not None
        self._call(candidate, core.campaign)
        self._log("campaign", candidate.id, f"ballot {fmt_ballot(core.promised)}")
        self._touch(candidate)
        self.stats["competing"] += 1

    def _nem_compete(self) -> None:
        """Two proposers run phase 1 at (nearly) the same time."""
        up = [n for n in self._up() if n.core is not None and n.core.is_voter()]
        if len(up) < 2:
            return
        for node in self.rng.sample(up, 2):
            core = node.core
            assert core is not None
            self._call(node, core.campaign)
            self._log("campaign", node.id, f"ballot {fmt_ballot(core.promised)}")
            self._touch(node)
        self.stats["competing"] += 1

    def _nem_transfer(self) -> None:
        leaders = self._leaders()
        if not leaders or leaders[0].core is None:
            return
        core = leaders[0].core
        others = sorted(core.conf.voters - {core.id})
        if others:
            self._call(leaders[0], lambda: core.transfer_leadership(self.rng.choice(others)))
            self.stats["transfers"] += 1
            self._touch(leaders[0])

    def _nem_step_down(self) -> None:
        leaders = self._leaders()
        if leaders and leaders[0].core is not None:
            leaders[0].core.step_down()
            self._touch(leaders[0])

    # ======================================================================
    # Liveness
    # ======================================================================
    def _heal(self, _a: Any = None, _b: Any = None) -> None:
        self.phase = "heal"
        self.net.heal()
        for node in self.nodes.values():
            node.crash_point = False
            node.crash_after_promise = False
            if node.core is None and not node.stopped:
                self._start(node)
        self.deadline = self.now + LIVENESS_ELECTIONS * self.profile.election_tick * TICK
        self._log("HEAL", 0)
        self._at(TICK, E_PROBE)

    def _probe(self, _a: Any = None, _b: Any = None) -> None:
        if self.now > self.deadline:
            states = {
                n.id: (str(n.core.role), fmt_ballot(n.core.promised), n.core.commit)
                for n in self._up()
                if n.core is not None
            }
            raise Violation("liveness", f"no value chosen on every member after healing: {states}")
        leaders = self._leaders()
        if leaders:
            leader = leaders[0]
            core = leader.core
            assert core is not None
            chosen = (
                bool(self.marker)
                and self.checker.learned.get(self.marker_slot, (0, b""))[1] == self.marker
            )
            if chosen and all(
                self.nodes[i].core is not None and self.nodes[i].applied >= self.marker_slot
                for i in sorted(core.conf.members())
            ):
                self.done = True
                return
            pending = self.marker_node == leader.id and self.marker_slot in leader.pending_writes
            if not chosen and not pending:
                self._propose_marker(leader)
        self._at(TICK, E_PROBE)

    def _propose_marker(self, leader: PNode) -> None:
        core = leader.core
        assert core is not None
        self.write_seq += 1
        marker = f"marker{self.write_seq}".encode()
        try:
            _, slot = core.propose(marker)
        except ProposalDropped:
            return
        self.marker, self.marker_node, self.marker_slot = marker, leader.id, slot
        leader.pending_writes[slot] = marker
        self._touch(leader)


def run_seed(
    seed: int,
    nodes: int = 3,
    steps: int = 300,
    factory: PaxosFactory = Paxos,
    trace: bool = False,
    planner: ready.Planner = ready.plan,
) -> Result:
    return PaxosCluster(seed, nodes, steps, factory, trace, planner).run()
