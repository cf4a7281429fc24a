"""A command the leader encoded itself is applied without decoding it again
(`StateMachine.encoded_here`): the same entries applied that way and by decoding
give the same results and the same state, and the cache stays bounded."""

from __future__ import annotations

import pytest

from raftkv.fsm import InvalidCommand, LeaseGrant, Put, Session, StateMachine, decode, encode
from raftkv.fsm.machine import DECODED_AHEAD_MAX
from tests.unit.fsm.support import state_apart_from_index

COMMANDS: list[tuple[object, Session | None]] = [
    (LeaseGrant(7, 60), None),
    (Put(b"a", b"1"), None),
    (Put(b"a", b"2", prev_kv=True), Session("client-1", 1)),
    (Put(b"a", b"2", prev_kv=True), Session("client-1", 1)),  # a replay: the duplicate answer
    (Put(b"b", b"\xff\x00", lease=7), Session("client-1", 2)),
    (Put(b"c", b"", lease=8), None),  # no such lease: an error result, the same both ways
    (Put(b"\xf0\x9f\x92\xa9", b"x" * 1000), Session("client-2", 1)),
]


def test_applying_what_was_encoded_here_is_applying_the_decoded_bytes() -> None:
    ahead, decoding = StateMachine(), StateMachine()
    for index, (command, session) in enumerate(COMMANDS, start=1):
        data = ahead.encoded_here(command, session)  # type: ignore[arg-type]
        assert data == encode(command, session)  # type: ignore[arg-type]
        assert decode(data) == (command, session)  # the constructor's checks are decode's
        # The other machine gets equal bytes in another object, as a follower would.
        got, expected = ahead.apply(index, 1, data), decoding.apply(index, 1, bytes(data))
        assert (got.result, got.events, got.duplicate) == (
            expected.result,
            expected.events,
            expected.duplicate,
        )
    assert state_apart_from_index(ahead) == state_apart_from_index(decoding)


def test_a_hit_is_used_once_and_the_cache_is_bounded() -> None:
    machine = StateMachine()
    data = machine.encoded_here(Put(b"k", b"v"))
    machine.apply(1, 1, data)
    assert machine._decoded_ahead == {}  # taken by its apply
    for i in range(DECODED_AHEAD_MAX + 10):  # proposals that never apply here
        machine.encoded_here(Put(b"k%d" % i, b"v"))
    assert len(machine._decoded_ahead) <= DECODED_AHEAD_MAX


def test_a_command_the_constructor_refuses_is_never_cached() -> None:
    machine = StateMachine()
    with pytest.raises(InvalidCommand):
        machine.encoded_here(Put(b"", b"v"))  # an empty key
    assert machine._decoded_ahead == {}
