"""The register model: one read/write/compare-and-set register per key (lin-kv).

Operations (`Operation.f`, `input` -> completion `output`):
    read   None            -> the value read (None: the key does not exist)
    write  v               -> None
    cas    [expected, new] -> {"succeeded": true} or
                              {"succeeded": false, "current": value or None}

A failed compare-and-set (409 compare_failed) is a completed operation, not a
`fail`: it happened, at one point, and saw `current` there, so it constrains
the history like a read. An indeterminate cas (`info`) either applied when the
register held `expected`, or did nothing.

`prepare` drops indeterminate writes and cas whose new value nobody ever
observed (no read returned it, no cas expected it or saw it as `current`).
Such an operation can always be linearized last, after everything, and its
removal keeps any linearization of the rest valid: any operation that would
have come after it in that window would have had to observe its value. This
keeps the search from branching on every timed-out write, the common case
under faults.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

from tests.chaos.history import Operation

READ, WRITE, CAS = "read", "write", "cas"


class RegisterModel:
    """Values are compared with ==; the initial value of every key is None."""

    def init(self) -> Hashable:
        return None

    def step(self, state: Any, op: Operation) -> tuple[bool, Any]:
        f = op.f
        if f == READ:
            return state == op.output, state
        if f == WRITE:
            return True, op.input
        if f == CAS:
            expected, new = op.input
            out = op.output
            if out is None:  # indeterminate: it applied iff the register held `expected`
                return True, new if state == expected else state
            if out["succeeded"]:
                return state == expected, new
            current = out.get("current")
            return state == current and state != expected, state
        raise ValueError(f"register model: unknown operation {f!r}")

    def partition(self, ops: Sequence[Operation]) -> dict[str, list[Operation]]:
        parts: dict[str, list[Operation]] = {}
        for op in ops:
            if op.f in (READ, WRITE, CAS):
                parts.setdefault(f"key {op.key}", []).append(op)
        return parts

    def prepare(self, ops: list[Operation]) -> list[Operation]:
        # Reads that did not complete have no effect and saw nothing: drop them.
        ops = [op for op in ops if not (op.f == READ and op.status != "ok")]
        observed: set[Any] = set()
        for op in ops:
            if op.f == READ:
                observed.add(_hashable(op.output))
            elif op.f == CAS:
                observed.add(_hashable(op.input[0]))
                if op.output is not None and not op.output["succeeded"]:
                    observed.add(_hashable(op.output.get("current")))
        return [
            op
            for op in ops
            if not (
                op.status == "info"
                and op.f in (WRITE, CAS)
                and _hashable(_written(op)) not in observed
            )
        ]

    def describe(self, state: Any) -> str:
        return "absent" if state is None else repr(state)


def _written(op: Operation) -> Any:
    return op.input if op.f == WRITE else op.input[1]


def _hashable(value: Any) -> Hashable:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value
