"""Emulated Kubernetes with `spec.consensus: multipaxos`: create a 3-member cluster, write
through its Service, kill the leader (the Service follows the new one, no acknowledged
write lost), scale 3 -> 5 -> 3 one member at a time. The operator drives both engines
through `/v1/status` and the membership API alone; these scenarios show it on the other.

One cluster for the module; the scenarios run in order on it.
"""

from __future__ import annotations

import pytest

from raftkv_operator.members import member_id
from tests.k8s.harness.cluster import EmulatedCluster
from tests.k8s.harness_ext import (
    CLUSTERS,
    NAMESPACE,
    Operator,
    cluster_manifest,
    emulated_fixture,  # noqa: F401 - the `emulated` fixture
    get_via_service,
    kill_leader_once,
    operator_fixture,  # noqa: F401 - the `operator` fixture
    pods,
    put_retrying,
    role_of,
    status,
    wait_available,
    wait_for,
)

NAME = "paxos"
pytestmark = pytest.mark.timeout(300)

ACKNOWLEDGED: dict[str, str] = {}  # every write acknowledged in this module: none may go


@pytest.fixture(scope="module")
def three(emulated: EmulatedCluster, operator: Operator) -> str:
    manifest = cluster_manifest(
        NAME, 3, consensus="multipaxos", storage={"size": "64Mi", "reclaimPolicy": "Delete"}
    )
    emulated.create(CLUSTERS, manifest, NAMESPACE)
    wait_available(emulated, NAME, 3, timeout=90)
    return NAME


def _write(emulated: EmulatedCluster, name: str, key: str, value: str) -> None:
    put_retrying(emulated, name, key, value, timeout=20)
    ACKNOWLEDGED[key] = value


def _all_acknowledged_readable(emulated: EmulatedCluster, name: str) -> None:
    for key, value in ACKNOWLEDGED.items():
        assert get_via_service(emulated, name, key) == value, key


def _members(emulated: EmulatedCluster, name: str) -> tuple[set[str], set[str]]:
    members = status(emulated, name).get("members") or []
    voters = {m["name"] for m in members if m["role"] != "Learner"}
    learners = {m["name"] for m in members if m["role"] == "Learner"}
    return voters, learners


def test_create_runs_every_member_on_multipaxos(emulated: EmulatedCluster, three: str) -> None:
    found = pods(emulated, three)
    assert len(found) == 3
    for pod in found.values():
        assert "--consensus=multipaxos" in pod["spec"]["containers"][0]["args"]
    roles = sorted(str(role_of(p)) for p in found.values())
    assert roles == ["follower", "follower", "leader"], roles
    for i in range(10):
        _write(emulated, three, f"create-{i}", f"v{i}")
    _all_acknowledged_readable(emulated, three)


def test_leader_death_moves_the_service_and_loses_no_write(
    emulated: EmulatedCluster, three: str
) -> None:
    for run in range(2):
        kill_leader_once(emulated, three)
        _write(emulated, three, f"failover-{run}", f"y{run}")
    _all_acknowledged_readable(emulated, three)


def test_scale_three_to_five_to_three(emulated: EmulatedCluster, three: str) -> None:
    emulated.patch(CLUSTERS, NAMESPACE, three, {"spec": {"replicas": 5}})
    wait_available(emulated, three, 5, timeout=150)
    voters, learners = _members(emulated, three)
    assert voters == {f"{three}-{i}" for i in range(5)} and not learners
    ids = {m["name"]: m["id"] for m in status(emulated, three)["members"]}
    assert all(ids[f"{three}-{i}"] != member_id(f"{three}-{i}") for i in (3, 4)), ids
    _write(emulated, three, "at-five", "5")
    _all_acknowledged_readable(emulated, three)

    emulated.patch(CLUSTERS, NAMESPACE, three, {"spec": {"replicas": 3}})
    wait_available(emulated, three, 3, timeout=150)
    voters, learners = _members(emulated, three)
    assert voters == {f"{three}-{i}" for i in range(3)} and not learners
    wait_for(
        emulated,
        lambda: set(pods(emulated, three)) == {f"{three}-{i}" for i in range(3)},
        30,
        "the removed members' pods are gone",
    )
    _write(emulated, three, "at-three", "3")
    _all_acknowledged_readable(emulated, three)
