"""Short chaos runs against real clusters (the long ones: `make chaos`).

Each test runs the harness CLI in a child process, as `make chaos` does, and
reads the verdicts it wrote. Seeds are random unless CHAOS_SEED is set; a
failing run prints its replay command and leaves its results folder.

- mixed nemeses in the best mode available here (network namespaces when
  root), one run on each engine (Raft, Multi-Paxos), and one run in loopback
  mode (userspace link proxies, slow links);
- the harness finds bugs: a node with an unsafe option must be caught.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.run import DEFAULT_RESULTS, REPO

pytestmark = pytest.mark.chaos


def _seed() -> int:
    return int(os.environ.get("CHAOS_SEED") or random.randrange(1, 10**6))


def _chaos(
    *args: str, timeout: float
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    """Run the CLI; the verdicts of the run folders it announced, in order."""
    run = subprocess.run(
        [sys.executable, "-m", "tests.chaos.run", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    folders = [
        Path(line.rsplit(" -> ", 1)[1])
        for line in run.stdout.splitlines()
        if line.startswith("chaos run seed=") and " -> " in line
    ]
    assert all(f.parent == DEFAULT_RESULTS for f in folders), folders
    verdicts = [json.loads((f / "verdict.json").read_text()) for f in folders]
    return run, verdicts


def _explain(run: subprocess.CompletedProcess[str]) -> str:
    return f"stdout:\n{run.stdout[-6000:]}\nstderr:\n{run.stderr[-4000:]}"


@pytest.mark.parametrize("engine", ["raft", "multipaxos"])
def test_mixed_nemeses_runs_are_linearizable(engine: str) -> None:
    seed = _seed()
    run, verdicts = _chaos(
        "--runs",
        "1",
        "--time",
        "20",
        "--seed",
        str(seed),
        "--nemesis",
        "mixed",
        "--consensus",
        engine,
        timeout=280,
    )
    assert run.returncode == 0, _explain(run)
    assert [v["verdict"] for v in verdicts] == ["ok"], _explain(run)
    for verdict in verdicts:
        assert verdict["consensus"] == engine
        ops = verdict["operations"]
        assert ops.get("read:ok", 0) > 100 and ops.get("write:ok", 0) > 50, verdict
        assert sum(verdict["nemesis_counts"].values()) >= 3, verdict
        assert verdict["linearizability"]["verdict"] == "ok"


def test_loopback_mode_with_link_proxies_and_slow_links() -> None:
    seed = _seed()
    run, verdicts = _chaos(
        "--runs",
        "1",
        "--time",
        "25",
        "--seed",
        str(seed),
        "--mode",
        "loopback",
        "--nemesis",
        "partition,slow,kill,pause,transfer",
        timeout=200,
    )
    assert run.returncode == 0, _explain(run)
    assert len(verdicts) == 1 and verdicts[0]["verdict"] == "ok", _explain(run)
    assert verdicts[0]["mode"] == "loopback"
    assert verdicts[0]["operations"].get("read:ok", 0) > 100


@pytest.mark.parametrize(
    ("fault", "unsafe_flag"),
    [
        ("partition", "--unsafe-local-reads"),  # stale reads from deposed leaders/followers
    ],
)
def test_the_harness_catches_a_node_with_an_unsafe_option(fault: str, unsafe_flag: str) -> None:
    seed = _seed()
    run, verdicts = _chaos(
        "--runs",
        "1",
        "--time",
        "10",
        "--seed",
        str(seed),
        "--nemesis",
        fault,
        f"--node-arg={unsafe_flag}",
        "--expect",
        "violation",
        timeout=200,
    )
    assert run.returncode == 0, _explain(run)
    assert len(verdicts) == 1 and verdicts[0]["verdict"] == "violation", _explain(run)
    if unsafe_flag == "--unsafe-local-reads":
        lin = verdicts[0]["linearizability"]
        assert lin["verdict"] == "violation", lin
        assert any(p["stuck"] and p["prefix_tail"] for p in lin["parts"]), lin


def test_a_power_cut_without_fsync_is_refused_by_the_nodes() -> None:
    # With --unsafe-no-fsync a power cut leaves no WAL at all. The members used to
    # come back empty (and the checker found acknowledged writes gone); now each
    # refuses to start, exit code 2, because its identity.json proves it had a log
    # (docs/contracts.md, "Storage"). Never an ok run.
    seed = _seed()
    run, verdicts = _chaos(
        "--runs",
        "1",
        "--time",
        "10",
        "--seed",
        str(seed),
        "--nemesis",
        "power-loss-all",
        "--node-arg=--unsafe-no-fsync",
        timeout=200,
    )
    assert run.returncode == 1, _explain(run)
    assert len(verdicts) == 1 and verdicts[0]["verdict"] == "unhealthy", _explain(run)
    exits = verdicts[0]["node_exits"]
    assert exits and all(e.endswith("exited with 2") for e in exits), exits


def test_a_failed_run_prints_how_to_replay_it() -> None:
    # Expecting a violation from a healthy node must fail and say how to replay.
    run, verdicts = _chaos(
        "--runs",
        "1",
        "--time",
        "3",
        "--seed",
        "4242",
        "--nemesis",
        "none",
        "--workload",
        "register",
        "--expect",
        "violation",
        timeout=120,
    )
    assert run.returncode == 1, _explain(run)
    assert "replay: python -m tests.chaos.run --runs 1 --seed 4242" in run.stderr
    assert verdicts and verdicts[0]["verdict"] == "ok"
