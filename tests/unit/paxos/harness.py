"""Drive a few Multi-Paxos cores by hand and describe everything they do as text.

The Paxos twin of tests/unit/raft/harness.py (same datadriven file format):
nodes with an in-memory durable store (promise, accepted value per slot,
snapshot) and a toy state machine, one FIFO network that carries only what a
Ready handed out, partitions, and crashes that keep only what was persisted.
Readies are handled in the order `raftkv.runtime.ready.plan` gives with
`leader=Paxos.SENDS_BEFORE_PERSIST`, so every message waits for the persist.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from raftkv.paxos import Config, Message, MsgType, Paxos, Ready, bootstrap_entries, fmt_ballot
from raftkv.raft import (
    ConfChange,
    ConfChangeType,
    Entry,
    EntryType,
    HardState,
    ProposalDropped,
    Snapshot,
    SnapshotMeta,
)
from raftkv.runtime import ready
from tests.unit.raft.datadriven import Arg, Directive, format_args

CONF_CHANGES = {
    "add-learner": ConfChangeType.ADD_LEARNER,
    "promote": ConfChangeType.PROMOTE,
    "remove": ConfChangeType.REMOVE,
    "add-voter": ConfChangeType.ADD_VOTER,
}


class CommandError(ValueError):
    """The transcript used a command wrongly (a bug in the test file, not the core)."""


def fmt_entry(e: Entry) -> str:
    if e.type == EntryType.CONF_CHANGE:
        cc = ConfChange.decode(e.data)
        what = f"conf {cc.type.name.lower().replace('_', '-')} {cc.node_id}"
    else:
        what = e.data.decode() if e.data else "no-op"
    return f"{e.index}@{fmt_ballot(e.term)} {what}"


def fmt_msg(m: Message) -> str:
    s = f"{m.frm}->{m.to} {m.type.name} b{fmt_ballot(m.ballot)}"
    if m.type in (MsgType.PREPARE, MsgType.CATCHUP):
        s += f" from={m.index}"
    if m.type == MsgType.ACCEPTED:
        s += f" slots={m.index}..{m.last}"
    if m.type == MsgType.TRANSFER_LEADER:
        s += f" to={m.index}"
    if m.type == MsgType.READ_INDEX_RESP:
        s += f" index={m.index}"
    if m.type in (
        MsgType.PROMISE,
        MsgType.ACCEPT,
        MsgType.COMMIT,
        MsgType.CATCHUP_RESP,
        MsgType.SNAP,
    ):
        s += f" commit={m.commit}"
    if m.entries:
        s += " [" + ", ".join(fmt_entry(e) for e in m.entries) + "]"
    if m.snapshot is not None:
        s += f" snapshot@{m.snapshot.meta.index}"
    if m.context:
        s += f" ctx={m.context.decode()}"
    return s


@dataclass
class Store:
    hard_state: HardState = field(default_factory=HardState)
    entries: dict[int, Entry] = field(default_factory=dict)
    snapshot: SnapshotMeta | None = None
    snapshot_data: list[str] = field(default_factory=list)


@dataclass
class Node:
    id: int
    config: Config
    store: Store
    core: Paxos
    applied: list[str] = field(default_factory=list)  # the toy state machine
    deferred: HardState | None = None
    crashed: bool = False


def new_core(cfg: Config, store: Store) -> Paxos:
    return Paxos(
        cfg,
        hard_state=store.hard_state.copy(),
        snapshot=store.snapshot,
        entries=list(store.entries.values()),
    )


class InteractionEnv:
    def __init__(self) -> None:
        self.nodes: dict[int, Node] = {}
        self.network: list[Message] = []
        self.groups: list[set[int]] | None = None
        self.log_level = "info"
        self.out: list[str] = []
        self.commands: dict[str, Callable[[list[Arg]], None]] = {
            "add-nodes": self.cmd_add_nodes,
            "campaign": self.cmd_campaign,
            "propose": self.cmd_propose,
            "propose-conf-change": self.cmd_propose_conf_change,
            "read-index": self.cmd_read_index,
            "transfer-leadership": self.cmd_transfer,
            "step-down": self.cmd_step_down,
            "tick": self.cmd_tick,
            "process-ready": self.cmd_process_ready,
            "deliver-msgs": self.cmd_deliver_msgs,
            "stabilize": self.cmd_stabilize,
            "partition": self.cmd_partition,
            "heal": self.cmd_heal,
            "drop-slot": self.cmd_drop_slot,
            "crash": self.cmd_crash,
            "restart": self.cmd_restart,
            "compact": self.cmd_compact,
            "status": self.cmd_status,
            "log": self.cmd_log,
            "state-machine": self.cmd_state_machine,
            "log-level": self.cmd_log_level,
        }

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

    def trace(self, line: str) -> None:
        if self.log_level == "info":
            self.out.append(line)

    @staticmethod
    def _bare(args: list[Arg]) -> list[str]:
        return [a.key for a in args if not a.values]

    @staticmethod
    def _kw(args: list[Arg]) -> dict[str, list[str]]:
        return {a.key: a.values for a in args if a.values}

    def _node(self, s: str) -> Node:
        try:
            n = self.nodes[int(s)]
        except (ValueError, KeyError):
            raise CommandError(f"no node {s!r}") from None
        if n.crashed:
            raise CommandError(f"node {s} is crashed")
        return n

    def _targets(self, args: list[Arg]) -> list[Node]:
        named = [w for w in self._bare(args) if w.isdigit()]
        if named:
            return [self._node(w) for w in named]
        return [n for _, n in sorted(self.nodes.items()) if not n.crashed]

    def _observe(self, node: Node, action: Callable[[], object]) -> None:
        c = node.core
        before = (c.role, c.promised, c.conf)
        try:
            action()
        except ProposalDropped as e:
            self.out.append(f"{node.id}: error: {type(e).__name__}: {e}")
        if c.conf != before[2]:
            self.trace(
                f"INFO {node.id} switched to voters={sorted(c.conf.voters)} "
                f"learners={sorted(c.conf.learners)}"
            )
        if (c.role, c.promised) != before[:2]:
            self.trace(f"INFO {node.id} is {c.role} at ballot {fmt_ballot(c.promised)}")

    # --- setup ------------------------------------------------------------------
    def cmd_add_nodes(self, args: list[Arg]) -> None:
        bare, kw = self._bare(args), self._kw(args)
        if len(bare) != 1 or not bare[0].isdigit():
            raise CommandError("usage: add-nodes N [voters=(..)] [election=] [max-entries=]")
        voters = [int(v) for v in kw.get("voters", [])]
        election = int(kw.get("election", ["3"])[0])
        max_entries = int(kw.get("max-entries", ["64"])[0])
        first = max(self.nodes, default=0) + 1
        for node_id in range(first, first + int(bare[0])):
            cfg = Config(
                id=node_id,
                election_tick=election,
                heartbeat_tick=1,
                max_entries_per_msg=max_entries,
                seed=node_id,
            )
            store = Store()
            if voters:
                entries, hs = bootstrap_entries(voters)
                store.entries = {e.index: e for e in entries}
                store.hard_state = hs
            node = Node(node_id, cfg, store, new_core(cfg, store))
            self.nodes[node_id] = node
            self._describe_boot(node)

    def _describe_boot(self, node: Node) -> None:
        c = node.core
        self.trace(
            f"INFO {node.id} started: promised={fmt_ballot(c.promised)} "
            f"commit={c.commit} last={c.last_index()} voters={sorted(c.conf.voters)}"
        )

    def cmd_log_level(self, args: list[Arg]) -> None:
        self.log_level = self._bare(args)[0]

    # --- inputs -------------------------------------------------------------------
    def cmd_campaign(self, args: list[Arg]) -> None:
        for node in self._targets(args):
            self._observe(node, node.core.campaign)

    def cmd_propose(self, args: list[Arg]) -> None:
        bare = self._bare(args)
        node = self._node(bare[0])
        self._observe(node, lambda: node.core.propose_batch([b.encode() for b in bare[1:]]))

    def cmd_propose_conf_change(self, args: list[Arg]) -> None:
        bare = self._bare(args)
        if len(bare) != 3 or bare[1] not in CONF_CHANGES:
            raise CommandError(f"usage: propose-conf-change ID {'|'.join(CONF_CHANGES)} N")
        node = self._node(bare[0])
        cc = ConfChange(CONF_CHANGES[bare[1]], int(bare[2]))
        self._observe(node, lambda: node.core.propose_conf_change(cc))

    def cmd_read_index(self, args: list[Arg]) -> None:
        bare = self._bare(args)
        node = self._node(bare[0])
        self._observe(node, lambda: node.core.read_index(bare[1].encode()))

    def cmd_transfer(self, args: list[Arg]) -> None:
        kw = self._kw(args)
        node = self._node(kw["from"][0])
        self._observe(node, lambda: node.core.transfer_leadership(int(kw["to"][0])))

    def cmd_step_down(self, args: list[Arg]) -> None:
        for node in self._targets(args):
            self._observe(node, node.core.step_down)

    def cmd_tick(self, args: list[Arg]) -> None:
        bare = self._bare(args)
        node = self._node(bare[0])
        for _ in range(int(bare[1]) if len(bare) > 1 else 1):
            self._observe(node, node.core.tick)

    # --- Ready handling -------------------------------------------------------------
    def cmd_process_ready(self, args: list[Arg]) -> None:
        for node in self._targets(args):
            if node.core.has_ready():
                self._handle_ready(node)

    def _handle_ready(self, node: Node) -> None:
        c = node.core
        rd: Ready = c.ready()
        self.trace(f"> {node.id} handling Ready")
        if rd.soft_state is not None:
            self.trace(f"  role={rd.soft_state.role} leader={rd.soft_state.leader}")
        steps = ready.plan(
            rd,
            leader=c.SENDS_BEFORE_PERSIST,  # type: ignore[arg-type]
            durable=node.store.hard_state,
            deferred=node.deferred,
        )
        st = node.store
        for step in steps:
            if isinstance(step, ready.PersistSnapshot):
                meta = step.snapshot.meta
                st.snapshot = meta
                st.snapshot_data = (
                    (step.snapshot.data or b"").decode().split(",") if step.snapshot.data else []
                )
                st.entries = {s: e for s, e in st.entries.items() if s > meta.index}
                st.hard_state = step.hard_state.copy()
                node.deferred = None
                self.trace(f"  persist snapshot@{meta.index}")
            elif isinstance(step, ready.Persist):
                for e in step.entries:
                    st.entries[e.index] = e
                if step.hard_state is not None:
                    st.hard_state = step.hard_state.copy()
                    node.deferred = None
                parts = []
                if step.hard_state is not None:
                    parts.append(
                        f"promised={fmt_ballot(step.hard_state.term)} "
                        f"commit={step.hard_state.commit}"
                    )
                if step.entries:
                    parts.append("accepted [" + ", ".join(fmt_entry(e) for e in step.entries) + "]")
                self.trace("  persist " + " ".join(parts))
            elif isinstance(step, ready.DeferHardState):
                node.deferred = step.hard_state
            elif isinstance(step, ready.Send):
                for m in step.messages:
                    if m.type == MsgType.SNAP and m.snapshot is not None:
                        m.snapshot = Snapshot(m.snapshot.meta, ",".join(st.snapshot_data).encode())
                    self.trace(f"  send {fmt_msg(m)}")
                    self.network.append(m)
            elif isinstance(step, ready.RestoreSnapshot):
                data = step.snapshot.data or b""
                node.applied = data.decode().split(",") if data else []
                self.trace(f"  restore snapshot@{step.snapshot.meta.index}")
            elif isinstance(step, ready.Apply):
                for e in step.entries:
                    self.trace(f"  apply {fmt_entry(e)}")
                    if e.type == EntryType.NORMAL and e.data:
                        node.applied.append(e.data.decode())
            elif isinstance(step, ready.Advance):
                self._observe(node, lambda: c.advance(rd))
            elif isinstance(step, ready.ReleaseReads):
                for rs in step.read_states:
                    self.trace(f"  read ready: ctx={rs.context.decode()} index={rs.index}")

    def _blocked(self, m: Message) -> bool:
        if self.nodes[m.to].crashed:
            return True
        if self.groups is None:
            return False
        side = {n: i for i, g in enumerate(self.groups) for n in g}
        return side.get(m.frm, -1) != side.get(m.to, -2)

    def cmd_deliver_msgs(self, args: list[Arg]) -> None:
        targets = {n.id for n in self._targets(args)}
        kw = self._kw(args)
        drop = {int(x) for x in kw.get("drop", [])}
        keep: list[Message] = []
        for m in self.network:
            if m.to not in targets:
                keep.append(m)
                continue
            if m.to in drop or m.frm in drop or self._blocked(m):
                self.trace(f"  dropped {fmt_msg(m)}")
                continue
            self.trace(f"> {m.to} receiving {fmt_msg(m)}")
            node = self.nodes[m.to]
            self._observe(node, lambda m=m, node=node: node.core.step(m))
        self.network = keep

    def cmd_stabilize(self, args: list[Arg]) -> None:
        for _ in range(200):
            targets = self._targets(args)
            ids = {n.id for n in targets}
            busy = False
            for node in targets:
                if node.core.has_ready():
                    self._handle_ready(node)
                    busy = True
            if any(m.to in ids for m in self.network):
                self.cmd_deliver_msgs(args)
                busy = True
            if not busy:
                return
        raise CommandError("did not stabilize in 200 rounds")

    # --- faults -------------------------------------------------------------------
    def cmd_partition(self, args: list[Arg]) -> None:
        groups: list[set[int]] = [set()]
        for w in self._bare(args):
            if w == "|":
                groups.append(set())
            else:
                groups[-1].add(int(w))
        self.groups = groups

    def cmd_drop_slot(self, args: list[Arg]) -> None:
        """Lose every in-flight ACCEPT that carries slot S (to reach a hole)."""
        slot = int(self._bare(args)[0])
        lost = [
            m
            for m in self.network
            if m.type == MsgType.ACCEPT and any(e.index == slot for e in m.entries)
        ]
        for m in lost:
            self.trace(f"  dropped {fmt_msg(m)}")
        self.network = [m for m in self.network if not any(m is x for x in lost)]

    def cmd_heal(self, args: list[Arg]) -> None:
        """Reconnect; what was in flight across the cut is lost, as in a real partition."""
        for m in [m for m in self.network if self._blocked(m)]:
            self.trace(f"  dropped {fmt_msg(m)}")
        self.network = [m for m in self.network if not self._blocked(m)]
        self.groups = None

    def cmd_crash(self, args: list[Arg]) -> None:
        for node in self._targets(args):
            node.crashed = True
            node.applied = []
            node.deferred = None
            self.network = [m for m in self.network if m.to != node.id]
            self.trace(f"INFO {node.id} crashed")

    def cmd_restart(self, args: list[Arg]) -> None:
        for w in self._bare(args):
            node = self.nodes[int(w)]
            node.crashed = False
            node.core = new_core(node.config, node.store)
            node.applied = list(node.store.snapshot_data) if node.store.snapshot else []
            self._describe_boot(node)

    def cmd_compact(self, args: list[Arg]) -> None:
        bare = self._bare(args)
        node = self._node(bare[0])
        meta = node.core.snapshot_meta()
        node.store.snapshot = meta
        node.store.snapshot_data = list(node.applied)
        node.store.entries = {s: e for s, e in node.store.entries.items() if s > meta.index}
        node.core.compact(meta)
        self.trace(f"INFO {node.id} compacted to snapshot@{meta.index}")

    # --- inspection -------------------------------------------------------------------
    def cmd_status(self, args: list[Arg]) -> None:
        for node in self._targets(args):
            c = node.core
            self.out.append(
                f"{node.id}: {c.role} leader={c.leader} "
                f"promised={fmt_ballot(c.promised)} commit={c.commit} "
                f"applied={c.applied} last={c.last_index()} "
                f"voters={sorted(c.conf.voters)} learners={sorted(c.conf.learners)}"
            )

    def cmd_log(self, args: list[Arg]) -> None:
        for node in self._targets(args):
            c = node.core
            ents = ", ".join(fmt_entry(c.log[s]) for s in sorted(c.log) if s > c.base)
            self.out.append(f"{node.id}: base={c.base} commit={c.commit} [{ents}]")

    def cmd_state_machine(self, args: list[Arg]) -> None:
        for node in self._targets(args):
            self.out.append(f"{node.id}: {node.applied}")
