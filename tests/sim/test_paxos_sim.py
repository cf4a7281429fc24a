"""The Multi-Paxos engine in the deterministic simulator: many seeds with every
invariant checked after every event, and deliberately broken cores caught.

`make sim-paxos SEEDS=20000` runs the long sweep; this runs what `make test`
can afford.
"""

from __future__ import annotations

import pytest

from raftkv.paxos import Paxos
from tests.sim.paxos_broken import VARIANTS
from tests.sim.paxos_cluster import Result, run_seed
from tests.sim.paxos_invariants import PaxosChecker

SEEDS = 400
STEPS = 100  # ticks of faults per seed (the long sweep uses more)
SEED_BOUND = 300  # every broken variant is caught within this many seeds


def nodes_for(seed: int) -> int:
    return 3 if seed % 2 == 0 else 5


def describe(r: Result) -> str:
    return f"seed {r.seed} ({r.nodes} nodes): {r.invariant}: {r.detail}\n" + "\n".join(
        r.trace[-30:]
    )


def test_every_seed_keeps_every_invariant() -> None:
    failures = []
    totals: dict[str, int] = {}
    for seed in range(SEEDS):
        r = run_seed(seed, nodes_for(seed), STEPS)
        if not r.ok:
            failures.append(r)
        for k, v in r.stats.items():
            totals[k] = totals.get(k, 0) + v
    assert not failures, f"{len(failures)} of {SEEDS} seeds failed:\n" + "\n\n".join(
        describe(r) for r in failures[:2]
    )
    # A sweep that passes because nothing happened proves nothing.
    for key in (
        "acked_writes",
        "reads_checked",
        "crashes",
        "crashes_in_ready",
        "elections",
        "competing",
        "transfers",
        "snapshots_installed",
        "added",
        "promoted",
        "removed",
        "hard_states_deferred",
        "failed_writes",
    ):
        assert totals[key] > 0, f"no {key} in {SEEDS} seeds: {totals}"


def _first_failure(factory: type[Paxos]) -> Result:
    for seed in range(SEED_BOUND):
        r = run_seed(seed, nodes_for(seed), 300, factory)
        if not r.ok:
            return r
    pytest.fail(f"{factory.__name__} ({factory.__doc__}) not caught in {SEED_BOUND} seeds")


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_broken_core_is_caught(variant: str) -> None:
    r = _first_failure(VARIANTS[variant])
    assert r.invariant and r.detail and r.trace
    healthy = run_seed(r.seed, r.nodes, 300)
    assert healthy.ok, f"seed {r.seed} also fails with the correct core: {describe(healthy)}"


def test_a_forgotten_promise_loses_a_chosen_value_without_the_durability_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """'promise persisted before reply' catches it at once; with that check off, the
    crashes must turn the forgotten promise into a second value chosen (or a chosen
    value changing) for the same slot."""
    monkeypatch.setattr(PaxosChecker, "on_promise_sent", lambda *args: None)
    r = _first_failure(VARIANTS["forgets_promise"])
    assert "persisted" not in r.invariant, describe(r)


def test_a_core_assertion_is_a_failed_seed_not_a_crash_of_the_sweep() -> None:
    """Seed 42 drives the phase-1-without-quorum core into its own assertion (proposing
    below the chosen prefix); the run reports that seed with its trace."""
    result = run_seed(42, 3, 300, VARIANTS["phase1_without_quorum"])
    assert not result.ok and result.invariant == "core assertion", result.invariant
    assert "AssertionError" in result.detail and result.trace


def test_a_run_replays_exactly() -> None:
    a, b = run_seed(7, 3, 120), run_seed(7, 3, 120)
    assert a.ok and a.stats == b.stats and a.stats["acked_writes"] > 0


def test_a_leader_that_learns_its_own_removal_in_phase_one_proposes_nothing() -> None:
    """Seed 186 (3 nodes, 300 steps): a removed node that never learnt of its
    removal won phase 1, learnt the removal from a promise's chosen values and
    stepped down in the middle of becoming leader, then went on proposing from
    slot 1 (its leader state was reset): 'chosen value changed'."""
    r = run_seed(186, 3, 300)
    assert r.ok, describe(r)


def test_a_leader_that_learns_its_removal_from_a_snapshot_steps_down() -> None:
    """Seed 9621 (5 nodes, 150 steps; found by the 20,000-seed sweep): a leader
    catching up by snapshot took the snapshot's membership, which no longer named
    it, and kept leading: it could propose nothing, and its heartbeats kept the
    others from electing (liveness)."""
    r = run_seed(9621, 5, 150)
    assert r.ok, describe(r)
