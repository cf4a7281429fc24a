"""The harness's eviction subresource: PodDisruptionBudgets are enforced as the API server
enforces them (429 when a budget would be exceeded; not-Ready pods may always go)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.k8s.harness.cluster import EmulatedCluster
from tests.k8s.harness.eviction import disruptions_allowed
from tests.k8s.harness.manifests import standin_statefulset

STS = "apps/v1/statefulsets"
PODS = "v1/pods"
PDBS = "policy/v1/poddisruptionbudgets"


def _pod(ready: bool, terminating: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "p"}
    if terminating:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    status = "True" if ready else "False"
    return {"metadata": meta, "status": {"conditions": [{"type": "Ready", "status": status}]}}


@pytest.mark.parametrize(
    ("spec", "healthy", "expected", "allowed"),
    [
        ({"maxUnavailable": 1}, 3, 3, 1),
        ({"maxUnavailable": 1}, 2, 3, 0),
        ({"maxUnavailable": 2}, 3, 5, 0),  # 3 -> 5 in flight: two pods not there yet
        ({"maxUnavailable": 2}, 5, 5, 2),
        ({"minAvailable": 2}, 3, 3, 1),
        ({"maxUnavailable": "50%"}, 4, 4, 2),
    ],
)
def test_budget_arithmetic(spec: dict[str, Any], healthy: int, expected: int, allowed: int) -> None:
    pods = [_pod(True)] * healthy + [_pod(True, terminating=True)]
    assert disruptions_allowed({"spec": spec}, pods, expected) == allowed


def test_eviction_respects_the_budget(k8s_cluster: EmulatedCluster, k8s_namespace: str) -> None:
    from kubernetes import client

    ns = k8s_namespace
    k8s_cluster.create(STS, standin_statefulset("kv", ns, 3))
    k8s_cluster.wait_for(
        lambda: (k8s_cluster.get(STS, ns, "kv") or {}).get("status", {}).get("readyReplicas") == 3,
        timeout=20,
        message="3 ready replicas",
    )
    k8s_cluster.create(
        PDBS,
        {
            "metadata": {"name": "kv", "namespace": ns},
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "kv"}}},
        },
        ns,
    )
    core = client.CoreV1Api(k8s_cluster.kubernetes_client())
    eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "kv-2"}}
    core.create_namespaced_pod_eviction("kv-2", ns, eviction)
    second = {**eviction, "metadata": {"name": "kv-1"}}
    with pytest.raises(client.ApiException) as refused:
        core.create_namespaced_pod_eviction("kv-1", ns, second)
    assert refused.value.status == 429
    assert k8s_cluster.get(PODS, ns, "kv-1")["metadata"].get("deletionTimestamp") is None
    # Once kv-2 is back and Ready, the budget allows one again.
    k8s_cluster.wait_for(
        lambda: (
            (k8s_cluster.get(STS, ns, "kv") or {}).get("status", {}).get("readyReplicas") == 3
            and not (k8s_cluster.get(PODS, ns, "kv-2") or {})
            .get("metadata", {})
            .get("deletionTimestamp")
        ),
        timeout=30,
        message="kv-2 back and ready",
    )
    core.create_namespaced_pod_eviction("kv-1", ns, second)
