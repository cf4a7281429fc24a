"""Plain data of the Multi-Paxos core: ballots, messages, Ready.

Log entries, hard state, snapshots, membership changes and read states are the
Raft core's plain data (`raftkv.raft.types`), read with Paxos meanings, so the
Ready plan (`raftkv.runtime.ready`), storage and state machine handle both
engines' output alike:

- `Entry(term, index, type, data)`: the value accepted (or learnt chosen) in
  slot `index`, at ballot `term`;
- `HardState(term, vote, commit)`: `term` is the promised ballot (durable:
  every promise and accept depends on it), `vote` is unused (NONE), `commit`
  is the length of the chosen prefix this node knows (volatile, like Raft's);
- `Snapshot`/`SnapshotMeta`: the state machine at a chosen slot.

Nothing here does IO.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from raftkv.raft.types import ConfState, Entry, HardState, ReadState, Snapshot, SoftState

NODE_BITS = 64  # node ids are 64-bit (ConfChange encodes them in 8 bytes)
_NODE_MASK = (1 << NODE_BITS) - 1


def ballot(round_: int, node: int) -> int:
    """A ballot as one int ordered by (round, node id): unique per proposer."""
    return (round_ << NODE_BITS) | node


def ballot_round(b: int) -> int:
    return b >> NODE_BITS


def ballot_node(b: int) -> int:
    return b & _NODE_MASK


def fmt_ballot(b: int) -> str:
    return f"{ballot_round(b)}.{ballot_node(b)}"


class MsgType(IntEnum):
    PREPARE = 1  # phase 1a: ballot, index = first slot the proposer does not know chosen
    PROMISE = 2  # phase 1b: entries accepted from that slot on, commit, conf as of commit
    ACCEPT = 3  # phase 2a: entries for consecutive slots at the ballot, commit
    ACCEPTED = 4  # phase 2b: slots index..last accepted at the ballot
    NACK = 5  # the acceptor promised a higher ballot (`ballot`): the proposer steps down
    COMMIT = 6  # learn + heartbeat: every slot <= commit is chosen; context: read barrier
    COMMIT_RESP = 7  # heartbeat ack at the ballot (read barrier: context)
    CATCHUP = 8  # a lagging node asks for chosen values from slot `index` on
    CATCHUP_RESP = 9  # chosen entries, and the sender's commit
    SNAP = 10  # the chosen prefix as a snapshot (the runtime attaches the data)
    READ_INDEX = 11  # follower -> leader: a read barrier for `context`
    READ_INDEX_RESP = 12
    TIMEOUT_NOW = 13  # leadership transfer: run phase 1 now, ignore the lease
    TRANSFER_LEADER = 14  # a follower asks the leader to transfer to `index`


@dataclass(slots=True)
class Message:
    type: MsgType
    to: int
    frm: int
    ballot: int = 0
    index: int = 0
    last: int = 0
    entries: list[Entry] = field(default_factory=list)
    commit: int = 0
    context: bytes = b""
    snapshot: Snapshot | None = None
    conf: ConfState | None = None  # PROMISE: the acceptor's membership as of its commit


@dataclass(slots=True)
class Ready:
    """One batch of work, handled as `raftkv.runtime.ready.plan` orders it with
    `leader=False` (`Paxos.SENDS_BEFORE_PERSIST`): every message waits for the
    fsync of `snapshot`, `entries` (upserted by slot) and `hard_state`, because
    promises and accepts are replies that depend on exactly that state."""

    soft_state: SoftState | None = None
    hard_state: HardState | None = None
    entries: list[Entry] = field(default_factory=list)
    snapshot: Snapshot | None = None
    messages: list[Message] = field(default_factory=list)
    committed_entries: list[Entry] = field(default_factory=list)
    read_states: list[ReadState] = field(default_factory=list)

    def must_sync(self) -> bool:
        return bool(self.entries) or self.hard_state is not None or self.snapshot is not None
