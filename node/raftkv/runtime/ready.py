"""The Ready plan: in which order a node handles one Ready, as data.

`plan()` is pure (no I/O, no clock, no event loop): from a Ready of either
consensus engine (`consensus.ReadyBatch`: Raft's and Multi-Paxos's Readies have
the same fields), the node's role and what it has made durable, it returns the
ordered steps. Three executors run those steps: the node loop
(`NodeLoop._handle_ready`, loop.py) and the two simulators (`tests/sim/cluster.py`,
`tests/sim/paxos_cluster.py`), so every simulated seed exercises the order that
production uses, and a deliberately wrong plan (tests/sim/broken_plans.py) is
caught by the simulator.

The textbook order is persist -> send -> apply -> advance. The plan departs
from it in three places, each for speed (docs/architecture.md, "The Ready
order, and why it is safe"):

1. A leader whose term and vote are already durable sends before its own fsync
   (Raft thesis 10.2.1; etcd does the same): the followers append and fsync
   while it does. It counts itself towards a commit only in `advance()`, after
   its fsync, and the core is never stepped while a Ready is handled. Every
   other node persists first: its votes and acks promise state on its disk.
2. Committed entries below the first new entry of this Ready are on this node's
   disk already: they are applied before the persist, so their answers leave
   while the fsync runs. The rest are applied after it.
3. A hard state whose only change is the commit index is not written on its own
   (the commit index is volatile in Raft): it is deferred and rides with the
   next entries. Term and vote changes are always written first.

Steps hold references into the Ready (a slice only where committed entries are
split in two), so planning costs a few small objects per Ready, none per entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Generic, Protocol, TypeVar, final

from raftkv.consensus import Entry, HardState, ReadState, ReadyBatch, Snapshot

M = TypeVar("M")  # the engine's peer message: the plan never looks inside one


@final
@dataclass(frozen=True, slots=True)
class Send(Generic[M]):
    """Hand these messages to the transport."""

    messages: list[M]


@final
@dataclass(frozen=True, slots=True)
class Apply:
    """Apply these committed entries to the state machine, in order."""

    entries: list[Entry]


@final
@dataclass(frozen=True, slots=True)
class PersistSnapshot:
    """Save the snapshot and reset the log to it with `hard_state`; one durable write.
    Afterwards `hard_state` is durable and any deferred hard state is superseded."""

    snapshot: Snapshot
    hard_state: HardState


@final
@dataclass(frozen=True, slots=True)
class Persist:
    """Append `entries` and write `hard_state` (if not None): one write, one fsync.
    Afterwards `hard_state` is durable and nothing is deferred any more."""

    hard_state: HardState | None
    entries: list[Entry]


@final
@dataclass(frozen=True, slots=True)
class DeferHardState:
    """Remember `hard_state` (only its commit index moved) to write with the next
    entries, or at shutdown."""

    hard_state: HardState


@final
@dataclass(frozen=True, slots=True)
class RestoreSnapshot:
    """Replace the state machine with the snapshot's state."""

    snapshot: Snapshot


@final
@dataclass(frozen=True, slots=True)
class Advance:
    """Tell the core the Ready is handled (`Consensus.advance`): a leader counts its own
    new entries towards a commit only now."""


@final
@dataclass(frozen=True, slots=True)
class ReleaseReads:
    """Register these read states; serve every waiting read whose index is applied."""

    read_states: list[ReadState]


Step = (
    Send[Any]
    | Apply
    | PersistSnapshot
    | Persist
    | DeferHardState
    | RestoreSnapshot
    | Advance
    | ReleaseReads
)
STEP_KINDS: Final = (
    Send,
    Apply,
    PersistSnapshot,
    Persist,
    DeferHardState,
    RestoreSnapshot,
    Advance,
    ReleaseReads,
)
ADVANCE: Final = Advance()
# Most Readies bring no read state: one shared step (never mutated) for them.
_RELEASE_WAITING_READS: Final = ReleaseReads([])


class Planner(Protocol):
    """The signature of `plan` (the simulator also runs deliberately wrong planners)."""

    def __call__(
        self, rd: ReadyBatch[Any], *, leader: bool, durable: HardState, deferred: HardState | None
    ) -> list[Step]: ...


def plan(
    rd: ReadyBatch[Any], *, leader: bool, durable: HardState, deferred: HardState | None
) -> list[Step]:
    """The steps that handle `rd`, a Ready of either engine (`consensus.ReadyBatch`).

    `leader`: the node leads as the Ready is taken AND its engine lets a leader
    send before its own fsync (`Consensus.LEADER_SENDS_BEFORE_PERSIST`: Raft yes,
    Multi-Paxos no, so a Paxos node always persists first). `durable`: the hard state on
    disk. `deferred`: a commit-only hard state not yet written (None if none).
    The executor updates those two as it runs Persist, PersistSnapshot and
    DeferHardState steps, and passes them to the next call.
    """
    steps: list[Step] = []
    hs = rd.hard_state
    snap = rd.snapshot
    entries = rd.entries
    messages = rd.messages
    # 1. A leader with a durable term and vote sends before its fsync; a Ready with new
    # entries sends first (the followers' fsyncs are the long pole), one without (commit
    # notices, heartbeats) answers the clients first.
    early_send = (
        leader
        and snap is None
        and (hs is None or (hs.term == durable.term and hs.vote == durable.vote))
    )
    if early_send and messages and entries:
        steps.append(Send(messages))
    # 2. Committed entries already on this disk (below this Ready's first new entry) are
    # applied before the persist. With a snapshot, everything waits for its restore.
    committed = rd.committed_entries
    if committed and snap is None:
        first_new = entries[0].index if entries else committed[-1].index + 1
        durable_count = first_new - committed[0].index
        if durable_count >= len(committed):
            steps.append(Apply(committed))
            committed = []
        elif durable_count > 0:
            steps.append(Apply(committed[:durable_count]))
            committed = committed[durable_count:]
    if early_send and messages and not entries:
        steps.append(Send(messages))
    # 3. Persist: the snapshot (it writes the hard state with it), then entries and the
    # hard state in one write, or defer a commit-only hard state. The snapshot's write
    # commits no further than the snapshot: a commit past it names entries that are not
    # on disk until the next write, and a crash in between would restart the node with a
    # commit index beyond its log.
    if snap is not None:
        base = hs or deferred or durable
        snap_hs = HardState(base.term, base.vote, max(durable.commit, snap.meta.index))
        steps.append(PersistSnapshot(snap, snap_hs))
        durable, deferred = snap_hs, None
        if (
            hs is not None
            and hs.term == snap_hs.term
            and hs.vote == snap_hs.vote
            and hs.commit <= snap_hs.commit
        ):
            hs = None  # written with the snapshot
    if hs is not None and not entries and hs.term == durable.term and hs.vote == durable.vote:
        steps.append(DeferHardState(hs))
    elif entries or hs is not None:
        # A deferred commit-only hard state rides with the entries.
        steps.append(Persist(hs if hs is not None else deferred, entries))
    # 4. Everything else, now durable.
    if messages and not early_send:
        steps.append(Send(messages))
    if snap is not None:
        steps.append(RestoreSnapshot(snap))
    if committed:
        steps.append(Apply(committed))
    steps.append(ADVANCE)
    # Every Ready: reads registered earlier may be served by what this one applied.
    steps.append(ReleaseReads(rd.read_states) if rd.read_states else _RELEASE_WAITING_READS)
    return steps
