"""Least privilege, kept true: the chart's RBAC == operator/raftkv_operator/rbac.py, and every
API call found in the operator's code is covered by it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from raftkv_operator import rbac
from tests.unit.chart import api_scan
from tests.unit.chart.rendering import (
    NAMESPACED,
    RELEASE_NAMESPACE_ONLY,
    REPO,
    by_kind,
    one,
    render,
)

Triple = tuple[str, str, str]

# Declared permissions that no code in the package shows: kopf's own discovery, and the
# finalizers subresource that admission checks for ownerReferences with blockOwnerDeletion.
NOT_VISIBLE_IN_CODE: frozenset[Triple] = frozenset(
    {
        ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
        ("", "namespaces", "list"),
        ("", "namespaces", "watch"),
        ("raftkv.dev", "raftclusters/finalizers", "update"),
        ("raftkv.dev", "raftcheckpoints/finalizers", "update"),
    }
)


def _triples(permissions: Any) -> set[Triple]:
    return {(p.api_group, p.resource, verb) for p in permissions for verb in p.verbs}


def _rules(role: dict[str, Any]) -> set[Triple]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def _diff(granted: set[Triple], wanted: set[Triple]) -> str:
    return (
        f"granted but not declared: {sorted(granted - wanted)}; "
        f"declared but not granted: {sorted(wanted - granted)}"
    )


DECLARED = _triples(rbac.REQUIRED_PERMISSIONS)


def test_declared_permissions_are_well_formed() -> None:
    resources = [(p.api_group, p.resource) for p in rbac.REQUIRED_PERMISSIONS]
    assert len(resources) == len(set(resources)), "one Permission per resource"
    allowed = {"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}
    others = (rbac.CLUSTER_PEERING, rbac.NAMESPACED_PEERING, rbac.LEADER_ELECTION)
    for permission in (*rbac.REQUIRED_PERMISSIONS, *others):
        assert permission.verbs and set(permission.verbs) <= allowed, permission
        assert "*" not in permission.resource and "*" not in permission.api_group
    assert {p.resource for p in rbac.REQUIRED_PERMISSIONS} >= rbac.CLUSTER_SCOPED_RESOURCES


def _without_leader_election(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if not o["metadata"]["name"].endswith("-leader-election")]


def test_cluster_wide_chart_grants_exactly_the_declared_permissions() -> None:
    objects = render({"replicaCount": 1})
    role = one(objects, "ClusterRole")
    assert not by_kind(objects, "Role")
    granted = _rules(role)
    assert granted == DECLARED, _diff(granted, DECLARED)
    binding = one(objects, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    account = one(objects, "ServiceAccount")
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": account["metadata"]["name"],
            "namespace": account["metadata"]["namespace"],
        }
    ]
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]


def test_leader_election_adds_only_the_lease_permission_in_the_release_namespace() -> None:
    objects = render({"replicaCount": 2})
    granted = _rules(one(objects, "ClusterRole"))
    assert granted == DECLARED, _diff(granted, DECLARED)
    (role,) = by_kind(objects, "Role")
    wanted = _triples([rbac.LEADER_ELECTION])
    assert _rules(role) == wanted, _diff(_rules(role), wanted)
    assert role["metadata"]["namespace"] == one(objects, "Deployment")["metadata"]["namespace"]
    (binding,) = by_kind(objects, "RoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]


def test_namespaced_chart_splits_namespaced_and_cluster_scoped_permissions() -> None:
    objects = render(NAMESPACED)
    cluster_wanted = {t for t in DECLARED if t[1] in rbac.CLUSTER_SCOPED_RESOURCES}
    granted = _rules(one(objects, "ClusterRole"))
    assert granted == cluster_wanted, _diff(granted, cluster_wanted)
    namespaced_wanted = DECLARED - cluster_wanted
    for role in by_kind(_without_leader_election(objects), "Role"):
        granted = _rules(role)
        assert granted == namespaced_wanted, _diff(granted, namespaced_wanted)


def test_release_namespace_only_grants_the_namespaced_permissions_in_one_role() -> None:
    objects = render(RELEASE_NAMESPACE_ONLY)
    assert not by_kind(objects, "ClusterRole")
    (role,) = by_kind(_without_leader_election(objects), "Role")
    wanted = {t for t in DECLARED if t[1] not in rbac.CLUSTER_SCOPED_RESOURCES}
    assert _rules(role) == wanted, _diff(_rules(role), wanted)


def _crd_kinds() -> dict[str, tuple[str, str]]:
    """kind/singular/plural/short name (lowercase) -> (group, plural), from the CRDs."""
    kinds: dict[str, tuple[str, str]] = {}
    for path in (REPO / "crds").glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        names, group = crd["spec"]["names"], crd["spec"]["group"]
        for name in (names["kind"], names.get("singular", ""), names["plural"]):
            if name:
                kinds[name.lower()] = (group, names["plural"])
        for short in names.get("shortNames", []):
            kinds[short.lower()] = (group, names["plural"])
    return kinds


def test_every_api_call_of_the_operator_is_declared() -> None:
    result = api_scan.scan(crd_kinds=_crd_kinds())
    assert not result.unresolved, (
        "make these API calls' group/plural a literal or module constant, so RBAC can be "
        f"checked: {result.unresolved}"
    )
    peering = _triples([rbac.CLUSTER_PEERING, rbac.NAMESPACED_PEERING, rbac.LEADER_ELECTION])
    missing = [
        u for u in result.uses if (u.api_group, u.resource, u.verb) not in DECLARED | peering
    ]
    assert not missing, (
        "the operator calls APIs that operator/raftkv_operator/rbac.py (and the chart's "
        f"_rbac.tpl) do not grant: {missing}"
    )


def test_every_declared_permission_is_used_by_the_operator() -> None:
    handlers = api_scan.OPERATOR_DIR / "handlers.py"
    if not handlers.exists():
        pytest.skip("operator/raftkv_operator/handlers.py has not landed: nothing to compare yet")
    used = {(u.api_group, u.resource, u.verb) for u in api_scan.scan(crd_kinds=_crd_kinds()).uses}
    unused = DECLARED - used - NOT_VISIBLE_IN_CODE
    assert not unused, (
        f"declared (and granted by the chart) but never used by the operator: {sorted(unused)}; "
        "drop them from rbac.py and _rbac.tpl, or make the call visible to the scan"
    )


SAMPLE = """
import kopf
from kubernetes import client, watch
from raftkv_operator import models

PLURAL = "raftcheckpoints"

@kopf.on.create(models.API_GROUP, "v1alpha1", "raftclusters")
async def created(**_):
    core = client.CoreV1Api()
    core.patch_namespaced_pod("demo-0", "ns", {})
    client.AppsV1Api().create_namespaced_stateful_set("ns", {})
    client.CustomObjectsApi().create_namespaced_custom_object(
        models.API_GROUP, "v1alpha1", "ns", PLURAL, {})
    for _ in watch.Watch().stream(core.list_namespaced_pod, "ns"):
        pass
    client.BatchV1Api().delete_namespaced_job(name="j", namespace="ns")
    await run(client.PolicyV1Api().read_namespaced_pod_disruption_budget, "demo", "ns")

@kopf.on.event("pods")
def pod_event(**_):
    kopf.info({}, reason="R", message="m")

def dynamic(group):
    client.CustomObjectsApi().list_cluster_custom_object(group, "v1", "things")
"""


def test_the_scan_finds_calls_decorators_and_unresolvable_groups(tmp_path: Path) -> None:
    constants = tmp_path / "models.py"
    constants.write_text('API_GROUP = "raftkv.dev"\n')
    sample = tmp_path / "handlers.py"
    sample.write_text(SAMPLE)
    result = api_scan.scan([constants, sample])
    found = {(u.api_group, u.resource, u.verb) for u in result.uses}
    assert found == {
        ("raftkv.dev", "raftclusters", "list"),
        ("raftkv.dev", "raftclusters", "watch"),
        ("raftkv.dev", "raftclusters", "patch"),
        ("raftkv.dev", "raftclusters/status", "patch"),
        ("", "pods", "patch"),
        ("", "pods", "list"),
        ("", "pods", "watch"),
        ("apps", "statefulsets", "create"),
        ("raftkv.dev", "raftcheckpoints", "create"),
        ("batch", "jobs", "delete"),
        ("policy", "poddisruptionbudgets", "get"),
        ("", "events", "create"),
    }
    assert len(result.unresolved) == 1 and "list_cluster_custom_object" in result.unresolved[0]
