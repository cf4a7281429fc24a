"""Kind scenarios (issue 12): a secured cluster (TLS + token, the default) used by a client
pod through the admin Secret, and leader routing while the operator is stopped (the members
label their own pods). HA operator failover and Retain scale 1->3->1->3 are in
test_kind_scenarios.py. `make e2e-kind`; skipped elsewhere with the reason."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.e2e.kind import OPERATOR_NAMESPACE, RELEASE, Kube, wait_for

pytestmark = [pytest.mark.kind, pytest.mark.timeout(1800)]

READY = 600.0
STEP = 300.0


def _create(kube: Kube, ns: str, image: str, replicas: int = 3) -> str:
    name = kube.apply_example(ns, "minimal.yaml", image=image, replicas=replicas)["metadata"][
        "name"
    ]
    wait_for(f"{ns}/{name} Available", lambda: kube.available(ns, name, replicas), READY)
    return str(name)


def test_a_client_pod_uses_the_secured_cluster_through_the_admin_secret(
    kube: Kube, ns: str, node_image: str
) -> None:
    cluster = _create(kube, ns, node_image)
    assert kube.cluster(ns, cluster)["spec"].get("tls", {}).get("mode", "operator") != "disabled"
    phase, log = kube.raftkv(ns, cluster, ["put", "greeting", "hello"])
    assert phase == "Succeeded", log
    phase, log = kube.raftkv(ns, cluster, ["get", "greeting"])
    assert phase == "Succeeded" and "hello" in log, log
    # Without the token the cluster refuses (TLS alone is not authentication).
    phase, log = kube.raftkv(ns, cluster, ["get", "greeting"], token=False)
    assert phase == "Failed", log


def _all_ready(kube: Kube, ns: str, cluster: str, replicas: int) -> bool:
    pods = kube.pods(ns, cluster)
    return len(pods) == replicas and all(
        any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        for p in pods
    )


def _scale_operator(kube: Kube, replicas: int) -> None:
    deployment = f"{RELEASE}-raftkv-operator"
    kube.apps.patch_namespaced_deployment_scale(
        deployment, OPERATOR_NAMESPACE, {"spec": {"replicas": replicas}}
    )

    def settled() -> bool:
        pods: list[Any] = kube.core.list_namespaced_pod(
            OPERATOR_NAMESPACE, label_selector="app.kubernetes.io/name=raftkv-operator"
        ).items
        running = [
            p for p in pods if p.status.phase == "Running" and not p.metadata.deletion_timestamp
        ]
        return len(running) == replicas and len(pods) == replicas

    wait_for(f"{replicas} operator replicas", settled, STEP)


def test_the_service_follows_a_new_leader_with_the_operator_stopped(
    kube: Kube, ns: str, node_image: str
) -> None:
    cluster = _create(kube, ns, node_image)
    before = kube.apps.read_namespaced_deployment(
        f"{RELEASE}-raftkv-operator", OPERATOR_NAMESPACE
    ).spec.replicas
    _scale_operator(kube, 0)
    try:
        for _ in range(3):
            old = wait_for("one pod labelled leader", lambda: kube.leader_pod(ns, cluster), STEP)
            wait_for(
                "the Service names the leader",
                lambda old=old: kube.service_endpoint_pods(ns, cluster) == {old},
                STEP,
            )
            old_uid = kube.core.read_namespaced_pod(old, ns).metadata.uid
            kube.core.delete_namespaced_pod(old, ns, grace_period_seconds=0)
            started = time.monotonic()

            def switched(old: str = old, old_uid: str = old_uid) -> str | None:
                leader = kube.leader_pod(ns, cluster)
                if leader is None or (
                    leader == old
                    and kube.core.read_namespaced_pod(leader, ns).metadata.uid == old_uid
                ):
                    return None
                return leader if kube.service_endpoint_pods(ns, cluster) == {leader} else None

            new = wait_for("the Service to name only a new leader", switched, STEP, interval=0.2)
            print(f"operator stopped: {old} -> {new} in {time.monotonic() - started:.2f}s")
            # The recreated pod labels itself a follower before it turns Ready.
            wait_for(
                "every member Ready with one leader label",
                lambda new=new: (
                    _all_ready(kube, ns, cluster, 3) and kube.leader_pod(ns, cluster) == new
                ),
                STEP,
            )
            assert kube.service_endpoint_pods(ns, cluster) == {new}
    finally:
        _scale_operator(kube, before or 2)
