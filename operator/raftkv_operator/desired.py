"""Pure builders: a validated RaftCluster -> the Kubernetes objects that run it.

No I/O, no clock, no randomness: the same RaftCluster always gives the same objects, so the
handlers can diff desired against actual. Objects are plain dicts in API form (camelCase),
ready for the Kubernetes client; owner references are added with `with_owner`.

How a member starts (the flags are pinned in docs/contracts.md):
- static flags are container args (name from the pod name via the downward API, data dir,
  ports, advertise URLs under the headless `<name>-peers` Service, Raft timings);
- `--initial-cluster`, `--initial-cluster-state` and `--restore-from` come from the
  `<name>-config` ConfigMap as `RAFTKV_*` env vars. The operator flips the state from
  `new` to `existing` (and drops `restore-from`) once the cluster is bootstrapped, so a pod
  that lost its volume starts empty and waits to be re-added instead of bootstrapping a
  second cluster. The pod template does not change when it does (no rolling restart).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
import shlex
from typing import Any

from raftkv.protocol.kubernetes import ROLE_LABEL
from raftkv_operator import bucket, credentials, tlsmigration
from raftkv_operator.models import (
    CHECKPOINT_ID_PATTERN,
    DEFAULT_IMAGE_REPOSITORY,
    BucketArchive,
    BucketLocation,
    MemberRole,
    OperationKind,
    RaftCheckpoint,
    RaftCluster,
    quorum,
)

Manifest = dict[str, Any]

APP_NAME = "raftkv"
MANAGED_BY = "raftkv-operator"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_VERSION = "app.kubernetes.io/version"
COMPONENT_NODE = "node"
COMPONENT_CLIENT = "client"
COMPONENT_CONFIG = "config"
COMPONENT_ARCHIVE = "checkpoint-archive"

ROLE_LEADER = "leader"
ROLE_FOLLOWER = "follower"
ROLE_LEARNER = "learner"
CHECKPOINT_LABEL = "raftkv.dev/checkpoint"
"""On an archive Job: the RaftCheckpoint it copies (its name, through bounded_name)."""
SCHEDULED_LABEL = "raftkv.dev/scheduled"
"""On RaftCheckpoints the schedule created (deleted once they hold nothing)."""
POD_TEMPLATE_HASH_ANNOTATION = "raftkv.dev/pod-template-hash"
"""On the pod template (so on every pod): a hash of the template. With updateStrategy
OnDelete the operator restarts, one by one, the pods whose hash differs from the
StatefulSet's."""

CONFIG_INITIAL_CLUSTER = "initial-cluster"
CONFIG_INITIAL_CLUSTER_STATE = "initial-cluster-state"
CONFIG_RESTORE_FROM = "restore-from"
STATE_NEW = "new"
STATE_EXISTING = "existing"

CONTAINER_NAME = "raftkv"
DATA_VOLUME = "data"
VOLUME_MOUNT = "/var/lib/raftkv"
DATA_DIR = f"{VOLUME_MOUNT}/data"
"""A subdirectory: a fresh filesystem's root holds lost+found, and "empty data dir" matters."""
RESTORE_DIR = f"{VOLUME_MOUNT}/restore"
ARCHIVE_MOUNT = "/archive"
RUN_AS_USER = 10001
"""Numeric uid/gid the raftkv image runs as (runAsNonRoot needs a number to verify)."""

MAX_NAME_LENGTH = 63


# ---- names ---------------------------------------------------------------------------------


def peers_service_name(cluster_name: str) -> str:
    return f"{cluster_name}-peers"


def client_service_name(cluster_name: str) -> str:
    return cluster_name


def read_service_name(cluster_name: str) -> str:
    return f"{cluster_name}-read"


def config_map_name(cluster_name: str) -> str:
    return f"{cluster_name}-config"


def archive_claim_name(cluster_name: str) -> str:
    return f"{cluster_name}-checkpoints"


def pod_name(cluster_name: str, ordinal: int) -> str:
    return f"{cluster_name}-{ordinal}"


def service_account_name(cluster_name: str) -> str:
    """The members' ServiceAccount (nodeaccess.py: it may patch their own pods only)."""
    return bounded_name(f"{cluster_name}-node")


def bounded_name(name: str, limit: int = MAX_NAME_LENGTH) -> str:
    """`name` if short enough, else a prefix plus a hash of the whole name (stable, unique)."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: limit - 9].rstrip('-.')}-{digest}"


def member_host(cluster: RaftCluster, member: str) -> str:
    """DNS name of a member under the headless peers Service."""
    return f"{member}.{peers_service_name(cluster.name)}.{cluster.namespace}.svc"


def member_peer_url(cluster: RaftCluster, member: str) -> str:
    """A member's peer address (host:port), as in --advertise-peer-url."""
    return f"{member_host(cluster, member)}:{cluster.spec.service.ports.peer}"


def client_tls(cluster: RaftCluster) -> bool:
    """TLS and tokens on the client port (RaftCluster.client_port_tls)."""
    return cluster.client_port_tls


def client_scheme(cluster: RaftCluster) -> str:
    """https when the client port has TLS (client_tls)."""
    return "https" if client_tls(cluster) else "http"


def member_client_url(cluster: RaftCluster, member: str) -> str:
    """A member's client URL, as in --advertise-client-url."""
    return f"{client_scheme(cluster)}://{member_host(cluster, member)}:{cluster.spec.service.ports.client}"


def client_url(cluster: RaftCluster) -> str:
    """URL of the client Service (routes to the leader)."""
    return (
        f"{client_scheme(cluster)}://{client_service_name(cluster.name)}.{cluster.namespace}"
        f".svc:{cluster.spec.service.ports.client}"
    )


def initial_cluster(cluster: RaftCluster, members: int) -> str:
    """The --initial-cluster value for the first `members` pods."""
    return ",".join(
        f"{pod_name(cluster.name, i)}={member_peer_url(cluster, pod_name(cluster.name, i))}"
        for i in range(members)
    )


def archive_path(cluster_name: str, checkpoint_id: str) -> str:
    """Directory of an archived checkpoint inside the archive claim."""
    return f"{cluster_name}/{checkpoint_id}"


# ---- labels ------------------------------------------------------------------------------------


def selector_labels(cluster_name: str) -> dict[str, str]:
    """Labels that select the member pods (immutable: the StatefulSet selector)."""
    return {
        LABEL_NAME: APP_NAME,
        LABEL_INSTANCE: cluster_name,
        LABEL_COMPONENT: COMPONENT_NODE,
    }


def label_selector(cluster_name: str) -> str:
    """selector_labels as a label-selector string (status.selector, for the scale subresource)."""
    return ",".join(f"{k}={v}" for k, v in sorted(selector_labels(cluster_name).items()))


def labels(cluster_name: str, component: str) -> dict[str, str]:
    """Labels of every object the operator owns."""
    return {
        LABEL_NAME: APP_NAME,
        LABEL_INSTANCE: cluster_name,
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_COMPONENT: component,
    }


def _meta(cluster: RaftCluster, name: str, component: str) -> dict[str, Any]:
    return {"name": name, "namespace": cluster.namespace, "labels": labels(cluster.name, component)}


# ---- owner references ------------------------------------------------------------------------


def owner_reference(owner: RaftCluster | RaftCheckpoint) -> dict[str, Any]:
    """A controller owner reference to `owner` (which must have a uid)."""
    if not owner.metadata.uid:
        raise ValueError(f"{owner.kind} {owner.metadata.name!r} has no metadata.uid")
    return {
        "apiVersion": owner.api_version,
        "kind": owner.kind,
        "name": owner.name,
        "uid": owner.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def with_owner(obj: Manifest, owner: RaftCluster | RaftCheckpoint) -> Manifest:
    """A copy of `obj` owned by `owner` (replacing any other controller reference)."""
    if obj.get("metadata", {}).get("namespace", owner.namespace) != owner.namespace:
        raise ValueError("an owner reference cannot cross namespaces")
    result = copy.deepcopy(obj)
    metadata = result.setdefault("metadata", {})
    reference = owner_reference(owner)
    others = [
        r
        for r in metadata.get("ownerReferences", [])
        if r.get("uid") != reference["uid"] and not r.get("controller")
    ]
    metadata["ownerReferences"] = [*others, reference]
    metadata["namespace"] = owner.namespace
    return result


# ---- ConfigMap ---------------------------------------------------------------------------------


def config_map(cluster: RaftCluster) -> Manifest:
    """`<name>-config`: bootstrap parameters read by members at start.

    The initial cluster is `status.initialReplicas` members (fixed at creation; the spec's
    replicas before that). The state is `existing` once `status.bootstrapped`.
    """
    initial = cluster.status.initial_replicas or cluster.spec.replicas
    data = {
        CONFIG_INITIAL_CLUSTER: initial_cluster(cluster, initial),
        CONFIG_INITIAL_CLUSTER_STATE: STATE_EXISTING if cluster.status.bootstrapped else STATE_NEW,
    }
    if (cluster.spec.restore is not None and not cluster.status.bootstrapped) or (
        restoring_in_place(cluster)
    ):
        data[CONFIG_RESTORE_FROM] = RESTORE_DIR
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(cluster, config_map_name(cluster.name), COMPONENT_CONFIG),
        "data": data,
    }


# ---- StatefulSet -------------------------------------------------------------------------------


def termination_grace_seconds(cluster: RaftCluster) -> int:
    """Long enough for a leader to hand over (a few election timeouts) and flush; at least 30s."""
    return max(30, math.ceil(10 * cluster.spec.raft.election_timeout_ms / 1000))


def _pod_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        "fsGroup": RUN_AS_USER,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _container_security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _common_env() -> list[dict[str, Any]]:
    # HOME/TMPDIR point at the writable emptyDir: the root filesystem is read-only.
    return [
        {"name": "HOME", "value": "/tmp"},
        {"name": "TMPDIR", "value": "/tmp"},
        {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
    ]


def _pod_label_env() -> list[dict[str, Any]]:
    """Each member keeps its pod's role label true (the node's --pod-role-label): the pod
    name is --name; the namespace comes from the downward API; the API server, token and
    CA from the in-cluster defaults."""
    return [
        {"name": "RAFTKV_POD_ROLE_LABEL", "value": "true"},
        {
            "name": "RAFTKV_POD_NAMESPACE",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
        },
    ]


def _config_env(
    cluster: RaftCluster, env_name: str, key: str, optional: bool = False
) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": config_map_name(cluster.name), "key": key}
    if optional:
        ref["optional"] = True
    return {"name": env_name, "valueFrom": {"configMapKeyRef": ref}}


def _probe(cluster: RaftCluster, path: str, period: int, failures: int) -> dict[str, Any]:
    # The kubelet does not verify a probe's certificate; /healthz and /readyz need no token.
    return {
        "httpGet": {"path": path, "port": "client", "scheme": client_scheme(cluster).upper()},
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": failures,
    }


def _serve_args(cluster: RaftCluster) -> list[str]:
    spec = cluster.spec
    host = f"$(RAFTKV_NAME).{peers_service_name(cluster.name)}.{cluster.namespace}.svc"
    return [
        "serve",
        "--name=$(RAFTKV_NAME)",
        f"--data-dir={DATA_DIR}",
        f"--client-port={spec.service.ports.client}",
        f"--peer-port={spec.service.ports.peer}",
        f"--advertise-client-url={client_scheme(cluster)}://{host}:{spec.service.ports.client}",
        f"--advertise-peer-url={host}:{spec.service.ports.peer}",
        f"--tick-ms={spec.raft.tick_ms}",
        f"--election-ticks={spec.raft.election_ticks}",
        f"--heartbeat-ticks={spec.raft.heartbeat_ticks}",
        f"--snapshot-entries={spec.raft.snapshot_entries}",
        f"--checkpoint-retain={spec.checkpoints.retain}",
        *_consensus_args(cluster),
        *_security_args(cluster),
    ]


def _consensus_args(cluster: RaftCluster) -> list[str]:
    # Raft is the members' default: saying so would change the pod template of every
    # existing cluster, and roll all of them, on an operator upgrade.
    if cluster.spec.consensus == "raft":
        return []
    return [f"--consensus={cluster.spec.consensus}"]


PEER_TLS_MOUNT = "/etc/raftkv/peer"
CLIENT_TLS_MOUNT = "/etc/raftkv/client"
AUTH_MOUNT = "/etc/raftkv/auth"
ADMIN_MOUNT = "/etc/raftkv/admin"
SECRET_FILE_MODE = 0o440
"""Readable by the pod's fsGroup (members run as a non-root user)."""


def _security_args(cluster: RaftCluster) -> list[str]:
    if not cluster.spec.secure:
        # `tls.mode: disabled`, asked for explicitly: plain HTTP, no tokens, no peer TLS.
        return ["--client-insecure", "--peer-insecure"]
    # Files from mounted Secrets: the node re-reads them when they change, so a renewed
    # certificate needs no restart. The client CA also checks the leader when forwarding.
    peer = [
        f"--peer-cert-file={PEER_TLS_MOUNT}/{credentials.TLS_CERT_KEY}",
        f"--peer-key-file={PEER_TLS_MOUNT}/{credentials.TLS_KEY_KEY}",
        f"--peer-trusted-ca-file={PEER_TLS_MOUNT}/{credentials.CA_CERT_KEY}",
    ]
    migration = cluster.status.tls_migration
    if migration is not None:
        # A cluster made without TLS: the peer plane at the recorded stage, the client
        # port as it was (the node has no mixed mode there; docs/security.md).
        return [*peer, *tlsmigration.STAGE_FLAGS[migration.stage], "--client-insecure"]
    return [
        *peer,
        f"--client-cert-file={CLIENT_TLS_MOUNT}/{credentials.TLS_CERT_KEY}",
        f"--client-key-file={CLIENT_TLS_MOUNT}/{credentials.TLS_KEY_KEY}",
        f"--client-trusted-ca-file={CLIENT_TLS_MOUNT}/{credentials.CA_CERT_KEY}",
        f"--auth-file={AUTH_MOUNT}/{credentials.AUTH_FILE_KEY}",
    ]


def peer_tls_of(template: Manifest) -> bool | None:
    """Whether a pod template's member runs peer TLS (None: no member container)."""
    for container in (template.get("spec") or {}).get("containers") or []:
        if container.get("name") == CONTAINER_NAME:
            return "--peer-insecure" not in (container.get("args") or [])
    return None


def _secret_volume(name: str, secret_name: str) -> dict[str, Any]:
    return {"name": name, "secret": {"secretName": secret_name, "defaultMode": SECRET_FILE_MODE}}


def _security_volumes(cluster: RaftCluster) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, mounts) of the member's TLS and auth Secrets (none when insecure). Whole
    Secrets, never subPath: subPath mounts do not follow Secret updates."""
    if not cluster.spec.secure:
        return [], []
    volumes = [
        _secret_volume("peer-tls", credentials.peer_secret_name(cluster.name)),
        _secret_volume("client-tls", credentials.client_secret_name(cluster.name)),
        _secret_volume("auth", credentials.auth_secret_name(cluster.name)),
    ]
    mounts = [
        {"name": "peer-tls", "mountPath": PEER_TLS_MOUNT, "readOnly": True},
        {"name": "client-tls", "mountPath": CLIENT_TLS_MOUNT, "readOnly": True},
        {"name": "auth", "mountPath": AUTH_MOUNT, "readOnly": True},
    ]
    return volumes, mounts


def _admin_client(
    cluster: RaftCluster, cluster_name: str
) -> tuple[list[str], list[dict[str, Any]], list[dict[str, Any]]]:
    """(CLI flags, volumes, mounts) for a Job or init container that calls a cluster
    (`cluster_name`, in `cluster`'s namespace) with its admin Secret."""
    if not client_tls(cluster):
        return [], [], []
    flags = [
        "--cacert",
        f"{ADMIN_MOUNT}/{credentials.CA_CERT_KEY}",
        "--token-file",
        f"{ADMIN_MOUNT}/{credentials.ADMIN_TOKEN_KEY}",
    ]
    volumes = [_secret_volume("admin", credentials.admin_secret_name(cluster_name))]
    mounts = [{"name": "admin", "mountPath": ADMIN_MOUNT, "readOnly": True}]
    return flags, volumes, mounts


def restoring_in_place(cluster: RaftCluster) -> bool:
    """An in-place restore has prepared every volume and the members bootstrap anew from
    the staged checkpoint (status.bootstrapped is unset until they have)."""
    op = cluster.status.operation
    return (
        op is not None
        and op.kind == OperationKind.RESTORE_IN_PLACE
        and not cluster.status.bootstrapped
    )


def restoring_from_archive(cluster: RaftCluster) -> bool:
    """The cluster bootstraps from an archived checkpoint (a volume or a bucket) and has not
    yet: the archive claim, or the bucket's credentials, are in the pod template only until
    then, so that no member holds them afterwards (a ReadWriteOnce claim attached to one
    node keeps any other pod that mounts it Pending; a member needs no bucket credentials).
    Dropping them restarts the members once, one by one. A restore from another cluster's
    checkpoint mounts nothing, and keeps its (then idle) init container: no restart."""
    restore = cluster.spec.restore
    return (
        restore is not None
        and (restore.archive is not None or restore.bucket is not None)
        and not cluster.status.bootstrapped
    )


def _restore_init_container(cluster: RaftCluster, image: str) -> dict[str, Any] | None:
    """Fetch the checkpoint to restore into RESTORE_DIR, once, before the first bootstrap."""
    restore = cluster.spec.restore
    if restore is None or (restore.from_checkpoint is None and not restoring_from_archive(cluster)):
        return None
    staging = f"{RESTORE_DIR}.tmp"
    mounts: list[dict[str, Any]] = [
        {"name": DATA_VOLUME, "mountPath": VOLUME_MOUNT},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    volumes: list[dict[str, Any]] = []
    env: list[dict[str, Any]] = []
    if restore.from_checkpoint is not None:
        source = restore.from_checkpoint
        namespace = source.namespace or cluster.namespace
        # The source's admin Secret can be mounted only from its own namespace (a Secret
        # volume never crosses namespaces); a secured source elsewhere is not reachable.
        flags, volumes, admin_mounts = _admin_client(cluster, source.cluster)
        mounts += admin_mounts
        endpoint = (
            f"{client_scheme(cluster)}://{client_service_name(source.cluster)}.{namespace}.svc:"
            f"{source.client_port}"
        )
        download = ["raftkv", "checkpoint", "download", source.id]
        fetch = shlex.join([*download, "--endpoint", endpoint, "--out", staging, *flags])
    elif restore.bucket is not None:
        # Downloaded and sha256-verified by `raftkv archive download` (raftkv.archive).
        access = bucket.access(restore.bucket)
        volumes, env = access.volumes, access.env
        mounts += access.mounts
        fetch = "\n".join(bucket.fetch_steps(restore.bucket, restore.bucket.path, staging))
    else:
        assert restore.archive is not None
        mounts.append({"name": "archive", "mountPath": ARCHIVE_MOUNT, "readOnly": True})
        origin = f"{ARCHIVE_MOUNT}/{restore.archive.path}"
        fetch = f"mkdir -p {staging}\ncp -R {shlex.quote(origin)}/. {staging}/"
    # Skip once bootstrapped, when the member already has data, or when a previous run
    # finished; the staging rename makes a half-copied checkpoint impossible to pick up.
    script = "\n".join(
        [
            "set -eu",
            f'if [ "${{RAFTKV_INITIAL_CLUSTER_STATE}}" != "{STATE_NEW}" ] '
            f'|| [ -n "$(ls -A {DATA_DIR} 2>/dev/null)" ] '
            f"|| [ -f {RESTORE_DIR}/manifest.json ]; then",
            '  echo "restore: nothing to do"; exit 0',
            "fi",
            f"rm -rf {staging}",
            fetch,
            # One command per line: `set -e` ignores a failure inside an && list.
            f"test -f {staging}/manifest.json",
            f"test -f {staging}/data",
            f"rm -rf {RESTORE_DIR}",
            f"mv {staging} {RESTORE_DIR}",
            'echo "restore: checkpoint staged"',
        ]
    )
    return {
        "name": "restore",
        "image": image,
        "imagePullPolicy": cluster.spec.image_pull_policy,
        "command": ["/bin/sh", "-c", script],
        "env": [
            *_common_env(),
            _config_env(cluster, "RAFTKV_INITIAL_CLUSTER_STATE", CONFIG_INITIAL_CLUSTER_STATE),
            *env,
        ],
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        "securityContext": _container_security_context(),
        "volumeMounts": mounts,
        "volumes": volumes,
    }


def default_affinity(cluster_name: str) -> dict[str, Any]:
    """Without placement.affinity: prefer one member per node (preferred, not required, so
    a small cluster still schedules; a node's loss then costs at most one member where
    the nodes allow it)."""
    return {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "labelSelector": {"matchLabels": selector_labels(cluster_name)},
                        "topologyKey": "kubernetes.io/hostname",
                    },
                }
            ]
        }
    }


def default_topology_spread(cluster_name: str) -> list[dict[str, Any]]:
    """Without placement.topologySpreadConstraints: spread members over zones where there
    are zones (ScheduleAnyway: never a reason to stay Pending). An empty list turns it off."""
    return [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": selector_labels(cluster_name)},
        }
    ]


def pod_template_hash(template: Manifest) -> str:
    """Hash of a pod template, ignoring the hash annotation itself."""
    stripped = copy.deepcopy(template)
    stripped.get("metadata", {}).get("annotations", {}).pop(POD_TEMPLATE_HASH_ANNOTATION, None)
    canonical = json.dumps(stripped, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def pod_template(
    cluster: RaftCluster, *, default_image_repository: str = DEFAULT_IMAGE_REPOSITORY
) -> Manifest:
    """The member pod template, with its hash annotation."""
    spec = cluster.spec
    image = spec.container_image(default_image_repository)
    env = [
        {"name": "RAFTKV_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {
            "name": "RAFTKV_NAMESPACE",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
        },
        _config_env(cluster, "RAFTKV_INITIAL_CLUSTER", CONFIG_INITIAL_CLUSTER),
        _config_env(cluster, "RAFTKV_INITIAL_CLUSTER_STATE", CONFIG_INITIAL_CLUSTER_STATE),
        *_common_env(),
        *_pod_label_env(),
    ]
    security_volumes, security_mounts = _security_volumes(cluster)
    if spec.restore is not None or spec.restore_in_place is not None:
        # Optional: the key disappears once bootstrapped, and then the variable is unset.
        env.append(_config_env(cluster, "RAFTKV_RESTORE_FROM", CONFIG_RESTORE_FROM, optional=True))
    container = {
        "name": CONTAINER_NAME,
        "image": image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": ["raftkv"],
        "args": _serve_args(cluster),
        "env": env,
        "ports": [
            {"name": "client", "containerPort": spec.service.ports.client, "protocol": "TCP"},
            {"name": "peer", "containerPort": spec.service.ports.peer, "protocol": "TCP"},
        ],
        "startupProbe": _probe(cluster, "/healthz", period=5, failures=120),
        "livenessProbe": _probe(cluster, "/healthz", period=10, failures=6),
        "readinessProbe": _probe(cluster, "/readyz", period=5, failures=2),
        "resources": spec.resources.to_k8s(),
        "securityContext": _container_security_context(),
        "volumeMounts": [
            {"name": DATA_VOLUME, "mountPath": VOLUME_MOUNT},
            {"name": "tmp", "mountPath": "/tmp"},
            *security_mounts,
        ],
    }
    volumes: list[dict[str, Any]] = [
        {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
        *security_volumes,
    ]
    if restoring_from_archive(cluster) and spec.restore is not None and spec.restore.archive:
        volumes.append(
            {
                "name": "archive",
                "persistentVolumeClaim": {
                    "claimName": spec.restore.archive.claim_name,
                    "readOnly": True,
                },
            }
        )
    pod_spec: dict[str, Any] = {
        # Service links would inject RAFTKV_* variables for Services named raftkv-*, which the
        # node reads as flags (a Service `raftkv-client` would set RAFTKV_CLIENT_PORT).
        "enableServiceLinks": False,
        # The members' own account (nodeaccess.py): it may patch their role labels, no more.
        "serviceAccountName": service_account_name(cluster.name),
        "automountServiceAccountToken": True,
        "terminationGracePeriodSeconds": termination_grace_seconds(cluster),
        "securityContext": _pod_security_context(),
        "containers": [container],
        "volumes": volumes,
    }
    init = _restore_init_container(cluster, image)
    if init is not None:
        # The init container's Secret volumes are the pod's.
        pod_spec["volumes"] += init.pop("volumes")
        pod_spec["initContainers"] = [init]
    placement = spec.placement
    if placement.affinity is not None:
        pod_spec["affinity"] = placement.affinity.to_k8s()
    else:
        pod_spec["affinity"] = default_affinity(cluster.name)
    if placement.tolerations:
        pod_spec["tolerations"] = [t.to_k8s() for t in placement.tolerations]
    if placement.topology_spread_constraints is not None:
        if placement.topology_spread_constraints:
            pod_spec["topologySpreadConstraints"] = [
                c.to_k8s() for c in placement.topology_spread_constraints
            ]
    else:
        pod_spec["topologySpreadConstraints"] = default_topology_spread(cluster.name)
    if placement.node_selector:
        pod_spec["nodeSelector"] = dict(placement.node_selector)
    if placement.priority_class_name:
        pod_spec["priorityClassName"] = placement.priority_class_name
    if spec.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [s.to_k8s() for s in spec.image_pull_secrets]

    # Ours win over the user's: the selector and the Service selectors depend on them.
    pod_labels = {
        **(spec.pod_labels or {}),
        **labels(cluster.name, COMPONENT_NODE),
        LABEL_VERSION: spec.version,
    }
    template: Manifest = {
        "metadata": {"labels": pod_labels, "annotations": dict(spec.pod_annotations or {})},
        "spec": pod_spec,
    }
    template["metadata"]["annotations"][POD_TEMPLATE_HASH_ANNOTATION] = pod_template_hash(template)
    return template


def stateful_set(
    cluster: RaftCluster,
    *,
    replicas: int | None = None,
    default_image_repository: str = DEFAULT_IMAGE_REPOSITORY,
) -> Manifest:
    """StatefulSet `<name>` of the members.

    `replicas` is the number of pods to run now: the reconciler scales one member at a
    time, so during a scale operation it passes the current step's size; None means
    `spec.replicas` (creation).
    """
    spec = cluster.spec
    count = spec.replicas if replicas is None else replicas
    if count < 0:
        raise ValueError(f"replicas must not be negative, got {count}")
    claim_spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": spec.storage.size}},
    }
    if spec.storage.storage_class_name:
        claim_spec["storageClassName"] = spec.storage.storage_class_name
    reclaim = spec.storage.reclaim_policy.value
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {
            **_meta(cluster, cluster.name, COMPONENT_NODE),
            "labels": {**labels(cluster.name, COMPONENT_NODE), LABEL_VERSION: spec.version},
        },
        "spec": {
            "replicas": count,
            "selector": {"matchLabels": selector_labels(cluster.name)},
            "serviceName": peers_service_name(cluster.name),
            # All initial members must be up together to elect a leader.
            "podManagementPolicy": "Parallel",
            # The operator restarts pods itself: followers first, the leader last.
            "updateStrategy": {"type": "OnDelete"},
            "persistentVolumeClaimRetentionPolicy": {
                "whenDeleted": reclaim,
                "whenScaled": reclaim,
            },
            "template": pod_template(cluster, default_image_repository=default_image_repository),
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": DATA_VOLUME, "labels": selector_labels(cluster.name)},
                    "spec": claim_spec,
                }
            ],
        },
    }


# ---- quorum-loss recovery and in-place restore Jobs ---------------------------------------------

COMPONENT_RECOVER = "recover"
COMPONENT_RESTORE = "restore"
RESTORE_ASIDE_PREFIX = "pre-restore-"
"""On a member's volume, `pre-restore-<requestId>`: its data directory before an in-place
restore (kept until deleted by hand)."""


def recover_job_name(cluster_name: str, request_id: str) -> str:
    return bounded_name(f"{cluster_name}-recover-{request_id}")


def recover_job(
    cluster: RaftCluster,
    survivor: str,
    request_id: str,
    *,
    default_image_repository: str = DEFAULT_IMAGE_REPOSITORY,
) -> Manifest:
    """Job running `raftkv recover --yes` on the survivor's volume (every member stopped).

    The survivor becomes the only voter of a new cluster id, keeping its data and log
    (docs/recovery.md). recover still asks the old members it knows for their status and
    refuses if one answers with a leader: the admin Secret lets it read them on a secured
    cluster. No retry: a refusal or a damaged WAL needs a person (backoffLimit 0).
    """
    flags, admin_volumes, admin_mounts = _admin_client(cluster, cluster.name)
    return _member_volume_job(
        cluster,
        survivor,
        recover_job_name(cluster.name, request_id),
        COMPONENT_RECOVER,
        {
            "command": ["raftkv"],
            "args": ["recover", f"--data-dir={DATA_DIR}", "--name", survivor, "--yes", *flags],
        },
        admin_volumes,
        admin_mounts,
        default_image_repository,
    )


def restore_job_name(cluster_name: str, request_id: str, member: str, *, rollback: bool) -> str:
    ordinal = ordinal_suffix(cluster_name, member)
    kind = "unrestore" if rollback else "restore"
    return bounded_name(f"{cluster_name}-{kind}-{request_id}-{ordinal}")


def restore_aside_dir(request_id: str) -> str:
    return f"{VOLUME_MOUNT}/{RESTORE_ASIDE_PREFIX}{request_id}"


def restore_prepare_script(
    request_id: str,
    checkpoint_id: str,
    sha256: str,
    *,
    archive_path: str | None,
    from_bucket: BucketLocation | None = None,
) -> str:
    """Stage the checkpoint on a stopped member's volume, check its sha256, then move the old
    data aside: the member bootstraps from RESTORE_DIR when it next starts (`new`).

    The source is the member's own copy (`data/checkpoints/<id>`), `archive_path` inside
    the archive claim, or, with `from_bucket`, the copy `archive_path` in that bucket
    (downloaded by `raftkv archive download`, which checks the object's sha256; the Job
    needs `bucket.access(from_bucket)`'s env and volumes). Whatever the source, the staged
    bytes are checked against `sha256`, the RaftCheckpoint's. Idempotent: a volume prepared
    for this request already is left alone.
    """
    if not re.fullmatch(CHECKPOINT_ID_PATTERN, checkpoint_id):
        raise ValueError(f"bad checkpoint id {checkpoint_id!r}")
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise ValueError(f"bad sha256 {sha256!r}")
    aside = restore_aside_dir(request_id)
    staging = f"{RESTORE_DIR}.tmp"
    if from_bucket is not None:
        if not archive_path:
            raise ValueError("a bucket source needs the copy's path")
        fetch = bucket.fetch_steps(from_bucket, archive_path, staging)
    else:
        source = shlex.quote(
            f"{ARCHIVE_MOUNT}/{archive_path}"
            if archive_path
            else f"{DATA_DIR}/checkpoints/{checkpoint_id}"
        )
        fetch = [f"mkdir -p {staging}", f"cp {source}/data {source}/manifest.json {staging}/"]
    return "\n".join(
        [
            "set -eu",
            f"if [ -d {aside} ] && [ -f {RESTORE_DIR}/manifest.json ]; then",
            '  echo "restore: prepared already"; exit 0',
            "fi",
            f"rm -rf {staging}",
            *fetch,
            f"test -f {staging}/manifest.json",
            f'echo "{sha256}  {staging}/data" | sha256sum -c -',
            # One command per line: `set -e` ignores a failure inside an && list.
            f"if [ -e {DATA_DIR} ]; then mv {DATA_DIR} {aside}; fi",
            f"rm -rf {RESTORE_DIR}",
            f"mv {staging} {RESTORE_DIR}",
            f'echo "restore: staged {checkpoint_id} (sha256 {sha256}); old data in {aside}"',
        ]
    )


def restore_rollback_script(request_id: str) -> str:
    """Put a member's old data back after a failed preparation (idempotent)."""
    aside = restore_aside_dir(request_id)
    return "\n".join(
        [
            "set -eu",
            f"if [ -d {aside} ]; then",
            f"  rm -rf {DATA_DIR}",
            f"  mv {aside} {DATA_DIR}",
            "fi",
            f"rm -rf {RESTORE_DIR}.tmp {RESTORE_DIR}",
            'echo "restore: old data back in place"',
        ]
    )


def restore_job(
    cluster: RaftCluster,
    member: str,
    request_id: str,
    script: str,
    *,
    rollback: bool,
    archive_claim: str | None = None,
    from_bucket: BucketLocation | None = None,
    default_image_repository: str = DEFAULT_IMAGE_REPOSITORY,
) -> Manifest:
    """Job running a restore_*_script on `member`'s volume (the archive claim read-only too
    when the bytes come from there; the bucket's credentials and CA when they come from a
    bucket: this Job is the only pod that gets them)."""
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    env: list[dict[str, Any]] = []
    if from_bucket is not None:
        access = bucket.access(from_bucket)
        volumes, mounts, env = list(access.volumes), list(access.mounts), list(access.env)
    if archive_claim is not None:
        volumes.append(
            {
                "name": "archive",
                "persistentVolumeClaim": {"claimName": archive_claim, "readOnly": True},
            }
        )
        mounts.append({"name": "archive", "mountPath": ARCHIVE_MOUNT, "readOnly": True})
    return _member_volume_job(
        cluster,
        member,
        restore_job_name(cluster.name, request_id, member, rollback=rollback),
        COMPONENT_RESTORE,
        {"command": ["/bin/sh", "-c", script]},
        volumes,
        mounts,
        default_image_repository,
        env=env,
    )


def _member_volume_job(
    cluster: RaftCluster,
    member: str,
    name: str,
    component: str,
    command: dict[str, Any],
    volumes: list[dict[str, Any]],
    mounts: list[dict[str, Any]],
    default_image_repository: str,
    *,
    env: list[dict[str, Any]] | None = None,
) -> Manifest:
    """A one-shot Job with a stopped member's data volume at the members' mount path."""
    if ordinal_suffix(cluster.name, member) is None:
        raise ValueError(f"{member!r} is not a member pod of {cluster.name!r}")
    spec = cluster.spec
    job_labels = labels(cluster.name, component)
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "securityContext": _pod_security_context(),
        "containers": [
            {
                "name": component,
                "image": spec.container_image(default_image_repository),
                "imagePullPolicy": spec.image_pull_policy,
                **command,
                "env": [*_common_env(), *(env or [])],
                "resources": {
                    "requests": {"cpu": "50m", "memory": "64Mi"},
                    "limits": {"memory": "256Mi"},
                },
                "securityContext": _container_security_context(),
                "volumeMounts": [
                    {"name": DATA_VOLUME, "mountPath": VOLUME_MOUNT},
                    {"name": "tmp", "mountPath": "/tmp"},
                    *mounts,
                ],
            }
        ],
        "volumes": [
            {
                "name": DATA_VOLUME,
                "persistentVolumeClaim": {"claimName": f"{DATA_VOLUME}-{member}"},
            },
            {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
            *volumes,
        ],
        **_job_placement(cluster),
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": cluster.namespace, "labels": job_labels},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": 600,
            "ttlSecondsAfterFinished": 7 * 86400,
            "template": {"metadata": {"labels": job_labels}, "spec": pod_spec},
        },
    }


def ordinal_suffix(cluster_name: str, pod: str) -> int | None:
    """The StatefulSet ordinal of a member pod name, None for any other name."""
    prefix = f"{cluster_name}-"
    if not pod.startswith(prefix) or not pod[len(prefix) :].isdigit():
        return None
    return int(pod[len(prefix) :])


def _job_placement(cluster: RaftCluster) -> dict[str, Any]:
    """Where a Job of the cluster may run: the members' node pool (tolerations, node
    selector) and pull secrets; not their anti-affinity, which selects member pods."""
    spec = cluster.spec
    out: dict[str, Any] = {}
    if spec.placement.tolerations:
        out["tolerations"] = [t.to_k8s() for t in spec.placement.tolerations]
    if spec.placement.node_selector:
        out["nodeSelector"] = dict(spec.placement.node_selector)
    if spec.image_pull_secrets:
        out["imagePullSecrets"] = [s.to_k8s() for s in spec.image_pull_secrets]
    return out


# ---- Services, PDB ---------------------------------------------------------------------------


def _service_port(name: str, port: int) -> dict[str, Any]:
    return {"name": name, "port": port, "targetPort": name, "protocol": "TCP"}


def peers_service(cluster: RaftCluster) -> Manifest:
    """Headless `<name>-peers`: stable DNS names for members, ready or not."""
    ports = cluster.spec.service.ports
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(cluster, peers_service_name(cluster.name), COMPONENT_NODE),
        "spec": {
            "clusterIP": "None",
            # Members must find each other before they are ready (to elect a leader at all).
            "publishNotReadyAddresses": True,
            "selector": selector_labels(cluster.name),
            "ports": [_service_port("client", ports.client), _service_port("peer", ports.peer)],
        },
    }


def _client_facing_service(cluster: RaftCluster, name: str, selector: dict[str, str]) -> Manifest:
    options = cluster.spec.service
    metadata = _meta(cluster, name, COMPONENT_CLIENT)
    if options.annotations:
        metadata["annotations"] = dict(options.annotations)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {
            "type": options.type.value,
            "selector": selector,
            "ports": [_service_port("client", options.ports.client)],
        },
    }


def client_service(cluster: RaftCluster) -> Manifest:
    """`<name>`: routes to the leader only (the operator moves the role label)."""
    selector = {**selector_labels(cluster.name), ROLE_LABEL: ROLE_LEADER}
    return _client_facing_service(cluster, client_service_name(cluster.name), selector)


def read_service(cluster: RaftCluster) -> Manifest:
    """`<name>-read`: every ready member, for reads spread by kube-proxy (a follower
    serves linearizable reads itself, after a ReadIndex round with the leader)."""
    return _client_facing_service(
        cluster, read_service_name(cluster.name), selector_labels(cluster.name)
    )


def max_unavailable(voters: int) -> int:
    """Members that may be down while a majority of the `voters` stays up.

    A single voter has no quorum to protect: 0 there would block every node drain forever,
    so it is 1 (the member is unavailable while it moves, as it would be anyway). Two voters
    (only ever in passing, while a member is replaced) allow none.
    """
    if voters <= 1:
        return 1
    return voters - quorum(voters)


def budget_voters(cluster: RaftCluster) -> int:
    """The voter count to size the budget by when no leader reports the configuration: the
    last one status recorded, never more than spec.replicas (a scale-up's new members are
    learners until promoted, and do not add to what the quorum can lose)."""
    recorded = sum(1 for m in cluster.status.members if m.role != MemberRole.LEARNER)
    initial = cluster.status.initial_replicas or cluster.spec.replicas
    return min(cluster.spec.replicas, recorded or initial)


def pod_disruption_budget(cluster: RaftCluster, *, voters: int | None = None) -> Manifest:
    """PodDisruptionBudget `<name>`: voluntary evictions never break the quorum.

    Sized from the current `voters` (the leader's configuration), not spec.replicas: while
    3 -> 5 runs there are still three voters, and two evictions would leave one. None:
    `budget_voters(cluster)`.
    """
    count = budget_voters(cluster) if voters is None else voters
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(cluster, cluster.name, COMPONENT_NODE),
        "spec": {
            "maxUnavailable": max_unavailable(count),
            "selector": {"matchLabels": selector_labels(cluster.name)},
        },
    }


NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
"""Set by the API server on every namespace: selects a namespace by name."""


def network_policy_name(cluster_name: str) -> str:
    return cluster_name


def network_policy(cluster: RaftCluster, *, operator_namespace: str | None) -> Manifest | None:
    """Ingress to the members: the peer port only from the cluster's own members; the client
    port (which also serves /metrics) from the cluster's namespace, the operator's, and the
    namespaces `spec.network` selects. None when `network.policy` is false."""
    network = cluster.spec.network
    if not network.policy:
        return None
    members = {"podSelector": {"matchLabels": selector_labels(cluster.name)}}
    client_from: list[dict[str, Any]] = [{"podSelector": {}}]
    if operator_namespace and operator_namespace != cluster.namespace:
        client_from.append(
            {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: operator_namespace}}}
        )
    for selector in (network.client_namespace_selector, network.monitoring_namespace_selector):
        if selector is not None:
            client_from.append({"namespaceSelector": selector.to_k8s()})
    ports = cluster.spec.service.ports
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(cluster, network_policy_name(cluster.name), COMPONENT_NODE),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(cluster.name)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": [members], "ports": [{"protocol": "TCP", "port": ports.peer}]},
                {"from": client_from, "ports": [{"protocol": "TCP", "port": ports.client}]},
            ],
        },
    }


def desired_objects(
    cluster: RaftCluster,
    *,
    replicas: int | None = None,
    default_image_repository: str = DEFAULT_IMAGE_REPOSITORY,
) -> list[Manifest]:
    """Every object a cluster owns, in creation order (ConfigMap and Services first)."""
    return [
        config_map(cluster),
        peers_service(cluster),
        client_service(cluster),
        read_service(cluster),
        pod_disruption_budget(cluster),
        stateful_set(cluster, replicas=replicas, default_image_repository=default_image_repository),
    ]


# ---- checkpoint archive ------------------------------------------------------------------------


def archive_claim(cluster: RaftCluster) -> Manifest | None:
    """The archive PVC the operator creates from `checkpoints.archive.volumeClaimTemplate`.

    None when there is no template (no archive, or an existing claimName). Give it no owner
    reference: archived checkpoints are meant to outlive the cluster (to restore from them).
    """
    archive = cluster.spec.checkpoints.archive
    if archive is None or archive.volume_claim_template is None:
        return None
    template = archive.volume_claim_template
    claim_spec: dict[str, Any] = {
        "accessModes": [m.value for m in template.access_modes],
        "resources": {"requests": {"storage": template.size}},
    }
    if template.storage_class_name:
        claim_spec["storageClassName"] = template.storage_class_name
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(cluster, archive_claim_name(cluster.name), COMPONENT_ARCHIVE),
        "spec": claim_spec,
    }


def archive_bucket(cluster: RaftCluster) -> BucketArchive | None:
    """The bucket archive Jobs upload to, or None when the archive target is not a bucket."""
    archive = cluster.spec.checkpoints.archive
    return archive.bucket if archive is not None else None


def archive_claim_in_use(cluster: RaftCluster) -> str | None:
    """Name of the claim archive Jobs write to, or None without an archive volume."""
    archive = cluster.spec.checkpoints.archive
    if archive is None or archive.bucket is not None:
        return None
    return archive.claim_name or archive_claim_name(cluster.name)


PARTIAL_SUFFIX = ".partial"
"""An archive copy is written under `<dir>.partial` and renamed when complete: a failed or
interrupted download never leaves a directory that looks like a copy."""


def _archive_script(cluster: RaftCluster, ident: str) -> str:
    final = f"{ARCHIVE_MOUNT}/{archive_path(cluster.name, ident)}"
    partial = f"{final}{PARTIAL_SUFFIX}"
    flags, _volumes, _mounts = _admin_client(cluster, cluster.name)
    download = shlex.join(
        ["raftkv", "checkpoint", "download", ident, "--endpoint", client_url(cluster),
         "--out", partial, *flags]
    )  # fmt: skip
    # One command per line: `set -e` ignores a failure inside an && list.
    return "\n".join(
        [
            "set -eu",
            f"rm -rf {shlex.quote(partial)}",
            download,
            f"rm -rf {shlex.quote(final)}",
            f"mv {shlex.quote(partial)} {shlex.quote(final)}",
        ]
    )


ARCHIVE_STAGING = "/staging"
"""The bucket archive Job's scratch volume: the checkpoint is downloaded (and verified)
there, then uploaded; the node's ephemeral storage must hold one checkpoint."""


def _bucket_archive_parts(
    cluster: RaftCluster, ident: str
) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(script, env, volumes, mounts) of a Job uploading checkpoint `ident` to the bucket."""
    archive = cluster.spec.checkpoints.archive
    assert archive is not None and archive.bucket is not None
    access = bucket.access(archive.bucket)
    staged = f"{ARCHIVE_STAGING}/{ident}"
    flags, _volumes, _mounts = _admin_client(cluster, cluster.name)
    download = shlex.join(
        ["raftkv", "checkpoint", "download", ident, "--endpoint", client_url(cluster),
         "--out", staged, *flags]
    )  # fmt: skip
    script = "\n".join(
        [
            "set -eu",
            f"rm -rf {shlex.quote(staged)}",
            download,
            *bucket.upload_steps(archive.bucket, cluster_name=cluster.name,
                                 checkpoint_dir=staged, keep=archive_retain(cluster)),
            f"rm -rf {shlex.quote(staged)}",
        ]
    )  # fmt: skip
    volumes = [{"name": "staging", "emptyDir": {}}, *access.volumes]
    mounts = [{"name": "staging", "mountPath": ARCHIVE_STAGING}, *access.mounts]
    return script, access.env, volumes, mounts


def checkpoint_archive_job_name(checkpoint: RaftCheckpoint) -> str:
    return bounded_name(f"{checkpoint.name}-archive")


def checkpoint_archive_job(
    cluster: RaftCluster,
    checkpoint: RaftCheckpoint,
    *,
    checkpoint_id: str | None = None,
    default_image_repository: str = DEFAULT_IMAGE_REPOSITORY,
) -> Manifest:
    """Job copying a checkpoint (data + manifest) from the leader to the archive target.

    Runs `raftkv checkpoint download <id> --endpoint <client Service>` with the cluster's
    image. To a claim: into `/archive/<cluster>/<id>.partial`, renamed to
    `/archive/<cluster>/<id>` once complete. To a bucket: into a scratch volume, then
    `raftkv archive upload` (sha256 as object metadata, checked after upload) and
    `raftkv archive prune` (retention by count and age) with the bucket's credentials,
    which only this pod gets (module `bucket`). The id is `checkpoint_id`, else the
    RaftCheckpoint's status.id or spec.id.
    """
    archive = cluster.spec.checkpoints.archive
    if archive is None:
        raise ValueError(f"RaftCluster {cluster.name!r} has no checkpoints.archive")
    if checkpoint.spec.cluster != cluster.name or checkpoint.namespace != cluster.namespace:
        raise ValueError(
            f"RaftCheckpoint {checkpoint.name!r} belongs to cluster {checkpoint.spec.cluster!r}, "
            f"not {cluster.name!r}"
        )
    ident = checkpoint_id or checkpoint.status.id or checkpoint.spec.id
    if not ident:
        raise ValueError(f"RaftCheckpoint {checkpoint.name!r} has no id yet")
    spec = cluster.spec
    _flags, admin_volumes, admin_mounts = _admin_client(cluster, cluster.name)
    job_labels = {
        **labels(cluster.name, COMPONENT_ARCHIVE),
        CHECKPOINT_LABEL: bounded_name(checkpoint.name),
    }
    claim = archive_claim_in_use(cluster)
    if claim is not None:
        script, env = _archive_script(cluster, ident), list[dict[str, Any]]()
        target_volumes = [{"name": "archive", "persistentVolumeClaim": {"claimName": claim}}]
        target_mounts = [{"name": "archive", "mountPath": ARCHIVE_MOUNT}]
    else:
        script, env, target_volumes, target_mounts = _bucket_archive_parts(cluster, ident)
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "securityContext": _pod_security_context(),
        "containers": [
            {
                "name": "archive",
                "image": spec.container_image(default_image_repository),
                "imagePullPolicy": spec.image_pull_policy,
                "command": ["/bin/sh", "-c", script],
                "env": [*_common_env(), *env],
                "resources": {
                    "requests": {"cpu": "50m", "memory": "64Mi"},
                    "limits": {"memory": "256Mi"},
                },
                "securityContext": _container_security_context(),
                "volumeMounts": [
                    *target_mounts,
                    {"name": "tmp", "mountPath": "/tmp"},
                    *admin_mounts,
                ],
            }
        ],
        "volumes": [
            *target_volumes,
            {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
            *admin_volumes,
        ],
    }
    # Run where members may run (same node pool); affinity is left out on purpose: the
    # members' anti-affinity terms select member pods and mean nothing for this Job.
    placement = spec.placement
    if placement.tolerations:
        pod_spec["tolerations"] = [t.to_k8s() for t in placement.tolerations]
    if placement.node_selector:
        pod_spec["nodeSelector"] = dict(placement.node_selector)
    if spec.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [s.to_k8s() for s in spec.image_pull_secrets]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": checkpoint_archive_job_name(checkpoint),
            "namespace": cluster.namespace,
            "labels": job_labels,
        },
        "spec": {
            "backoffLimit": 3,
            "activeDeadlineSeconds": archive_timeout_seconds(cluster),
            "ttlSecondsAfterFinished": 86400,
            "template": {"metadata": {"labels": job_labels}, "spec": pod_spec},
        },
    }


def archive_timeout_seconds(cluster: RaftCluster) -> int:
    archive = cluster.spec.checkpoints.archive
    return archive.timeout_seconds if archive is not None else 3600


def archive_retain(cluster: RaftCluster) -> int:
    """Archived copies kept: checkpoints.archive.retain, else checkpoints.retain."""
    archive = cluster.spec.checkpoints.archive
    if archive is not None and archive.retain is not None:
        return archive.retain
    return cluster.spec.checkpoints.retain


def is_archive_path(cluster_name: str, path: str) -> bool:
    """`path` is an archived checkpoint of the cluster: `<cluster>/<checkpoint id>`."""
    head, _, ident = path.partition("/")
    return head == cluster_name and re.fullmatch(CHECKPOINT_ID_PATTERN, ident) is not None


def archive_prune_job_name(cluster_name: str, paths: list[str]) -> str:
    digest = hashlib.sha256("\n".join(sorted(paths)).encode()).hexdigest()[:10]
    return bounded_name(f"{cluster_name}-archive-prune-{digest}")


def archive_prune_job(
    cluster: RaftCluster,
    paths: list[str],
    *,
    default_image_repository: str = DEFAULT_IMAGE_REPOSITORY,
) -> Manifest:
    """Job deleting archived copies (`paths` inside the archive claim) beyond retention.

    Only paths of this cluster's archive layout (`<cluster>/<checkpoint id>`) are accepted:
    the command is `rm -rf` and must never reach anything else on the claim.
    """
    claim = archive_claim_in_use(cluster)
    if claim is None:
        raise ValueError(f"RaftCluster {cluster.name!r} has no checkpoints.archive")
    if not paths:
        raise ValueError("nothing to prune")
    for path in paths:
        if not is_archive_path(cluster.name, path):
            raise ValueError(f"{path!r} is not an archived checkpoint of {cluster.name!r}")
    spec = cluster.spec
    job_labels = labels(cluster.name, COMPONENT_ARCHIVE)
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "securityContext": _pod_security_context(),
        "containers": [
            {
                "name": "prune",
                "image": spec.container_image(default_image_repository),
                "imagePullPolicy": spec.image_pull_policy,
                # The copies, and any download of them left half-done.
                "command": [
                    "rm",
                    "-rf",
                    "--",
                    *(
                        f"{ARCHIVE_MOUNT}/{p}{suffix}"
                        for p in sorted(paths)
                        for suffix in ("", PARTIAL_SUFFIX)
                    ),
                ],
                "resources": {
                    "requests": {"cpu": "10m", "memory": "16Mi"},
                    "limits": {"memory": "64Mi"},
                },
                "securityContext": _container_security_context(),
                "volumeMounts": [{"name": "archive", "mountPath": ARCHIVE_MOUNT}],
            }
        ],
        "volumes": [{"name": "archive", "persistentVolumeClaim": {"claimName": claim}}],
    }
    placement = spec.placement
    if placement.tolerations:
        pod_spec["tolerations"] = [t.to_k8s() for t in placement.tolerations]
    if placement.node_selector:
        pod_spec["nodeSelector"] = dict(placement.node_selector)
    if spec.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [s.to_k8s() for s in spec.image_pull_secrets]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": archive_prune_job_name(cluster.name, paths),
            "namespace": cluster.namespace,
            "labels": job_labels,
        },
        "spec": {
            "backoffLimit": 3,
            "activeDeadlineSeconds": archive_timeout_seconds(cluster),
            "ttlSecondsAfterFinished": 3600,
            "template": {"metadata": {"labels": job_labels}, "spec": pod_spec},
        },
    }
