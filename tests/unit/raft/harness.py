"""Drive a few Raft cores by hand and describe everything they do as text.

`InteractionEnv` is the transcript tests' world (modelled on etcd-io/raft's
rafttest.InteractionEnv): nodes with an in-memory durable store and a toy state
machine, one FIFO network that carries only what a Ready handed out, and
network faults (partitions, one-way link cuts, crashes that keep only what was
persisted). `handle(directive)` runs one transcript command and returns its
output. Everything is deterministic: no clock, fixed seeds.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from raftkv.raft import (
    ConfChange,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MsgType,
    ProposalDropped,
    Raft,
    Snapshot,
    SnapshotMeta,
    StateRole,
)
from raftkv.raft.core import Config, bootstrap_entries
from raftkv.raft.progress import ProgressState
from tests.unit.raft.datadriven import Arg, Directive, format_args
from tests.unit.raft.describe import (
    CONF_CHANGE_BY_NAME,
    MSG_BY_NAME,
    fmt_conf,
    fmt_entry,
    fmt_msg,
    fmt_ready,
    fmt_snapshot,
)


class CommandError(ValueError):
    """The transcript used a command wrongly (a bug in the test file, not the core)."""


# --------------------------------------------------------------------------
# A node: durable store + core + toy state machine
# --------------------------------------------------------------------------
@dataclass
class Store:
    """What survives a crash: exactly what Readies asked to persist, and snapshots."""

    hard_state: HardState = field(default_factory=HardState)
    snapshot: SnapshotMeta | None = None
    snapshot_data: bytes = b"[]"
    entries: list[Entry] = field(default_factory=list)

    def append(self, entries: list[Entry]) -> None:
        if not entries:
            return
        first = entries[0].index
        self.entries = [e for e in self.entries if e.index < first] + list(entries)

    def apply_snapshot(self, snap: Snapshot) -> None:
        self.snapshot = snap.meta
        self.snapshot_data = snap.data if snap.data is not None else b"[]"
        self.entries = []  # the snapshot replaces the whole log


@dataclass
class Node:
    id: int
    config: Config
    store: Store
    raft: Raft
    # The toy state machine: applied non-empty normal entries, as (index, data).
    applied: list[tuple[int, str]] = field(default_factory=list)
    # Membership as of each applied index, to build snapshots of any applied index.
    conf_history: list[tuple[int, ConfState]] = field(default_factory=lambda: [(0, ConfState())])
    crashed: bool = False

    def conf_at(self, index: int) -> ConfState:
        best = ConfState()
        for i, cs in self.conf_history:
            if i <= index:
                best = cs
        return best


def new_raft(cfg: Config, store: Store) -> Raft:
    return Raft(
        cfg,
        hard_state=store.hard_state.copy(),
        snapshot=store.snapshot,
        entries=list(store.entries),
    )


# --------------------------------------------------------------------------
# The environment
# --------------------------------------------------------------------------
class InteractionEnv:
    def __init__(self) -> None:
        self.nodes: dict[int, Node] = {}
        self.network: list[Message] = []  # sent, not yet delivered, in send order
        self.groups: list[set[int]] | None = None  # partition: nodes in different groups
        self.cut: set[tuple[int, int]] = set()  # one-way link cuts (from, to)
        self.log_level = "info"
        self.out: list[str] = []
        self.commands: dict[str, Callable[[list[Arg]], None]] = {
            "add-nodes": self.cmd_add_nodes,
            "campaign": self.cmd_campaign,
            "propose": self.cmd_propose,
            "propose-conf-change": self.cmd_propose_conf_change,
            "read-index": self.cmd_read_index,
            "transfer-leadership": self.cmd_transfer_leadership,
            "tick": self.cmd_tick,
            "tick-election": self.cmd_tick_election,
            "tick-heartbeat": self.cmd_tick_heartbeat,
            "set-election-timeout": self.cmd_set_election_timeout,
            "process-ready": self.cmd_process_ready,
            "deliver-msgs": self.cmd_deliver_msgs,
            "stabilize": self.cmd_stabilize,
            "partition": self.cmd_partition,
            "drop": self.cmd_drop,
            "heal": self.cmd_heal,
            "crash": self.cmd_crash,
            "restart": self.cmd_restart,
            "compact": self.cmd_compact,
            "report-unreachable": self.cmd_report_unreachable,
            "leader-unreachable": self.cmd_leader_unreachable,
            "inject": self.cmd_inject,
            "status": self.cmd_status,
            "raft-state": self.cmd_raft_state,
            "raft-log": self.cmd_raft_log,
            "state-machine": self.cmd_state_machine,
            "log-level": self.cmd_log_level,
        }

    # --- entry point ---------------------------------------------------------
    def handle(self, d: Directive) -> str:
        fn = self.commands.get(d.cmd)
        if fn is None:
            raise CommandError(f"{d.pos()}: unknown command {d.cmd!r}")
        self.out = []
        try:
            fn(d.args)
        except CommandError as e:
            raise CommandError(f"{d.pos()}: {d.cmd} {format_args(d.args)}: {e}") from e
        return "".join(x + "\n" for x in self.out)

    def emit(self, line: str) -> None:
        self.out.append(line)

    def trace(self, line: str) -> None:
        """Readies, deliveries and drops: silenced by `log-level none` (setup phases)."""
        if self.log_level == "info":
            self.out.append(line)

    def info(self, line: str) -> None:
        if self.log_level == "info":
            self.out.append("INFO " + line)

    # --- argument helpers ----------------------------------------------------
    @staticmethod
    def _kw(args: list[Arg]) -> dict[str, list[str]]:
        return {a.key: a.values for a in args if a.values}

    @staticmethod
    def _bare(args: list[Arg]) -> list[str]:
        return [a.key for a in args if not a.values]

    def _node(self, s: str) -> Node:
        try:
            n = self.nodes[int(s)]
        except (ValueError, KeyError):
            raise CommandError(f"no node {s!r}") from None
        if n.crashed:
            raise CommandError(f"node {s} is crashed")
        return n

    def _targets(self, args: list[Arg]) -> list[Node]:
        """Nodes named by bare id arguments, or every live node when none are named."""
        named = [w for w in self._bare(args) if w.isdigit()]
        if named:
            return [self._node(w) for w in named]
        return [n for _, n in sorted(self.nodes.items()) if not n.crashed]

    @staticmethod
    def _bool(v: str) -> bool:
        if v not in ("true", "false"):
            raise CommandError(f"expected true/false, got {v!r}")
        return v == "true"

    # --- observing a node ----------------------------------------------------
    def _observe(self, node: Node, action: Callable[[], None]) -> None:
        """Run `action` on `node`, then log role/term, transfer and membership changes."""
        r = node.raft
        before = (r.role, r.term, r.lead_transferee, r.conf)
        action()
        self._report_changes(node, before)

    def _report_changes(self, node: Node, before: tuple[StateRole, int, int, ConfState]) -> None:
        r = node.raft
        role, term, transferee, conf = before
        if r.conf != conf:
            self.info(f"{node.id} switched to configuration {fmt_conf(r.conf)}")
        if (r.role, r.term) != (role, term):
            self.info(f"{node.id} became {r.role} at term {r.term}")
        if r.lead_transferee != transferee:
            if r.lead_transferee:
                self.info(f"{node.id} is transferring leadership to {r.lead_transferee}")
            elif r.role == StateRole.LEADER:
                self.info(f"{node.id} aborted leadership transfer to {transferee}")

    # --- commands: setup -----------------------------------------------------
    def cmd_add_nodes(self, args: list[Arg]) -> None:
        bare, kw = self._bare(args), self._kw(args)
        if len(bare) != 1 or not bare[0].isdigit():
            raise CommandError("usage: add-nodes N [voters=(..)] [learners=(..)] [index=I] ...")
        count = int(bare[0])
        voters = [int(v) for v in kw.pop("voters", [])]
        learners = [int(v) for v in kw.pop("learners", [])]
        index = int(kw.pop("index", ["0"])[0])
        if learners and not index:
            raise CommandError("learners=(..) needs index= (a snapshot carries the config)")
        options: dict[str, tuple[str, Callable[[str], object]]] = {
            "election": ("election_tick", int),
            "heartbeat": ("heartbeat_tick", int),
            "prevote": ("pre_vote", self._bool),
            "checkquorum": ("check_quorum", self._bool),
            "max-inflight": ("max_inflight_msgs", int),
            "max-inflight-bytes": ("max_inflight_bytes", int),
            "max-entries": ("max_entries_per_msg", int),
            "max-bytes": ("max_bytes_per_msg", int),
            "max-committed": ("max_committed_per_ready", int),
            "hints": ("send_conflict_hints", self._bool),
            "lease-reads": ("lease_reads", self._bool),
        }
        cfg_kwargs: dict[str, object] = {"election_tick": 3, "heartbeat_tick": 1}
        for key, vals in kw.items():
            if key not in options:
                raise CommandError(f"unknown option {key}= (known: {sorted(options)})")
            name, conv = options[key]
            cfg_kwargs[name] = conv(vals[0])
        first = max(self.nodes, default=0) + 1
        for node_id in range(first, first + count):
            cfg = Config(id=node_id, seed=node_id, **cfg_kwargs)  # type: ignore[arg-type]
            store = Store()
            if index:
                cs = ConfState(frozenset(voters), frozenset(learners))
                store.snapshot = SnapshotMeta(index, 1, cs)
                store.hard_state = HardState(term=1, commit=index)
            elif voters:
                entries, hs = bootstrap_entries(voters)
                store.entries, store.hard_state = entries, hs
            node = Node(node_id, cfg, store, new_raft(cfg, store))
            if store.snapshot is not None:
                node.conf_history = [(index, store.snapshot.conf_state)]
            self.nodes[node_id] = node
            self._describe_boot(node)

    def _describe_boot(self, node: Node) -> None:
        r = node.raft
        self.info(
            f"{node.id} started: term={r.term} vote={r.vote} commit={r.commit} "
            f"applied={r.applied} last={r.log.last_term()}/{r.last_index()} "
            f"{fmt_conf(r.conf)}"
        )

    def cmd_log_level(self, args: list[Arg]) -> None:
        level = self._bare(args)
        if level not in (["none"], ["info"]):
            raise CommandError("usage: log-level none|info")
        self.log_level = level[0]

    # --- commands: inputs to one core ------------------------------------------
    def cmd_campaign(self, args: list[Arg]) -> None:
        for node in self._targets(args):
            self._observe(node, node.raft.campaign)

    def _try(self, node: Node, action: Callable[[], object]) -> None:
        def run() -> None:
            try:
                action()
            except ProposalDropped as e:
                self.emit(f"{node.id}: error: {type(e).__name__}: {e}")

        self._observe(node, run)

    def cmd_propose(self, args: list[Arg]) -> None:
        bare = self._bare(args)
        if len(bare) != 2:
            raise CommandError("usage: propose ID DATA")
        node = self._node(bare[0])
        self._try(node, lambda: node.raft.propose(bare[1].encode()))

    def cmd_propose_conf_change(self, args: list[Arg]) -> None:
        bare = self._bare(args)
        if len(bare) != 3 or bare[1] not in CONF_CHANGE_BY_NAME:
            raise CommandError(f"usage: propose-conf-change ID {'|'.join(CONF_CHANGE_BY_NAME)} N")
        node = self._node(bare[0])
        cc = ConfChange(CONF_CHANGE_BY_NAME[bare[1]], int(bare[2]))
        self._try(node, lambda: node.raft.propose_conf_change(cc))

    def cmd_read_index(self, args: list[Arg]) -> None:
        bare = self._bare(args)
        if len(bare) != 2:
            raise CommandError("usage: read-index ID CTX")
        node = self._node(bare[0])
        self._try(node, lambda: node.raft.read_index(bare[1].encode()))

    def cmd_transfer_leadership(self, args: list[Arg]) -> None:
        kw = self._kw(args)
        if set(kw) != {"from", "to"}:
            raise CommandError("usage: transfer-leadership from=ID to=ID")
        node = self._node(kw["from"][0])
        self._try(node, lambda: node.raft.transfer_leadership(int(kw["to"][0])))

    def cmd_report_unreachable(self, args: list[Arg]) -> None:
        bare = self._bare(args)
        if len(bare) != 2:
            raise CommandError("usage: report-unreachable LEADER PEER")
        node = self._node(bare[0])
        self._observe(node, lambda: node.raft.report_unreachable(int(bare[1])))

    def cmd_leader_unreachable(self, args: list[Arg]) -> None:
        bare = self._bare(args)
        if len(bare) != 2:
            raise CommandError("usage: leader-unreachable FOLLOWER LEADER")
        node = self._node(bare[0])
        self._observe(node, lambda: node.raft.leader_unreachable(int(bare[1])))

    def cmd_inject(self, args: list[Arg]) -> None:
        """`inject ID type=MsgX from=N term=T [index=I] [commit=C]`: step a message
        nobody sent (a forgery, or a peer's bug) straight into node ID."""
        bare, kw = self._bare(args), self._kw(args)
        if len(bare) != 1 or not {"type", "from", "term"} <= set(kw):
            raise CommandError("usage: inject ID type=MsgX from=N term=T [index=I] [commit=C]")
        node = self._node(bare[0])
        if kw["type"][0] not in MSG_BY_NAME:
            raise CommandError(f"unknown message type {kw['type'][0]!r}")
        m = Message(
            MSG_BY_NAME[kw["type"][0]],
            to=node.id,
            frm=int(kw["from"][0]),
            term=int(kw["term"][0]),
            index=int(kw.get("index", ["0"])[0]),
            commit=int(kw.get("commit", ["0"])[0]),
        )
        self.emit(f"> {node.id} receiving injected {fmt_msg(m)}")
        self._observe(node, lambda: node.raft.step(m))

    def _tick(self, node: Node, times: int) -> None:
        def run() -> None:
            for _ in range(times):
                node.raft.tick()

        self._observe(node, run)

    def cmd_tick(self, args: list[Arg]) -> None:
        bare = self._bare(args)
        if len(bare) not in (1, 2):
            raise CommandError("usage: tick ID [COUNT]")
        self._tick(self._node(bare[0]), int(bare[1]) if len(bare) == 2 else 1)

    def cmd_tick_election(self, args: list[Arg]) -> None:
        """Tick up to the node's next election-timeout event: a follower or
        candidate campaigns (if it is a voter); a leader runs its check-quorum
        and ends an unfinished leadership transfer."""
        for node in self._targets(args):
            r = node.raft
            if r.role == StateRole.LEADER:
                times = r.cfg.election_tick - r.election_elapsed
            else:
                times = r.randomized_election_timeout - r.election_elapsed
            self._tick(node, max(1, times))

    def cmd_set_election_timeout(self, args: list[Arg]) -> None:
        """Pin a node's current randomized election timeout (until its next reset),
        so a transcript decides who times out first."""
        bare = self._bare(args)
        if len(bare) != 2:
            raise CommandError("usage: set-election-timeout ID TICKS")
        node, ticks = self._node(bare[0]), int(bare[1])
        cfg = node.config
        if not cfg.election_tick <= ticks < 2 * cfg.election_tick:
            raise CommandError(f"timeout must be in [{cfg.election_tick}, {2 * cfg.election_tick})")
        node.raft.randomized_election_timeout = ticks

    def cmd_tick_heartbeat(self, args: list[Arg]) -> None:
        for node in self._targets(args):
            self._tick(node, node.config.heartbeat_tick)

    # --- commands: Ready and the network --------------------------------------
    def cmd_process_ready(self, args: list[Arg]) -> None:
        for node in self._targets(args):
            self._process_ready(node)

    def _process_ready(self, node: Node) -> bool:
        r = node.raft
        self.trace(f"> {node.id} handling Ready")
        if not r.has_ready():
            self.trace("  <empty Ready>")
            return False
        before = (r.role, r.term, r.lead_transferee, r.conf)
        rd = r.ready()
        for line in fmt_ready(rd):
            self.trace("  " + line)
        store = node.store
        # 1. persist: snapshot, entries, hard state (one "fsync").
        if rd.snapshot is not None:
            store.apply_snapshot(rd.snapshot)
        store.append(rd.entries)
        if rd.hard_state is not None:
            store.hard_state = rd.hard_state.copy()
        # 2. send: a copy, as if serialized, so no node shares objects with another.
        for m in map(copy.deepcopy, rd.messages):
            if m.type == MsgType.SNAP and m.snapshot is not None:
                m.snapshot = self._snapshot_for_send(node, m.snapshot.meta)
            self.network.append(m)
        # 3. apply.
        if rd.snapshot is not None:
            node.applied = [(i, d) for i, d in json.loads(store.snapshot_data)]
            node.conf_history = [(rd.snapshot.meta.index, rd.snapshot.meta.conf_state)]
        conf = node.conf_at(r.applied) if not rd.snapshot else rd.snapshot.meta.conf_state
        for e in rd.committed_entries:
            if e.type == EntryType.CONF_CHANGE:
                conf = Raft._conf_after(conf, ConfChange.decode(e.data))
                node.conf_history.append((e.index, conf))
            elif e.data:
                node.applied.append((e.index, e.data.decode()))
        # 4. advance.
        r.advance(rd)
        self._report_changes(node, before)
        return True

    def _snapshot_for_send(self, node: Node, meta: SnapshotMeta) -> Snapshot:
        store = node.store
        if store.snapshot is None or store.snapshot.index != meta.index:
            raise AssertionError(f"{node.id} sends snapshot {meta} but stores {store.snapshot}")
        return Snapshot(meta, store.snapshot_data)

    def _blocked(self, m: Message) -> str:
        if (m.frm, m.to) in self.cut:
            return "link cut"
        if self.groups is not None:
            g_from = next((g for g in self.groups if m.frm in g), None)
            if g_from is None or m.to not in g_from:
                return "partition"
        return ""

    def cmd_deliver_msgs(self, args: list[Arg]) -> None:
        kw = self._kw(args)
        drop_to = {int(x) for x in kw.pop("drop", [])}
        types = {MSG_BY_NAME[t] for t in kw.pop("type", [])}
        if kw:
            raise CommandError(f"unknown options {sorted(kw)}")
        if drop_to:
            kept = []
            for m in self.network:
                if m.to in drop_to and (not types or m.type in types):
                    self.trace(f"dropped: {fmt_msg(m)}")
                else:
                    kept.append(m)
            self.network = kept
        if any(w.isdigit() for w in self._bare(args)) or not drop_to:
            for node in self._targets(args):
                self._deliver(node, types)

    def _deliver(self, node: Node, types: set[MsgType] | None = None) -> bool:
        mine = [m for m in self.network if m.to == node.id and (not types or m.type in types)]
        if not mine:
            return False
        self.network = [m for m in self.network if not any(m is x for x in mine)]
        self.trace(f"> {node.id} receiving messages")
        for m in mine:
            why = self._blocked(m)
            if why:
                self.trace(f"  {fmt_msg(m)} DROPPED ({why})")
                self._snapshot_outcome(m, ok=False)
                continue
            self.trace(f"  {fmt_msg(m)}")
            self._observe(node, lambda m=m: node.raft.step(m))  # type: ignore[misc]
            self._snapshot_outcome(m, ok=True)
        return True

    def _snapshot_outcome(self, m: Message, ok: bool) -> None:
        """The runtime reports a streamed snapshot's outcome to the sending leader."""
        if m.type != MsgType.SNAP:
            return
        sender = self.nodes.get(m.frm)
        if sender is None or sender.crashed:
            return
        self.info(f"{m.frm} reports snapshot to {m.to} {'ok' if ok else 'failed'}")
        self._observe(sender, lambda: sender.raft.report_snapshot(m.to, ok))

    def _drop_to_dead(self) -> None:
        kept = []
        for m in self.network:
            target = self.nodes.get(m.to)
            if target is None or target.crashed:
                self.trace(f"dropped: {fmt_msg(m)} ({'crashed' if target else 'no such node'})")
                self._snapshot_outcome(m, ok=False)
            else:
                kept.append(m)
        self.network = kept

    def cmd_stabilize(self, args: list[Arg]) -> None:
        """Process Readies and deliver messages among the named (default: all live)
        nodes until nothing is left to do."""
        nodes = self._targets(args)
        for _ in range(1000):
            progressed = False
            for node in nodes:
                if node.raft.has_ready():
                    progressed |= self._process_ready(node)
            self._drop_to_dead()
            for node in nodes:
                progressed |= self._deliver(node)
            if not progressed:
                break
        else:
            raise CommandError("stabilize did not converge in 1000 rounds")

    def cmd_partition(self, args: list[Arg]) -> None:
        groups: list[set[int]] = [set()]
        for w in self._bare(args):
            if w == "|":
                groups.append(set())
            else:
                groups[-1].add(self._node_id(w))
        rest = set(self.nodes) - set().union(*groups)
        if rest:
            groups.append(rest)
        self.groups = [g for g in groups if g]
        self.trace("partition: " + " | ".join(" ".join(map(str, sorted(g))) for g in self.groups))

    def _node_id(self, s: str) -> int:
        if not s.isdigit() or int(s) not in self.nodes:
            raise CommandError(f"no node {s!r}")
        return int(s)

    def cmd_drop(self, args: list[Arg]) -> None:
        for w in self._bare(args):
            a, sep, b = w.partition("->")
            if not sep:
                raise CommandError("usage: drop FROM->TO ...")
            self.cut.add((self._node_id(a), self._node_id(b)))

    def cmd_heal(self, args: list[Arg]) -> None:
        # Whatever was in flight across the cut is lost, not delayed.
        kept = []
        for m in self.network:
            why = self._blocked(m)
            if why:
                self.trace(f"dropped: {fmt_msg(m)} ({why})")
                self._snapshot_outcome(m, ok=False)
            else:
                kept.append(m)
        self.network = kept
        self.groups = None
        self.cut.clear()

    def cmd_crash(self, args: list[Arg]) -> None:
        for node in [self._node(w) for w in self._bare(args)]:
            node.crashed = True
            self.info(
                f"{node.id} crashed: unpersisted state and undelivered messages to it are lost"
            )
            self._drop_to_dead()

    def cmd_restart(self, args: list[Arg]) -> None:
        for w in self._bare(args):
            node = self.nodes.get(int(w))
            if node is None or not node.crashed:
                raise CommandError(f"node {w} is not crashed")
            node.raft = new_raft(node.config, node.store)
            node.crashed = False
            snap = node.store.snapshot
            node.applied = [(i, d) for i, d in json.loads(node.store.snapshot_data)]
            node.conf_history = [(snap.index, snap.conf_state)] if snap else [(0, ConfState())]
            self._describe_boot(node)

    def cmd_compact(self, args: list[Arg]) -> None:
        bare, kw = self._bare(args), self._kw(args)
        if len(bare) != 2:
            raise CommandError("usage: compact ID INDEX [keep=K]")
        node, index = self._node(bare[0]), int(bare[1])
        keep = int(kw.get("keep", ["0"])[0])
        r = node.raft
        if index > r.applied:
            raise CommandError(f"cannot snapshot index {index} beyond applied {r.applied}")
        meta = SnapshotMeta(index, r.log.term(index), node.conf_at(index))
        node.store.snapshot = meta
        node.store.snapshot_data = json.dumps(
            [[i, d] for i, d in node.applied if i <= index]
        ).encode()
        node.store.entries = [e for e in node.store.entries if e.index > index - keep]
        r.compact(meta, keep)
        self.info(
            f"{node.id} compacted: snapshot {fmt_snapshot(meta)}, "
            f"log now {r.log.first_index()}..{r.last_index()}"
        )

    # --- commands: inspection -------------------------------------------------
    def cmd_status(self, args: list[Arg]) -> None:
        for node in self._targets(args):
            r = node.raft
            self.emit(
                f"{node.id}: {r.role} term={r.term} vote={r.vote} lead={r.leader} "
                f"commit={r.commit} applied={r.applied} last={r.last_index()} "
                f"{fmt_conf(r.conf)}"
            )
            if r.role != StateRole.LEADER:
                continue
            for peer, pr in sorted(r.prs.items()):
                flags = []
                if pr.is_learner:
                    flags.append("learner")
                if pr.is_paused():
                    flags.append("paused")
                if pr.state == ProgressState.SNAPSHOT:
                    flags.append(f"pending_snapshot={pr.pending_snapshot}")
                if pr.inflights.queue:
                    flags.append(f"inflight={len(pr.inflights.queue)}/{pr.inflights.bytes}B")
                self.emit(
                    f"  {peer}: {pr.state.name.lower()} match={pr.match} next={pr.next}"
                    + "".join(" " + f for f in flags)
                )

    def cmd_raft_state(self, args: list[Arg]) -> None:
        for node_id, node in sorted(self.nodes.items()):
            if node.crashed:
                self.emit(f"{node_id}: crashed")
                continue
            r = node.raft
            kind = (
                "voter"
                if r.is_voter()
                else ("learner" if node_id in r.conf.learners else "non-member")
            )
            self.emit(f"{node_id}: {r.role} ({kind}) term={r.term} lead={r.leader}")

    def cmd_raft_log(self, args: list[Arg]) -> None:
        for node in self._targets(args):
            log = node.raft.log
            if log.offset:
                self.emit(f"{node.id}: snapshot {log.offset_term}/{log.offset}")
            if not log.entries:
                self.emit(f"{node.id}: log is empty")
            for e in log.entries:
                self.emit(f"{node.id}: {fmt_entry(e)}")

    def cmd_state_machine(self, args: list[Arg]) -> None:
        for node in self._targets(args):
            data = " ".join(f"{i}:{d}" for i, d in node.applied)
            self.emit(f"{node.id}: applied={node.raft.applied} [{data}]")
