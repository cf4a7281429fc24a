"""bench/goals.py (issue 15's goals against one run's figures) and the pure parts of
bench/failover.py (the outage window)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def goals() -> ModuleType:
    return _load("goals")


@pytest.fixture(scope="module")
def failover() -> ModuleType:
    return _load("failover")


def _runs(raftkv_p99: float) -> list[object]:
    run = _load_run()
    out = []
    for c in (16, 64, 256):
        out += [
            run.Run("raftkv", "put", c, 6000.0, 2.0, raftkv_p99, 1, 0),
            run.Run("etcd-grpc", "put", c, 3000.0, 3.0, 20.0, 1, 0),
            run.Run("etcd", "put", c, 2000.0, 3.0, 5.0, 1, 0),  # gRPC is the anchor
            run.Run("raftkv", "get", c, 9000.0, 1.0, 4.0, 1, 0),
            run.Run("etcd-grpc", "get", c, 8000.0, 1.0, 5.0, 1, 0),
        ]
    return out


def _load_run() -> ModuleType:
    return sys.modules.get("bench_run") or _load("run")


def test_every_goal_passes_on_good_figures(goals: ModuleType) -> None:
    kills = {"raftkv": [goals.Kill(0.2, 0.3)] * 5, "etcd": [goals.Kill(1.1, 1.2)] * 5}
    stability = {"raftkv": goals.Stability(0, 300)}
    rows = goals.evaluate(_runs(10.0), kills, stability)
    assert [g.passed for g in rows] == [True] * 5, goals.goals_table(rows)


def test_each_missed_goal_fails(goals: ModuleType) -> None:
    kills = {
        "raftkv": [goals.Kill(0.2, 0.3)] * 4 + [goals.Kill(1.5, 1.6)],
        "etcd": [goals.Kill(1.1, 1.2)] * 5,
    }
    stability = {"raftkv": goals.Stability(2, 300)}
    rows = goals.evaluate(_runs(25.0), kills, stability)  # p99 above etcd's 20
    assert [g.passed for g in rows] == [False, False, False, True, False]
    table = goals.goals_table(rows)
    assert "FAIL" in table and "c=16: 2.00x, p99 25.0/20.0 ms (miss)" in table


def test_failover_must_beat_etcd_in_the_same_run(goals: ModuleType) -> None:
    kills = {"raftkv": [goals.Kill(0.4, 0.5)] * 5, "etcd": [goals.Kill(0.3, 1.0)] * 5}
    rows = goals.evaluate([], kills, {})
    assert rows[1].passed is False and "etcd median 0.30 s" in rows[1].figures


def test_failover_must_beat_etcd_through_either_client(goals: ModuleType) -> None:
    """Below the JSON gateway's figures is not enough when clientv3 was faster."""
    kills = {
        "raftkv": [goals.Kill(0.4, 0.5)] * 5,
        "etcd": [goals.Kill(1.1, 1.2)] * 5,
        "etcd-grpc": [goals.Kill(0.35, 1.0)] * 5,
    }
    rows = goals.evaluate([], kills, {})
    assert rows[1].passed is False and "etcd-grpc median 0.35 s" in rows[1].figures
    kills["etcd-grpc"] = [goals.Kill(0.9, 1.0)] * 5
    rows = goals.evaluate([], kills, {})
    assert rows[1].passed is True and "etcd median 1.10 s" in rows[1].figures


def test_unmeasured_goals_and_short_stability_runs_do_not_pass(goals: ModuleType) -> None:
    rows = goals.evaluate([], {}, {"raftkv": goals.Stability(0, 60)})
    assert [g.passed for g in rows[:4]] == [None] * 4
    assert rows[4].passed is False and "shorter run: 60 s" in rows[4].figures
    assert "n/a" in goals.goals_table(rows)


def test_outage_is_the_longest_gap_without_a_success(failover: ModuleType) -> None:
    done = [(0.0, 9.9, "put"), (10.0, 10.2, "get"), (10.1, 11.0, "put"), (11.0, 11.1, "put")]
    # killed at 10.0: successes at 10.2, 11.0, 11.1; the window ends at 12.0
    assert failover.outage(done, 10.0, 12.0) == pytest.approx(0.9)
    assert failover.outage(done, 10.0, 11.05) == pytest.approx(0.8)
    assert failover.outage([], 10.0, 11.0) == pytest.approx(1.0)
    assert failover.first_write_after(done, 10.0) == 11.0  # the get, and writes before 10, not
