"""Emulated Kubernetes: scale 3 -> 5 -> 3 one member at a time, with an operator restart in
the middle of a scale-up, and a refused scale-down that would lose the quorum."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from http.client import HTTPException

import pytest

from raftkv_operator.members import member_id
from raftkv_operator.models import quorum
from tests.k8s.harness.cluster import EmulatedCluster
from tests.k8s.harness_ext import (
    CLUSTERS,
    NAMESPACE,
    Operator,
    cluster_manifest,
    condition,
    emulated_fixture,  # noqa: F401 - the `emulated` fixture
    event_reasons,
    get_via_service,
    operator_fixture,  # noqa: F401 - the `operator` fixture
    pods,
    put_retrying,
    service_http,
    status,
    wait_available,
    wait_for,
)

NAME = "scale"
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def three(emulated: EmulatedCluster, operator: Operator) -> str:
    manifest = cluster_manifest(NAME, 3, storage={"size": "64Mi", "reclaimPolicy": "Delete"})
    emulated.create(CLUSTERS, manifest, NAMESPACE)
    wait_available(emulated, NAME, 3, timeout=90)
    return NAME


def set_replicas(emulated: EmulatedCluster, name: str, replicas: int) -> None:
    emulated.patch(CLUSTERS, NAMESPACE, name, {"spec": {"replicas": replicas}})


class SizeWatcher:
    """Samples the StatefulSet's replicas while a scale runs: it must move one at a time."""

    def __init__(self, emulated: EmulatedCluster, name: str) -> None:
        self.emulated = emulated
        self.name = name
        self.seen: list[int] = []
        self.operations: list[tuple[str, str | None, str]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            sts = self.emulated.get("apps/v1/statefulsets", NAMESPACE, self.name)
            replicas = int(sts["spec"]["replicas"]) if sts else -1
            if not self.seen or self.seen[-1] != replicas:
                self.seen.append(replicas)
            op = status(self.emulated, self.name).get("operation")
            if op:
                entry = (op["kind"], op.get("member"), op["step"])
                if not self.operations or self.operations[-1] != entry:
                    self.operations.append(entry)
            self.stop.wait(0.02)

    def __enter__(self) -> SizeWatcher:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(5)


class BudgetWatcher:
    """Samples the PodDisruptionBudget against the voters the leader reports: the budget may
    never allow more evictions than the current voters can lose and keep a quorum."""

    def __init__(self, emulated: EmulatedCluster, name: str) -> None:
        self.emulated = emulated
        self.name = name
        self.samples: list[tuple[int, int]] = []  # (voters, maxUnavailable)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def voters(self) -> int | None:
        try:
            code, payload = service_http(self.emulated, self.name, "GET", "/v1/status", timeout=2)
        except (OSError, LookupError, HTTPException):
            return None
        answer = json.loads(payload) if code == 200 else {}
        if answer.get("role") != "leader":
            return None
        return sum(1 for m in answer["members"] if m.get("role") == "voter")

    def run(self) -> None:
        while not self.stop.is_set():
            before = self.budget()
            voters = self.voters()
            after = self.budget()
            # Only samples where the budget held still across the voters' read count.
            if voters is not None and before is not None and before == after:
                self.samples.append((voters, before))
            self.stop.wait(0.05)

    def budget(self) -> int | None:
        pdb = self.emulated.get("policy/v1/poddisruptionbudgets", NAMESPACE, self.name)
        return int(pdb["spec"]["maxUnavailable"]) if pdb else None

    def violations(self) -> list[tuple[int, int]]:
        return [
            (voters, allowed)
            for voters, allowed in self.samples
            if voters > 1 and voters - allowed < quorum(voters)
        ]

    def __enter__(self) -> BudgetWatcher:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(5)


def voters_and_learners(emulated: EmulatedCluster, name: str) -> tuple[set[str], set[str]]:
    members = status(emulated, name).get("members") or []
    voters = {m["name"] for m in members if m["role"] != "Learner"}
    learners = {m["name"] for m in members if m["role"] == "Learner"}
    return voters, learners


@pytest.fixture
def data(emulated: EmulatedCluster, three: str) -> Iterator[dict[str, str]]:
    written: dict[str, str] = {}
    for i in range(5):
        key, value = f"{NAME}-{i}", f"value-{i}"
        put_retrying(emulated, three, key, value, 10)
        written[key] = value
    yield written
    for key, value in written.items():
        assert get_via_service(emulated, three, key) == value


def test_scale_up_to_five_one_at_a_time_with_an_operator_restart(
    emulated: EmulatedCluster,
    operator: Operator,
    three: str,
    data: dict[str, str],
) -> None:
    with SizeWatcher(emulated, three) as watcher, BudgetWatcher(emulated, three) as budget:
        set_replicas(emulated, three, 5)
        # Restart the operator while the first new member is being added: the next one
        # must resume from status.operation, not from memory.
        wait_for(
            emulated,
            lambda: (
                (status(emulated, three).get("operation") or {}).get("step")
                in ("AddLearner", "CatchUp", "Promote", "WaitPod")
            ),
            30,
            "the scale-up reaches the learner steps",
        )
        operator.restart()
        wait_available(emulated, three, 5, timeout=120)
    assert watcher.seen == [3, 4, 5], watcher.seen
    # While three voters (and a learner) ran, the budget allowed one eviction, not two.
    assert (3, 1) in budget.samples, budget.samples[-20:]
    assert not budget.violations(), budget.violations()
    wait_for(emulated, lambda: budget.budget() == 2, 10, "the budget grows with the voters")
    members = [(kind, member) for kind, member, _ in watcher.operations]
    assert ("ScaleUp", f"{three}-3") in members and ("ScaleUp", f"{three}-4") in members
    # -3 before -4: one member at a time.
    assert members.index(("ScaleUp", f"{three}-3")) < members.index(("ScaleUp", f"{three}-4"))
    steps = [step for kind, member, step in watcher.operations if member == f"{three}-3"]
    assert "AddLearner" in steps or "CatchUp" in steps, steps
    voters, learners = voters_and_learners(emulated, three)
    assert voters == {f"{three}-{i}" for i in range(5)} and not learners
    ids = {m["name"]: m["id"] for m in status(emulated, three)["members"]}
    # Founders keep the name-derived id; the members added later joined with fresh ids.
    assert all(ids[f"{three}-{i}"] == member_id(f"{three}-{i}") for i in range(3)), ids
    assert all(ids[f"{three}-{i}"] != member_id(f"{three}-{i}") for i in (3, 4)), ids
    wait_for(
        emulated,
        lambda: {"MemberAdded", "MemberPromoted", "ScalingUp"} <= event_reasons(emulated, three),
        30,
        "Events for each step",
    )
    assert len(pods(emulated, three)) == 5


def test_scale_down_to_three_removes_highest_members_and_their_volumes(
    emulated: EmulatedCluster, three: str, data: dict[str, str]
) -> None:
    if len(status(emulated, three).get("members") or []) != 5:
        pytest.skip("needs the five-member cluster of the scale-up scenario")
    with SizeWatcher(emulated, three) as watcher, BudgetWatcher(emulated, three) as budget:
        set_replicas(emulated, three, 3)
        wait_available(emulated, three, 3, timeout=120)
    assert watcher.seen == [5, 4, 3], watcher.seen
    # The budget shrinks before each removal, never after it.
    assert not budget.violations(), budget.violations()
    assert budget.samples, "no sample of the budget"
    wait_for(emulated, lambda: budget.budget() == 1, 10, "the budget fits three voters")
    voters, learners = voters_and_learners(emulated, three)
    assert voters == {f"{three}-{i}" for i in range(3)} and not learners
    assert set(pods(emulated, three)) == {f"{three}-{i}" for i in range(3)}
    # reclaimPolicy Delete: the removed members' volumes are gone.
    wait_for(
        emulated,
        lambda: (
            not {f"data-{three}-3", f"data-{three}-4"}
            & {c["metadata"]["name"] for c in emulated.list("v1/persistentvolumeclaims", NAMESPACE)}
        ),
        20,
        "the removed members' claims are deleted",
    )
    wait_for(
        emulated,
        lambda: {"MemberRemoved", "ScalingDown"} <= event_reasons(emulated, three),
        30,
        "Events for each step",
    )


def test_scale_down_that_would_lose_quorum_is_refused(
    emulated: EmulatedCluster, three: str
) -> None:
    wait_available(emulated, three, 3)
    # Freeze one follower (SIGSTOP: its pod stays, it answers nothing): removing another
    # member would leave one healthy voter of two.
    leader = status(emulated, three)["leader"]
    followers = sorted(n for n in pods(emulated, three) if n != leader)
    frozen = [f for f in followers if f != f"{three}-2"][:1]
    try:
        for pod in frozen:
            emulated.kill_pod_process(NAMESPACE, pod, sig=signal.SIGSTOP)
        wait_for(
            emulated,
            lambda: (
                condition(emulated, three, "Degraded")
                and (condition(emulated, three, "Degraded") or {}).get("status") == "True"
            ),
            30,
            "the cluster reports a member unhealthy",
        )
        set_replicas(emulated, three, 1)
        wait_for(
            emulated,
            lambda: (
                (condition(emulated, three, "Progressing") or {}).get("reason") == "QuorumAtRisk"
            ),
            30,
            "the scale-down is refused",
        )
        wait_for(
            emulated,
            lambda: "QuorumAtRisk" in event_reasons(emulated, three),
            30,
            "a warning Event says why",
        )
        sts = emulated.get("apps/v1/statefulsets", NAMESPACE, three)
        assert sts is not None and sts["spec"]["replicas"] == 3
        voters, _ = voters_and_learners(emulated, three)
        assert len(voters) == 3
    finally:
        for pod in frozen:
            emulated.kill_pod_process(NAMESPACE, pod, sig=signal.SIGCONT)
        set_replicas(emulated, three, 3)
    wait_available(emulated, three, 3, timeout=60)
