"""A proposal's request id (the Multi-Paxos runtime's) changes nothing that the
state machine applies: the same commands with and without ids give the same
results and the same snapshot bytes, so a log replayed or a snapshot restored
on either kind of member agrees. A tagged entry too short for its id is an
invalid command that changes nothing but the applied index."""

from __future__ import annotations

import pytest

from raftkv.fsm import (
    Delete,
    InvalidCommand,
    LeaseGrant,
    Put,
    Session,
    StateMachine,
    encode,
    strip_request_id,
    with_request_id,
)

COMMANDS = [
    encode(Put(b"a", b"1")),
    encode(Put(b"a", b"1")),  # identical: ids tell the proposals apart, not the machine
    encode(Put(b"b", b"2"), Session("c1", 1)),
    encode(Put(b"b", b"2"), Session("c1", 1)),  # a session duplicate stays a duplicate
    encode(LeaseGrant(60, 7)),
    encode(Delete(b"a")),
    b"",  # a no-op
]


def _ids(n: int) -> bytes:
    return n.to_bytes(16, "big")


def test_ids_change_no_result_and_no_snapshot_byte() -> None:
    plain, tagged = StateMachine(), StateMachine()
    for index, data in enumerate(COMMANDS, start=1):
        a = plain.apply(index, 1, data)
        b = tagged.apply(index, 1, with_request_id(data, _ids(index)))
        assert (a.result, a.duplicate) == (b.result, b.duplicate)
    assert plain.snapshot_bytes() == tagged.snapshot_bytes()
    restored = StateMachine()
    restored.restore(tagged.snapshot_bytes())
    assert restored.snapshot_bytes() == plain.snapshot_bytes()


def test_two_identical_commands_differ_only_by_their_ids() -> None:
    put = encode(Put(b"k", b"v"))
    one, two = with_request_id(put, _ids(1)), with_request_id(put, _ids(2))
    assert one != two
    assert strip_request_id(one) == strip_request_id(two) == put
    assert strip_request_id(put) == put  # untagged data is the command itself


@pytest.mark.parametrize("data", [b"\xc1", b"\xc1" + bytes(15)])
def test_a_tag_without_a_whole_id_is_an_invalid_command(data: bytes) -> None:
    fsm = StateMachine()
    before = fsm.snapshot_bytes()
    res = fsm.apply(1, 1, data)
    assert res.result["error"] == "invalid_command"
    assert fsm.applied_index == 1
    untouched = StateMachine()
    untouched.apply(1, 1, b"")  # only the applied index moved
    assert fsm.snapshot_bytes() == untouched.snapshot_bytes() != before


def test_an_id_of_the_wrong_size_is_refused() -> None:
    with pytest.raises(InvalidCommand):
        with_request_id(b"", bytes(8))
