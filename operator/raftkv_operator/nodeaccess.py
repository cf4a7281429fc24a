"""What a cluster's members may do in the Kubernetes API: label their own pods, nothing else.

Each member keeps its own pod's `raftkv.dev/role` label true (the node's
`--pod-role-label`, runtime/podlabel.py), so the client Service follows the leader while
the operator is down. For that every cluster gets its own ServiceAccount, and a Role that
allows `patch` on exactly the cluster's pod names (`resourceNames`), bound to it. The node
only ever PATCHes, so `get` is not granted (and the operator, which may grant only what it
holds, needs no pod permission beyond its own `patch`). The names follow the member count:
the Role is rewritten before a scale-up creates a pod and narrowed after a scale-down.

Pure builders (spec -> manifest); the reconciler applies them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from raftkv_operator.desired import (
    COMPONENT_NODE,
    Manifest,
    bounded_name,
    labels,
    pod_name,
    service_account_name,
)
from raftkv_operator.models import RaftCluster
from raftkv_operator.planner import ordinal_of

RBAC_API_VERSION = "rbac.authorization.k8s.io/v1"
POD_LABEL_VERBS = ("patch",)


def role_name(cluster_name: str) -> str:
    return bounded_name(f"{cluster_name}-pod-labels")


def _meta(cluster: RaftCluster, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": cluster.namespace,
        "labels": labels(cluster.name, COMPONENT_NODE),
    }


def service_account(cluster: RaftCluster) -> Manifest:
    """The members' identity. Its token is mounted only into member pods (the pod template
    sets automountServiceAccountToken; the account itself does not)."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(cluster, service_account_name(cluster.name)),
        "automountServiceAccountToken": False,
    }


def member_count(
    cluster: RaftCluster, statefulset_replicas: int | None, pods: Iterable[str] = ()
) -> int:
    """How many ordinals the Role must cover: the spec's replicas, the StatefulSet's (a
    scale step in either direction), and every pod still present (a removed member's pod
    is terminating)."""
    ordinals = [o for o in (ordinal_of(cluster.name, p) for p in pods) if o is not None]
    return max(cluster.spec.replicas, statefulset_replicas or 0, max(ordinals, default=-1) + 1)


def role(cluster: RaftCluster, members: int) -> Manifest:
    """`patch` on pods `<name>-0` .. `<name>-<members-1>`, nothing else."""
    if members < 1:
        raise ValueError(f"a cluster has at least one member, got {members}")
    return {
        "apiVersion": RBAC_API_VERSION,
        "kind": "Role",
        "metadata": _meta(cluster, role_name(cluster.name)),
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["pods"],
                "resourceNames": [pod_name(cluster.name, i) for i in range(members)],
                "verbs": list(POD_LABEL_VERBS),
            }
        ],
    }


def role_binding(cluster: RaftCluster) -> Manifest:
    return {
        "apiVersion": RBAC_API_VERSION,
        "kind": "RoleBinding",
        "metadata": _meta(cluster, role_name(cluster.name)),
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": role_name(cluster.name),
        },
        "subjects": [
            {
                "kind": "ServiceAccount",
                "name": service_account_name(cluster.name),
                "namespace": cluster.namespace,
            }
        ],
    }
