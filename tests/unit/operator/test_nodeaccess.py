"""nodeaccess.py: each cluster's members get their own ServiceAccount and a Role that lets
them patch exactly their own pods, kept in step with the member count."""

from __future__ import annotations

import argparse
from typing import Any

import kubernetes_validate
import pytest

from raftkv.runtime.config import add_serve_arguments, config_from_args
from raftkv_operator import desired, nodeaccess
from raftkv_operator.models import SUPPORTED_KUBERNETES_VERSIONS, RaftCluster

from .conftest import example_cluster


def _cluster(replicas: int = 3) -> RaftCluster:
    body = example_cluster("minimal.yaml").to_k8s()
    body["spec"]["replicas"] = replicas
    return RaftCluster.model_validate(body)


def _objects(cluster: RaftCluster, members: int) -> list[dict[str, Any]]:
    return [
        desired.with_owner(o, cluster)
        for o in (
            nodeaccess.service_account(cluster),
            nodeaccess.role(cluster, members),
            nodeaccess.role_binding(cluster),
        )
    ]


@pytest.mark.parametrize("version", SUPPORTED_KUBERNETES_VERSIONS)
def test_objects_are_valid_kubernetes(version: str) -> None:
    for obj in _objects(_cluster(), 3):
        kubernetes_validate.validate(obj, version, strict=True)


def test_validation_catches_a_broken_role() -> None:
    broken = nodeaccess.role(_cluster(), 3)
    broken["rules"][0]["resourceName"] = broken["rules"][0].pop("resourceNames")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, SUPPORTED_KUBERNETES_VERSIONS[0], strict=True)


def test_the_role_allows_patching_the_clusters_own_pods_only() -> None:
    cluster = _cluster()
    (rule,) = nodeaccess.role(cluster, 3)["rules"]
    assert rule == {
        "apiGroups": [""],
        "resources": ["pods"],
        "resourceNames": [f"{cluster.name}-{i}" for i in range(3)],
        "verbs": ["patch"],
    }


def test_binding_account_and_pod_template_agree() -> None:
    cluster = _cluster()
    sa, role, binding = _objects(cluster, 3)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": cluster.namespace}
    ]
    pod = desired.stateful_set(cluster)["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == sa["metadata"]["name"]
    assert pod["automountServiceAccountToken"] is True  # the pod, not the account, mounts it
    assert sa["automountServiceAccountToken"] is False


@pytest.mark.parametrize(
    ("replicas", "sts", "pods", "covered"),
    [
        (3, 3, ["x-0", "x-1", "x-2"], 3),
        (5, 3, ["x-0", "x-1", "x-2"], 5),  # scaling up: the new pods' names come first
        (3, 5, ["x-0", "x-1", "x-2", "x-3", "x-4"], 5),  # scaling down: still there
        (3, 3, ["x-0", "x-1", "x-2", "x-4"], 5),  # a terminating pod still labels itself
        (1, None, [], 1),
    ],
)
def test_member_count_covers_every_pod_that_may_run(
    replicas: int, sts: int | None, pods: list[str], covered: int
) -> None:
    body = _cluster(replicas).to_k8s()
    body["metadata"]["name"] = "x"
    cluster = RaftCluster.model_validate(body)
    assert nodeaccess.member_count(cluster, sts, [*pods, "x-config", "other-9"]) == covered


def test_the_member_env_turns_the_node_labeler_on() -> None:
    """The pod's RAFTKV_* variables parse as the node's flags (as the node will read them)."""
    cluster = _cluster()
    container = desired.stateful_set(cluster)["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value", "x") for e in container["env"]}
    assert env["RAFTKV_POD_ROLE_LABEL"] == "true"
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    cfg = config_from_args(
        parser,
        ["--name=x-0", "--client-insecure", "--peer-insecure"],
        env={"RAFTKV_POD_ROLE_LABEL": env["RAFTKV_POD_ROLE_LABEL"], "RAFTKV_POD_NAMESPACE": "ns"},
    )
    assert cfg.pod_role_label and cfg.pod_name == "x-0" and cfg.pod_namespace == "ns"
    namespace = next(e for e in container["env"] if e["name"] == "RAFTKV_POD_NAMESPACE")
    assert namespace["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
