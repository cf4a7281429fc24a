"""The Multi-Paxos engine's peer messages: they round-trip, and every frame outside
the schema is a FrameError with a bounded reason (the transport then drops the
connection; nothing reaches the core). The twin of test_codec.py."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftkv.paxos import Message, MsgType, ballot
from raftkv.raft.types import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    Snapshot,
    SnapshotMeta,
)
from raftkv.runtime import codec, paxoscodec

B = ballot(7, 3)  # a ballot above 2**64: it travels as two halves
CONF = ConfState(frozenset({1, 2, 3}), frozenset({4}))
CC = ConfChange(ConfChangeType.ADD_LEARNER, 4, b'{"name":"n4"}').encode()

GOOD = [
    Message(MsgType.PREPARE, 2, 3, B, index=5),
    Message(
        MsgType.PROMISE,
        3,
        2,
        B,
        index=4,
        entries=[
            Entry(ballot(5, 1), 5, data=b"a"),
            Entry(ballot(6, 2), 9, EntryType.CONF_CHANGE, CC),
        ],
        commit=4,
        conf=CONF,
    ),
    Message(MsgType.ACCEPT, 2, 3, B, entries=[Entry(B, 10, data=b"x"), Entry(B, 11)], commit=9),
    Message(MsgType.ACCEPTED, 3, 2, B, index=10, last=11),
    Message(MsgType.NACK, 3, 2, ballot(8, 1)),
    Message(MsgType.COMMIT, 2, 3, B, commit=11, context=b"read-1"),
    Message(MsgType.COMMIT_RESP, 3, 2, B, commit=11, context=b"read-1"),
    Message(MsgType.CATCHUP, 3, 2, index=12),
    Message(MsgType.CATCHUP_RESP, 2, 3, index=12, entries=[Entry(ballot(2, 1), 12)], commit=12),
    Message(MsgType.READ_INDEX, 3, 2, context=b"r"),
    Message(MsgType.READ_INDEX_RESP, 2, 3, B, index=11, context=b"r"),
    Message(MsgType.TIMEOUT_NOW, 3, 2, B),
    Message(MsgType.TRANSFER_LEADER, 2, 3, index=1),
]


def _frame(payload: list[Any]) -> list[Any]:
    return codec.unpack_payload(codec.pack_frame(payload)[4:])


def test_every_message_type_round_trips() -> None:
    frame = codec.unpack_payload(paxoscodec.pack_messages(42, GOOD)[4:])
    assert frame[0] == paxoscodec.PAXOS_MSGS
    commit, decoded = paxoscodec.decode_msgs(frame)
    assert commit == 42
    assert decoded == GOOD


def test_a_snapshot_begin_round_trips() -> None:
    snap = Message(MsgType.SNAP, 3, 2, snapshot=Snapshot(SnapshotMeta(100, 0, CONF)), commit=120)
    frame = _frame([codec.SNAP_BEGIN, paxoscodec.encode_message(snap), 4096])
    msg, size = paxoscodec.decode_snap_begin(frame)
    assert (msg, size) == (snap, 4096)


def test_each_engine_refuses_the_others_batches() -> None:
    """A node expects only its own engine's frame kind after WELCOME; the kinds differ."""
    assert paxoscodec.PaxosWire.MSGS != codec.RaftWire.MSGS
    with pytest.raises(codec.FrameError):
        codec.decode_msgs(codec.unpack_payload(paxoscodec.pack_messages(0, GOOD[:1])[4:]))


def _good() -> list[Any]:
    return paxoscodec.encode_message(GOOD[2])  # the ACCEPT


def _with(index: int, value: Any, base: list[Any] | None = None) -> list[Any]:
    raw = list(base if base is not None else _good())
    raw[index] = value
    return raw


_PROMISE = paxoscodec.encode_message(GOOD[1])
_B_ROUND, _B_NODE = 7, 3

# (what, raw message, expected reason): each an attack or a bug the core must not see.
BAD_MESSAGES = [
    ("eleven fields", _good()[:11], "malformed"),
    ("not a list", 7, "malformed"),
    ("unknown message type", _with(0, 99), "unknown_kind"),
    ("SNAP inside a batch", _with(0, int(MsgType.SNAP)), "unknown_kind"),
    ("to id 0", _with(1, 0), "out_of_range"),
    ("from id 2**63", _with(2, 2**63), "out_of_range"),
    ("ballot round is a str", _with(3, "7"), "malformed"),
    ("ballot round 2**64", _with(3, 2**64), "out_of_range"),
    ("bool as a ballot node", _with(4, True), "malformed"),
    ("a round without a node", _with(4, 0), "out_of_range"),
    ("an ACCEPT without a ballot", _with(3, 0, _with(4, 0)), "out_of_range"),
    ("negative commit", _with(7, -1), "out_of_range"),
    ("context is a str", _with(8, "ctx"), "malformed"),
    ("huge context", _with(8, b"x" * 65), "too_large"),
    ("entries not a multiple of 5", _with(9, [7, 3, 10, 0]), "malformed"),
    ("slot 0", _with(9, [7, 3, 0, 0, b""]), "out_of_range"),
    ("slots out of order", _with(9, [7, 3, 10, 0, b"", 7, 3, 10, 0, b""]), "out_of_range"),
    ("a gap in an ACCEPT run", _with(9, [7, 3, 10, 0, b"", 7, 3, 12, 0, b""]), "out_of_range"),
    ("entry ballot above the ACCEPT's", _with(9, [8, 1, 10, 0, b""]), "out_of_range"),
    ("unknown entry type", _with(9, [7, 3, 10, 5, b""]), "unknown_kind"),
    ("entry data is a str", _with(9, [7, 3, 10, 0, "x"]), "malformed"),
    ("conf change that does not decode", _with(9, [7, 3, 10, 1, b"\x09" * 9]), "malformed"),
    ("a snapshot on an ACCEPT", _with(10, [1, 0, [1], []]), "malformed"),
    ("a membership on an ACCEPT", _with(11, [[1], []]), "malformed"),
    (
        "entries on a COMMIT",
        _with(9, [7, 3, 10, 0, b""], paxoscodec.encode_message(GOOD[5])),
        "malformed",
    ),
    ("PROMISE entries below its slot", _with(5, 6, _PROMISE), "out_of_range"),
    ("membership voter is also learner", _with(11, [[1, 4], [4]], _PROMISE), "malformed"),
    ("membership id 0", _with(11, [[0], []], _PROMISE), "out_of_range"),
    ("membership not a pair", _with(11, [[1]], _PROMISE), "malformed"),
    ("ACCEPTED of no slots", _with(6, 9, paxoscodec.encode_message(GOOD[3])), "out_of_range"),
]


@pytest.mark.parametrize("what,raw,reason", BAD_MESSAGES, ids=[b[0] for b in BAD_MESSAGES])
def test_messages_outside_the_schema_are_rejected(what: str, raw: Any, reason: str) -> None:
    with pytest.raises(codec.FrameError) as err:
        paxoscodec.decode_msgs([paxoscodec.PAXOS_MSGS, 0, [raw]])
    assert err.value.reason == reason
    assert reason in codec.REJECT_REASONS


def test_the_good_base_messages_decode() -> None:
    """The cases above are bad only in the field they change."""
    for raw in (_good(), _PROMISE):
        paxoscodec.decode_msgs([paxoscodec.PAXOS_MSGS, 0, [raw]])


def test_too_many_messages_or_entries_are_rejected() -> None:
    with pytest.raises(codec.FrameError) as err:
        paxoscodec.decode_msgs([paxoscodec.PAXOS_MSGS, 0, [None] * (codec.MAX_MSGS_PER_FRAME + 1)])
    assert err.value.reason == "too_large"
    flat: list[Any] = []
    for i in range(codec.MAX_ENTRIES_PER_MSG + 1):
        flat += [_B_ROUND, _B_NODE, 10 + i, 0, b""]
    with pytest.raises(codec.FrameError) as err:
        paxoscodec.decode_msgs([paxoscodec.PAXOS_MSGS, 0, [_with(9, flat)]])
    assert err.value.reason == "too_large"


def test_a_snapshot_begin_must_carry_a_snapshot() -> None:
    for raw, reason in [
        (paxoscodec.encode_message(GOOD[0]), "unknown_kind"),
        (
            _with(
                10,
                None,
                paxoscodec.encode_message(
                    Message(MsgType.SNAP, 3, 2, snapshot=Snapshot(SnapshotMeta(1)))
                ),
            ),
            "malformed",
        ),
    ]:
        with pytest.raises(codec.FrameError) as err:
            paxoscodec.decode_snap_begin([codec.SNAP_BEGIN, raw, 10])
        assert err.value.reason == reason


@settings(max_examples=300)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.binary(max_size=8) | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=13),
        max_leaves=40,
    )
)
def test_arbitrary_values_never_escape_as_other_exceptions(raw: Any) -> None:
    for payload in (
        [paxoscodec.PAXOS_MSGS, 0, [raw]],
        [paxoscodec.PAXOS_MSGS, raw, raw],
        [codec.SNAP_BEGIN, raw, raw],
    ):
        try:
            if payload[0] == codec.SNAP_BEGIN:
                paxoscodec.decode_snap_begin(payload)
            else:
                paxoscodec.decode_msgs(payload)
        except codec.FrameError as exc:
            assert exc.reason in codec.REJECT_REASONS


@settings(max_examples=200)
@given(
    st.integers(0, 12), st.integers(0, 4), st.sampled_from([None, -1, 2**63, "x", b"x", [], True])
)
def test_one_bad_field_in_any_good_message_is_a_frame_error_or_harmless(
    which: int, field: int, value: Any
) -> None:
    raw = paxoscodec.encode_message(GOOD[which])
    raw[field] = value
    try:
        paxoscodec.decode_msgs([paxoscodec.PAXOS_MSGS, 0, [raw]])
    except codec.FrameError as exc:
        assert exc.reason in codec.REJECT_REASONS
