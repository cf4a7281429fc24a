"""The log entry encoding: round trips, compactness, validation."""

from __future__ import annotations

from collections.abc import Callable

import msgpack
import pytest

from raftkv.fsm import (
    Checkpoint,
    Compare,
    Delete,
    InvalidCommand,
    LeaseExpire,
    LeaseGrant,
    LeaseRevoke,
    LockAcquire,
    LockRelease,
    Put,
    Range,
    Session,
    Txn,
    decode,
    encode,
)

EVERY_COMMAND = [
    Put(b"k", b"v"),
    Put(b"k", b"", lease=9, prev_kv=True),
    Put(b"k", b"v", prev_kv=True),
    Delete(b"k"),
    Delete(b"a", b"b", prev_kv=True),
    Delete.prefix(b"dir/"),
    Range(b"k"),
    Range.prefix(b"p", limit=10, keys_only=True),
    Range.all(count_only=True),
    Txn(
        [
            Compare(b"k", "value", "==", b"v"),
            Compare(b"k", "version", ">", 3, b"l"),
            Compare(b"k", "exists", "!=", False),
        ],
        [Put(b"k", b"w"), Delete(b"x"), Range(b"k")],
        [Range.prefix(b"k")],
    ),
    Txn([], [], []),
    LeaseGrant(30),
    LeaseGrant(30, 12345),
    LeaseRevoke(7),
    LeaseExpire([3, 1, 2]),
    LockAcquire("jobs/nightly", 7),
    LockRelease("jobs/nightly", 7),
    Checkpoint("cp-001"),
]


@pytest.mark.parametrize("command", EVERY_COMMAND, ids=lambda c: type(c).__name__)
@pytest.mark.parametrize("session", [None, Session("client-ä", 2**64 - 1)])
def test_every_command_round_trips(command: object, session: Session | None) -> None:
    data = encode(command, session)  # type: ignore[arg-type]
    assert decode(data) == (command, session)
    assert encode(*decode(data)) == data


def test_the_wire_format_is_pinned() -> None:
    """[version 1, op 1 (put), no session, key, value]; defaults left out. A change
    here is a format change: bump FORMAT_VERSION and keep decoding version 1."""
    assert encode(Put(b"a", b"1")) == b"\x95\x01\x01\xc0\xc4\x01a\xc4\x011"
    assert msgpack.unpackb(encode(Put(b"a", b"1", lease=5), Session("c", 3))) == [
        1,
        1,
        ["c", 3],
        b"a",
        b"1",
        5,
    ]


def test_a_put_costs_few_bytes_beyond_its_key_and_value() -> None:
    key, value = b"k" * 16, b"v" * 256
    assert len(encode(Put(key, value))) - len(key) - len(value) <= 10


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Put("k", b"v"), "key must be bytes"),  # type: ignore[arg-type]
        (lambda: Put(b"", b"v"), "key must not be empty"),
        (lambda: Put(b"k", "v"), "value must be bytes"),  # type: ignore[arg-type]
        (lambda: Put(b"k", bytearray(b"v")), "value must be bytes"),  # type: ignore[arg-type]
        (lambda: Put(b"k", b"v", lease=-1), "lease"),
        (lambda: Put(b"k", b"v", prev_kv=1), "prev_kv must be a bool"),  # type: ignore[arg-type]
        (lambda: Delete(b"b", b"a"), "range_end must be greater"),
        (lambda: Delete(b"b", b"b"), "range_end must be greater"),
        (lambda: Range(b"k", limit=-1), "limit"),
        (lambda: Range(b"k", "z"), "range_end must be bytes"),  # type: ignore[arg-type]
        (lambda: LeaseExpire([1, "2"]), "lease id must be an int"),  # type: ignore[list-item]
        (lambda: Txn([Put(b"k", b"v")], [], []), "compares"),  # type: ignore[list-item]
        (lambda: Txn([], (Put(b"k", b"v"),), []), "list"),  # type: ignore[arg-type]
    ],
)
def test_constructors_reject_bad_input_with_a_clear_message(
    build: Callable[[], object], message: str
) -> None:
    with pytest.raises(InvalidCommand, match=message):
        build()


def test_encode_refuses_what_is_not_a_command() -> None:
    with pytest.raises(InvalidCommand, match="not a command"):
        encode(Compare(b"k", "version", "==", 1))  # type: ignore[arg-type]


def test_invalid_command_is_a_value_error() -> None:
    """So generic handlers (400 Bad Request) catch it without knowing the fsm."""
    assert issubclass(InvalidCommand, ValueError)
