"""What the operator's parts share: settings, the in-memory runtime (HTTP session and
wake-ups, never state), Event helpers, and reading pods and members."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import aiohttp
import kopf

from raftkv_operator import credentials, desired, kube, reconcile
from raftkv_operator.members import NodeAuth, NodeClient, NodeError, NodeStatus, NodeUnreachable
from raftkv_operator.models import DEFAULT_IMAGE_REPOSITORY, RaftCluster

MEMBER_VOLUMES_ANNOTATION = "raftkv.dev/member-volumes"
"""On a RaftCluster: {member: uid of its data claim} while it was a healthy voter. A
different uid later means the member's data is gone (recover it, never let it vote as is)."""
SCHEDULED_LABEL = desired.SCHEDULED_LABEL
DATA_CLAIM_PREFIX = f"{desired.DATA_VOLUME}-"
"""A member's claim is `data-<pod>` (the StatefulSet's volumeClaimTemplate)."""

KopfLogger = logging.Logger | logging.LoggerAdapter[Any]


@dataclass
class Settings:
    """Timings and defaults; environment variables RAFTKV_OPERATOR_<FIELD> (upper-cased)
    override them when the operator starts."""

    resync_seconds: float = 10.0
    """Reconcile a quiet cluster at least this often."""
    busy_seconds: float = 1.0
    """Reconcile this often while something is in flight (events wake it sooner)."""
    status_wait_seconds: float = 5.0
    """Long-poll duration of `/v1/status?wait=`."""
    node_timeout_seconds: float = 2.0
    """Timeout of a node request that does not wait on the cluster."""
    commit_timeout_seconds: float = 30.0
    """Timeout of a node request that waits for a commit (remove, transfer)."""
    image_repository: str = DEFAULT_IMAGE_REPOSITORY
    """Image repository for clusters that give `version` but no `image`."""

    def load_env(self) -> None:
        for name, default in vars(Settings()).items():
            variable = f"RAFTKV_OPERATOR_{name.upper()}"
            raw = os.environ.get(variable)
            if not raw:
                continue
            if isinstance(default, str):
                setattr(self, name, raw)
                continue
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"{variable}={raw!r} is not a number of seconds") from None
            if not value > 0:
                raise ValueError(f"{variable}={raw!r} must be positive")
            setattr(self, name, value)


SETTINGS = Settings()


class OperatorRuntime:
    """Operator-wide in-memory parts: the HTTP session and wake-ups (never state)."""

    def __init__(self) -> None:
        self.session: aiohttp.ClientSession | None = None
        self.wakeups: dict[tuple[str, str], asyncio.Event] = {}
        self.pod_events: dict[tuple[str, str], asyncio.Event] = {}
        self.generations: dict[tuple[str, str], tuple[Any, bool]] = {}
        """(generation, deleting) of each cluster last seen by cluster_event."""
        self.node_auth: dict[tuple[str, str], NodeAuth | None] = {}
        """How to call each cluster's members (None: `tls.mode: disabled`), kept by the
        reconciler, which writes the Secrets it comes from."""

    def nodes(self) -> NodeClient:
        if self.session is None or self.session.closed:
            self.session = aiohttp.ClientSession()
        return NodeClient(
            self.session,
            timeout=SETTINGS.node_timeout_seconds,
            commit_timeout=SETTINGS.commit_timeout_seconds,
        )

    async def cluster_nodes(self, namespace: str, name: str) -> NodeClient:
        """A node client for one cluster: TLS + the operator's token when it is secured."""
        key = (namespace, name)
        if key not in self.node_auth:
            body = await kube.get_cluster(namespace, name)
            if body is not None:
                cluster = RaftCluster.model_validate(body)
                live = await read_credentials(cluster)
                self.node_auth[key] = node_auth(cluster, live)
        return self.nodes().with_auth(self.node_auth.get(key))

    def wake(self, namespace: str | None, cluster: str | None) -> None:
        if namespace is None or cluster is None:
            return
        for table in (self.wakeups, self.pod_events):
            event = table.get((namespace, cluster))
            if event is not None:
                event.set()


RUNTIME = OperatorRuntime()


async def read_credentials(cluster: RaftCluster) -> dict[str, dict[str, Any] | None]:
    """The cluster's credential Secrets by name (None: missing); none when insecure."""
    if not cluster.spec.secure:
        return {}
    names = credentials.secret_names(cluster)
    found = await asyncio.gather(*(kube.get_secret(cluster.namespace, n) for n in names))
    return dict(zip(names, found, strict=True))


def node_auth(cluster: RaftCluster, live: Mapping[str, Mapping[str, Any] | None]
              ) -> NodeAuth | None:
    """The operator's NodeAuth for `cluster` (None when insecure or not made yet)."""
    if not cluster.spec.secure:
        return None
    creds = credentials.node_credentials(cluster, live)
    if creds is None:
        return None
    hostname = f"{desired.client_service_name(cluster.name)}.{cluster.namespace}.svc"
    return NodeAuth.from_pem(creds.ca_pem, hostname, creds.token)


def namespaced(namespace: str | None) -> str:
    if not namespace:
        raise kopf.PermanentError("raftkv resources are namespaced")
    return namespace


def info(body: Mapping[str, Any], *, reason: str, message: str) -> None:
    """A Normal Event on the object (kopf posts it in the background)."""
    kopf.info(cast(kopf.Body, body), reason=reason, message=message)


def warn(body: Mapping[str, Any], *, reason: str, message: str) -> None:
    kopf.warn(cast(kopf.Body, body), reason=reason, message=message)


def pod_state(cluster_name: str, pod: Mapping[str, Any]) -> reconcile.PodState | None:
    meta = pod.get("metadata", {})
    ordinal = reconcile.ordinal_of(cluster_name, meta.get("name", ""))
    if ordinal is None:
        return None
    status = pod.get("status") or {}
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or ()
    )
    return reconcile.PodState(
        name=meta["name"],
        ordinal=ordinal,
        ip=status.get("podIP") or None,
        ready=ready,
        terminating=bool(meta.get("deletionTimestamp")),
        template_hash=(meta.get("annotations") or {}).get(desired.POD_TEMPLATE_HASH_ANNOTATION),
        role_label=(meta.get("labels") or {}).get(desired.ROLE_LABEL),
        uid=meta.get("uid"),
        role_term=_term((meta.get("annotations") or {}).get(desired.ROLE_TERM_ANNOTATION)),
    )


def _term(text: object) -> int | None:
    """A Raft term written by a member (anyone who may patch the pod could write anything)."""
    if not isinstance(text, str) or not text.isdigit() or len(text) > 20:
        return None
    return int(text)


def node_url(ip: str, port: int, *, secure: bool = False) -> str:
    """`http(s)://<pod IP>:<port>`; an IPv6 address goes in brackets (RFC 3986)."""
    scheme = "https" if secure else "http"
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return f"{scheme}://{ip}:{port}"  # a name, not an address
    host = f"[{address.compressed}]" if address.version == 6 else address.compressed
    return f"{scheme}://{host}:{port}"


def operator_namespace() -> str | None:
    """The operator's own namespace (the chart sets OPERATOR_NAMESPACE from the pod)."""
    return os.environ.get("OPERATOR_NAMESPACE") or None


async def fetch_statuses(
    nodes: NodeClient, pods: Mapping[str, reconcile.PodState], port: int
) -> dict[str, NodeStatus]:
    """`/v1/status` of every running pod that answers, by pod name."""
    targets = {n: p.ip for n, p in pods.items() if p.ip and not p.terminating}

    async def one(ip: str) -> NodeStatus | None:
        try:
            return await nodes.status(node_url(ip, port, secure=nodes.auth is not None))
        except (NodeUnreachable, NodeError):
            return None

    answers = await asyncio.gather(*(one(ip) for ip in targets.values()))
    return {n: s for n, s in zip(targets, answers, strict=True) if s is not None}


def template_hash(template: Mapping[str, Any]) -> str | None:
    """The pod-template hash annotation of a (StatefulSet's or pod's) template."""
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(desired.POD_TEMPLATE_HASH_ANNOTATION)
    return str(value) if value else None
