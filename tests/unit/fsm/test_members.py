"""The membership directory's tombstones: every removed id is remembered, in snapshots too."""

from __future__ import annotations

import json

import pytest

from raftkv.fsm import StateMachine
from raftkv.fsm.members import MemberDirectory
from raftkv.raft.types import ConfChange, ConfChangeType


def _context(name: str) -> bytes:
    return json.dumps({"name": name, "peer_url": f"{name}:7380", "client_url": ""}).encode()


def _history(machine: StateMachine) -> None:
    changes = [
        ConfChange(ConfChangeType.ADD_VOTER, 30, _context("c")),
        ConfChange(ConfChangeType.ADD_VOTER, 10, _context("a")),
        ConfChange(ConfChangeType.ADD_LEARNER, 20, _context("b")),
        ConfChange(ConfChangeType.REMOVE, 10),
        ConfChange(ConfChangeType.ADD_LEARNER, 5, _context("a")),  # a's next incarnation
    ]
    for index, cc in enumerate(changes, start=1):
        machine.apply_conf_change(index, cc)


def test_a_removed_id_leaves_a_tombstone_with_its_name() -> None:
    machine = StateMachine()
    _history(machine)
    assert machine.removed_members == {10: "a"}
    assert sorted(machine.members) == [5, 20, 30]
    assert machine.members[5]["name"] == "a"
    assert machine.stats()["members"] == 3  # tombstones are not members


def test_tombstones_survive_a_snapshot_byte_for_byte() -> None:
    machine = StateMachine()
    _history(machine)
    data = machine.snapshot_bytes()
    restored = StateMachine()
    restored.restore(data)
    assert restored.removed_members == {10: "a"}
    assert restored.members == machine.members
    assert restored.snapshot_bytes() == data


def test_dump_rows_are_sorted_by_id_with_tombstones_among_members() -> None:
    directory = MemberDirectory()
    for cc in (
        ConfChange(ConfChangeType.ADD_VOTER, 9, _context("x")),
        ConfChange(ConfChangeType.ADD_VOTER, 3, _context("y")),
        ConfChange(ConfChangeType.REMOVE, 9),
    ):
        directory.apply(cc)
    directory.apply(ConfChange(ConfChangeType.ADD_VOTER, 12, _context("z")))
    assert [row[0] for row in directory.dump()] == [3, 9, 12]
    assert directory.dump()[1] == (9, "x", "", "", "removed")
    assert MemberDirectory.load(directory.dump()).dump() == directory.dump()


def test_an_add_in_the_log_wins_over_a_tombstone() -> None:
    # The runtime refuses to propose it; if the log has it anyway, membership follows the log.
    directory = MemberDirectory()
    directory.apply(ConfChange(ConfChangeType.ADD_VOTER, 4, _context("d")))
    directory.apply(ConfChange(ConfChangeType.REMOVE, 4))
    directory.apply(ConfChange(ConfChangeType.ADD_LEARNER, 4, _context("d")))
    assert directory.removed() == {}
    assert directory.as_dict()[4]["role"] == "learner"


@pytest.mark.parametrize(
    "rows",
    [
        [(4, "d", "", "", "removed"), (4, "d", "", "", "voter")],
        [(4, "d", "", "", "voter"), (4, "d", "", "", "removed")],
        [(4, "d", "", "", "gone")],
    ],
)
def test_a_snapshot_naming_an_id_twice_or_an_odd_role_is_refused(
    rows: list[tuple[int, str, str, str, str]],
) -> None:
    with pytest.raises(ValueError):
        MemberDirectory.load(rows)
