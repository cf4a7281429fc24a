"""Thin Kubernetes API helpers: the official client, run in worker threads, plain dicts out.

Every API call the operator makes is here or in handlers.py, spelled as a literal client
method so tests/unit/chart/api_scan.py can check it against rbac.REQUIRED_PERMISSIONS.
Objects go in and come out as API-form dicts (camelCase); a missing object is None.
Patches name their content type: this client would otherwise send JSON-patch headers.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import kubernetes
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from raftkv.protocol.kubernetes import ROLE_LABEL, ROLE_TERM_ANNOTATION
from raftkv_operator.models import API_GROUP, API_VERSION

Obj = dict[str, Any]
T = TypeVar("T")

MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
CLUSTERS = "raftclusters"
CHECKPOINTS = "raftcheckpoints"
CERT_MANAGER_GROUP = "cert-manager.io"
CERTIFICATES = "certificates"

_lock = threading.Lock()
_api: client.ApiClient | None = None


def configure(
    api_client: client.ApiClient | None = None, *, reload: bool = False
) -> client.ApiClient:
    """Load credentials: in-cluster, else the kubeconfig (KUBECONFIG or ~/.kube/config).

    Once, unless `reload` (every operator start reloads: a process may run the operator
    more than once, e.g. tests against several clusters).
    """
    global _api
    with _lock:
        if api_client is not None:
            _api = api_client
        elif reload:
            _api = None
        if _api is None:
            configuration = client.Configuration()
            try:
                kubernetes.config.load_incluster_config(client_configuration=configuration)
            except kubernetes.config.ConfigException:
                kubernetes.config.load_kube_config(client_configuration=configuration)
            # Several handlers call at once from worker threads.
            configuration.connection_pool_maxsize = 32
            _api = client.ApiClient(configuration)
        return _api


def _client() -> client.ApiClient:
    return _api if _api is not None else configure()


def _core() -> client.CoreV1Api:
    return client.CoreV1Api(_client())


def _apps() -> client.AppsV1Api:
    return client.AppsV1Api(_client())


def _policy() -> client.PolicyV1Api:
    return client.PolicyV1Api(_client())


def _batch() -> client.BatchV1Api:
    return client.BatchV1Api(_client())


def _networking() -> client.NetworkingV1Api:
    return client.NetworkingV1Api(_client())


def _custom() -> client.CustomObjectsApi:
    return client.CustomObjectsApi(_client())


def to_dict(obj: Any) -> Obj:
    if isinstance(obj, dict):
        return obj
    result = _client().sanitize_for_serialization(obj)
    assert isinstance(result, dict)
    return result


async def _run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await asyncio.to_thread(functools.partial(fn, *args, **kwargs))


async def _optional(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Obj | None:
    """The object, or None when it does not exist."""
    try:
        return to_dict(await _run(fn, *args, **kwargs))
    except ApiException as e:
        if e.status == 404:
            return None
        raise


async def _ignore_missing(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> bool:
    """Run a delete; False when the object was already gone."""
    try:
        await _run(fn, *args, **kwargs)
    except ApiException as e:
        if e.status == 404:
            return False
        raise
    return True


def is_conflict(e: BaseException) -> bool:
    return isinstance(e, ApiException) and e.status in (409, 422)


# ---- RaftCluster / RaftCheckpoint ------------------------------------------------------------


async def get_cluster(namespace: str, name: str) -> Obj | None:
    api = _custom()
    return await _optional(
        api.get_namespaced_custom_object, API_GROUP, API_VERSION, namespace, CLUSTERS, name
    )


async def patch_cluster_status(namespace: str, name: str, status: Obj) -> Obj:
    api = _custom()
    return to_dict(
        await _run(
            api.patch_namespaced_custom_object_status,
            API_GROUP,
            API_VERSION,
            namespace,
            CLUSTERS,
            name,
            {"status": status},
            _content_type=MERGE,
        )
    )


async def patch_cluster_metadata(namespace: str, name: str, metadata: Obj) -> Obj:
    api = _custom()
    return to_dict(
        await _run(
            api.patch_namespaced_custom_object,
            API_GROUP,
            API_VERSION,
            namespace,
            CLUSTERS,
            name,
            {"metadata": metadata},
            _content_type=MERGE,
        )
    )


async def create_checkpoint_object(namespace: str, body: Obj) -> bool:
    """Create a RaftCheckpoint; False if one by that name exists already."""
    api = _custom()
    try:
        await _run(
            api.create_namespaced_custom_object,
            API_GROUP,
            API_VERSION,
            namespace,
            CHECKPOINTS,
            body,
        )
    except ApiException as e:
        if e.status == 409:
            return False
        raise
    return True


async def get_checkpoint_object(namespace: str, name: str) -> Obj | None:
    api = _custom()
    return await _optional(
        api.get_namespaced_custom_object, API_GROUP, API_VERSION, namespace, CHECKPOINTS, name
    )


async def patch_checkpoint_status(namespace: str, name: str, status: Obj) -> None:
    api = _custom()
    await _run(
        api.patch_namespaced_custom_object_status,
        API_GROUP,
        API_VERSION,
        namespace,
        CHECKPOINTS,
        name,
        {"status": status},
        _content_type=MERGE,
    )


async def list_checkpoint_objects(namespace: str, label_selector: str) -> list[Obj]:
    api = _custom()
    answer = await _run(
        api.list_namespaced_custom_object,
        API_GROUP,
        API_VERSION,
        namespace,
        CHECKPOINTS,
        label_selector=label_selector,
    )
    return list(to_dict(answer).get("items", []))


async def delete_checkpoint_object(namespace: str, name: str) -> bool:
    api = _custom()
    return await _ignore_missing(
        api.delete_namespaced_custom_object, API_GROUP, API_VERSION, namespace, CHECKPOINTS, name
    )


# ---- pods and volumes ------------------------------------------------------------------------


async def list_pods(namespace: str, label_selector: str) -> list[Obj]:
    answer = await _run(_core().list_namespaced_pod, namespace, label_selector=label_selector)
    return [to_dict(p) for p in answer.items]


class PodChanged(Exception):
    """A conditional pod write found the pod changed (or gone) since it was read."""


async def patch_pod_role(
    namespace: str, name: str, value: str | None, resource_version: str | None
) -> str | None:
    """Set a pod's role label as the operator, only on the version of the pod the decision
    was made from (`resource_version`: the API answers 409 if the pod changed since, e.g.
    its member labelled itself meanwhile). Removes the member's term annotation: the label
    is the operator's now and must not pass for the member's own later. Returns the pod's
    new resourceVersion; PodChanged when it changed (or is gone) and nothing was written."""
    metadata: dict[str, Any] = {
        "labels": {ROLE_LABEL: value},
        "annotations": {ROLE_TERM_ANNOTATION: None},
    }
    if resource_version is not None:
        metadata["resourceVersion"] = resource_version
    try:
        pod = await _run(
            _core().patch_namespaced_pod,
            name,
            namespace,
            {"metadata": metadata},
            _content_type=MERGE,
        )
    except ApiException as e:
        if e.status in (404, 409):
            raise PodChanged(f"pod {namespace}/{name} changed since it was read") from None
        raise
    version = getattr(getattr(pod, "metadata", None), "resource_version", None)
    return str(version) if version else None


async def delete_pod(namespace: str, name: str, uid: str | None) -> bool:
    """Delete a pod, only the incarnation with `uid` (never its replacement)."""
    options = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid) if uid else None)
    try:
        await _run(_core().delete_namespaced_pod, name, namespace, body=options)
    except ApiException as e:
        if e.status in (404, 409):
            return False
        raise
    return True


async def list_volumes(namespace: str, label_selector: str) -> list[Obj]:
    answer = await _run(
        _core().list_namespaced_persistent_volume_claim, namespace, label_selector=label_selector
    )
    return [to_dict(v) for v in answer.items]


async def delete_volume(namespace: str, name: str, uid: str | None = None) -> bool:
    """Delete a claim (with `uid`: only that incarnation, never a replacement)."""
    options = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid) if uid else None)
    try:
        await _run(_core().delete_namespaced_persistent_volume_claim, name, namespace, body=options)
    except ApiException as e:
        if e.status in (404, 409):
            return False
        raise
    return True


async def create_volume(namespace: str, body: Obj) -> bool:
    """Create a PersistentVolumeClaim; False if it exists already."""
    try:
        await _run(_core().create_namespaced_persistent_volume_claim, namespace, body)
    except ApiException as e:
        if e.status == 409:
            return False
        raise
    return True


# ---- owned objects -----------------------------------------------------------------------------


async def get_statefulset(namespace: str, name: str) -> Obj | None:
    return await _optional(_apps().read_namespaced_stateful_set, name, namespace)


async def create_statefulset(namespace: str, body: Obj) -> Obj:
    return to_dict(await _run(_apps().create_namespaced_stateful_set, namespace, body))


async def patch_statefulset(
    namespace: str, name: str, patch: Any, *, json_patch: bool = False
) -> Obj:
    return to_dict(
        await _run(
            _apps().patch_namespaced_stateful_set,
            name,
            namespace,
            patch,
            _content_type=JSON_PATCH if json_patch else MERGE,
        )
    )


async def ensure(namespace: str, body: Obj) -> str:
    """Create `body`, or merge-patch it where the live object differs.

    Returns "created", "patched" or "unchanged". Server-set fields are left alone: only the
    fields `body` names are compared (`is_subset`).
    """
    kind, name = body["kind"], body["metadata"]["name"]
    if kind in ("ServiceAccount", "Role", "RoleBinding"):
        return await _ensure_node_access(namespace, body)
    core, policy = _core(), _policy()
    if kind == "ConfigMap":
        live = await _optional(core.read_namespaced_config_map, name, namespace)
        if live is None:
            await _run(core.create_namespaced_config_map, namespace, body)
            return "created"
        stale = set(live.get("data") or {}) - set(body.get("data") or {})
        if is_subset(body, live) and not stale:
            return "unchanged"
        # The data is the whole truth: keys the operator no longer sets are removed.
        patch = {**body, "data": {**(body.get("data") or {}), **dict.fromkeys(stale)}}
        await _run(core.patch_namespaced_config_map, name, namespace, patch, _content_type=MERGE)
        return "patched"
    if kind == "Service":
        live = await _optional(core.read_namespaced_service, name, namespace)
        if live is None:
            await _run(core.create_namespaced_service, namespace, body)
            return "created"
        if is_subset(body, live):
            return "unchanged"
        await _run(core.patch_namespaced_service, name, namespace, body, _content_type=MERGE)
        return "patched"
    if kind == "PodDisruptionBudget":
        live = await _optional(policy.read_namespaced_pod_disruption_budget, name, namespace)
        if live is None:
            await _run(policy.create_namespaced_pod_disruption_budget, namespace, body)
            return "created"
        if is_subset(body, live):
            return "unchanged"
        await _run(
            policy.patch_namespaced_pod_disruption_budget,
            name,
            namespace,
            body,
            _content_type=MERGE,
        )
        return "patched"
    if kind == "NetworkPolicy":
        networking = _networking()
        live = await _optional(networking.read_namespaced_network_policy, name, namespace)
        if live is None:
            await _run(networking.create_namespaced_network_policy, namespace, body)
            return "created"
        if is_subset(body, live) and is_subset(live.get("spec"), body["spec"]):
            return "unchanged"
        # The rules are the whole truth: replaced, so a dropped selector stops admitting.
        body = {
            **body,
            "metadata": {
                **body["metadata"],
                "resourceVersion": live["metadata"]["resourceVersion"],
            },
        }
        await _run(networking.replace_namespaced_network_policy, name, namespace, body)
        return "patched"
    if kind == "Certificate":
        custom = _custom()
        live = await _optional(
            custom.get_namespaced_custom_object,
            CERT_MANAGER_GROUP, "v1", namespace, CERTIFICATES, name,
        )  # fmt: skip
        if live is None:
            await _run(
                custom.create_namespaced_custom_object,
                CERT_MANAGER_GROUP, "v1", namespace, CERTIFICATES, body,
            )  # fmt: skip
            return "created"
        if is_subset(body, live):
            return "unchanged"
        await _run(
            custom.patch_namespaced_custom_object,
            CERT_MANAGER_GROUP, "v1", namespace, CERTIFICATES, name, body,
            _content_type=MERGE,
        )  # fmt: skip
        return "patched"
    raise ValueError(f"ensure() does not handle {kind}")


def _rbac() -> client.RbacAuthorizationV1Api:
    return client.RbacAuthorizationV1Api(_client())


async def _ensure_node_access(namespace: str, body: Obj) -> str:
    """The members' ServiceAccount, Role and RoleBinding (nodeaccess.py). A merge patch
    replaces lists whole, so a Role's resourceNames shrink as well as grow."""
    kind, name = body["kind"], body["metadata"]["name"]
    core, rbac = _core(), _rbac()
    if kind == "ServiceAccount":
        live = await _optional(core.read_namespaced_service_account, name, namespace)
        if live is None:
            await _run(core.create_namespaced_service_account, namespace, body)
            return "created"
        if is_subset(body, live):
            return "unchanged"
        await _run(
            core.patch_namespaced_service_account, name, namespace, body, _content_type=MERGE
        )
        return "patched"
    if kind == "Role":
        live = await _optional(rbac.read_namespaced_role, name, namespace)
        if live is None:
            await _run(rbac.create_namespaced_role, namespace, body)
            return "created"
        if is_subset(body, live):
            return "unchanged"
        await _run(rbac.patch_namespaced_role, name, namespace, body, _content_type=MERGE)
        return "patched"
    live = await _optional(rbac.read_namespaced_role_binding, name, namespace)
    if live is None:
        await _run(rbac.create_namespaced_role_binding, namespace, body)
        return "created"
    if is_subset(body, live):
        return "unchanged"
    await _run(rbac.patch_namespaced_role_binding, name, namespace, body, _content_type=MERGE)
    return "patched"


def is_subset(wanted: Any, live: Any) -> bool:
    """Every field of `wanted` has the same value in `live` (lists: same length, in order)."""
    if isinstance(wanted, dict):
        return isinstance(live, dict) and all(
            k in live and is_subset(v, live[k]) for k, v in wanted.items()
        )
    if isinstance(wanted, list):
        return (
            isinstance(live, list)
            and len(wanted) == len(live)
            and all(is_subset(w, v) for w, v in zip(wanted, live, strict=True))
        )
    if isinstance(wanted, int | float) and isinstance(live, str):
        return str(wanted) == live
    return bool(wanted == live)


# ---- Secrets (credentials.py decides; whole objects, written with optimistic locking) --------


async def get_secret(namespace: str, name: str) -> Obj | None:
    return await _optional(_core().read_namespaced_secret, name, namespace)


async def write_secret(namespace: str, body: Obj, live: Obj | None) -> None:
    """Create `body`, or replace `live` with it (409 if `live` changed since it was read: the
    next round decides again from the new object)."""
    core = _core()
    if live is None:
        await _run(core.create_namespaced_secret, namespace, body)
        return
    body = {
        **body,
        "metadata": {**body["metadata"], "resourceVersion": live["metadata"]["resourceVersion"]},
    }
    await _run(core.replace_namespaced_secret, body["metadata"]["name"], namespace, body)


# ---- archive Jobs ----------------------------------------------------------------------------


async def create_job(namespace: str, body: Obj) -> bool:
    """Create a Job; False if it exists already."""
    try:
        await _run(_batch().create_namespaced_job, namespace, body)
    except ApiException as e:
        if e.status == 409:
            return False
        raise
    return True


async def get_job(namespace: str, name: str) -> Obj | None:
    return await _optional(_batch().read_namespaced_job, name, namespace)


# ---- operator leader election (leadership.py; synchronous: it runs in its own thread) ------


def _coordination() -> client.CoordinationV1Api:
    return client.CoordinationV1Api(_client())


def read_lease(namespace: str, name: str) -> Obj | None:
    try:
        return to_dict(_coordination().read_namespaced_lease(name, namespace))
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def create_lease(namespace: str, body: Any) -> Obj | None:
    """Create the Lease; None if one exists already (another replica was first)."""
    try:
        return to_dict(_coordination().create_namespaced_lease(namespace, body))
    except ApiException as e:
        if e.status == 409:
            return None
        raise


def replace_lease(namespace: str, name: str, body: Any) -> Obj | None:
    """Replace the Lease at the resourceVersion `body` carries; None on a conflict."""
    try:
        return to_dict(_coordination().replace_namespaced_lease(name, namespace, body))
    except ApiException as e:
        if e.status == 409:
            return None
        raise
