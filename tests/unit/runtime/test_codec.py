"""The peer wire format: every valid message round-trips; everything outside the
schema is a FrameError with a reason from the bounded set (issue 10)."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftkv.raft.types import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    Message,
    MsgType,
    Snapshot,
    SnapshotMeta,
)
from raftkv.runtime import codec

ids = st.integers(1, 2**63 - 1)
u63 = st.integers(0, 2**63 - 1)
WIRE_TYPES = [
    t for t in MsgType if t not in (MsgType.SNAP, MsgType.SNAP_STATUS, MsgType.UNREACHABLE)
]


@st.composite
def appends(draw: st.DrawFn) -> Message:
    term = draw(st.integers(1, 2**63 - 1))
    prev_term = draw(st.integers(0, term))
    prev = draw(st.integers(0, 2**40))
    n = draw(st.integers(0, 5))
    terms = sorted(draw(st.lists(st.integers(prev_term, term), min_size=n, max_size=n)))
    entries = []
    for i, t in enumerate(terms):
        if draw(st.booleans()):
            entries.append(Entry(t, prev + 1 + i, EntryType.NORMAL, draw(st.binary(max_size=32))))
        else:
            cc = ConfChange(draw(st.sampled_from(list(ConfChangeType))), draw(ids))
            entries.append(Entry(t, prev + 1 + i, EntryType.CONF_CHANGE, cc.encode()))
    return Message(
        MsgType.APP,
        draw(ids),
        draw(ids),
        term,
        prev_term,
        prev,
        entries,
        draw(u63),
        draw(st.booleans()),
        draw(u63),
        draw(st.binary(max_size=16)),
    )


others = st.builds(
    Message,
    st.sampled_from([t for t in WIRE_TYPES if t != MsgType.APP]),
    ids,
    ids,
    st.integers(1, 2**63 - 1),
    u63,
    u63,
    st.just([]),
    u63,
    st.booleans(),
    u63,
    st.binary(max_size=codec.MAX_CONTEXT_BYTES),
)
messages = appends() | others


@given(st.lists(messages, max_size=4), u63)
def test_messages_round_trip(batch: list[Message], commit: int) -> None:
    frame = codec.pack_messages(commit, batch)
    (length,) = codec.HEADER.unpack(frame[:4])
    assert length == len(frame) - 4
    payload = codec.unpack_payload(frame[4:])
    assert payload[0] == codec.MSGS
    assert codec.decode_msgs(payload) == (commit, batch)


@given(ids, ids, st.integers(1, 2**62), st.sets(ids, max_size=5), st.sets(ids, max_size=3), u63)
def test_snapshot_begin_round_trips(
    to: int, frm: int, term: int, voters: set[int], learners: set[int], index: int
) -> None:
    learners -= voters
    m = Message(
        MsgType.SNAP,
        to,
        frm,
        term,
        snapshot=Snapshot(
            SnapshotMeta(index, term - 1, ConfState(frozenset(voters), frozenset(learners)))
        ),
    )
    frame = codec.pack_frame([codec.SNAP_BEGIN, codec.encode_message(m), 123])
    assert codec.decode_snap_begin(codec.unpack_payload(frame[4:])) == (m, 123)


def test_handshake_frames_round_trip() -> None:
    cid = "0123456789abcdef" * 2
    for engine in ("raft", "multipaxos"):
        frame = codec.pack_hello(cid, 7, 9, "n1", engine)
        hello = codec.decode_hello(codec.unpack_payload(frame[4:]))
        assert (hello.cluster_id, hello.frm, hello.to, hello.name, hello.engine) == (
            cid,
            7,
            9,
            "n1",
            engine,
        )
        welcome = codec.unpack_payload(codec.pack_welcome("", 9, "n2", engine)[4:])
        assert codec.decode_welcome(welcome) == ("", 9, "n2", engine)
    for reason in ("wrong_cluster", "wrong_consensus"):
        with pytest.raises(codec.FrameError) as err:
            codec.decode_welcome([codec.REFUSED, reason])
        assert err.value.reason == reason


# The engine field of HELLO and WELCOME (protocol version 3): present, a str, and one
# of the known engines, else the handshake is refused before the gate compares it.
_BAD_ENGINES = [
    (None, "malformed"),  # wrong type
    (1, "malformed"),
    (b"raft", "malformed"),  # bytes are not a str
    (["raft"], "malformed"),
    ("paxos", "malformed"),  # unknown value
    ("", "malformed"),
    ("RAFT", "malformed"),
    ("raft" * 5, "too_large"),
]


def test_the_handshake_engine_field_is_checked() -> None:
    cid = "ab" * 16
    hello = [codec.HELLO, codec.PROTOCOL_VERSION, cid, 1, 2, "n"]
    welcome = [codec.WELCOME, cid, 2, "n"]
    for value, reason in _BAD_ENGINES:
        with pytest.raises(codec.FrameError) as err:
            codec.decode_hello([*hello, value])
        assert err.value.reason == reason, value
        with pytest.raises(codec.FrameError) as err:
            codec.decode_welcome([*welcome, value])
        assert err.value.reason == reason, value
    # Missing: the shape of protocol version 2 under version 3.
    for decode, frame in ((codec.decode_hello, hello), (codec.decode_welcome, welcome)):
        with pytest.raises(codec.FrameError) as err:
            decode(frame)  # type: ignore[operator]
        assert err.value.reason == "malformed"
    # A version-2 HELLO (no engine) is refused by its version, as any other version.
    with pytest.raises(codec.FrameError) as err:
        codec.decode_hello([codec.HELLO, 2, cid, 1, 2, "n"])
    assert err.value.reason == "version"


def _good() -> list[Any]:
    m = Message(MsgType.APP, 2, 1, 5, 4, 10, [Entry(5, 11, EntryType.NORMAL, b"x")], commit=9)
    return codec.encode_message(m)


def _with(index: int, value: Any) -> list[Any]:
    raw = _good()
    raw[index] = value
    return raw


# (what, raw message, expected reason) — each one an attack or a bug seen on the wire.
BAD_MESSAGES = [
    ("term is a string", _with(3, "7"), "malformed"),
    ("term 2**64-1", _with(3, 2**64 - 1), "out_of_range"),
    ("term 2**63", _with(3, 2**63), "out_of_range"),
    ("term 0", _with(3, 0), "out_of_range"),
    ("negative index", _with(5, -1), "out_of_range"),
    ("bool as a term", _with(3, True), "malformed"),
    ("from id 0", _with(2, 0), "out_of_range"),
    ("unknown message type", _with(0, 99), "unknown_kind"),
    ("a local-only type", _with(0, int(MsgType.UNREACHABLE)), "unknown_kind"),
    ("SNAP inside MSGS", _with(0, int(MsgType.SNAP)), "unknown_kind"),
    ("reject is an int", _with(7, 1), "malformed"),
    ("context is a str", _with(9, "ctx"), "malformed"),
    ("huge context", _with(9, b"x" * 65), "too_large"),
    ("entries not a multiple of 4", _with(10, [5, 11, 0]), "malformed"),
    ("entry index gap", _with(10, [5, 12, 0, b"x"]), "out_of_range"),
    ("entry term above the message's", _with(10, [6, 11, 0, b"x"]), "out_of_range"),
    ("entry term below prev term", _with(10, [3, 11, 0, b"x"]), "out_of_range"),
    ("unknown entry type", _with(10, [5, 11, 7, b"x"]), "unknown_kind"),
    ("entry data is a str", _with(10, [5, 11, 0, "x"]), "malformed"),
    ("conf change that does not decode", _with(10, [5, 11, 1, b"\x09" * 9]), "malformed"),
    ("snapshot on an APP", _with(11, [1, 1, [1], []]), "malformed"),
    ("eleven fields", _good()[:11], "malformed"),
    ("not a list", 7, "malformed"),
    (
        "entries on a heartbeat",
        [int(MsgType.HEARTBEAT), 2, 1, 5, 0, 0, 0, False, 0, b"", [5, 1, 0, b""], None],
        "malformed",
    ),
]


@pytest.mark.parametrize("what,raw,reason", BAD_MESSAGES, ids=[b[0] for b in BAD_MESSAGES])
def test_messages_outside_the_schema_are_rejected(what: str, raw: Any, reason: str) -> None:
    with pytest.raises(codec.FrameError) as err:
        codec.decode_msgs([codec.MSGS, 0, [raw]])
    assert err.value.reason == reason
    assert reason in codec.REJECT_REASONS


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\xc1",
        b"\x05",
        b"\x91\xa1x",
        b"\x90",
        msgpack.packb([99, 1]),
        msgpack.packb({"a": 1}),
        msgpack.packb([[1]]),
    ],
)
def test_garbage_payloads_are_frame_errors(body: bytes) -> None:
    with pytest.raises(codec.FrameError) as err:
        codec.unpack_payload(body)
    assert err.value.reason in codec.REJECT_REASONS


def test_hello_outside_the_schema_is_rejected() -> None:
    cid = "ab" * 16
    cases = [
        ([codec.HELLO, 1, cid, 1, 2, "n", "raft"], "version"),
        ([codec.HELLO, codec.PROTOCOL_VERSION, "XYZ", 1, 2, "n", "raft"], "malformed"),
        ([codec.HELLO, codec.PROTOCOL_VERSION, cid, 0, 2, "n", "raft"], "out_of_range"),
        ([codec.HELLO, codec.PROTOCOL_VERSION, cid, 1, 2, "n" * 300, "raft"], "too_large"),
        ([codec.HELLO, codec.PROTOCOL_VERSION, cid, 1, 2, "n"], "malformed"),
        ([codec.MSGS, 0, []], "unexpected"),
    ]
    for payload, reason in cases:
        with pytest.raises(codec.FrameError) as err:
            codec.decode_hello(payload)
        assert err.value.reason == reason, payload


def test_too_many_messages_or_entries_are_rejected() -> None:
    with pytest.raises(codec.FrameError) as err:
        codec.decode_msgs([codec.MSGS, 0, [None] * (codec.MAX_MSGS_PER_FRAME + 1)])
    assert err.value.reason == "too_large"
    n = codec.MAX_ENTRIES_PER_MSG + 1
    flat: list[Any] = []
    for i in range(n):
        flat += [5, 11 + i, 0, b""]
    with pytest.raises(codec.FrameError) as err:
        codec.decode_msgs([codec.MSGS, 0, [_with(10, flat)]])
    assert err.value.reason == "too_large"


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
        [codec.MSGS, 0, [raw]],
        [codec.MSGS, raw, raw],
        [codec.HELLO, raw],
        [codec.HELLO, codec.PROTOCOL_VERSION, "", 1, 2, "n", raw],  # the engine field
        [codec.WELCOME, "", 2, "n", raw],
        [codec.SNAP_BEGIN, raw, raw],
    ):
        try:
            if payload[0] == codec.HELLO:
                codec.decode_hello(payload)
            elif payload[0] == codec.WELCOME:
                codec.decode_welcome(payload)
            elif payload[0] == codec.SNAP_BEGIN:
                codec.decode_snap_begin(payload)
            else:
                codec.decode_msgs(payload)
        except codec.FrameError as exc:
            assert exc.reason in codec.REJECT_REASONS
