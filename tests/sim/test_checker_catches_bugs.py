"""Proof that the simulator can fail: every deliberately broken core in
tests/sim/broken.py must be reported within a bounded number of seeds, and the
seed that catches it must pass with the correct core (so it is the bug that
was caught, not noise).

If a variant stops being caught, the simulator's faults or checks have become
too weak: strengthen them, never raise the bound.
"""

from __future__ import annotations

import pytest

from raftkv.raft import Raft
from tests.sim.broken import VARIANTS
from tests.sim.broken_plans import HARMLESS_REORDERINGS, PLAN_VARIANTS
from tests.sim.cluster import run_seed
from tests.sim.invariants import Checker
from tests.sim.run import DEFAULT_STEPS, nodes_for

SEED_BOUND = 200
SIZES = [3, 5]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_broken_core_is_caught(variant: str) -> None:
    broken = VARIANTS[variant]
    for seed in range(SEED_BOUND):
        nodes = nodes_for(seed, SIZES)
        result = run_seed(seed, nodes, DEFAULT_STEPS, broken)
        if not result.ok:
            break
    else:
        pytest.fail(f"{variant} ({broken.__doc__}) was not caught in {SEED_BOUND} seeds")
    assert result.invariant and result.detail and result.trace
    healthy = run_seed(seed, nodes, DEFAULT_STEPS, Raft)
    assert healthy.ok, (
        f"seed {seed} also fails with the correct core: {healthy.invariant}: {healthy.detail}"
    )


# A wrong Ready plan may need a rarer schedule than a broken core (a snapshot and the
# entries after it in one Ready); still a few hundred seeds at most. The bound was 400
# while `applies_before_snapshot` was first caught at seed 66; batched ReadIndex shifted
# the schedules, and with the fix of sim seed 3385 (a snapshot's write committed past
# the snapshot) its first catch is seed 610 (apply order), the schedule being that rare.
PLAN_SEED_BOUND = 700


@pytest.mark.parametrize("variant", sorted(PLAN_VARIANTS))
def test_wrong_ready_plan_is_caught(variant: str) -> None:
    """Every node runs the wrong plan (the simulator executes whatever plan it is
    given, as RaftNode does); the seed that catches it passes with the real plan."""
    wrong = PLAN_VARIANTS[variant]
    for seed in range(PLAN_SEED_BOUND):
        nodes = nodes_for(seed, SIZES)
        result = run_seed(seed, nodes, DEFAULT_STEPS, planner=wrong)
        if not result.ok:
            break
    else:
        pytest.fail(f"{variant} ({wrong.__doc__}) was not caught in {PLAN_SEED_BOUND} seeds")
    assert result.invariant and result.detail and result.trace
    healthy = run_seed(seed, nodes, DEFAULT_STEPS)
    assert healthy.ok, (
        f"seed {seed} also fails with the real plan: {healthy.invariant}: {healthy.detail}"
    )


@pytest.mark.parametrize("variant", ["follower_acks_before_fsync", "defers_any_hard_state"])
def test_wrong_plan_consequences_are_caught_without_the_durability_checks(
    variant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Caught at once by 'persisted before reply'; with those checks off, the faults
    (crash right after acking or voting, the leader cut off as it commits) must turn
    the early reply into lost committed entries or two leaders."""
    monkeypatch.setattr(Checker, "on_vote_sent", lambda *args: None)
    monkeypatch.setattr(Checker, "on_ack_sent", lambda *args: None)
    for seed in range(SEED_BOUND):
        result = run_seed(
            seed, nodes_for(seed, SIZES), DEFAULT_STEPS, planner=PLAN_VARIANTS[variant]
        )
        if not result.ok:
            assert "persisted" not in result.invariant
            return
    pytest.fail(f"{variant} not caught in {SEED_BOUND} seeds without the durability checks")


@pytest.mark.parametrize("variant", sorted(HARMLESS_REORDERINGS))
def test_reorderings_that_are_safe_in_this_loop_stay_unflagged(variant: str) -> None:
    """Not bugs here (tests/sim/broken_plans.py says why): the simulator must not
    report them either, or its checks would be stricter than Raft."""
    for seed in range(40):
        result = run_seed(
            seed, nodes_for(seed, SIZES), DEFAULT_STEPS, planner=HARMLESS_REORDERINGS[variant]
        )
        assert result.ok, (seed, result.invariant, result.detail)


def test_every_variant_overrides_exactly_one_method() -> None:
    for name, cls in VARIANTS.items():
        assert cls.__bases__ == (Raft,), name
        overridden = [k for k, v in vars(cls).items() if callable(v)]
        assert len(overridden) == 1, f"{name} overrides {overridden}"


@pytest.mark.parametrize("variant", ["forgets_vote", "truncates_on_append"])
def test_consequences_are_caught_without_the_durability_checks(
    variant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """These two are caught at once by 'persisted before reply'; switched off, the
    faults (crash right after voting, reordered appends) must still turn the bug
    into a visible safety or liveness failure."""
    monkeypatch.setattr(Checker, "on_vote_sent", lambda *args: None)
    monkeypatch.setattr(Checker, "on_ack_sent", lambda *args: None)
    for seed in range(SEED_BOUND):
        result = run_seed(seed, nodes_for(seed, SIZES), DEFAULT_STEPS, VARIANTS[variant])
        if not result.ok:
            assert "persisted" not in result.invariant
            return
    pytest.fail(f"{variant} not caught in {SEED_BOUND} seeds without the durability checks")


def test_reusing_a_removed_id_with_an_empty_disk_is_unsafe() -> None:
    """Not a core bug but a rule for the operator and runtime: a node removed and later
    added back under the SAME id with an EMPTY disk (its PVC deleted) has forgotten its
    votes and entries, and a stale member still counting it as a voter can win an
    election or commit with it. raftkv ids derive from pod names, so the same id comes
    back after scale-down and scale-up; this pins down that the simulator sees the
    danger (the default runs re-add nodes with their disk)."""
    for seed in range(SEED_BOUND):
        result = run_seed(seed, nodes_for(seed, SIZES), DEFAULT_STEPS, Raft, wipe_readd=True)
        if not result.ok:
            assert result.invariant in (
                "election safety",
                "leader completeness",
                "committed entry changed",
                "state machine safety",
            ), result.invariant
            return
    pytest.fail(f"re-adding wiped nodes under their old id went unnoticed in {SEED_BOUND} seeds")


def test_a_wiped_node_rejoining_under_a_fresh_id_is_safe() -> None:
    """The fix for the danger above (docs/contracts.md "Node identity"): a node that joins
    with an empty disk draws a fresh id, so nothing can count the old incarnation's votes
    or entries for it. The first seed that catches same-id reuse passes with fresh ids (so
    do 61 and 159, the two of the first 200: `python -m tests.sim.run --seed 61 --wipe-readd
    [--fresh-ids]`), and so does a sweep that re-adds wiped nodes."""
    for seed in range(SEED_BOUND):
        nodes = nodes_for(seed, SIZES)
        if not run_seed(seed, nodes, DEFAULT_STEPS, Raft, wipe_readd=True).ok:
            fresh = run_seed(seed, nodes, DEFAULT_STEPS, Raft, wipe_readd=True, fresh_ids=True)
            assert fresh.ok, (seed, fresh.invariant, fresh.detail)
            assert fresh.stats["readded"] > 0
            break
    else:
        pytest.fail("no seed caught same-id reuse: the comparison proves nothing")
    readded = 0
    for seed in range(60):
        result = run_seed(
            seed, nodes_for(seed, SIZES), DEFAULT_STEPS, Raft, wipe_readd=True, fresh_ids=True
        )
        assert result.ok, (seed, result.invariant, result.detail)
        readded += result.stats["readded"]
    assert readded > 0
