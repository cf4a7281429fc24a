"""Emulated Kubernetes: scale 1 -> 3 -> 1 -> 3 with the default `reclaimPolicy: Retain`.

The scale-down keeps the removed members' volumes; on the next scale-up the StatefulSet
gives the returning pods those volumes, whose nodes come back under their removed
incarnation's id. The leader refuses that id for good (409 member_id_removed,
docs/contracts.md "Node identity"); the operator must say so (a Warning Event), replace the
volume, and add the member back as a learner under a fresh id.
"""

from __future__ import annotations

import pytest

from tests.k8s.harness.cluster import EmulatedCluster
from tests.k8s.harness_ext import (
    CLUSTERS,
    NAMESPACE,
    Operator,
    cluster_manifest,
    emulated_fixture,  # noqa: F401 - the `emulated` fixture
    events,
    get_via_service,
    operator_fixture,  # noqa: F401 - the `operator` fixture
    put_retrying,
    status,
    wait_available,
    wait_for,
)

NAME = "keep"
pytestmark = pytest.mark.timeout(300)


def set_replicas(emulated: EmulatedCluster, replicas: int) -> None:
    emulated.patch(CLUSTERS, NAMESPACE, NAME, {"spec": {"replicas": replicas}})


def member_ids(emulated: EmulatedCluster) -> dict[str, int]:
    return {m["name"]: int(m["id"]) for m in status(emulated, NAME).get("members") or []}


def claims(emulated: EmulatedCluster) -> dict[str, str]:
    return {
        c["metadata"]["name"]: c["metadata"]["uid"]
        for c in emulated.list("v1/persistentvolumeclaims", NAMESPACE)
    }


def test_retained_volumes_scale_down_and_up_again(
    emulated: EmulatedCluster, operator: Operator
) -> None:
    manifest = cluster_manifest(NAME, 1)
    assert "reclaimPolicy" not in manifest["spec"]["storage"]  # the default: Retain
    emulated.create(CLUSTERS, manifest, NAMESPACE)
    wait_available(emulated, NAME, 1, timeout=60)

    set_replicas(emulated, 3)
    wait_available(emulated, NAME, 3, timeout=90)
    put_retrying(emulated, NAME, "before", "three", 10)
    first = member_ids(emulated)

    set_replicas(emulated, 1)
    wait_available(emulated, NAME, 1, timeout=90)
    kept = claims(emulated)
    # Retain: the removed members' volumes stay.
    assert {f"data-{NAME}-1", f"data-{NAME}-2"} <= set(kept), kept

    set_replicas(emulated, 3)
    wait_available(emulated, NAME, 3, timeout=120)
    again = member_ids(emulated)
    for returning in (f"{NAME}-1", f"{NAME}-2"):
        # A fresh incarnation: the removed id never comes back.
        assert again[returning] != first[returning], (first, again)
    assert again[f"{NAME}-0"] == first[f"{NAME}-0"]
    warnings = [
        e
        for e in events(emulated, NAME)
        if e.get("type") == "Warning" and e.get("reason") == "MemberIdentityRemoved"
    ]
    assert warnings, [e.get("reason") for e in events(emulated, NAME)]
    assert str(first[f"{NAME}-1"]) in " ".join(str(e.get("message")) for e in warnings)
    # The stale volumes were replaced, not reused.
    now = claims(emulated)
    assert now[f"data-{NAME}-1"] != kept[f"data-{NAME}-1"]
    assert now[f"data-{NAME}-2"] != kept[f"data-{NAME}-2"]
    assert get_via_service(emulated, NAME, "before") == "three"
    put_retrying(emulated, NAME, "after", "three-again", 10)
    wait_for(
        emulated,
        lambda: (status(emulated, NAME).get("operation") is None) or None,
        30,
        "no operation left in flight",
    )
