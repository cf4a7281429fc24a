"""Emulated Kubernetes: a 3-member cluster loses 2 members and their volumes for good.

The operator reports it (phase Degraded, condition Degraded=QuorumLost naming what is
missing, a Warning Event, the metric behind the RaftkvQuorumLost alert) and does nothing
else until asked. Asked through spec.recovery, it recovers the survivor with `raftkv
recover` (a Job on its volume) and re-adds the others as learners on fresh volumes: three
healthy voters, every write the survivor had acknowledged present, the lost incarnations
never back. Prints "request -> writable" and "request -> 3 voters". On both engines
(`spec.consensus: raft|multipaxos`): `raftkv recover` reads the engine from the volume.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable

import pytest

from raftkv_operator import metrics
from tests.k8s.harness.cluster import EmulatedCluster
from tests.k8s.harness_ext import (
    CLUSTERS,
    NAMESPACE,
    Operator,
    cluster_manifest,
    condition,
    emulated_fixture,  # noqa: F401 - the `emulated` fixture
    events,
    get_via_service,
    operator_fixture,  # noqa: F401 - the `operator` fixture
    put_retrying,
    put_via_service,
    status,
    wait_available,
    wait_for,
)
from tests.k8s.harness_ext import member_status as harness_member_status

NAMES = {"raft": "lost", "multipaxos": "lost-paxos"}  # one cluster per engine
pytestmark = pytest.mark.timeout(300)


def gauge(name: str, cluster: str) -> float | None:
    """The operator's gauge `name` for `cluster` (the operator runs in this process)."""
    text = metrics.exposition().decode()
    pattern = rf'^{name}\{{cluster="{cluster}",namespace="{NAMESPACE}"\}} (\S+)$'
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else None


def member_status(emulated: EmulatedCluster, cluster: str, pod: str) -> dict[str, object] | None:
    """The member's own /v1/status, None while it does not answer."""
    answer = harness_member_status(emulated, cluster, pod)
    return answer if isinstance(answer, dict) else None


def member_ids(emulated: EmulatedCluster, cluster: str) -> dict[str, int]:
    return {m["name"]: int(m["id"]) for m in status(emulated, cluster).get("members") or []}


@pytest.mark.parametrize("engine", ["raft", "multipaxos"])
def test_quorum_loss_is_reported_then_recovered_on_request(
    emulated: EmulatedCluster,
    operator: Operator,
    record_property: Callable[[str, object], None],
    engine: str,
) -> None:
    name = NAMES[engine]
    manifest = cluster_manifest(name, 3, consensus=engine)
    emulated.create(CLUSTERS, manifest, NAMESPACE)
    wait_available(emulated, name, 3, timeout=120)
    acknowledged = {f"k{i}": f"v{i}" for i in range(30)}
    last = 0
    for key, value in acknowledged.items():
        last = put_retrying(emulated, name, key, value)
    survivor, lost = f"{name}-0", [f"{name}-1", f"{name}-2"]
    # Every acknowledged write on the survivor: what the recovery must keep.
    wait_for(
        emulated,
        lambda: (member_status(emulated, name, survivor) or {}).get("applied_index", 0) >= last,  # type: ignore[operator]
        30,
        f"{survivor} applied revision {last}",
    )
    before = member_ids(emulated, name)

    # Two members and their volumes gone for good: claims first (protected while in use),
    # then the pods; the StatefulSet brings them back on new, empty volumes.
    for pod in lost:
        emulated.delete("v1/persistentvolumeclaims", NAMESPACE, f"data-{pod}")
    for pod in lost:
        emulated.delete("v1/pods", NAMESPACE, pod)

    def reported() -> bool:
        degraded = condition(emulated, name, "Degraded") or {}
        return bool(
            status(emulated, name).get("phase") == "Degraded"
            and degraded.get("reason") == "QuorumLost"
            and gauge("raftkv_operator_quorum_lost", name) == 1
        )

    wait_for(emulated, reported, 60, "Degraded, QuorumLost, quorum-lost metric 1")
    message = (condition(emulated, name, "Degraded") or {}).get("message", "")
    assert all(pod in message for pod in lost), message
    warnings = [
        e
        for e in events(emulated, name)
        if e.get("type") == "Warning" and e.get("reason") == "QuorumLost"
    ]
    assert warnings, [e.get("reason") for e in events(emulated, name)]
    # Not automatic: nothing is changed without the request.
    sts = emulated.get("apps/v1/statefulsets", NAMESPACE, name)
    assert sts is not None and sts["spec"]["replicas"] == 3
    assert status(emulated, name).get("recovery") is None
    assert put_via_service(emulated, name, "refused", "no-quorum") is None

    requested = time.monotonic()
    emulated.patch(
        CLUSTERS,
        NAMESPACE,
        name,
        {"spec": {"recovery": {"requestId": "r1", "confirm": "ForceNewCluster"}}},
    )
    seen_in_progress = False

    steps: list[tuple[float, str]] = []

    def write() -> int | None:
        nonlocal seen_in_progress
        op = status(emulated, name).get("operation") or {}
        step = f"{op.get('kind')}/{op.get('step')}: {op.get('message')}"
        if not steps or steps[-1][1] != step:
            steps.append((time.monotonic() - requested, step))
        seen_in_progress = (
            seen_in_progress or gauge("raftkv_operator_recovery_in_progress", name) == 1
        )
        return put_via_service(emulated, name, "after", "recovery")

    wait_for(emulated, write, 120, "a write acknowledged after the recovery request")
    writable = time.monotonic() - requested
    wait_available(emulated, name, 3, timeout=180)
    voters = time.monotonic() - requested
    for at, step in steps:
        print(f"{at:6.1f} s  {step}", file=sys.__stdout__, flush=True)
    record_property("request_to_writable_seconds", round(writable, 2))
    record_property("request_to_voters_seconds", round(voters, 2))
    # sys.__stdout__: the operator's KopfRunner holds sys.stdout while it runs.
    print(
        f"\nquorum-loss recovery ({engine}): request -> writable {writable:.1f} s, "
        f"request -> 3 healthy voters {voters:.1f} s (goal <= 30 s to writable)",
        file=sys.__stdout__,
        flush=True,
    )

    assert seen_in_progress
    record = status(emulated, name)["recovery"]
    assert record["phase"] == "Succeeded" and record["survivor"] == survivor, record
    assert record["lastIndex"] >= last and record.get("writableAt"), record
    for key, value in acknowledged.items():
        assert get_via_service(emulated, name, key) == value, key
    assert get_via_service(emulated, name, "after") == "recovery"
    after = member_ids(emulated, name)
    assert after[survivor] == before[survivor]
    for pod in lost:  # fresh incarnations on fresh volumes
        assert after[pod] != before[pod], (before, after)
    reasons = {str(e.get("reason")) for e in events(emulated, name)}
    assert {
        "QuorumRecoveryStarted",
        "RecoverJobCreated",
        "QuorumRestored",
        "QuorumRecovered",
    } <= reasons, reasons
    # The gauges are set at the end of the round that wrote status: wait for them.
    wait_for(
        emulated,
        lambda: (
            gauge("raftkv_operator_quorum_lost", name) == 0
            and gauge("raftkv_operator_recovery_in_progress", name) == 0
        ),
        10,
        "gauges back to 0",
    )
