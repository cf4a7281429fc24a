"""What the node runtime needs of a consensus core, as a typed interface.

`runtime/` drives a `Consensus` without knowing which algorithm it is: the Raft
core (`raftkv.raft.Raft`) and the Multi-Paxos core (`raftkv.paxos.Paxos`) both
satisfy it through the engines in `consensus.engines`. Log entries, hard state,
snapshots, membership changes and read states are the shared plain data of
`raftkv.raft.types` (re-exported by this package); peer messages are the
engine's own (`M`) and only the engine's wire codec looks inside them.

Pure: no IO, clock or event loop (an import-linter contract keeps it so).
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, TypeVar

from raftkv.raft.types import (
    ConfChange,
    ConfState,
    Entry,
    HardState,
    ReadState,
    Snapshot,
    SnapshotMeta,
    SoftState,
    StateRole,
)

M = TypeVar("M")  # the engine's peer message
M_in = TypeVar("M_in", contravariant=True)  # ... as the core takes it in
R = TypeVar("R")  # the engine's Ready


class ReadyBatch(Protocol[M]):
    """One batch of work a core hands out (`Consensus.ready()`): the fields the
    Ready plan (`runtime/ready.py`) orders. The caller persists `snapshot`,
    `entries` (written by index: a later write of an index replaces it) and
    `hard_state` with one fsync, sends `messages`, applies `committed_entries`,
    releases `read_states`, then calls `advance` with this same object."""

    @property
    def soft_state(self) -> SoftState | None: ...
    @property
    def hard_state(self) -> HardState | None: ...
    @property
    def entries(self) -> list[Entry]: ...
    @property
    def snapshot(self) -> Snapshot | None: ...
    @property
    def messages(self) -> list[M]: ...
    @property
    def committed_entries(self) -> list[Entry]: ...
    @property
    def read_states(self) -> list[ReadState]: ...


class Consensus(Protocol[M_in, R]):
    """A pure consensus core as the node loop drives it.

    Inputs only change memory; `ready()` says what to do; `advance(ready)` says it
    was done. Status: `term` is Raft's term or Paxos's promised ballot (both only
    grow); `commit` is the last log index known chosen/committed; `conf` is the
    membership as of `commit`. Proposals return (term, first index): a proposal
    succeeded iff the entry applied at its index is the one proposed (the runtime
    compares request ids, since Paxos may choose it again at a higher ballot).
    """

    ENGINE: ClassVar[str]  # "raft" | "multipaxos": recorded in the data directory
    # May a leader send its Ready's messages before its own fsync? (Raft: yes, it
    # counts itself only in advance(); Paxos: no, every message is a promise or an
    # accept about its own disk.) The loop passes `leader and this` to the plan.
    LEADER_SENDS_BEFORE_PERSIST: ClassVar[bool]
    # Is a proposal's outcome "the value chosen at its index is this one" (Paxos: a
    # later leader may choose it again at its own ballot) rather than "the entry at
    # its index has the proposal's term" (Raft)?
    OUTCOME_BY_VALUE: ClassVar[bool]

    id: int
    role: StateRole
    leader: int
    conf: ConfState

    @property
    def term(self) -> int: ...
    @property
    def commit(self) -> int: ...
    @property
    def applied(self) -> int: ...

    def last_index(self) -> int: ...
    def last_term(self) -> int:
        """The term (ballot) of the last entry (slot) in the log."""
        ...

    def shown_term(self, term: int) -> int:
        """An entry's term as shown outside the node (checkpoint manifests, status):
        Raft's term, or a Paxos ballot's round (a ballot is up to 128 bits)."""
        ...

    def match_index(self, peer: int) -> int | None:
        """On the leader: how far `peer` is known to hold the log (None elsewhere, or
        if unknown). Used for learner promotion and lag gauges."""
        ...

    def tick(self) -> None: ...
    def step(self, m: M_in) -> None: ...
    def propose(self, data: bytes) -> tuple[int, int]: ...
    def propose_batch(self, datas: list[bytes]) -> tuple[int, int]: ...
    def propose_conf_change(self, cc: ConfChange) -> tuple[int, int]: ...
    def read_index(self, ctx: bytes) -> None: ...
    def transfer_leadership(self, to: int) -> None: ...

    def report_unreachable(self, peer: int) -> None:
        """The transport could not reach `peer` (a hint; may be a no-op)."""
        ...

    def leader_unreachable(self, leader: int) -> None:
        """The transport saw `leader`'s process die: campaign early if safe."""
        ...

    def report_snapshot(self, peer: int, ok: bool) -> None:
        """Outcome of streaming a snapshot to `peer` (a hint; may be a no-op)."""
        ...

    def snapshot_acceptable(self, m: M_in) -> bool:
        """May this snapshot message (it replaces the whole state) be installed?"""
        ...

    def has_ready(self) -> bool: ...
    def ready(self) -> R: ...
    def advance(self, rd: R) -> None: ...
    def snapshot_meta(self) -> SnapshotMeta: ...
    def compact(self, meta: SnapshotMeta, keep: int = 0) -> None: ...


# What the runtime holds: some engine, with its message and Ready types unknown.
AnyConsensus = Consensus[Any, Any]


def sends_before_persist(core: AnyConsensus) -> bool:
    """The Ready plan's `leader` argument: this node leads now and its engine lets a
    leader send its Ready's messages before its own fsync."""
    return core.LEADER_SENDS_BEFORE_PERSIST and core.role == StateRole.LEADER
