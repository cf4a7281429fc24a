"""Plain data of the Raft core: entries, messages, hard state, snapshots, Ready.

Everything here is a small slotted class so the hot path allocates little and
the runtime can encode it without reflection. Nothing here does IO.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

NONE = 0  # "no node": node ids start at 1


class EntryType(IntEnum):
    NORMAL = 0
    CONF_CHANGE = 1


class MsgType(IntEnum):
    APP = 1  # AppendEntries
    APP_RESP = 2
    VOTE = 3
    VOTE_RESP = 4
    PRE_VOTE = 5
    PRE_VOTE_RESP = 6
    HEARTBEAT = 7
    HEARTBEAT_RESP = 8
    SNAP = 9  # InstallSnapshot: the runtime attaches/streams the data
    SNAP_STATUS = 10  # local only: runtime reports the outcome of sending a snapshot
    UNREACHABLE = 11  # local only: runtime reports a peer it could not reach
    TIMEOUT_NOW = 12  # leadership transfer: "campaign now, ignore your timer"
    READ_INDEX = 13  # follower -> leader
    READ_INDEX_RESP = 14
    TRANSFER_LEADER = 15  # a follower asks the leader to transfer to someone


class StateRole(IntEnum):
    FOLLOWER = 0
    PRE_CANDIDATE = 1
    CANDIDATE = 2
    LEADER = 3

    def __str__(self) -> str:
        return self.name.lower()


class ConfChangeType(IntEnum):
    ADD_LEARNER = 0
    PROMOTE = 1  # learner -> voter
    REMOVE = 2
    ADD_VOTER = 3  # straight to voter (bootstrap/tests); the operator uses learner + promote


@dataclass(slots=True)
class Entry:
    term: int
    index: int
    type: EntryType = EntryType.NORMAL
    data: bytes = b""

    def size(self) -> int:
        return len(self.data) + 16


@dataclass(slots=True)
class HardState:
    """What must be durable before any message that depends on it leaves the node."""

    term: int = 0
    vote: int = NONE
    commit: int = 0

    def copy(self) -> HardState:
        return HardState(self.term, self.vote, self.commit)


@dataclass(slots=True)
class ConfState:
    voters: frozenset[int] = frozenset()
    learners: frozenset[int] = frozenset()

    def members(self) -> frozenset[int]:
        return self.voters | self.learners


@dataclass(slots=True)
class ConfChange:
    type: ConfChangeType
    node_id: int
    context: bytes = b""  # opaque to the core: the runtime puts peer addresses here

    def encode(self) -> bytes:
        ctx = self.context
        return bytes([int(self.type)]) + self.node_id.to_bytes(8, "big") + ctx

    @staticmethod
    def decode(data: bytes) -> ConfChange:
        if len(data) < 9:
            raise ValueError("conf change entry too short")
        return ConfChange(
            ConfChangeType(data[0]), int.from_bytes(data[1:9], "big"), bytes(data[9:])
        )


@dataclass(slots=True)
class SnapshotMeta:
    index: int = 0
    term: int = 0
    conf_state: ConfState = field(default_factory=ConfState)


@dataclass(slots=True)
class Snapshot:
    """A snapshot as the core sees it. `data` is None inside the core: the
    application owns snapshot bytes and the runtime attaches them to an outgoing
    SNAP message (streamed in chunks over the wire)."""

    meta: SnapshotMeta
    data: bytes | None = None


@dataclass(slots=True)
class Message:
    type: MsgType
    to: int
    frm: int
    term: int = 0
    log_term: int = 0  # APP: term of entry `index`; APP_RESP reject: hint term
    index: int = 0  # APP: index preceding entries; APP_RESP: last matched / rejected index
    entries: list[Entry] = field(default_factory=list)
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0  # APP_RESP reject: hint index; == index with log_term 0: no hint
    context: bytes = b""  # READ_INDEX / HEARTBEAT: read request id; VOTE: transfer marker
    snapshot: Snapshot | None = None


@dataclass(slots=True)
class ReadState:
    """A linearizable read may be served once the state machine applied `index`."""

    index: int
    context: bytes


@dataclass(slots=True)
class SoftState:
    leader: int
    role: StateRole


@dataclass(slots=True)
class Ready:
    """One batch of work for the caller, in this order:

    1. persist `snapshot` (if any), then `entries`, then `hard_state` (if not
       None) — one fsync for all of it;
    2. send `messages`;
    3. apply `committed_entries` to the state machine (and restore `snapshot`);
    4. hand `read_states` to waiting readers once applied >= their index;
    5. call `advance(ready)`.
    """

    soft_state: SoftState | None = None
    hard_state: HardState | None = None
    entries: list[Entry] = field(default_factory=list)
    snapshot: Snapshot | None = None
    messages: list[Message] = field(default_factory=list)
    committed_entries: list[Entry] = field(default_factory=list)
    read_states: list[ReadState] = field(default_factory=list)

    def must_sync(self) -> bool:
        return bool(self.entries) or self.hard_state is not None or self.snapshot is not None


class ProposalDropped(Exception):
    """The proposal was not appended (not leader, transfer in progress, or a
    membership change is already pending). Nothing was changed."""


class NotLeader(ProposalDropped):
    def __init__(self, leader: int) -> None:
        super().__init__(f"not the leader (leader is {leader or 'unknown'})")
        self.leader = leader


def conf_after(conf: ConfState, cc: ConfChange) -> ConfState:
    """Membership after one change (both consensus cores apply changes this way)."""
    voters, learners = set(conf.voters), set(conf.learners)
    n = cc.node_id
    if cc.type == ConfChangeType.ADD_VOTER:
        voters.add(n)
        learners.discard(n)
    elif cc.type == ConfChangeType.ADD_LEARNER:
        if n not in voters:
            learners.add(n)
    elif cc.type == ConfChangeType.PROMOTE:
        if n in learners:
            learners.discard(n)
            voters.add(n)
    elif cc.type == ConfChangeType.REMOVE:
        voters.discard(n)
        learners.discard(n)
    return ConfState(frozenset(voters), frozenset(learners))


def validate_conf_change(conf: ConfState, cc: ConfChange) -> None:
    """Raise ProposalDropped for a change that makes no sense in `conf`."""
    voters, learners = conf.voters, conf.learners
    if cc.node_id == NONE:
        raise ProposalDropped("node id 0 is reserved")
    if cc.type == ConfChangeType.ADD_LEARNER and cc.node_id in voters | learners:
        raise ProposalDropped(f"node {cc.node_id} is already a member")
    if cc.type == ConfChangeType.ADD_VOTER and cc.node_id in voters:
        raise ProposalDropped(f"node {cc.node_id} is already a voter")
    if cc.type == ConfChangeType.PROMOTE and cc.node_id not in learners:
        raise ProposalDropped(f"node {cc.node_id} is not a learner")
    if cc.type == ConfChangeType.REMOVE:
        if cc.node_id not in voters | learners:
            raise ProposalDropped(f"node {cc.node_id} is not a member")
        if cc.node_id in voters and len(voters) == 1:
            raise ProposalDropped("cannot remove the last voter")
