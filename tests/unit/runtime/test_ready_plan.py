"""The Ready plan (raftkv/runtime/ready.py), case by case: what a node does with one
Ready, in which order, given its role and what is on its disk."""

from __future__ import annotations

import typing
from dataclasses import FrozenInstanceError
from typing import Any

import pytest

from raftkv.raft import (
    ConfState,
    Entry,
    HardState,
    Message,
    MsgType,
    ReadState,
    Ready,
    Snapshot,
    SnapshotMeta,
)
from raftkv.runtime import ready
from raftkv.runtime.ready import (
    Advance,
    Apply,
    DeferHardState,
    Persist,
    PersistSnapshot,
    ReleaseReads,
    RestoreSnapshot,
    Send,
    Step,
)


def ents(first: int, last: int, term: int = 2) -> list[Entry]:
    return [Entry(term, i, data=b"x%d" % i) for i in range(first, last + 1)]


def msgs(kind: MsgType = MsgType.APP, n: int = 2) -> list[Message]:
    return [Message(kind, to=2 + i, frm=1, term=2) for i in range(n)]


SNAP = Snapshot(SnapshotMeta(50, 2, ConfState(frozenset({1, 2, 3}))), b"state")
DURABLE = HardState(term=2, vote=1, commit=4)


def shape(steps: list[Step]) -> list[tuple[Any, ...]]:
    """A readable digest: step kind plus what it carries (entry ranges, hard states)."""
    out: list[tuple[Any, ...]] = []
    for s in steps:
        match s:
            case Send():
                out.append(("send", len(s.messages)))
            case Apply():
                out.append(("apply", s.entries[0].index, s.entries[-1].index))
            case Persist():
                span = (s.entries[0].index, s.entries[-1].index) if s.entries else None
                out.append(("persist", s.hard_state, span))
            case PersistSnapshot():
                out.append(("persist_snapshot", s.snapshot.meta.index, s.hard_state))
            case DeferHardState():
                out.append(("defer", s.hard_state))
            case RestoreSnapshot():
                out.append(("restore", s.snapshot.meta.index))
            case Advance():
                out.append(("advance",))
            case ReleaseReads():
                out.append(("reads", len(s.read_states)))
    return out


END = [("advance",), ("reads", 0)]

CASES: list[tuple[str, Ready, bool, HardState, HardState | None, list[tuple[Any, ...]]]] = [
    (
        "leader, new entries, term durable: send before its fsync",
        Ready(entries=ents(5, 7), messages=msgs()),
        True,
        DURABLE,
        None,
        [("send", 2), ("persist", None, (5, 7)), *END],
    ),
    (
        "leader, new entries and commits: send, apply what is on disk, persist",
        Ready(
            hard_state=HardState(2, 1, 4),
            entries=ents(5, 7),
            messages=msgs(),
            committed_entries=ents(3, 4),
        ),
        True,
        HardState(2, 1, 2),
        None,
        [("send", 2), ("apply", 3, 4), ("persist", HardState(2, 1, 4), (5, 7)), *END],
    ),
    (
        "leader, commit notice without entries: answer clients, then send, defer the commit",
        Ready(hard_state=HardState(2, 1, 7), messages=msgs(), committed_entries=ents(5, 7)),
        True,
        DURABLE,
        None,
        [("apply", 5, 7), ("send", 2), ("defer", HardState(2, 1, 7)), *END],
    ),
    (
        "leader whose term is not durable yet: persist first, like everyone else",
        Ready(hard_state=HardState(3, 1, 4), entries=ents(5, 5, term=3), messages=msgs()),
        True,
        DURABLE,
        None,
        [("persist", HardState(3, 1, 4), (5, 5)), ("send", 2), *END],
    ),
    (
        "leader whose vote changed: persist first",
        Ready(hard_state=HardState(2, 3, 4), messages=msgs()),
        True,
        HardState(2, 0, 4),
        None,
        [("persist", HardState(2, 3, 4), None), ("send", 2), *END],
    ),
    (
        "follower: acks leave only after its fsync",
        Ready(entries=ents(5, 7), messages=msgs(MsgType.APP_RESP, 1)),
        False,
        DURABLE,
        None,
        [("persist", None, (5, 7)), ("send", 1), *END],
    ),
    (
        "follower: committed entries split at this Ready's first new entry",
        Ready(
            hard_state=HardState(2, 1, 9),
            entries=ents(8, 10),
            messages=msgs(MsgType.APP_RESP, 1),
            committed_entries=ents(5, 9),
        ),
        False,
        DURABLE,
        None,
        [
            ("apply", 5, 7),
            ("persist", HardState(2, 1, 9), (8, 10)),
            ("send", 1),
            ("apply", 8, 9),
            *END,
        ],
    ),
    (
        "follower: every committed entry is new here: all applied after the fsync",
        Ready(
            hard_state=HardState(2, 1, 6),
            entries=ents(5, 7),
            messages=msgs(MsgType.APP_RESP, 1),
            committed_entries=ents(5, 6),
        ),
        False,
        DURABLE,
        None,
        [("persist", HardState(2, 1, 6), (5, 7)), ("send", 1), ("apply", 5, 6), *END],
    ),
    (
        "follower, commit-only hard state from a heartbeat: deferred, no fsync",
        Ready(
            hard_state=HardState(2, 1, 7),
            messages=msgs(MsgType.HEARTBEAT_RESP, 1),
            committed_entries=ents(5, 7),
        ),
        False,
        DURABLE,
        None,
        [("apply", 5, 7), ("defer", HardState(2, 1, 7)), ("send", 1), *END],
    ),
    (
        "a deferred hard state rides with the next entries",
        Ready(entries=ents(8, 8), messages=msgs(MsgType.APP_RESP, 1)),
        False,
        DURABLE,
        HardState(2, 1, 7),
        [("persist", HardState(2, 1, 7), (8, 8)), ("send", 1), *END],
    ),
    (
        "a deferred hard state without entries to ride on stays deferred",
        Ready(messages=msgs(MsgType.HEARTBEAT_RESP, 1)),
        False,
        DURABLE,
        HardState(2, 1, 7),
        [("send", 1), *END],
    ),
    (
        "a newer deferred commit replaces the older one",
        Ready(hard_state=HardState(2, 1, 9)),
        False,
        DURABLE,
        HardState(2, 1, 7),
        [("defer", HardState(2, 1, 9)), *END],
    ),
    (
        "candidate: its own vote on disk before the vote requests leave",
        Ready(hard_state=HardState(3, 1, 4), messages=msgs(MsgType.VOTE)),
        False,
        DURABLE,
        None,
        [("persist", HardState(3, 1, 4), None), ("send", 2), *END],
    ),
    (
        "voter granting a vote: the vote is written, never deferred",
        Ready(hard_state=HardState(3, 2, 4), messages=msgs(MsgType.VOTE_RESP, 1)),
        False,
        DURABLE,
        HardState(2, 1, 4),
        [("persist", HardState(3, 2, 4), None), ("send", 1), *END],
    ),
    (
        "snapshot install: saved with its hard state, restored before what follows it",
        Ready(hard_state=HardState(2, 1, 50), snapshot=SNAP, messages=msgs(MsgType.APP_RESP, 1)),
        False,
        DURABLE,
        HardState(2, 1, 7),
        [("persist_snapshot", 50, HardState(2, 1, 50)), ("send", 1), ("restore", 50), *END],
    ),
    (
        "snapshot, then entries and commits after it in the same Ready: the snapshot's "
        "write commits only up to its index (a crash before the entries are on disk must "
        "not leave a commit past the log; sim seed 3385)",
        Ready(
            hard_state=HardState(2, 1, 52),
            snapshot=SNAP,
            entries=ents(51, 53),
            messages=msgs(MsgType.APP_RESP, 1),
            committed_entries=ents(51, 52),
        ),
        False,
        DURABLE,
        None,
        [
            ("persist_snapshot", 50, HardState(2, 1, 50)),
            ("persist", HardState(2, 1, 52), (51, 53)),
            ("send", 1),
            ("restore", 50),
            ("apply", 51, 52),
            *END,
        ],
    ),
    (
        "snapshot without a hard state change: the deferred commit is its base",
        Ready(snapshot=SNAP),
        False,
        DURABLE,
        HardState(2, 1, 7),
        [("persist_snapshot", 50, HardState(2, 1, 50)), ("restore", 50), *END],
    ),
    (
        "a leader never sends early around a snapshot",
        Ready(snapshot=SNAP, messages=msgs()),
        True,
        DURABLE,
        None,
        [("persist_snapshot", 50, HardState(2, 1, 50)), ("send", 2), ("restore", 50), *END],
    ),
    (
        "read states are released after the apply and the advance",
        Ready(committed_entries=ents(5, 5), read_states=[ReadState(5, b"r1")]),
        True,
        DURABLE,
        None,
        [("apply", 5, 5), ("advance",), ("reads", 1)],
    ),
    (
        "an empty Ready still advances and serves reads waiting for what is applied",
        Ready(),
        False,
        DURABLE,
        None,
        END,
    ),
]


@pytest.mark.parametrize(
    ("rd", "leader", "durable", "deferred", "expected"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_plan(
    rd: Ready,
    leader: bool,
    durable: HardState,
    deferred: HardState | None,
    expected: list[tuple[Any, ...]],
) -> None:
    assert shape(ready.plan(rd, leader=leader, durable=durable, deferred=deferred)) == expected


def test_every_committed_entry_is_applied_once_in_order() -> None:
    """Whatever the split, the Apply steps together are exactly the committed entries."""
    for first_new in range(3, 12):
        rd = Ready(
            hard_state=HardState(2, 1, 9), entries=ents(first_new, 11), committed_entries=ents(3, 9)
        )
        for leader in (False, True):
            steps = ready.plan(rd, leader=leader, durable=DURABLE, deferred=None)
            applied = [e for s in steps if isinstance(s, Apply) for e in s.entries]
            assert applied == rd.committed_entries
            persist = next(i for i, s in enumerate(steps) if isinstance(s, Persist))
            early = [e for s in steps[:persist] if isinstance(s, Apply) for e in s.entries]
            assert all(e.index < first_new for e in early), (first_new, shape(steps))


def test_steps_share_the_ready_lists_rather_than_copy_them() -> None:
    rd = Ready(
        hard_state=HardState(2, 1, 4),
        entries=ents(5, 7),
        messages=msgs(),
        committed_entries=ents(3, 4),
        read_states=[ReadState(4, b"r")],
    )
    steps = ready.plan(rd, leader=True, durable=DURABLE, deferred=None)
    send, apply, persist = steps[0], steps[1], steps[2]
    assert isinstance(send, Send) and send.messages is rd.messages
    assert isinstance(apply, Apply) and apply.entries is rd.committed_entries
    assert isinstance(persist, Persist) and persist.entries is rd.entries
    assert isinstance(steps[-1], ReleaseReads) and steps[-1].read_states is rd.read_states


def test_steps_are_frozen_and_the_kinds_are_complete() -> None:
    with pytest.raises(FrozenInstanceError):
        Send([]).messages = []  # type: ignore[misc]
    # Send is generic in the engine's message type: Step names it as Send[Any].
    kinds = {typing.get_origin(t) or t for t in typing.get_args(Step)}
    assert kinds == set(ready.STEP_KINDS)
    assert len(ready.STEP_KINDS) == 8


def test_the_plan_does_not_touch_its_inputs() -> None:
    rd = Ready(
        hard_state=HardState(2, 1, 9),
        entries=ents(8, 10),
        messages=msgs(),
        committed_entries=ents(5, 9),
    )
    before = (list(rd.entries), list(rd.committed_entries), list(rd.messages), rd.hard_state)
    durable, deferred = HardState(2, 1, 4), HardState(2, 1, 6)
    ready.plan(rd, leader=False, durable=durable, deferred=deferred)
    assert (rd.entries, rd.committed_entries, rd.messages, rd.hard_state) == before
    assert (durable, deferred) == (HardState(2, 1, 4), HardState(2, 1, 6))
