"""The Kubernetes API permissions the operator needs, and why: the one list that the Helm
chart's RBAC (charts/raftkv-operator/templates/_rbac.tpl) must grant, no more and no less.

tests/unit/chart/test_rbac.py keeps three things equal: this list, the rules the chart
renders, and the API calls found in this package's code (kubernetes client methods,
kopf handler decorators, kopf event posting). Adding an API call means adding its
permission here and in the chart, or that test fails and names the call.
"""

from __future__ import annotations

from typing import NamedTuple


class Permission(NamedTuple):
    """An RBAC rule for one resource: (apiGroup, resource, verbs)."""

    api_group: str
    resource: str
    verbs: tuple[str, ...]


REQUIRED_PERMISSIONS: tuple[Permission, ...] = (
    # RaftClusters: kopf lists/watches them and patches its progress and finalizers; the
    # handlers read them and write their status.
    Permission("raftkv.dev", "raftclusters", ("get", "list", "watch", "patch")),
    Permission("raftkv.dev", "raftclusters/status", ("patch",)),
    # RaftCheckpoints: the schedule creates them, retention deletes old ones, their handler
    # records the result in their status.
    Permission(
        "raftkv.dev", "raftcheckpoints", ("get", "list", "watch", "patch", "create", "delete")
    ),
    Permission("raftkv.dev", "raftcheckpoints/status", ("patch",)),
    # Owned objects carry ownerReferences with blockOwnerDeletion (desired.owner_reference);
    # the OwnerReferencesPermissionEnforcement admission plugin then requires update on the
    # owner's finalizers subresource.
    Permission("raftkv.dev", "raftclusters/finalizers", ("update",)),
    Permission("raftkv.dev", "raftcheckpoints/finalizers", ("update",)),
    # Objects a RaftCluster owns (desired.py builds them; kube.py applies them). StatefulSets
    # are also watched, so that a member pod's progress wakes the reconciler.
    Permission("apps", "statefulsets", ("get", "list", "watch", "create", "patch")),
    Permission("", "services", ("get", "create", "patch")),
    Permission("", "configmaps", ("get", "create", "patch")),
    Permission("policy", "poddisruptionbudgets", ("get", "create", "patch")),
    # A cluster's credentials (credentials.py): its CA, certificates, tokens and auth file.
    # Replaced whole (update) on renewal; never listed, watched or deleted (owner references
    # let the garbage collector remove them with the cluster).
    Permission("", "secrets", ("get", "create", "update")),
    # The cluster's NetworkPolicy, replaced whole when spec.network changes.
    Permission("networking.k8s.io", "networkpolicies", ("get", "create", "update")),
    # cert-manager Certificates, for clusters with tls.mode certManager.
    Permission("cert-manager.io", "certificates", ("get", "create", "patch")),
    # Each cluster's members: their own ServiceAccount, and a Role (bound to it) that lets
    # them patch their own pods' role labels (nodeaccess.py). The operator may grant only
    # what it holds itself: `patch` on pods, below.
    Permission("", "serviceaccounts", ("get", "create", "patch")),
    Permission("rbac.authorization.k8s.io", "roles", ("get", "create", "patch")),
    Permission("rbac.authorization.k8s.io", "rolebindings", ("get", "create", "patch")),
    # Member pods: watched; role labels patched for the leader-routed Service; deleted one by
    # one for ordered restarts.
    Permission("", "pods", ("list", "watch", "patch", "delete")),
    # The checkpoint archive claim is created; a removed member's volume is deleted when
    # reclaimPolicy is Delete.
    Permission("", "persistentvolumeclaims", ("list", "create", "delete")),
    # Checkpoint archive Jobs.
    Permission("batch", "jobs", ("create", "get")),
    # Events on RaftClusters: kopf posts core/v1 Events for handler progress and for
    # kopf.event/info/warn; it only ever creates them (never patches or aggregates).
    Permission("", "events", ("create",)),
    # kopf itself: discover the CRDs it serves and the namespaces it watches.
    Permission("apiextensions.k8s.io", "customresourcedefinitions", ("list", "watch")),
    Permission("", "namespaces", ("list", "watch")),
)
"""Everything the operator calls, peering aside (see PEERING_PERMISSIONS)."""

CLUSTER_SCOPED_RESOURCES: frozenset[str] = frozenset({"customresourcedefinitions", "namespaces"})
"""Resources that only a ClusterRole can grant (the rest go in a Role per watched namespace
when the operator watches a list of namespaces)."""

LEADER_ELECTION = Permission("coordination.k8s.io", "leases", ("get", "create", "update"))
"""Leader election among replicas (leadership.py; `--leader-election-lease`, which the chart
uses with replicaCount > 1): read, create and renew/take over/release the one Lease, in the
operator's own namespace only (a Role there)."""

PEERING_VERBS: tuple[str, ...] = ("get", "list", "watch", "patch")
"""kopf peering (with `--peering`; the chart uses leader election instead): it reads and
watches the peering object and patches its own keep-alive into the status."""

CLUSTER_PEERING = Permission("kopf.dev", "clusterkopfpeerings", PEERING_VERBS)
"""Peering of an operator that watches all namespaces."""

NAMESPACED_PEERING = Permission("kopf.dev", "kopfpeerings", PEERING_VERBS)
"""Peering of an operator that watches a list of namespaces (one object in each)."""
