"""One simulated node: a Raft core, what it has made durable, and its state machine.

The durable part (`Durable`) is the only thing that survives a crash: a crash
drops the core and the state machine, and a restart rebuilds both from it, so
anything the core produced but the node did not persist before the crash is
lost. The state machine is an append-only list of write payloads, which makes
linearizability of reads a comparison of lengths.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from raftkv.raft import (
    ConfChange,
    ConfChangeType,
    Config,
    ConfState,
    Entry,
    HardState,
    Message,
    Raft,
    SnapshotMeta,
)
from tests.sim.invariants import Violation

RaftFactory = Callable[..., Raft]


@dataclass(slots=True)
class StoredSnapshot:
    meta: SnapshotMeta
    data: bytes  # the state machine at meta.index (encode_sm)


class Durable:
    """What a node finds on disk after a crash (every save is fsynced)."""

    __slots__ = ("hard_state", "snapshot", "base", "base_term", "entries", "max_commit")

    def __init__(
        self, hard_state: HardState | None = None, entries: list[Entry] | None = None
    ) -> None:
        self.hard_state = hard_state.copy() if hard_state else HardState()
        self.snapshot: StoredSnapshot | None = None
        self.base = 0  # entries hold base+1 .. base+len(entries)
        self.base_term = 0
        self.entries: list[Entry] = list(entries or ())
        self.max_commit = self.hard_state.commit  # highest commit ever persisted

    def last_index(self) -> int:
        return self.base + len(self.entries)

    def save(self, hard_state: HardState | None, entries: list[Entry]) -> None:
        if entries:
            first = entries[0].index
            if first <= self.base or first > self.last_index() + 1:
                raise Violation(
                    "persisted log shape",
                    f"append at {first} to a log holding ({self.base}, {self.last_index()}]",
                )
            keep = first - self.base - 1
            if keep < len(self.entries):
                for old, new in zip(self.entries[keep:], entries, strict=False):
                    if old.index <= self.hard_state.commit and old.term != new.term:
                        raise Violation(
                            "persisted commit overwritten",
                            f"entry {old.index} (term {old.term}) is committed on "
                            f"disk but overwritten by term {new.term}",
                        )
                del self.entries[keep:]
            self.entries.extend(entries)
        if hard_state is not None:
            self._set_hard_state(hard_state)

    def _set_hard_state(self, hs: HardState) -> None:
        if hs.commit < self.max_commit:
            raise Violation(
                "commit index decreased (persisted)",
                f"persisting commit {hs.commit} after {self.max_commit}",
            )
        if hs.term < self.hard_state.term:
            raise Violation(
                "term decreased (persisted)",
                f"persisting term {hs.term} after {self.hard_state.term}",
            )
        self.hard_state = hs.copy()
        self.max_commit = max(self.max_commit, hs.commit)

    def install_snapshot(self, snap: StoredSnapshot, hard_state: HardState | None) -> None:
        """A snapshot received from the leader replaces the whole log."""
        self.snapshot = snap
        self.base = snap.meta.index
        self.base_term = snap.meta.term
        self.entries = []
        if hard_state is not None:
            self._set_hard_state(hard_state)

    def save_local_snapshot(self, snap: StoredSnapshot, keep: int) -> None:
        """The node's own snapshot: save it, then drop entries it covers (minus `keep`)."""
        if self.snapshot is None or snap.meta.index > self.snapshot.meta.index:
            self.snapshot = snap
        cut = min(snap.meta.index - keep, self.last_index())
        if cut > self.base:
            self.base_term = self.entries[cut - self.base - 1].term
            del self.entries[: cut - self.base]
            self.base = cut


class SimNode:
    """A node of the simulated cluster, up or down."""

    def __init__(
        self, node_id: int, config: Config, factory: RaftFactory, durable: Durable
    ) -> None:
        self.id = node_id
        self.config = config
        self.factory = factory
        self.durable = durable
        self.core: Raft | None = None
        self.sm: list[bytes] = []
        self.applied = 0
        self.conf = ConfState()  # membership as of `applied`, from the entries applied
        self.incarnation = 0
        self.tick_interval = 10  # time units between ticks (set per start: clocks drift)
        self.slow_disk_until = 0  # until then, each Ready waits slow_disk_delay more
        self.slow_disk_delay = 0
        self.paused = False
        self.stopped = False  # removed from the cluster and shut down for good
        self.io_pending = False
        self.crash_point: str | None = None  # armed by the nemesis: crash inside the next IO
        # A commit-only hard state the plan deferred (memory only: lost in a crash).
        self.deferred_hs: HardState | None = None
        self.inbox: list[Message] = []  # delivered while paused
        self.pending_writes: dict[int, tuple[int, bytes]] = {}  # index -> (term, data)
        self.pending_confs: dict[int, tuple[int, object]] = {}  # index -> (term, op)
        self.reads: dict[bytes, int] = {}  # ctx -> linearizability floor at invocation
        self.read_waiters: list[tuple[int, bytes, int]] = []  # (read index, ctx, floor)
        self.seen_commit = 0  # the core's commit index as last observed while up
        self.seen_term = 0
        self.led_term = -1  # last term in which this incarnation was seen leading

    @property
    def up(self) -> bool:
        return self.core is not None

    def start(self, seed: int) -> Raft:
        """Build the core from what is on disk (a fresh start or a restart)."""
        d = self.durable
        self.incarnation += 1
        cfg = dataclasses.replace(self.config, seed=seed)
        meta = d.snapshot.meta if d.snapshot else None
        entries = [e for e in d.entries if meta is None or e.index > meta.index]
        core = self.factory(cfg, hard_state=d.hard_state.copy(), snapshot=meta, entries=entries)
        self.core = core
        self.sm = decode_sm(d.snapshot.data) if d.snapshot else []
        self.applied = meta.index if meta else 0
        self.conf = meta.conf_state if meta else ConfState()
        self.seen_commit = core.commit
        self.seen_term = core.term
        self.led_term = -1
        self.paused = False
        self.io_pending = False
        self.inbox = []
        self.deferred_hs = None
        return core

    def crash(self) -> None:
        """Lose everything that is not in `durable`."""
        self.core = None
        self.sm = []
        self.pending_writes.clear()
        self.pending_confs.clear()
        self.reads.clear()
        self.read_waiters.clear()
        self.inbox = []
        self.paused = False
        self.io_pending = False
        self.crash_point = None
        self.deferred_hs = None

    def snapshot_now(self, keep: int) -> StoredSnapshot:
        """Snapshot the state machine as applied, save it, let the core compact."""
        core = self.core
        assert core is not None
        meta = core.snapshot_meta()
        if meta.index != self.applied:
            raise Violation("snapshot meta", f"core applied {meta.index}, node {self.applied}")
        mine = (meta.conf_state.voters, meta.conf_state.learners)
        if mine != (self.conf.voters, self.conf.learners):
            raise Violation(
                "snapshot membership",
                f"node {self.id}: snapshot at {meta.index} records voters "
                f"{sorted(mine[0])} learners {sorted(mine[1])}, but the entries up to it "
                f"give voters {sorted(self.conf.voters)} learners {sorted(self.conf.learners)}",
            )
        conf = ConfState(frozenset(meta.conf_state.voters), frozenset(meta.conf_state.learners))
        snap = StoredSnapshot(SnapshotMeta(meta.index, meta.term, conf), encode_sm(self.sm))
        self.durable.save_local_snapshot(snap, keep)
        core.compact(snap.meta, keep)
        return snap


def conf_after(conf: ConfState, cc: ConfChange) -> ConfState:
    """Membership after applying one change (the simulator's own model of it)."""
    voters, learners = set(conf.voters), set(conf.learners)
    n = cc.node_id
    if cc.type == ConfChangeType.ADD_VOTER:
        voters.add(n)
        learners.discard(n)
    elif cc.type == ConfChangeType.ADD_LEARNER and n not in voters:
        learners.add(n)
    elif cc.type == ConfChangeType.PROMOTE and n in learners:
        learners.discard(n)
        voters.add(n)
    elif cc.type == ConfChangeType.REMOVE:
        voters.discard(n)
        learners.discard(n)
    return ConfState(frozenset(voters), frozenset(learners))


def encode_sm(sm: list[bytes]) -> bytes:
    """The state machine as snapshot bytes (write payloads never contain NUL)."""
    return b"\0".join(sm)


def decode_sm(data: bytes) -> list[bytes]:
    return data.split(b"\0") if data else []
