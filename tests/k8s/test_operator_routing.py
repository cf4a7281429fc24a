"""Emulated Kubernetes: leader routing that does not need the operator (issue 12 item 2).

Each member keeps its own pod's `raftkv.dev/role` label true through the API server (HTTPS,
its own service account, a Role naming only the cluster's pods, enforced here as RBAC does).
With the operator stopped, a `kill -9` of the leader still moves the client Service to the
new leader; the Role follows a scale-up before the new pod exists.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request

import pytest

from raftkv_operator import desired, nodeaccess
from tests.k8s.harness.apitls import service_account_token
from tests.k8s.harness.cluster import EmulatedCluster
from tests.k8s.harness_ext import (
    CLUSTERS,
    NAMESPACE,
    Operator,
    cluster_manifest,
    emulated_fixture,  # noqa: F401 - the `emulated` fixture
    labelled_leader,
    leader_endpoints,
    must_get,
    operator_fixture,  # noqa: F401 - the `operator` fixture
    pods,
    role_of,
    wait_available,
    wait_for,
    wait_members_ready,
    wait_routed,
)

NAME = "route"
# A recreated pod comes back on a new address, as on a real cluster: the members resolve
# each other's names through cluster DNS on every dial (no fixed --resolve map).
EMULATED_OPTIONS = {"pod_ip_per_incarnation": True}
pytestmark = pytest.mark.timeout(300)
ROLES = "rbac.authorization.k8s.io/v1/roles"
BINDINGS = "rbac.authorization.k8s.io/v1/rolebindings"


@pytest.fixture(scope="module")
def cluster(emulated: EmulatedCluster, operator: Operator) -> str:
    emulated.create(CLUSTERS, cluster_manifest(NAME, 3), NAMESPACE)
    wait_available(emulated, NAME, 3, timeout=90)
    return NAME


def _names(role: dict[str, object]) -> list[str]:
    (rule,) = role["rules"]  # type: ignore[misc]
    return list(rule["resourceNames"])  # type: ignore[index]


def test_members_run_as_their_own_account_allowed_only_their_pods(
    emulated: EmulatedCluster, cluster: str
) -> None:
    account = desired.service_account_name(cluster)
    must_get(emulated, "v1/serviceaccounts", account)
    role = must_get(emulated, ROLES, nodeaccess.role_name(cluster))
    assert _names(role) == [f"{cluster}-{i}" for i in range(3)]
    binding = must_get(emulated, BINDINGS, nodeaccess.role_name(cluster))
    assert binding["subjects"][0]["name"] == account
    for pod in pods(emulated, cluster).values():
        assert pod["spec"]["serviceAccountName"] == account
    # The emulated API server enforces the Role for the members' token: another pod is off
    # limits (this is what a node's PATCH would get if it labelled the wrong pod).
    emulated.create(
        "v1/pods",
        {
            "metadata": {"name": "bystander"},
            "spec": {"containers": [{"name": "c", "image": "raftkv", "command": ["sleep", "600"]}]},
        },
        NAMESPACE,
    )
    token = service_account_token(NAMESPACE, account)
    assert _patch_as(emulated, token, "bystander") == 403
    assert _patch_as(emulated, token, f"{cluster}-0") == 200  # its own pod: allowed
    assert (
        _patch_as(emulated, service_account_token(NAMESPACE, "default"), f"{cluster}-0") == 403
    )  # another account of the namespace: refused
    emulated.delete("v1/pods", NAMESPACE, "bystander")


def _patch_as(emulated: EmulatedCluster, token: str, pod: str) -> int:
    """A no-op label PATCH the way a node sends it (HTTPS, cluster CA, bearer token)."""
    request = urllib.request.Request(
        f"{emulated.api_tls_url}/api/v1/namespaces/{NAMESPACE}/pods/{pod}",
        method="PATCH",
        data=json.dumps({"metadata": {"labels": {"probe": "x"}}}).encode(),
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/merge-patch+json",
        },
    )
    context = ssl.create_default_context(cafile=str(emulated.api_ca_file))
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as e:
        return e.code


def _kill_leader(emulated: EmulatedCluster, name: str) -> tuple[str, str]:
    # The member killed last time must be back first, or this kill takes the quorum away.
    wait_members_ready(emulated, name, len(pods(emulated, name)))
    old = labelled_leader(emulated, name)
    old_ip = pods(emulated, name)[old]["status"]["podIP"]
    wait_for(
        emulated,
        lambda: leader_endpoints(emulated, name) == [old_ip],
        20,
        "the Service selects the current leader",
    )
    emulated.kill_pod_process(NAMESPACE, old)

    def switched() -> str | None:
        endpoints = leader_endpoints(emulated, name)
        return endpoints[0] if len(endpoints) == 1 and endpoints[0] != old_ip else None

    new_ip = wait_routed(emulated, name, switched, 30, "the Service selects a new leader")
    return old, new_ip


def test_the_service_follows_the_leader_with_the_operator_stopped(
    emulated: EmulatedCluster, cluster: str, operator: Operator
) -> None:
    operator.stop()
    try:
        for _ in range(2):
            old, new_ip = _kill_leader(emulated, cluster)
            now = pods(emulated, cluster)
            new = next(n for n, p in now.items() if p["status"].get("podIP") == new_ip)
            assert role_of(now[new]) == desired.ROLE_LEADER
            # The killed leader comes back and labels itself a follower: one leader label.
            wait_for(
                emulated,
                lambda old=old: role_of(pods(emulated, cluster)[old]) == desired.ROLE_FOLLOWER,
                30,
                "the restarted member relabels itself",
            )
            labels = [role_of(p) for p in pods(emulated, cluster).values()]
            assert labels.count(desired.ROLE_LEADER) == 1, labels
    finally:
        operator.start()
    wait_available(emulated, cluster, 3, timeout=90)


def test_a_recreated_member_comes_back_on_a_new_address(
    emulated: EmulatedCluster, cluster: str
) -> None:
    """Delete a follower's pod and then the leader's: each returns on another IP; the
    members reach it by name again and the Service routes to the leader."""
    leader = labelled_leader(emulated, cluster)
    present = pods(emulated, cluster)
    follower = next(n for n, p in present.items() if n != leader)
    for victim in (follower, leader):
        before = pods(emulated, cluster)[victim]
        emulated.delete("v1/pods", NAMESPACE, victim)

        def back(victim: str = victim, uid: str = before["metadata"]["uid"]) -> str | None:
            pod = pods(emulated, cluster).get(victim)
            if pod is None or pod["metadata"]["uid"] == uid:
                return None
            return pod["status"].get("podIP")

        new_ip = wait_for(emulated, back, 60, f"{victim} recreated with an address")
        assert new_ip != before["status"]["podIP"]
        assert emulated.resolve(f"{victim}.{cluster}-peers.{NAMESPACE}.svc") == [new_ip]
        wait_available(emulated, cluster, 3, timeout=120)

    def routed_to_the_leader() -> bool:
        # The leader label may be between pods right after a recreation (the new
        # leader labels itself a moment after winning), so read both in one go.
        present = pods(emulated, cluster)
        leaders = [p for p in present.values() if role_of(p) == desired.ROLE_LEADER]
        return len(leaders) == 1 and leader_endpoints(emulated, cluster) == [
            leaders[0]["status"]["podIP"]
        ]

    wait_for(emulated, routed_to_the_leader, 30, "the Service names the leader")


def test_the_role_names_a_new_member_before_its_pod_exists(
    emulated: EmulatedCluster, cluster: str
) -> None:
    """Scale 3 -> 5: by the time pod -3 exists the Role names it (it labels itself)."""
    emulated.patch(CLUSTERS, NAMESPACE, cluster, {"spec": {"replicas": 5}})

    def new_pod_listed() -> bool:
        role = must_get(emulated, ROLES, nodeaccess.role_name(cluster))
        present = pods(emulated, cluster)
        for pod in present:
            assert pod in _names(role), f"{pod} runs before the Role names it"
        return f"{cluster}-4" in present

    wait_for(emulated, new_pod_listed, 120, "pod -4 created")
    wait_available(emulated, cluster, 5, timeout=180)
    labels = {n: role_of(p) for n, p in pods(emulated, cluster).items()}
    assert sorted(map(str, labels.values())) == ["follower"] * 4 + ["leader"], labels
