"""The goals of issue 15, checked against the figures of one `make bench` run.

Pure: it takes the measured figures and returns one row per goal (pass, fail, or
not measured), printed as the closing table of bench/run.py. The baseline etcd
is its native gRPC client when that ran, else its JSON gateway.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class Measured(Protocol):
    system: str
    op: str
    connections: int
    ops_per_sec: float
    p99_ms: float


@dataclass(frozen=True)
class Kill:
    failover_s: float  # kill -> first ack of a write started after it
    outage_s: float  # longest time with no successful operation after the kill


@dataclass(frozen=True)
class Stability:
    leader_changes: float
    seconds: float


@dataclass(frozen=True)
class Goal:
    name: str
    passed: bool | None  # None: not measured in this run
    figures: str


GOAL_CONNECTIONS = (16, 64, 256)
FULL_STABLE_SECONDS = 300


def _etcd(by: dict[tuple[str, str, int], Measured], op: str, c: int) -> Measured | None:
    return by.get(("etcd-grpc", op, c)) or by.get(("etcd", op, c))


def evaluate(
    runs: Sequence[Measured],
    kills: dict[str, list[Kill]],
    stability: dict[str, Stability],
    system: str = "raftkv",
) -> list[Goal]:
    """The goals for `system` (raftkv, or a baseline build) against etcd's figures."""
    by = {(r.system, r.op, r.connections): r for r in runs}
    goals = []

    mine = kills.get(system, [])
    if mine:
        worst = max(k.outage_s for k in mine)
        goals.append(
            Goal(
                "longest time with no successful operation after a leader kill <= 1.0 s",
                worst <= 1.0,
                f"max {worst:.2f} s over {len(mine)} kills",
            )
        )
    else:
        goals.append(
            Goal(
                "longest time with no successful operation after a leader kill <= 1.0 s",
                None,
                "no kills measured",
            )
        )

    # etcd's figures with each client measured (JSON gateway, native clientv3): below
    # every one of them.
    theirs = [(name, kills[name]) for name in ("etcd", "etcd-grpc") if kills.get(name)]
    if mine:
        med = statistics.median(k.failover_s for k in mine)
        top = max(k.failover_s for k in mine)
        passed = med <= 0.5 and top <= 1.0
        figures = f"median {med:.2f} s, max {top:.2f} s"
        for name, their in theirs:
            e_med = statistics.median(k.failover_s for k in their)
            e_top = max(k.failover_s for k in their)
            passed = passed and med < e_med and top < e_top
            figures += f" ({name} median {e_med:.2f} s, max {e_top:.2f} s)"
        if not theirs:
            figures += " (etcd not measured)"
            passed = False
        goals.append(Goal("failover median <= 0.5 s, max <= 1.0 s, below etcd's", passed, figures))
    else:
        goals.append(
            Goal("failover median <= 0.5 s, max <= 1.0 s, below etcd's", None, "no kills measured")
        )

    goals.append(
        _compare(by, system, "put", "write p99 <= etcd's and ops >= 1.5x etcd's at 16/64/256", 1.5)
    )
    goals.append(
        _compare(
            by, system, "get", "linearizable reads >= 1.0x etcd's, p99 <= etcd's at 16/64/256", 1.0
        )
    )

    st = stability.get(system)
    name = f"0 leader changes in {FULL_STABLE_SECONDS // 60} minutes of saturated writes"
    if st is None:
        goals.append(Goal(name, None, "not measured"))
    else:
        short = (
            ""
            if st.seconds >= FULL_STABLE_SECONDS
            else f" (a shorter run: {st.seconds:.0f} s, not the goal's {FULL_STABLE_SECONDS} s)"
        )
        goals.append(
            Goal(
                name,
                st.leader_changes == 0 and not short,
                f"{st.leader_changes:.0f} in {st.seconds:.0f} s{short}",
            )
        )
    return goals


def _compare(
    by: dict[tuple[str, str, int], Measured], system: str, op: str, name: str, ops_ratio: float
) -> Goal:
    figures, passed, measured = [], True, False
    for c in GOAL_CONNECTIONS:
        a, e = by.get((system, op, c)), _etcd(by, op, c)
        if a is None or e is None:
            continue
        measured = True
        ratio = a.ops_per_sec / e.ops_per_sec
        ok = ratio >= ops_ratio and a.p99_ms <= e.p99_ms
        passed = passed and ok
        figures.append(
            f"c={c}: {ratio:.2f}x, p99 {a.p99_ms:.1f}/{e.p99_ms:.1f} ms{'' if ok else ' (miss)'}"
        )
    if not measured:
        return Goal(name, None, "not measured")
    return Goal(name, passed, "; ".join(figures))


def goals_table(goals: list[Goal]) -> str:
    width = max(len(g.name) for g in goals)
    lines = [f"{'goal':<{width}}  {'':4}  figures", "-" * (width + 40)]
    for g in goals:
        verdict = "n/a" if g.passed is None else ("PASS" if g.passed else "FAIL")
        lines.append(f"{g.name:<{width}}  {verdict:<4}  {g.figures}")
    return "\n".join(lines)
