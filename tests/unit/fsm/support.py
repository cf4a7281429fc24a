"""A tiny log driver for state machine tests: consecutive indexes, replayable."""

from __future__ import annotations

from typing import Any

import msgpack

from raftkv.fsm import ApplyResult, Session, StateMachine, encode
from raftkv.fsm.commands import Command


class Log:
    """Applies commands to a machine at consecutive indexes and keeps the entry
    data, so the same history can be replayed into other machines."""

    def __init__(self, machine: StateMachine | None = None) -> None:
        self.machine = machine if machine is not None else StateMachine()
        self.entries: list[bytes] = []

    def apply(self, command: Command | bytes, session: Session | None = None) -> ApplyResult:
        data = command if isinstance(command, bytes) else encode(command, session)
        self.entries.append(data)
        return self.machine.apply(self.machine.applied_index + 1, 1, data)

    def ok(self, command: Command, session: Session | None = None) -> dict[str, Any]:
        """Apply and return the result, failing the test on an error result."""
        result = self.apply(command, session).result
        assert "error" not in result, result
        return result

    def error(self, command: Command | bytes, session: Session | None = None) -> str:
        """Apply and return the error code, failing the test if there is none."""
        result = self.apply(command, session).result
        assert "error" in result, result
        assert result["message"], result
        return str(result["error"])


def replay(entries: list[bytes], machine: StateMachine | None = None) -> StateMachine:
    machine = machine if machine is not None else StateMachine()
    for data in entries:
        machine.apply(machine.applied_index + 1, 1, data)
    return machine


def kv_of(machine: StateMachine, key: bytes) -> tuple[bytes, int, int, int, int] | None:
    """(value, create_revision, mod_revision, version, lease) of key, or None."""
    kv = machine.get(key)
    if kv is None:
        return None
    return (kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease)


def state_apart_from_index(machine: StateMachine) -> list[Any]:
    """The machine's whole snapshot content except `applied_index`: equal
    before and after an entry that must change nothing else."""
    state = msgpack.unpackb(machine.snapshot_bytes(), raw=False)
    del state[2]  # applied_index (see the snapshot layout in raftkv.fsm.snapshot)
    return list(state)
