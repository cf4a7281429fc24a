"""The set workload's checker: no acknowledged add is lost, nothing appears from nowhere.

Events: `add` (input: the element; ok / fail / info) and `read` (the final read
after the faults healed; output: the list of elements). Every acknowledged add
must be in the final read; every element in it must have been added by an
operation that was not a definite failure. Indeterminate adds may go either way
(counted as `recovered` when present).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.chaos.history import Operation


@dataclass
class SetResult:
    verdict: str  # ok | violation | unknown
    acknowledged: int = 0
    indeterminate: int = 0
    failed: int = 0
    recovered: int = 0  # indeterminate adds present in the final read
    lost: list[Any] = field(default_factory=list)  # acknowledged, absent
    unexpected: list[Any] = field(default_factory=list)  # present, never (successfully) added
    reason: str = ""

    def report(self) -> str:
        head = (
            f"set: {self.verdict} ({self.acknowledged} acknowledged adds, "
            f"{self.indeterminate} indeterminate of which {self.recovered} present, "
            f"{self.failed} failed)"
        )
        if self.reason:
            head += f": {self.reason}"
        if self.lost:
            head += f"\n  LOST acknowledged adds: {sorted(self.lost)[:50]}"
        if self.unexpected:
            head += f"\n  UNEXPECTED elements: {sorted(self.unexpected)[:50]}"
        return head


def check_set(ops: Sequence[Operation]) -> SetResult:
    adds = [op for op in ops if op.f == "add"]
    reads = [op for op in ops if op.f == "read" and op.status == "ok"]
    result = SetResult("ok")
    result.acknowledged = sum(op.status == "ok" for op in adds)
    result.indeterminate = sum(op.status == "info" for op in adds)
    result.failed = sum(op.status == "fail" for op in adds)
    if not reads:
        result.verdict = "unknown"
        result.reason = "no final read succeeded"
        return result
    final = reads[-1]
    present = set(final.output)
    attempted = {op.input for op in adds if op.status != "fail"}
    result.lost = [
        op.input
        for op in adds
        if op.status == "ok"
        and op.input not in present
        and op.ret is not None
        and final.call > op.ret
    ]
    result.unexpected = [e for e in present if e not in attempted]
    result.recovered = sum(op.status == "info" and op.input in present for op in adds)
    if result.lost or result.unexpected:
        result.verdict = "violation"
    return result
