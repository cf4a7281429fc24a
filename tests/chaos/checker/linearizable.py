"""Linearizability checking: Wing & Gong's search with Lowe's memoization.

The algorithm of Porcupine and Knossos' `wgl` checker. The history's call and
return events sit in one doubly linked list ordered by time. The search walks
it from the front: at a call, it tries to linearize that operation next (the
model must accept it from the current state); if the (set of linearized
operations, state) configuration is new, the operation's call and return are
lifted out of the list and the walk restarts from the front. Reaching a return
means that operation should already have been linearized: backtrack (undo the
last lift, move on to the next candidate). The memo of visited configurations
keeps the search from re-exploring a configuration reached by another order,
which is what makes it practical.

P-compositionality: a model may split the history into independent parts (for
a register: one per key) that are linearizable together iff each one is, and
each part is searched alone.

Indeterminate (`info`) operations get a return at +infinity: they may be
linearized at any point after their call, including after everything else,
which is the same as "never took effect" for any operation that nobody saw.

The search is bounded by a deadline: running out of time answers `unknown`,
never `ok`. A violation comes with the longest linearizable prefix found and
the operation that could not be placed after it (Porcupine's "partial
linearization").
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from tests.chaos.history import Operation

Verdict = Literal["ok", "violation", "unknown"]

_INF = float("inf")


class Model(Protocol):
    """A sequential specification. States must be hashable (they go into the memo)."""

    def init(self) -> Hashable: ...

    def step(self, state: Any, op: Operation) -> tuple[bool, Any]:
        """Can `op` happen in `state` with the output it had? -> (ok, state after)."""
        ...

    def partition(self, ops: Sequence[Operation]) -> dict[str, list[Operation]]:
        """Independent parts of the history (P-compositionality)."""
        ...

    def prepare(self, ops: list[Operation]) -> list[Operation]:
        """Drop operations that provably cannot change the verdict (may return `ops`)."""
        ...

    def describe(self, state: Any) -> str: ...


@dataclass
class PartResult:
    name: str
    verdict: Verdict
    operations: int  # after `prepare`
    dropped: int  # removed by `prepare`
    seconds: float
    configurations: int  # memo size: distinct configurations explored
    # On a violation: the longest linearizable prefix, its final state, and the
    # operation that could not be linearized after it.
    prefix: list[Operation] = field(default_factory=list)
    prefix_state: Any = None
    stuck: Operation | None = None
    reason: str = ""

    def report(self, model: Model) -> str:
        if self.verdict == "ok":
            return f"{self.name}: linearizable ({self.operations} ops, {self.seconds:.2f}s)"
        if self.verdict == "unknown":
            return (
                f"{self.name}: UNKNOWN ({self.reason}; {self.operations} ops, "
                f"{self.configurations} configurations)"
            )
        lines = [
            f"{self.name}: NOT linearizable ({self.operations} ops)",
            f"  longest linearizable prefix ({len(self.prefix)} ops), last 10:",
        ]
        for op in self.prefix[-10:]:
            lines.append(f"    {op.describe()}")
        lines.append(f"  state after it: {model.describe(self.prefix_state)}")
        if self.stuck is not None:
            lines.append(f"  cannot linearize: {self.stuck.describe()}")
        return "\n".join(lines)


@dataclass
class CheckResult:
    verdict: Verdict
    parts: list[PartResult]
    seconds: float

    @property
    def violations(self) -> list[PartResult]:
        return [p for p in self.parts if p.verdict == "violation"]

    def report(self, model: Model) -> str:
        lines = [
            f"linearizability: {self.verdict} ({len(self.parts)} parts, "
            f"{sum(p.operations for p in self.parts)} ops, {self.seconds:.2f}s)"
        ]
        lines += [p.report(model) for p in self.parts if p.verdict != "ok"]
        return "\n".join(lines)


def check(model: Model, ops: Sequence[Operation], timeout: float = 60.0) -> CheckResult:
    """Check every part; `timeout` is the budget for the whole history."""
    started = time.monotonic()
    deadline = started + timeout
    parts: list[PartResult] = []
    for name, part_ops in sorted(model.partition(ops).items()):
        parts.append(check_part(model, name, part_ops, deadline))
    verdicts = {p.verdict for p in parts}
    verdict: Verdict = (
        "violation" if "violation" in verdicts else "unknown" if "unknown" in verdicts else "ok"
    )
    return CheckResult(verdict, parts, time.monotonic() - started)


def check_part(model: Model, name: str, ops: list[Operation], deadline: float) -> PartResult:
    started = time.monotonic()
    kept = model.prepare([op for op in ops if op.status != "fail"])
    dropped = len(ops) - len(kept)
    search = _Search(model, kept)
    verdict = search.run(deadline)
    result = PartResult(
        name, verdict, len(kept), dropped, time.monotonic() - started, len(search.memo)
    )
    if verdict == "unknown":
        result.reason = "search deadline passed"
    elif verdict == "violation":
        result.prefix = [kept[i] for i in search.best_prefix]
        result.prefix_state = search.best_state
        result.stuck = kept[search.best_stuck] if search.best_stuck >= 0 else None
    return result


class _Search:
    """One part's search. Entries: 0 is the head sentinel; op i has call entry
    1 + 2i and return entry 2 + 2i (positions in the linked list come from time)."""

    def __init__(self, model: Model, ops: list[Operation]) -> None:
        self.model = model
        self.ops = ops
        n = len(ops)
        size = 2 * n + 1
        self.next = [0] * size
        self.prev = [0] * size
        order: list[tuple[float, int, int]] = []
        for i, op in enumerate(ops):
            order.append((op.call, 0, 1 + 2 * i))
            # A call and a return at the same instant count as concurrent: the call
            # sorts first, which never adds an ordering constraint that wasn't real.
            order.append((_INF if op.ret is None else op.ret, 1, 2 + 2 * i))
        order.sort()
        last = 0
        for _, _, entry in order:
            self.next[last] = entry
            self.prev[entry] = last
            last = entry
        self.next[last] = -1
        self.memo: set[tuple[int, Any]] = set()
        self.best_prefix: list[int] = []
        self.best_state: Any = None
        self.best_stuck = -1

    def _lift(self, call: int) -> None:
        nxt, prv = self.next, self.prev
        for entry in (call, call + 1):
            p, n = prv[entry], nxt[entry]
            nxt[p] = n
            if n != -1:
                prv[n] = p

    def _unlift(self, call: int) -> None:
        nxt, prv = self.next, self.prev
        for entry in (call + 1, call):
            p, n = prv[entry], nxt[entry]
            nxt[p] = entry
            if n != -1:
                prv[n] = entry

    def run(self, deadline: float) -> Verdict:
        model, ops, nxt = self.model, self.ops, self.next
        step = model.step
        memo = self.memo
        state: Any = model.init()
        linearized = 0
        stack: list[tuple[int, Any]] = []  # (call entry, state before it)
        entry = nxt[0]
        budget = 0
        while nxt[0] != -1:
            budget += 1
            if budget >= 2000:
                budget = 0
                if time.monotonic() > deadline:
                    return "unknown"
            if entry & 1:  # a call
                op_index = (entry - 1) >> 1
                ok, after = step(state, ops[op_index])
                if ok:
                    bits = linearized | (1 << op_index)
                    key = (bits, after)
                    if key not in memo:
                        memo.add(key)
                        stack.append((entry, state))
                        state, linearized = after, bits
                        self._lift(entry)
                        entry = nxt[0]
                        continue
                entry = nxt[entry]
                continue
            # A return: its operation was not linearized in time. Backtrack.
            if len(stack) >= len(self.best_prefix) and (
                len(stack) > len(self.best_prefix) or self.best_stuck < 0
            ):
                self.best_prefix = [(e - 1) >> 1 for e, _ in stack]
                self.best_state = state
                self.best_stuck = (entry - 2) >> 1
            if not stack:
                return "violation"
            call, state = stack.pop()
            linearized &= ~(1 << ((call - 1) >> 1))
            self._unlift(call)
            entry = nxt[call]
        return "ok"
