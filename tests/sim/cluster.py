"""The simulated world: a clock, an event queue, the nodes, a nemesis and clients.

One run is a pure function of (seed, options): every random choice comes from
one `random.Random(seed)`, events are ordered by (time, sequence number), and
nothing iterates over hash-ordered collections of strings or bytes. So a
failing seed replays exactly.

A run has two phases. In the fault phase the nemesis partitions, slows, drops
and duplicates messages, crashes nodes (also in the middle of handling a
Ready), pauses them, forces elections, transfers leadership and changes
membership, while clients write and read. Then everything heals, and the
cluster must elect a leader and commit and apply a new entry on every member
within a bounded number of ticks.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from raftkv.raft import (
    ConfChange,
    ConfChangeType,
    Config,
    EntryType,
    Message,
    MsgType,
    ProposalDropped,
    Raft,
    Ready,
    Snapshot,
    StateRole,
)
from raftkv.raft.core import bootstrap_entries
from raftkv.runtime import ready
from tests.sim.invariants import Checker, Violation
from tests.sim.network import Network
from tests.sim.node import (
    Durable,
    RaftFactory,
    SimNode,
    StoredSnapshot,
    conf_after,
    decode_sm,
)

TICK = 10  # time units per Raft tick; message delays are a few units
# After healing, progress must be made within this many election timeouts. Without
# pre-vote, a voter with a stale log and a faster clock can win the race to campaign
# round after round (each time resetting the others' timers), so the bound is generous;
# a run that never makes progress still fails.
LIVENESS_ELECTIONS = 40

# Event kinds (small ints: the heap compares tuples, so keep them cheap).
(
    E_TICK,
    E_DELIVER,
    E_IO,
    E_SNAP_STATUS,
    E_CLIENT,
    E_NEMESIS,
    E_RESTART,
    E_RESUME,
    E_HEAL,
    E_PROBE,
    E_STOP,
    E_MEMBERSHIP,
    E_UNREACHABLE,
    E_LEADER_GONE,
) = range(14)

# Where a crash armed by the nemesis hits inside the next Ready: at a random boundary
# between the steps of its plan (before the first step, ..., before the last), or
# inside its Persist step with only a prefix of the WAL batch on disk (a torn write:
# entries come before the hard state in the batch).
CRASH_POINTS = ("step_boundary", "step_boundary", "torn_persist")


@dataclass(slots=True)
class Profile:
    """The knobs of one run, drawn from its seed so runs differ in character."""

    nodes: int
    pre_vote: bool
    check_quorum: bool
    conflict_hints: bool
    heartbeat_tick: int
    max_entries_per_msg: int
    max_inflight_msgs: int
    max_delay: int
    io_delay: int
    snap_interval: int
    snap_keep: int
    client_gap: int
    clients: int  # concurrent writers: each waits for its write's outcome (closed loop)
    nemesis_gap: int
    membership: bool
    # Reactive faults: cut a leader off the moment it is elected / it commits, so
    # entries of one term end up on a single node (Raft figure 8 needs exactly that).
    isolate_new_leader: float
    isolate_on_commit: float
    election_tick: int
    max_bytes_per_msg: int
    max_inflight_bytes: int
    max_committed_per_ready: int
    weights: dict[str, int] = field(default_factory=dict)

    @staticmethod
    def draw(rng: random.Random, nodes: int) -> Profile:
        w = {
            "partition": rng.choice((0, 2, 4)),
            "isolate_leader": rng.choice((1, 3)),
            "minority_leader": rng.choice((0, 2, 6)),
            "one_way": rng.choice((0, 1, 2)),
            "heal_net": 3,
            "net_params": 2,
            "slow": rng.choice((0, 1)),
            "slow_disk": rng.choice((0, 2)),
            "crash": rng.choice((1, 3)),
            "crash_point": rng.choice((0, 2)),
            "vote_amnesia": rng.choice((0, 1, 3)),
            "ack_amnesia": rng.choice((0, 1, 3)),
            "campaign": rng.choice((0, 1, 3)),
            "pause": rng.choice((0, 1, 3)),
            "transfer": rng.choice((0, 2)),
            "add": rng.choice((0, 2)),
            "promote": 3,
            "remove": rng.choice((0, 2)),
            "reset_leader_link": rng.choice((0, 1, 3)),
        }
        pre_vote = rng.random() < 0.7
        check_quorum = rng.random() < 0.7
        # Without both pre-vote and check-quorum a removed node that never learnt of its
        # removal disrupts the cluster forever with ever higher terms (Raft thesis
        # 4.2.3); raftkv runs with both, so such runs change no membership.
        membership = rng.random() < 0.6 and (pre_vote or check_quorum)
        return Profile(
            nodes=nodes,
            pre_vote=pre_vote,
            check_quorum=check_quorum,
            conflict_hints=rng.random() < 0.6,
            heartbeat_tick=rng.choice((1, 1, 2)),
            max_entries_per_msg=rng.choice((1, 1, 2, 8, 64)),
            max_inflight_msgs=rng.choice((1, 4, 64)),
            max_delay=rng.choice((4, 8, 20)),
            io_delay=rng.choice((0, 2, 6)),
            snap_interval=rng.choice((5, 15, 40)),
            snap_keep=rng.choice((0, 0, 3)),
            client_gap=rng.choice((3, 8, 20)),
            clients=rng.choice((1, 3, 8)),
            nemesis_gap=rng.choice((20, 50, 100)),
            membership=membership,
            isolate_new_leader=rng.choice((0.0, 0.3, 0.6)),
            isolate_on_commit=rng.choice((0.0, 0.1, 0.3, 0.6)),
            election_tick=rng.choice((6, 10, 10, 16)),
            max_bytes_per_msg=rng.choice((1 << 20, 1 << 20, 40)),  # 40: ~1-2 entries
            max_inflight_bytes=rng.choice((32 << 20, 32 << 20, 100)),
            max_committed_per_ready=rng.choice((8192, 8192, 2)),
            weights=w,
        )


@dataclass(slots=True)
class Result:
    """The outcome of one run (plain data: it crosses process boundaries)."""

    seed: int
    nodes: int
    steps: int
    invariant: str = ""  # empty: no violation
    detail: str = ""
    trace: list[str] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)
    wipe_readd: bool = False
    fresh_ids: bool = False

    @property
    def ok(self) -> bool:
        return not self.invariant


def fmt_msg(m: Message) -> str:
    s = f"{m.type.name} {m.frm}->{m.to} t{m.term}"
    if m.type in (MsgType.APP, MsgType.APP_RESP):
        s += f" i{m.index} lt{m.log_term} c{m.commit}"
        if m.entries:
            s += f" ents[{m.entries[0].index}..{m.entries[-1].index}]"
        if m.reject:
            s += f" REJECT hint{m.reject_hint}"
    elif m.type in (MsgType.VOTE, MsgType.PRE_VOTE):
        s += f" last({m.index},t{m.log_term})"
    elif m.type in (MsgType.VOTE_RESP, MsgType.PRE_VOTE_RESP):
        s += " REJECT" if m.reject else " GRANT"
    elif m.type in (MsgType.HEARTBEAT, MsgType.HEARTBEAT_RESP):
        s += f" c{m.commit}" + (f" ctx={m.context!r}" if m.context else "")
    elif m.type == MsgType.SNAP and m.snapshot is not None:
        s += f" snap({m.snapshot.meta.index},t{m.snapshot.meta.term})"
    elif m.type in (MsgType.READ_INDEX, MsgType.READ_INDEX_RESP):
        s += f" i{m.index} ctx={m.context!r}"
    return s


def _copy_msg(m: Message) -> Message:
    return Message(
        m.type,
        m.to,
        m.frm,
        m.term,
        m.log_term,
        m.index,
        m.entries,
        m.commit,
        m.reject,
        m.reject_hint,
        m.context,
        m.snapshot,
    )


class Cluster:
    def __init__(
        self,
        seed: int,
        nodes: int = 3,
        steps: int = 300,
        factory: RaftFactory = Raft,
        trace: bool = False,
        trace_keep: int = 60,
        wipe_readd: bool = False,
        fresh_ids: bool = False,
        planner: ready.Planner = ready.plan,
    ) -> None:
        self.seed = seed
        # How a node orders the steps of a Ready: production's plan, or a broken one
        # (tests/sim/broken_plans.py) that the checks must catch.
        self.planner = planner
        # Experiment: re-add removed nodes under the same id with an EMPTY disk (a
        # StatefulSet pod whose PVC was deleted). Not part of the default runs.
        self.wipe_readd = wipe_readd
        # With wipe_readd: the wiped node comes back as a new incarnation under a fresh id
        # (the runtime's rule, docs/contracts.md "Node identity"); the old id never returns.
        self.fresh_ids = fresh_ids
        self.rng = random.Random(seed)
        self.profile = Profile.draw(self.rng, nodes)
        p = self.profile
        self.steps = steps
        self.factory = factory
        self.live_trace = trace
        self.trace: deque[tuple[int, str, int, Any]] = deque(maxlen=trace_keep)
        self.checker = Checker()
        self.net = Network(random.Random(self.rng.getrandbits(64)), 1, p.max_delay)
        self.now = 0
        self.seq = 0
        self.heap: list[tuple[int, int, int, Any, Any, Any]] = []
        self.nodes: dict[int, SimNode] = {}
        self.next_id = nodes + 1
        self.max_nodes = nodes + 3
        self.removed: list[int] = []  # removal acknowledged, not re-added since
        self.phase = "faults"
        self.isolate_next_commit = False  # set by the ack_amnesia nemesis
        self.write_seq = 0
        self.outstanding: dict[bytes, int] = {}  # client write in flight -> give-up time
        self.read_seq = 0
        self.marker: bytes = b""
        self.marker_index = 0
        self.marker_target = 0
        self.deadline = 0
        self.healed_at = 0
        self.marker_members: list[int] = []
        self.marker_sent_at = -1
        # reset_leader_link only hits these nodes (None: any follower).
        self.flaky_links: set[int] | None = None
        self.done = False
        self.stats = {
            "writes": 0,
            "reads": 0,
            "crashes": 0,
            "conf_changes": 0,
            "snapshots_sent": 0,
            "snapshots_installed": 0,
            "elections": 0,
            "added": 0,
            "promoted": 0,
            "removed": 0,
            "leader_removed": 0,
            "readded": 0,
            "leader_gone": 0,
            "crashes_in_ready": 0,  # at a step boundary of a plan, or in its write
            "hard_states_deferred": 0,
        }
        entries, hs = bootstrap_entries(list(range(1, nodes + 1)))
        for i in range(1, nodes + 1):
            self._add_node(i, Durable(hs, entries))

    # ======================================================================
    # Running
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
            self._final_checks()
        except Violation as v:
            return Result(
                self.seed,
                self.profile.nodes,
                self.steps,
                v.invariant,
                v.detail,
                self.format_trace(),
                self._stats(),
                self.wipe_readd,
                self.fresh_ids,
            )
        return Result(
            self.seed,
            self.profile.nodes,
            self.steps,
            stats=self._stats(),
            wipe_readd=self.wipe_readd,
            fresh_ids=self.fresh_ids,
        )

    def _stats(self) -> dict[str, int]:
        s = dict(self.stats)
        s["acked_writes"] = self.checker.writes_acked
        s["reads_checked"] = self.checker.reads_checked
        s["max_committed"] = self.checker.max_committed
        s["time"] = self.now
        return s

    def _loop(self) -> None:
        heap = self.heap
        pop = heapq.heappop
        while heap and not self.done:
            t, _, kind, a, b, c = pop(heap)
            self.now = t
            if kind == E_DELIVER:
                self._deliver(a)
            elif kind == E_TICK:
                self._tick(a, b)
            elif kind == E_IO:
                self._io_event(a, b)
            elif kind == E_CLIENT:
                self._client()
            elif kind == E_NEMESIS:
                self._nemesis()
            elif kind == E_SNAP_STATUS:
                self._snap_status(a, b, c)
            elif kind == E_RESTART:
                self._restart(a)
            elif kind == E_RESUME:
                self._resume(a, b)
            elif kind == E_HEAL:
                self._heal()
            elif kind == E_PROBE:
                self._probe()
            elif kind == E_STOP:
                self._stop_removed(a)
            elif kind == E_MEMBERSHIP:
                self._membership()
            elif kind == E_UNREACHABLE:
                self._unreachable(a, b, c)
            elif kind == E_LEADER_GONE:
                self._leader_gone(a, b, c)

    def _at(self, delay: int, kind: int, a: Any = None, b: Any = None, c: Any = None) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (self.now + delay, self.seq, kind, a, b, c))

    def _log(self, what: str, node: int, detail: Any = "") -> None:
        item = (self.now, what, node, detail)
        self.trace.append(item)
        if self.live_trace:
            print(_fmt_event(item))

    def format_trace(self) -> list[str]:
        return [_fmt_event(item) for item in self.trace]

    # ======================================================================
    # Nodes: start, crash, tick, deliver
    # ======================================================================
    def _add_node(self, node_id: int, durable: Durable) -> SimNode:
        p = self.profile
        cfg = Config(
            id=node_id,
            election_tick=p.election_tick,
            heartbeat_tick=p.heartbeat_tick,
            max_entries_per_msg=p.max_entries_per_msg,
            max_bytes_per_msg=p.max_bytes_per_msg,
            max_inflight_bytes=p.max_inflight_bytes,
            max_committed_per_ready=p.max_committed_per_ready,
            max_inflight_msgs=p.max_inflight_msgs,
            pre_vote=p.pre_vote,
            check_quorum=p.check_quorum,
            send_conflict_hints=p.conflict_hints,
        )
        node = SimNode(node_id, cfg, self.factory, durable)
        self.nodes[node_id] = node
        return node

    def _start(self, node: SimNode) -> None:
        before = node.durable.max_commit
        core = self._core_call(node, lambda: node.start(self.rng.getrandbits(32)))
        if node.applied:
            self.checker.on_state(node.id, node.applied, len(node.sm))  # its snapshot
        if core.commit < before:
            raise Violation(
                "commit index decreased (restart)",
                f"node {node.id} restarts with commit {core.commit}, {before} was persisted",
            )
        self._log(
            "start",
            node.id,
            f"term {core.term} vote {core.vote} commit {core.commit} last {core.last_index()}",
        )
        # Clocks drift: each process ticks at its own pace, within 10% of nominal.
        node.tick_interval = self.rng.randint(TICK - 1, TICK + 1)
        self._at(self.rng.randint(1, TICK), E_TICK, node.id, node.incarnation)
        self._touch(node)

    def _crash(self, node: SimNode, why: str) -> None:
        self._log("CRASH", node.id, why)
        self.stats["crashes"] += 1
        for _, data in node.pending_writes.values():
            self.outstanding.pop(data, None)  # the client sees its connection fail
        node.crash()
        # Its followers' connections to it close and a redial is refused: the runtime
        # reports that (transport on_peer_gone -> core.leader_unreachable) a moment later.
        for other in self.nodes.values():
            if (
                other.up
                and other.core is not None
                and other.core.leader == node.id
                and self.net.link_ok(node.id, other.id)
            ):
                self._at(1 + other.id % 3, E_LEADER_GONE, other.id, node.id, other.incarnation)

    def _restart(self, node_id: int) -> None:
        node = self.nodes[node_id]
        if node.up or node.stopped:
            return
        self._start(node)

    def _stop(self, node_id: int, why: str = "removed") -> None:
        """Shut a node down for good (its disk is kept, for a re-add)."""
        node = self.nodes[node_id]
        if node.up:
            self._crash(node, f"stopped: {why}")
        node.stopped = True

    def _stop_removed(self, node_id: int) -> None:
        node = self.nodes[node_id]
        if node_id in self.removed and not node.stopped and self.phase == "faults":
            self._stop(node_id)

    def _tick(self, node_id: int, incarnation: int) -> None:
        node = self.nodes[node_id]
        if node.incarnation != incarnation or not node.up:
            return
        self._at(node.tick_interval, E_TICK, node_id, incarnation)
        if node.paused:
            return
        core = node.core
        assert core is not None
        self._core_call(node, core.tick)
        self._touch(node)

    def _deliver(self, m: Message) -> None:
        node = self.nodes.get(m.to)
        if m.type == MsgType.SNAP:
            ok = node is not None and node.up and self.net.link_ok(m.frm, m.to)
            self._at(
                self.rng.randint(1, 3),
                E_SNAP_STATUS,
                m.frm,
                m.to,
                (ok, self.nodes[m.frm].incarnation),
            )
        if node is None or not node.up or not self.net.link_ok(m.frm, m.to):
            return
        if node.paused:
            node.inbox.append(m)
            return
        core = node.core
        assert core is not None
        if self.live_trace or m.type not in (MsgType.HEARTBEAT, MsgType.HEARTBEAT_RESP):
            self._log("recv", node.id, m)
        self._core_call(node, lambda: core.step(m))
        self._touch(node)

    def _snap_status(self, sender: int, to: int, outcome: tuple[bool, int]) -> None:
        """The sender's runtime learns whether its snapshot stream got through."""
        ok, incarnation = outcome
        node = self.nodes[sender]
        if not node.up or node.incarnation != incarnation:
            return  # the sending process is gone, and with it the leader's progress
        if node.paused:
            self._at(TICK, E_SNAP_STATUS, sender, to, outcome)  # reported once it runs
            return
        core = node.core
        assert core is not None
        self._core_call(node, lambda: core.report_snapshot(to, ok))
        self._touch(node)

    def _unreachable(self, sender: int, to: int, incarnation: int) -> None:
        node = self.nodes[sender]
        if node.core is None or node.paused or node.incarnation != incarnation:
            return
        core = node.core
        self._core_call(node, lambda: core.report_unreachable(to))
        self._touch(node)

    def _leader_gone(self, node_id: int, leader: int, incarnation: int) -> None:
        """`leader`'s process died and `node`'s redial was refused (not if it is back)."""
        node = self.nodes[node_id]
        gone = self.nodes.get(leader)
        if (
            node.core is None
            or not node.up
            or node.paused
            or node.incarnation != incarnation
            or (gone is not None and gone.up)
        ):
            return
        core = node.core
        self._log("LEADER_GONE", node_id, leader)
        self.stats["leader_gone"] += 1
        self._core_call(node, lambda: core.leader_unreachable(leader))
        self._touch(node)

    def _nem_reset_leader_link(self) -> None:
        """A spurious reset: a follower is told its (live) leader is gone. Pre-vote and
        check-quorum must keep this from deposing a leader a quorum still hears."""
        followers = [
            n
            for n in self._serving()
            if n.core is not None
            and n.core.leader
            and n.core.leader != n.id
            and (self.flaky_links is None or n.id in self.flaky_links)
        ]
        if not followers:
            return
        node = self.rng.choice(followers)
        core = node.core
        assert core is not None
        leader = core.leader
        self._log("RESET_LINK", node.id, leader)
        self._core_call(node, lambda: core.leader_unreachable(leader))
        self._touch(node)

    def _core_call(self, node: SimNode, fn: Any) -> Any:
        try:
            return fn()
        except ProposalDropped:
            raise
        except Violation:
            raise
        except AssertionError as e:
            raise Violation("core assertion", f"node {node.id}: {e}") from e
        except Exception as e:  # any crash of the core is a bug in it
            raise Violation("core raised", f"node {node.id}: {type(e).__name__}: {e}") from e

    def _touch(self, node: SimNode) -> None:
        """After any input to a core: observe it, and schedule its IO."""
        core = node.core
        if core is None:
            return
        self._observe(node, core)
        if not node.io_pending and core.has_ready():
            node.io_pending = True
            delay = self.rng.randint(0, self.profile.io_delay)
            if self.now < node.slow_disk_until:
                delay += node.slow_disk_delay
            self._at(delay, E_IO, node.id, node.incarnation)

    def _observe(self, node: SimNode, core: Raft) -> None:
        if core.term < node.seen_term:
            raise Violation("term decreased", f"node {node.id}: {node.seen_term} -> {core.term}")
        node.seen_term = core.term
        if core.role == StateRole.LEADER and node.led_term != core.term:
            node.led_term = core.term
            self.stats["elections"] += 1
            self._log("LEADER", node.id, f"term {core.term} last {core.last_index()}")
            self.checker.on_leader(node.id, core)
            if self.phase == "faults" and self.rng.random() < self.profile.isolate_new_leader:
                self._isolate(node.id)
        c = core.log.committed
        if c != node.seen_commit:
            self.checker.on_commit(node.id, core, node.seen_commit, c)
            node.seen_commit = c
            if (
                core.role == StateRole.LEADER
                and self.phase == "faults"
                and (self.isolate_next_commit or self.rng.random() < self.profile.isolate_on_commit)
            ):
                self.isolate_next_commit = False
                self._isolate(node.id)

    # ======================================================================
    # The Ready loop of one node: the steps of the production plan (ready.plan)
    # ======================================================================
    def _io_event(self, node_id: int, incarnation: int) -> None:
        node = self.nodes[node_id]
        if node.incarnation != incarnation or not node.up:
            return
        node.io_pending = False
        if node.paused:
            return  # resumed later; _resume touches it again
        core = node.core
        assert core is not None
        for _ in range(16):
            if not core.has_ready():
                break
            if not self._handle_ready(node, core):
                return  # crashed
        self._touch(node)

    def _handle_ready(self, node: SimNode, core: Raft) -> bool:
        """Run the plan's steps for the next Ready, as RaftNode._handle_ready does. An
        armed crash point stops the node at a step boundary, or in the middle of a
        Persist step (a torn write); only what the executed steps made durable
        survives. False if the node crashed."""
        rd = self._core_call(node, core.ready)
        steps = self._core_call(
            node,
            lambda: self.planner(
                rd,
                leader=core.role == StateRole.LEADER,
                durable=node.durable.hard_state,
                deferred=node.deferred_hs,
            ),
        )
        cp = node.crash_point
        crash_at = len(steps) + 1  # never
        if cp == "step_boundary":
            crash_at = self.rng.randint(0, len(steps) - 1)  # crash before steps[crash_at]
        elif cp == "torn_persist":
            persists = [i for i, step in enumerate(steps) if isinstance(step, ready.Persist)]
            crash_at = (
                self.rng.choice(persists) if persists else self.rng.randint(0, len(steps) - 1)
            )
        for i, step in enumerate(steps):
            if i == crash_at:
                if cp == "torn_persist" and isinstance(step, ready.Persist):
                    self._torn_persist(node, core, step)
                why = f"before step {i} of {_fmt_steps(steps)}"
                self._crash(
                    node,
                    f"torn write in step {i} of {_fmt_steps(steps)}"
                    if cp == "torn_persist" and isinstance(step, ready.Persist)
                    else why,
                )
                self.stats["crashes_in_ready"] += 1
                self._at(self.rng.randint(1, 20 * TICK), E_RESTART, node.id)
                return False
            if self._execute_step(node, core, rd, step):
                # A granted vote or an ack just left and the node was armed to crash then.
                self.stats["crashes_in_ready"] += 1
                self._crash(node, f"right {cp.replace('_', ' ')}" if cp else "")
                self._at(self.rng.randint(0, 2), E_RESTART, node.id)
                return False
        snap_index = node.durable.snapshot.meta.index if node.durable.snapshot else 0
        if node.applied - snap_index >= self.profile.snap_interval:
            node.snapshot_now(self.profile.snap_keep)
        self._observe(node, core)
        return True

    def _execute_step(self, node: SimNode, core: Raft, rd: Ready, step: ready.Step) -> bool:
        """One step of a plan; True if an armed 'after_vote' or 'after_ack' crash is due."""
        if isinstance(step, ready.Send):
            granted_vote = acked = False
            for m in step.messages:
                if m.type == MsgType.VOTE_RESP and not m.reject:
                    granted_vote = True
                    self.checker.on_vote_sent(node.id, m, node.durable.hard_state)
                elif m.type == MsgType.APP_RESP and not m.reject:
                    acked = True
                    durable = node.durable
                    self.checker.on_ack_sent(
                        node.id, m, durable.last_index(), durable.hard_state.term
                    )
                self._send(node, m)
            cp = node.crash_point
            return (granted_vote and cp == "after_vote") or (acked and cp == "after_ack")
        if isinstance(step, ready.Apply):
            for e in step.entries:
                self._apply(node, e)
        elif isinstance(step, ready.Persist):
            if step.entries:
                self.checker.on_entries(node.id, core, step.entries)
            node.durable.save(step.hard_state, step.entries)
            if step.hard_state is not None:
                node.deferred_hs = None
        elif isinstance(step, ready.PersistSnapshot):
            snap = step.snapshot
            if snap.data is None:
                raise Violation("snapshot without data", f"node {node.id}")
            meta = snap.meta
            self.checker.on_snapshot_installed(node.id, meta.index, meta.term)
            node.durable.install_snapshot(StoredSnapshot(meta, snap.data), step.hard_state)
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
            node.conf = snap.meta.conf_state
            self._log("restore", node.id, f"snapshot ({snap.meta.index}, t{snap.meta.term})")
            self.stats["snapshots_installed"] += 1
        elif isinstance(step, ready.Advance):
            self._core_call(node, lambda: core.advance(rd))
        elif isinstance(step, ready.ReleaseReads):
            for rs in step.read_states:
                floor = node.reads.pop(rs.context, None)
                if floor is not None:
                    node.read_waiters.append((rs.index, rs.context, floor))
            if node.read_waiters:
                self._serve_reads(node)
        else:
            raise AssertionError(f"the simulator cannot execute {step!r}")
        return False

    def _torn_persist(self, node: SimNode, core: Raft, step: ready.Persist) -> None:
        """The crash hits the Persist step's write: a prefix of its entries reaches the
        disk, and the hard state (last in the batch) only if all of them did."""
        kept = self.rng.randint(0, len(step.entries))
        whole = kept == len(step.entries) and self.rng.random() < 0.5
        if kept:
            self.checker.on_entries(node.id, core, step.entries[:kept])
        node.durable.save(step.hard_state if whole else None, step.entries[:kept])
        self._log(
            "torn",
            node.id,
            f"{kept}/{len(step.entries)} entries{', hard state' if whole else ''} on disk",
        )

    def _apply(self, node: SimNode, e: Any) -> None:
        if e.index != node.applied + 1:
            raise Violation("apply order", f"node {node.id} applies {e.index} after {node.applied}")
        self.checker.on_apply(node.id, e)
        node.applied = e.index
        if e.type == EntryType.NORMAL:
            if e.data:
                node.sm.append(e.data)
        else:
            node.conf = conf_after(node.conf, ConfChange.decode(e.data))
        self.checker.on_state(node.id, e.index, len(node.sm))
        pending = node.pending_writes.pop(e.index, None)
        if pending is not None:
            self.outstanding.pop(pending[1], None)
            if pending[0] != e.term:
                self.checker.on_write_failed(pending[1])
        if pending is not None and pending[0] == e.term:
            if pending[1] != e.data:
                raise Violation(
                    "proposal result",
                    f"node {node.id} proposed {pending[1]!r} at ({e.index}, "
                    f"t{e.term}) but applied {e.data!r} there",
                )
            self.checker.on_write_acked(e.data, e.index, len(node.sm))
            if e.data == self.marker:
                self._marker_acked(node, e.index)
        conf = node.pending_confs.pop(e.index, None)
        if conf is not None and conf[0] == e.term and e.type == EntryType.CONF_CHANGE:
            self._conf_acked(node, ConfChange.decode(e.data))

    def _serve_reads(self, node: SimNode) -> None:
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

    def _send(self, node: SimNode, m: Message) -> None:
        if m.type == MsgType.SNAP:
            self._attach_snapshot(node, m)
        copies = self.net.delays(m.frm, m.to)
        if not copies:
            if not self.net.link_ok(m.frm, m.to) and self.rng.random() < 0.3:
                # The sender's transport notices the peer is unreachable.
                self._at(self.profile.max_delay, E_UNREACHABLE, m.frm, m.to, node.incarnation)
            if m.type == MsgType.SNAP:
                self._at(
                    self.profile.max_delay, E_SNAP_STATUS, m.frm, m.to, (False, node.incarnation)
                )
            return
        self._at(copies[0], E_DELIVER, m)
        for d in copies[1:]:
            self._at(d, E_DELIVER, _copy_msg(m))

    def _attach_snapshot(self, node: SimNode, m: Message) -> None:
        """Like the runtime: attach the node's latest snapshot (which may predate the
        recipient joining: it learns its membership from the entries after it)."""
        stored = node.durable.snapshot
        if stored is None:
            stored = node.snapshot_now(self.profile.snap_keep)
        m.snapshot = Snapshot(stored.meta, stored.data)
        self.stats["snapshots_sent"] += 1

    # ======================================================================
    # Clients
    # ======================================================================
    def _client(self) -> None:
        self._at(self.rng.randint(1, 2 * self.profile.client_gap), E_CLIENT)
        if self.rng.random() < 0.6:
            self._client_write()
        else:
            self._client_read()

    def _serving(self) -> list[SimNode]:
        return [n for n in self.nodes.values() if n.up and not n.paused]

    def _leaders(self) -> list[SimNode]:
        return [
            n for n in self._serving() if n.core is not None and n.core.role == StateRole.LEADER
        ]

    def _pick_target(self, leader_bias: float) -> SimNode | None:
        leaders = self._leaders()
        if leaders and self.rng.random() < leader_bias:
            return self.rng.choice(leaders)
        serving = self._serving()
        return self.rng.choice(serving) if serving else None

    def _client_write(self) -> bool:
        if self.outstanding:
            self.outstanding = {d: t for d, t in self.outstanding.items() if t > self.now}
        if len(self.outstanding) >= self.profile.clients:
            return False
        node = self._pick_target(0.85)
        if node is None or node.core is None:
            return False
        core = node.core
        batch = 1 if self.rng.random() < 0.8 else self.rng.randint(2, 6)
        datas = []
        for _ in range(batch):
            self.write_seq += 1
            datas.append(b"w%d" % self.write_seq)
        try:
            term, first = self._core_call(node, lambda: core.propose_batch(datas))
        except ProposalDropped:
            return False
        for i, d in enumerate(datas):
            node.pending_writes[first + i] = (term, d)
            self.outstanding[d] = self.now + 30 * TICK
        self.stats["writes"] += len(datas)
        self._log("propose", node.id, f"{datas[0]!r}x{len(datas)} at ({first}, t{term})")
        self._touch(node)
        return True

    def _client_read(self) -> None:
        node = self._pick_target(0.5)
        if node is None or node.core is None:
            return
        core = node.core
        self.read_seq += 1
        ctx = b"r%d" % self.read_seq
        floor = self.checker.lin_floor
        try:
            self._core_call(node, lambda: core.read_index(ctx))
        except ProposalDropped:
            return
        node.reads[ctx] = floor
        self.stats["reads"] += 1
        self._log("read_index", node.id, f"{ctx!r} floor {floor}")
        self._touch(node)

    # ======================================================================
    # Membership
    # ======================================================================
    def _propose_conf(self, leader: SimNode, cc: ConfChange) -> bool:
        core = leader.core
        assert core is not None
        try:
            term, index = self._core_call(leader, lambda: core.propose_conf_change(cc))
        except ProposalDropped:
            return False
        leader.pending_confs[index] = (term, cc)
        self.stats["conf_changes"] += 1
        self._log("conf", leader.id, f"{cc.type.name} {cc.node_id} at ({index}, t{term})")
        self._touch(leader)
        return True

    def _conf_acked(self, node: SimNode, cc: ConfChange) -> None:
        self._log("conf_acked", node.id, f"{cc.type.name} {cc.node_id}")
        self.stats[
            {
                ConfChangeType.ADD_LEARNER: "added",
                ConfChangeType.PROMOTE: "promoted",
                ConfChangeType.REMOVE: "removed",
                ConfChangeType.ADD_VOTER: "added",
            }[cc.type]
        ] += 1
        if cc.type == ConfChangeType.REMOVE and cc.node_id == node.id:
            self.stats["leader_removed"] += 1
        if cc.type == ConfChangeType.REMOVE:
            if cc.node_id not in self.removed:
                self.removed.append(cc.node_id)
            # A removed node lingers a while (a zombie), then is shut down.
            self._at(self.rng.randint(0, 30 * TICK), E_STOP, cc.node_id)
        elif cc.type == ConfChangeType.ADD_LEARNER and cc.node_id in self.removed:
            self.removed.remove(cc.node_id)

    def _add_learner(self, leader: SimNode) -> None:
        core = leader.core
        assert core is not None
        if len(core.conf.members()) >= self.profile.nodes + 2:
            return
        if self.removed and self.rng.random() < 0.5:
            # Add back a removed node, with whatever it kept on disk.
            node_id = self.rng.choice(self.removed)
            node = self.nodes[node_id]
            if node_id in core.conf.members():
                return
            self.removed.remove(node_id)  # from now on it may be a member again: keep it up
            self.stats["readded"] += 1
            if self.wipe_readd:
                if node.up:
                    self._crash(node, "wiped for re-adding")
                node.durable = Durable()
                node.stopped = True
                if self.fresh_ids:
                    # Same pod, empty disk, new incarnation: a new id; the old one stays
                    # down for good (messages to and from it may still be in flight).
                    node_id = self.next_id
                    self.next_id += 1
                    self._log("incarnation", node_id, f"replaces wiped node {node.id}")
                    node = self._add_node(node_id, Durable())
                    self._start(node)
            if node.stopped:
                node.stopped = False
                self._start(node)
        elif self.next_id <= self.max_nodes:
            node_id = self.next_id
            self.next_id += 1
            self._start(self._add_node(node_id, Durable()))
        else:
            return
        self._propose_conf(leader, ConfChange(ConfChangeType.ADD_LEARNER, node_id))

    def _promote(self, leader: SimNode) -> None:
        core = leader.core
        assert core is not None
        for learner in sorted(core.conf.learners):
            pr = core.prs.get(learner)
            if pr is not None and pr.match + 3 >= core.last_index():
                self._propose_conf(leader, ConfChange(ConfChangeType.PROMOTE, learner))
                return

    def _remove(self, leader: SimNode) -> None:
        core = leader.core
        assert core is not None
        conf = core.conf
        candidates = sorted(conf.learners)
        if len(conf.voters) > max(2, self.profile.nodes - 2):
            candidates += sorted(conf.voters)
            if self.rng.random() < 0.35:
                candidates = [leader.id]  # the leader removes itself and steps down
        if candidates:
            self._propose_conf(
                leader, ConfChange(ConfChangeType.REMOVE, self.rng.choice(candidates))
            )

    def _membership(self) -> None:
        """The operator's cycle, during faults: add a learner, promote it once it has
        caught up, remove a voter (the leader too, sometimes), add one back."""
        if self.phase != "faults":
            return
        self._at(self.rng.randint(5, 25) * TICK, E_MEMBERSHIP)
        leader = self._a_leader()
        if leader is None or leader.core is None:
            return
        conf = leader.core.conf
        if conf.learners:
            self._promote(leader)
        elif len(conf.voters) > self.profile.nodes - 1 + self.rng.randint(0, 1):
            self._remove(leader)
        else:
            self._add_learner(leader)

    # ======================================================================
    # Nemesis
    # ======================================================================
    def _nemesis(self) -> None:
        if self.phase != "faults":
            return
        self._at(self.rng.randint(1, 2 * self.profile.nemesis_gap), E_NEMESIS)
        w = self.profile.weights
        names = sorted(w)
        action = self.rng.choices(names, weights=[w[k] for k in names])[0]
        getattr(self, "_nem_" + action)()

    def _members_up(self) -> list[int]:
        return sorted(n.id for n in self.nodes.values() if n.up)

    def _live_ids(self) -> list[int]:
        return sorted(n.id for n in self.nodes.values() if not n.stopped)

    def _a_leader(self) -> SimNode | None:
        leaders = self._leaders()
        if not leaders:
            return None
        return max(leaders, key=lambda n: n.core.term if n.core else 0)

    def _nem_partition(self) -> None:
        ids = self._live_ids()
        self.rng.shuffle(ids)
        cut = self.rng.randint(1, max(1, len(ids) - 1))
        groups = [ids[:cut], ids[cut:]]
        self.net.partition(groups, ids)
        if self.rng.random() < 0.3 and len(ids) >= 3:
            # A bridge: one node that still sees both sides.
            bridge = ids[-1]
            self.net.blocked = {(a, b) for (a, b) in self.net.blocked if bridge not in (a, b)}
            groups.append([bridge])
        self._log("PARTITION", 0, groups)

    def _nem_isolate_leader(self) -> None:
        leader = self._a_leader()
        if leader is not None:
            self._isolate(leader.id)

    def _isolate(self, node_id: int) -> None:
        ids = self._live_ids()
        self.net.partition([[i for i in ids if i != node_id]], ids)
        self._log("ISOLATE", node_id)

    def _nem_minority_leader(self) -> None:
        """Cut the leader off together with a minority: its new entries reach only
        that minority (the uncommitted, older-term entries of Raft's figure 8)."""
        leader = self._a_leader()
        if leader is None:
            return
        ids = self._live_ids()
        others = [i for i in ids if i != leader.id]
        k = self.rng.randint(0, max(0, (len(ids) - 1) // 2 - 1))
        side = [leader.id, *self.rng.sample(others, k)]
        self.net.partition([side, [i for i in ids if i not in side]], ids)
        self._log("MINORITY", leader.id, side)

    def _nem_one_way(self) -> None:
        ids = self._live_ids()
        if len(ids) < 2:
            return
        a, b = self.rng.sample(ids, 2)
        self.net.cut(a, b)
        self._log("CUT", a, f"-> {b}")

    def _nem_heal_net(self) -> None:
        self.net.blocked.clear()
        self.net.slow.clear()
        self._log("HEAL_NET", 0)

    def _nem_net_params(self) -> None:
        self.net.loss = self.rng.choice((0.0, 0.0, 0.05, 0.2, 0.4))
        self.net.dup = self.rng.choice((0.0, 0.05, 0.2))
        self._log("NET", 0, f"loss {self.net.loss} dup {self.net.dup}")

    def _nem_slow(self) -> None:
        ids = self._live_ids()
        n = self.rng.choice(ids)
        self.net.slow[n] = self.rng.randint(5, 40)
        self._log("SLOW", n, self.net.slow[n])

    def _nem_slow_disk(self) -> None:
        """A node's fsyncs turn slow for a while: inputs pile up meanwhile and its next
        Ready is big (a snapshot, entries after it and their commit all in one)."""
        n = self.nodes[self.rng.choice(self._live_ids())]
        n.slow_disk_delay = self.rng.randint(10, 60)
        n.slow_disk_until = self.now + self.rng.randint(5, 40) * TICK
        self._log("SLOW_DISK", n.id, n.slow_disk_delay)

    def _nem_crash(self) -> None:
        up = [self.nodes[i] for i in self._members_up() if not self.nodes[i].stopped]
        if not up:
            return
        leader = self._a_leader()
        node = leader if leader is not None and self.rng.random() < 0.5 else self.rng.choice(up)
        self._crash(node, "nemesis")
        self._at(self.rng.randint(1, 40 * TICK), E_RESTART, node.id)

    def _nem_crash_point(self) -> None:
        up = [self.nodes[i] for i in self._members_up()]
        if up:
            node = self.rng.choice(up)
            node.crash_point = self.rng.choice(CRASH_POINTS)
            self._log("ARM", node.id, node.crash_point)

    def _nem_vote_amnesia(self) -> None:
        """Crash a node right after it grants a vote and restart it at once, while
        two candidates run: a vote that was not persisted shows up as two leaders."""
        up = [self.nodes[i] for i in self._members_up()]
        for node in up:
            if self.rng.random() < 0.6:
                node.crash_point = "after_vote"
        self._nem_campaign(force_two=True)

    def _nem_ack_amnesia(self) -> None:
        """Crash followers right after they acknowledge entries and restart them at once,
        and cut the leader off as soon as it next commits: entries acked before they
        were on disk are then missing from every node that can still elect a leader."""
        leader = self._a_leader()
        if leader is None:
            return
        for i in self._members_up():
            if i != leader.id and self.rng.random() < 0.7:
                self.nodes[i].crash_point = "after_ack"
        self.isolate_next_commit = True
        self._log("ACK_AMNESIA", leader.id)

    def _nem_campaign(self, force_two: bool = False) -> None:
        voters = [n for n in self._serving() if n.core is not None and n.core.is_voter()]
        if not voters:
            return
        k = 2 if force_two or self.rng.random() < 0.4 else 1
        for node in self.rng.sample(voters, min(k, len(voters))):
            core = node.core
            assert core is not None
            self._log("CAMPAIGN", node.id)
            self._core_call(node, core.campaign)
            self._touch(node)

    def _nem_pause(self) -> None:
        leader = self._a_leader()
        serving = self._serving()
        if not serving:
            return
        node = (
            leader if leader is not None and self.rng.random() < 0.7 else self.rng.choice(serving)
        )
        node.paused = True
        self._log("PAUSE", node.id)
        self._at(self.rng.randint(5 * TICK, 40 * TICK), E_RESUME, node.id, node.incarnation)

    def _resume(self, node_id: int, incarnation: int | None = None) -> None:
        node = self.nodes[node_id]
        if not node.up or not node.paused:
            return
        if incarnation is not None and incarnation != node.incarnation:
            return
        node.paused = False
        self._log("RESUME", node_id)
        inbox, node.inbox = node.inbox, []
        for m in inbox:
            self._at(self.rng.randint(0, 3), E_DELIVER, m)
        self._touch(node)

    def _nem_transfer(self) -> None:
        leader = self._a_leader()
        if leader is None or leader.core is None:
            return
        targets = sorted(v for v in leader.core.conf.voters if v != leader.id)
        if not targets:
            return
        to = self.rng.choice(targets)
        # Usually asked of the leader; sometimes of a follower, which forwards it.
        asked = leader
        if self.rng.random() < 0.3:
            asked = self.rng.choice(self._serving())
        core = asked.core
        assert core is not None
        self._log("TRANSFER", asked.id, f"-> {to}")
        try:
            self._core_call(asked, lambda: core.transfer_leadership(to))
        except ProposalDropped:
            return
        self._touch(asked)

    def _nem_add(self) -> None:
        leader = self._a_leader()
        if leader is not None and self.profile.membership:
            self._add_learner(leader)

    def _nem_promote(self) -> None:
        leader = self._a_leader()
        if leader is not None and self.profile.membership:
            self._promote(leader)

    def _nem_remove(self) -> None:
        leader = self._a_leader()
        if leader is not None and self.profile.membership:
            self._remove(leader)

    # ======================================================================
    # Healing and liveness
    # ======================================================================
    def _heal(self) -> None:
        self._log("HEAL", 0)
        self.net.heal()
        for node in list(self.nodes.values()):
            node.crash_point = None
            node.slow_disk_until = 0  # disks heal with the network
            if node.id in self.removed and not node.stopped:
                self._stop(node.id)
            elif node.paused:
                self._resume(node.id)
            elif not node.up and not node.stopped:
                self._start(node)
        self.phase = "liveness"
        self.healed_at = self.now
        self.deadline = self.now + self.liveness_ticks() * TICK
        self._at(0, E_PROBE)

    def _probe(self) -> None:
        if self.now > self.deadline:
            self._liveness_failure()
        self._at(2 * TICK, E_PROBE)
        if not self.marker_index:
            if (
                self.marker_sent_at < 0
                or self.now - self.marker_sent_at > 30 * TICK
                or not self._leaders()
            ):
                self.marker = b"live%d" % self.now
                if self._propose_marker():
                    self.marker_sent_at = self.now
            return
        leader = self._a_leader()
        if leader is None or leader.core is None:
            return
        self._stop_outsiders(leader.core)
        # Every member of the current leader's configuration applied the marker.
        self.marker_members = sorted(leader.core.conf.members())
        lagging = [
            i
            for i in self.marker_members
            if not self.nodes[i].up or self.nodes[i].applied < self._target_index()
        ]
        if not lagging:
            self.done = True
            ticks = (self.now - self.healed_at) // TICK
            self.stats["liveness_ticks"] = ticks
            # In election timeouts, to compare with the bound (LIVENESS_ELECTIONS).
            self.stats["liveness_elections"] = -(-ticks // self.profile.election_tick)

    def _stop_outsiders(self, core: Raft) -> None:
        """Like an operator deleting the pods of removed members: once the leader has
        no membership change in flight, stop nodes outside its configuration. (A removed
        node whose removal no client saw acknowledged may otherwise campaign forever
        with its stale configuration, and without pre-vote and check-quorum its terms
        cut a learner off the leader.)"""
        if core.pending_conf_index > core.applied:
            return
        members = core.conf.members()
        for node in self.nodes.values():
            if node.up and node.id not in members:
                self._stop(node.id, "not a member")

    def _target_index(self) -> int:
        return self.marker_target

    def _propose_marker(self) -> bool:
        leaders = [n for n in self._leaders() if n.core is not None and n.core.is_voter()]
        if not leaders:
            return False
        leader = max(leaders, key=lambda n: n.core.term if n.core else 0)
        core = leader.core
        assert core is not None
        try:
            term, index = self._core_call(leader, lambda: core.propose(self.marker))
        except ProposalDropped:
            return False
        leader.pending_writes[index] = (term, self.marker)
        self._log("marker", leader.id, f"{self.marker!r} at ({index}, t{term})")
        self._touch(leader)
        return True

    def _marker_acked(self, node: SimNode, index: int) -> None:
        core = node.core
        assert core is not None
        self.marker_index = index
        self.marker_target = max(index, self.checker.max_acked_index)
        self.marker_members = sorted(core.conf.members())
        self._log("marker_acked", node.id, f"index {index} members {self.marker_members}")

    def liveness_ticks(self) -> int:
        return LIVENESS_ELECTIONS * self.profile.election_tick

    def _liveness_failure(self) -> None:
        states = []
        for node in self.nodes.values():
            if node.core is None:
                states.append(f"{node.id}:down{'(stopped)' if node.stopped else ''}")
            else:
                c = node.core
                states.append(
                    f"{node.id}:{c.role} t{c.term} lead{c.leader} c{c.commit} "
                    f"a{node.applied} last{c.last_index()} "
                    f"voters{sorted(c.conf.voters)} learners{sorted(c.conf.learners)}"
                )
        raise Violation(
            "liveness",
            f"no progress {self.liveness_ticks()} ticks after healing (marker index "
            f"{self.marker_index}, members {self.marker_members}): " + "; ".join(states),
        )

    def _final_checks(self) -> None:
        """Every write acknowledged before the marker is applied exactly once on every member."""
        for i in self.marker_members:
            node = self.nodes[i]
            sm = node.sm
            acked = [d for d, index in self.checker.acked.items() if index <= self.marker_target]
            counts: dict[bytes, int] = {}
            for d in sm:
                counts[d] = counts.get(d, 0) + 1
            for data in acked:
                if counts.get(data, 0) != 1:
                    raise Violation(
                        "exactly once",
                        f"node {i} holds acknowledged write {data!r} {counts.get(data, 0)} times",
                    )


def _fmt_steps(steps: list[ready.Step]) -> str:
    return "[" + ", ".join(type(step).__name__ for step in steps) + "]"


def _fmt_event(item: tuple[int, str, int, Any]) -> str:
    t, what, node, detail = item
    if isinstance(detail, Message):
        detail = fmt_msg(detail)
    return f"t={t:6d} tick={t // TICK:4d} n{node} {what} {detail}"


def run_seed(
    seed: int,
    nodes: int = 3,
    steps: int = 300,
    factory: RaftFactory = Raft,
    trace: bool = False,
    wipe_readd: bool = False,
    fresh_ids: bool = False,
    planner: ready.Planner = ready.plan,
) -> Result:
    return Cluster(
        seed,
        nodes,
        steps,
        factory,
        trace,
        wipe_readd=wipe_readd,
        fresh_ids=fresh_ids,
        planner=planner,
    ).run()
