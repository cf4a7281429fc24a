"""The machine as the runtime drives it: entries, no-ops, bad data, checkpoints,
membership, stats."""

from __future__ import annotations

import base64
import json

import msgpack
import pytest

from raftkv.fsm import (
    Checkpoint,
    InvalidCommand,
    LeaseGrant,
    LockAcquire,
    Put,
    Range,
    Session,
    StateMachine,
    jsonable,
)
from raftkv.raft.types import ConfChange, ConfChangeType
from tests.unit.fsm.support import Log, state_apart_from_index


def test_an_empty_entry_changes_nothing_but_the_applied_index() -> None:
    log = Log()
    log.ok(Put(b"k", b"v"))
    state = state_apart_from_index(log.machine)
    outcome = log.apply(b"")
    assert outcome.result == {"revision": 2}
    assert outcome.events == () and outcome.ok
    assert log.machine.applied_index == 2
    assert state_apart_from_index(log.machine) == state


def test_entries_must_be_applied_in_increasing_index_order() -> None:
    machine = StateMachine()
    machine.apply(5, 1, b"")
    with pytest.raises(ValueError, match="not after applied index 5"):
        machine.apply(5, 1, b"")
    with pytest.raises(ValueError, match="not after applied index 5"):
        machine.apply_conf_change(3, ConfChange(ConfChangeType.REMOVE, 1))
    machine.apply(9, 2, b"")  # gaps are the runtime's business (conf changes go elsewhere)
    assert machine.applied_index == 9


def _raw(*items: object) -> bytes:
    return msgpack.packb(list(items), use_bin_type=True)


MALFORMED = {
    "not msgpack": b"\xc1",
    "trailing bytes": _raw(1, 1, None, b"k", b"v") + b"\x00",
    "a map": msgpack.packb({"op": "put"}),
    "a bare int": msgpack.packb(7),
    "too short": _raw(1, 1),
    "format version 2": _raw(2, 1, None, b"k", b"v"),
    "version as bool": _raw(True, 1, None, b"k", b"v"),
    "unknown op": _raw(1, 99, None, b"k"),
    "op as string": _raw(1, "put", None, b"k", b"v"),
    "op as list": _raw(1, [1], None, b"k", b"v"),
    "put without value": _raw(1, 1, None, b"k"),
    "put with too many args": _raw(1, 1, None, b"k", b"v", 0, False, 1),
    "key as str": _raw(1, 1, None, "k", b"v"),
    "empty key": _raw(1, 1, None, b"", b"v"),
    "lease as bool": _raw(1, 1, None, b"k", b"v", True),
    "lease negative": _raw(1, 1, None, b"k", b"v", -5),
    "lease huge": _raw(1, 1, None, b"k", b"v", 2**64 - 1),
    "range_end before key": _raw(1, 3, None, b"m", b"a"),
    "session not a list": _raw(1, 1, "c1", b"k", b"v"),
    "session empty client": _raw(1, 1, ["", 1], b"k", b"v"),
    "session seq str": _raw(1, 1, ["c", "1"], b"k", b"v"),
    "txn with a bad compare": _raw(1, 4, None, [[0, 9, b"k", b"v"]], [], []),
    "txn with a lease op": _raw(1, 4, None, [], [[5, 10]], []),
    "txn with a nested bad put": _raw(1, 4, None, [], [[1, b"k"]], []),
    "txn not lists": _raw(1, 4, None, {}, [], []),
    "invalid utf-8 string": b"\x94\x01\x08\xc0\xa2\xff\xfe",
    "checkpoint path traversal": _raw(1, 10, None, "../../etc"),
    "lease_expire empty": _raw(1, 7, None, []),
    "ext type": b"\x94\x01\x01\xc0\xd4\x05\x00",
    "deeply nested": b"\x91" * 100_000,
}


@pytest.mark.parametrize("data", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_data_gives_an_error_result_and_changes_nothing(data: bytes) -> None:
    log = Log()
    log.ok(LeaseGrant(10, 5))
    log.ok(Put(b"k", b"v", lease=5))
    state = state_apart_from_index(log.machine)
    assert log.error(data) == "invalid_command"
    assert state_apart_from_index(log.machine) == state


def test_every_member_answers_a_malformed_entry_the_same() -> None:
    results = []
    for _ in range(2):
        log = Log()
        results.append([log.apply(data).result for data in MALFORMED.values()])
    assert results[0] == results[1]


def test_a_checkpoint_entry_asks_the_runtime_for_a_checkpoint() -> None:
    log = Log()
    log.ok(Put(b"k", b"v"))
    outcome = log.apply(Checkpoint("2024-05-01T00.00.00Z"))
    assert outcome.checkpoint == "2024-05-01T00.00.00Z"
    assert outcome.result == {"revision": 2, "checkpoint": "2024-05-01T00.00.00Z", "index": 2}
    assert log.apply(Put(b"k", b"w")).checkpoint is None


@pytest.mark.parametrize("bad_id", ["", ".hidden", "a/b", "../x", "a b", "x" * 129, 5])
def test_checkpoint_ids_must_be_safe_directory_names(bad_id: object) -> None:
    with pytest.raises(InvalidCommand, match="checkpoint id"):
        Checkpoint(bad_id)  # type: ignore[arg-type]


def _context(**fields: str) -> bytes:
    return json.dumps(fields).encode()


def test_conf_changes_maintain_the_member_directory() -> None:
    machine = StateMachine()
    ctx = _context(name="demo-1", peer_url="demo-1.p:7380", client_url="http://demo-1:7379")
    added = machine.apply_conf_change(1, ConfChange(ConfChangeType.ADD_LEARNER, 42, ctx))
    assert added.result == {"revision": 1, "member": 42, "change": "add_learner", "role": "learner"}
    assert machine.members == {
        42: {
            "name": "demo-1",
            "peer_url": "demo-1.p:7380",
            "client_url": "http://demo-1:7379",
            "role": "learner",
        }
    }
    machine.apply_conf_change(2, ConfChange(ConfChangeType.PROMOTE, 42))  # no context
    assert machine.members[42]["role"] == "voter"
    assert machine.members[42]["name"] == "demo-1"
    machine.apply_conf_change(3, ConfChange(ConfChangeType.ADD_VOTER, 7, _context(name="demo-0")))
    assert list(machine.members) == [7, 42]
    removed = machine.apply_conf_change(4, ConfChange(ConfChangeType.REMOVE, 42))
    assert removed.result == {"revision": 1, "member": 42, "change": "remove"}
    assert list(machine.members) == [7]
    assert machine.applied_index == 4


@pytest.mark.parametrize("context", [b"not json", b"[1, 2]", b'{"name": 5}', b"\xff\xfe"])
def test_an_odd_conf_change_context_still_records_the_member(context: bytes) -> None:
    machine = StateMachine()
    machine.apply_conf_change(1, ConfChange(ConfChangeType.ADD_VOTER, 3, context))
    assert machine.members == {3: {"name": "", "peer_url": "", "client_url": "", "role": "voter"}}


def test_members_returned_are_a_copy() -> None:
    machine = StateMachine()
    machine.apply_conf_change(1, ConfChange(ConfChangeType.ADD_VOTER, 3, _context(name="a")))
    machine.members[3]["name"] = "changed"
    assert machine.members[3]["name"] == "a"


def test_stats_count_what_the_metrics_need() -> None:
    log = Log()
    log.ok(LeaseGrant(10, 1))
    log.ok(LeaseGrant(10, 2))
    log.ok(Put(b"a", b""), Session("c", 1))
    log.ok(Put(b"b", b"", lease=1))
    log.ok(LockAcquire("x", 1))
    log.ok(LockAcquire("x", 2))
    stats = log.machine.stats()
    assert stats.pop("size_bytes") == log.machine.size_bytes  # tests/unit/fsm/test_limits.py
    assert stats == {
        "keys": 2,
        "leases": 2,
        "locks_held": 1,
        "lock_waiters": 1,
        "sessions": 1,
        "members": 0,
        "revision": 5,  # two puts, an acquisition and a queued waiter
        "applied_index": 6,
    }


def test_results_and_events_convert_to_json() -> None:
    log = Log()
    log.ok(Put(b"\xff\x00", b"bin"))
    outcome = log.apply(Range(b"\xff\x00"))
    text = json.dumps(jsonable(outcome.result))
    assert json.loads(text)["kvs"][0]["key"] == base64.b64encode(b"\xff\x00").decode()
    event = log.apply(Put(b"k", b"v")).events[0]
    assert jsonable(event) == ["put", "aw==", "dg==", 3, 3, 1, 0]
