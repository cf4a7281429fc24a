"""The pods/eviction subresource: a voluntary disruption the PodDisruptionBudgets allow.

As the API server's eviction REST handler does (policy/v1): every PDB in the pod's namespace
whose selector matches the pod is checked; a pod that is not Ready (or already terminating)
may always go (it disrupts nothing); otherwise each budget must allow one more disruption,
or the answer is 429 TooManyRequests and nothing changes. More than one matching budget is
a 500, as on a real server. An allowed eviction is a graceful delete of the pod.

Budget arithmetic (the disruption controller's, for a pod owned by a scalable controller):
expected = the owning StatefulSet's spec.replicas; healthy = matching pods that are Ready
and not terminating; desired healthy = expected - maxUnavailable (or minAvailable);
disruptions allowed = healthy - desired healthy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from tests.k8s.harness.selectors import LabelSelector
from tests.k8s.harness.store import ApiError, Obj, ObjectStore


def ready(pod: Mapping[str, Any]) -> bool:
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or ()
    )


def _scaled(value: Any, expected: int, round_up: bool) -> int:
    """An int-or-percent budget value as a pod count."""
    if isinstance(value, str) and value.endswith("%"):
        share = expected * int(value[:-1]) / 100
        return math.ceil(share) if round_up else math.floor(share)
    return int(value)


def disruptions_allowed(pdb: Mapping[str, Any], pods: list[Obj], expected: int) -> int:
    spec = pdb.get("spec") or {}
    healthy = sum(1 for p in pods if ready(p))
    if spec.get("maxUnavailable") is not None:
        desired = expected - _scaled(spec["maxUnavailable"], expected, round_up=True)
    else:
        desired = _scaled(spec.get("minAvailable", 0), expected, round_up=True)
    return healthy - max(0, desired)


def _expected(store: ObjectStore, namespace: str, pods: list[Obj]) -> int:
    """Pods the owning controllers want (the StatefulSets' replicas); else the pod count."""
    owners = {
        ref["name"]
        for p in pods
        for ref in (p["metadata"].get("ownerReferences") or [])
        if ref.get("kind") == "StatefulSet" and ref.get("controller")
    }
    total = 0
    for owner in owners:
        sts = store.get("apps/v1/statefulsets", namespace, owner)
        total += int((sts or {}).get("spec", {}).get("replicas") or 0)
    return total if owners else len(pods)


def evict(store: ObjectStore, namespace: str, name: str, body: Any) -> Obj:
    pod = store.get("v1/pods", namespace, name)
    if pod is None:
        raise ApiError(404, "NotFound", f'pods "{name}" not found', {"name": name, "kind": "pods"})
    labels = pod["metadata"].get("labels") or {}
    budgets = [
        pdb
        for pdb in store.list("policy/v1/poddisruptionbudgets", namespace)
        if LabelSelector.from_api((pdb.get("spec") or {}).get("selector")).matches(labels)
    ]
    if len(budgets) > 1:
        raise ApiError(500, "InternalError", "this pod has more than one PodDisruptionBudget")
    if budgets and ready(pod):
        pdb = budgets[0]
        selector = LabelSelector.from_api(pdb["spec"].get("selector"))
        pods = [p for p in store.list("v1/pods", namespace) if selector.matches(
            p["metadata"].get("labels") or {}
        )]  # fmt: skip
        allowed = disruptions_allowed(pdb, pods, _expected(store, namespace, pods))
        if allowed < 1:
            raise ApiError(
                429,
                "TooManyRequests",
                "Cannot evict pod as it would violate the pod's disruption budget.",
                {"causes": [{"reason": "DisruptionBudget", "message": (
                    f"The disruption budget {pdb['metadata']['name']} needs "
                    f"{allowed + 1} more healthy pods"
                )}]},
            )  # fmt: skip
    options = (body or {}).get("deleteOptions") or {}
    store.delete(
        "v1/pods",
        namespace,
        name,
        grace_period_seconds=options.get("gracePeriodSeconds"),
        preconditions=options.get("preconditions"),
    )
    return {"apiVersion": "v1", "kind": "Status", "status": "Success", "code": 201}
