"""The Multi-Paxos engine's log on the WAL (storage/ballots.py): 128-bit ballots,
slots overwritten at a higher ballot without losing the slots after them, holes,
and a crash and restart that brings back exactly the acceptor's durable state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from raftkv.consensus import PaxosEngine, bootstrap_entries, make_core
from raftkv.paxos import Message, MsgType, ballot
from raftkv.raft.types import Entry, EntryType, HardState
from raftkv.storage.ballots import (
    BallotLog,
    decode_entry,
    decode_hard_state,
    encode_entry,
    encode_hard_state,
)
from raftkv.storage.recovery import recover
from raftkv.storage.snapshots import FileSnapshotStore
from raftkv.storage.wal import WriteAheadLog

VOTERS = [1, 2, 3]


def test_ballots_above_64_bits_round_trip() -> None:
    b = ballot(2**40, 2**52 + 7)
    assert decode_hard_state(encode_hard_state(HardState(b, 0, 9))) == HardState(b, 0, 9)
    e = Entry(b, 12, EntryType.CONF_CHANGE, b"\x00" * 9)
    disk = encode_entry(e)
    assert disk.term == 0 and disk.index == 12  # the WAL sees term 0: never decreasing
    assert decode_entry(disk) == e


def _open(data: Path) -> tuple[BallotLog, FileSnapshotStore]:
    return BallotLog(WriteAheadLog(data / "wal")), FileSnapshotStore(data / "snapshots")


def _start(data: Path) -> tuple[PaxosEngine, BallotLog]:
    log, snaps = _open(data)
    state = recover(log, snaps).state
    if not state.entries and state.hard_state == HardState():
        entries, hs = bootstrap_entries("multipaxos", VOTERS)
        log.save(hs, entries)
        state = recover(log, snaps).state
    core = make_core(
        "multipaxos",
        1,
        election_tick=10,
        heartbeat_tick=1,
        hard_state=state.hard_state,
        snapshot=state.snapshot,
        entries=state.entries,
    )
    assert isinstance(core, PaxosEngine)
    return core, log


def _accept(core: PaxosEngine, log: BallotLog, b: int, slots: dict[int, bytes]) -> Any:
    """The leader of ballot `b` sends one ACCEPT per run; the Ready is persisted."""
    for s, data in sorted(slots.items()):
        core.step(
            Message(
                MsgType.ACCEPT, to=1, frm=b & 0xFFFF, ballot=b, entries=[Entry(b, s, data=data)]
            )
        )
    rd = core.ready()
    log.save(rd.hard_state, rd.entries)
    core.advance(rd)
    return rd


def _acceptor_state(core: PaxosEngine) -> tuple[int, dict[int, Entry]]:
    return core.promised, dict(core.log)


def test_an_overwritten_slot_keeps_the_slots_after_it_across_a_restart(tmp_path: Path) -> None:
    core, log = _start(tmp_path)
    b1, b2 = ballot(1, 2), ballot(2, 3)
    _accept(core, log, b1, {4: b"a", 5: b"b", 6: b"c"})
    # A new leader overwrites slot 5 only, and accepts slot 8 past a hole at 7.
    rd = _accept(core, log, b2, {5: b"B", 8: b"d"})
    assert [e.index for e in rd.entries] == [5, 6, 7, 8]  # the run the WAL rewrites
    before = _acceptor_state(core)
    assert before[1][5] == Entry(b2, 5, data=b"B") and before[1][6] == Entry(b1, 6, data=b"c")
    assert 7 not in before[1]
    log.close()  # crash: only what was saved survives

    again, log2 = _start(tmp_path)
    assert _acceptor_state(again) == before  # promise, every accepted value, the hole
    log2.close()


def test_without_the_run_the_wal_would_lose_the_slots_after_an_overwrite(tmp_path: Path) -> None:
    """Why the engine hands storage a run: the WAL truncates the suffix of a rewrite."""
    core, log = _start(tmp_path)
    b1, b2 = ballot(1, 2), ballot(2, 3)
    _accept(core, log, b1, {4: b"a", 5: b"b", 6: b"c"})
    log.save(HardState(b2, 0, core.commit), [Entry(b2, 5, data=b"B")])  # slot 5 alone
    log.close()
    again, log2 = _start(tmp_path)
    assert 6 not in again.log  # the accepted value at slot 6 is gone: unsafe
    log2.close()
