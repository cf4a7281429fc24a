"""The peer wire format round-trips every field and rejects garbage."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from raftkv.raft.types import (
    ConfState,
    Entry,
    EntryType,
    Message,
    MsgType,
    Snapshot,
    SnapshotMeta,
)
from raftkv.runtime import codec

ids = st.integers(1, 2**48)
small = st.integers(0, 2**40)
entries = st.builds(Entry, small, small, st.sampled_from(list(EntryType)), st.binary(max_size=64))
snapshots = st.none() | st.builds(
    lambda i, t, v, lr: Snapshot(SnapshotMeta(i, t, ConfState(frozenset(v), frozenset(lr)))),
    small,
    small,
    st.sets(ids, max_size=5),
    st.sets(ids, max_size=3),
)
messages = st.builds(
    Message,
    st.sampled_from(list(MsgType)),
    ids,
    ids,
    small,
    small,
    small,
    st.lists(entries, max_size=5),
    small,
    st.booleans(),
    small,
    st.binary(max_size=16),
    snapshots,
)


@given(st.lists(messages, max_size=4), small)
def test_messages_round_trip(batch: list[Message], commit: int) -> None:
    frame = codec.pack_messages(commit, batch)
    (length,) = codec.HEADER.unpack(frame[:4])
    assert length == len(frame) - 4
    payload = codec.unpack_payload(frame[4:])
    assert payload[0] == codec.MSGS and payload[1] == commit
    assert [codec.decode_message(raw) for raw in payload[2]] == batch


@pytest.mark.parametrize("body", [b"", b"\xc1", b"\x05", b"\x91\xa1x", b"\x90"])
def test_garbage_payloads_are_frame_errors(body: bytes) -> None:
    with pytest.raises(codec.FrameError):
        codec.unpack_payload(body)


def test_a_malformed_message_is_a_frame_error() -> None:
    with pytest.raises(codec.FrameError):
        codec.decode_message([99, 1, 2])
    with pytest.raises(codec.FrameError):
        codec.decode_message(7)
    with pytest.raises(codec.FrameError):
        codec.decode_message([1, 1, 2, 0, 0, 0, 0, False, 0, b"", [1, 2, 9, b""], None])
