"""The Multi-Paxos engine's log on the Raft log's storage (docs/consensus.md, "Storage").

An acceptor's durable state is its promise and, per slot, the value it accepted
and the ballot it accepted it at. The engine hands that to storage in the Raft
log's shape (`consensus.PaxosEngine.ready`): every Ready's entries are one
contiguous run from its lowest changed slot to the last slot, so a slot
overwritten at a higher ballot is written by the WAL's own conflicting-suffix
truncation followed by the rest of the log again (holes as ballot-0 no-ops,
which an acceptor may report for a slot it never accepted: a proposer adopts
one only where it would write a no-op anyway). Two things do not fit the WAL's
64-bit, never-decreasing terms, and this module maps them:

- a ballot is (round << 64 | node): up to 128 bits, and the slots of one log may
  carry ballots in any order. On disk an entry's term is 0 and its data is the
  16-byte ballot followed by the value;
- the promise is the hard state's term: on disk `term` holds its round and
  `vote` (unused by Paxos) its node.

Snapshot terms are 0 on both sides (`PaxosEngine.snapshot_meta`). Recovery
(`storage.recovery`) runs on the disk shape, where all those checks hold as for
Raft; `decode_state` then turns what it found into the core's values.
"""

from __future__ import annotations

from raftkv.raft.types import Entry, EntryType, HardState, SnapshotMeta
from raftkv.storage.protocols import InitialState, RaftStore

BALLOT_BYTES = 16
_LOW = (1 << 64) - 1


def encode_hard_state(hs: HardState) -> HardState:
    return HardState(hs.term >> 64, hs.term & _LOW, hs.commit)


def decode_hard_state(hs: HardState) -> HardState:
    return HardState((hs.term << 64) | hs.vote, 0, hs.commit)


def encode_entry(e: Entry) -> Entry:
    return Entry(0, e.index, e.type, e.term.to_bytes(BALLOT_BYTES, "big") + e.data)


def decode_entry(e: Entry) -> Entry:
    if e.term != 0 or len(e.data) < BALLOT_BYTES:
        raise ValueError(f"entry {e.index} is not a Multi-Paxos slot record")
    ballot = int.from_bytes(e.data[:BALLOT_BYTES], "big")
    return Entry(ballot, e.index, e.type, e.data[BALLOT_BYTES:])


def is_hole(e: Entry, commit: int) -> bool:
    """A ballot-0 no-op above the chosen prefix: written only to fill a hole."""
    return e.index > commit and e.term == 0 and e.type == EntryType.NORMAL and not e.data


def decode_state(state: InitialState) -> InitialState:
    """What recovery found on disk, in the core's values (holes are holes again)."""
    hs = decode_hard_state(state.hard_state)
    entries = [decode_entry(e) for e in state.entries]
    entries = [e for e in entries if not is_hole(e, hs.commit)]
    return InitialState(
        hs,
        state.snapshot,
        entries,
        new_log=state.new_log,
        snapshot_record=state.snapshot_record,
        origin=state.origin,
    )


def _zero_term(meta: SnapshotMeta) -> SnapshotMeta:
    return SnapshotMeta(meta.index, 0, meta.conf_state)


class BallotLog:
    """A RaftStore for the Paxos engine: writes through to `disk` (the WAL or its
    in-memory twin) in the disk shape above. Read the log with `disk.load()` and
    storage.recovery, then `decode_state`."""

    def __init__(self, disk: RaftStore) -> None:
        self.disk = disk

    def load(self) -> InitialState:
        return decode_state(self.disk.load())

    def save(self, hard_state: HardState | None, entries: list[Entry]) -> None:
        self.disk.save(
            encode_hard_state(hard_state) if hard_state is not None else None,
            [encode_entry(e) for e in entries],
        )

    def record_snapshot(self, meta: SnapshotMeta, hard_state: HardState | None = None) -> None:
        self.disk.record_snapshot(
            _zero_term(meta), encode_hard_state(hard_state) if hard_state is not None else None
        )

    def compact(self, index: int) -> None:
        self.disk.compact(index)

    def reset_to_snapshot(self, meta: SnapshotMeta, hard_state: HardState) -> None:
        self.disk.reset_to_snapshot(_zero_term(meta), encode_hard_state(hard_state))

    def close(self) -> None:
        self.disk.close()
