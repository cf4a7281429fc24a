"""Histories made from a real sequential execution of registers, for checker tests.

Every operation is applied, in order, to a plain dict of registers at its own
linearization point; its call and return are then spread randomly around that
point so operations overlap in real time. The result is linearizable by
construction (the points are a witness), whatever the overlaps.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from tests.chaos.history import EventType, Operation


@dataclass
class GenOptions:
    ops: int = 200
    keys: int = 2
    spread_ns: int = 5_000  # how far a call/return may lie from the linearization point
    gap_ns: int = 1_000  # between consecutive linearization points
    info_rate: float = 0.05  # writes/cas that end indeterminate
    fail_rate: float = 0.03  # extra operations that never happened (status fail)
    cas_rate: float = 0.25
    write_rate: float = 0.25


def sequential_history(rng: random.Random, opts: GenOptions | None = None) -> list[Operation]:
    o = opts or GenOptions()
    registers: dict[str, int | None] = {}
    written: dict[str, list[int]] = {}
    next_value = 1
    ops: list[Operation] = []
    point = 0
    for _ in range(o.ops):
        point += rng.randint(1, o.gap_ns)
        key = f"k{rng.randrange(o.keys)}"
        state = registers.get(key)
        call = max(0, point - rng.randint(0, o.spread_ns))
        ret: int | None = point + rng.randint(0, o.spread_ns)
        roll = rng.random()
        status: EventType = "ok"
        output: object = None
        inp: Any
        if roll < o.write_rate:
            f, inp = "write", next_value
            next_value += 1
            if rng.random() < o.info_rate / 2:
                # Timed out and never applied: indeterminate, and it must not matter.
                status, ret = "info", None
            else:
                registers[key] = inp
                written.setdefault(key, []).append(inp)
        elif roll < o.write_rate + o.cas_rate:
            seen = written.get(key, [])
            expected = (
                state if (seen and rng.random() < 0.6) else (rng.choice(seen) if seen else None)
            )
            f, inp = "cas", [expected, next_value]
            next_value += 1
            if state == expected:
                registers[key] = inp[1]
                written.setdefault(key, []).append(inp[1])
                output = {"succeeded": True}
            else:
                output = {"succeeded": False, "current": state}
        else:
            f, inp, output = "read", None, state
        if f != "read" and status == "ok" and rng.random() < o.info_rate:
            status, ret, output = "info", None, None
        ops.append(Operation(len(ops), len(ops), f, key, inp, output, call, ret, status))
        if rng.random() < o.fail_rate:
            # An operation that certainly did not happen: its value must never matter.
            fcall = point + rng.randint(0, o.spread_ns)
            ops.append(
                Operation(
                    len(ops),
                    len(ops),
                    "write",
                    key,
                    10**9 + len(ops),
                    None,
                    fcall,
                    fcall + rng.randint(1, max(1, o.spread_ns)),
                    "fail",
                )
            )
    ops.sort(key=lambda op: op.call)
    for i, op in enumerate(ops):
        op.id = i
        op.process = i
    return ops
