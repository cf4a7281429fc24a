"""How the operator reaches each cluster's members: one HTTP session, per-cluster TLS and
token (from the credential Secrets), node URLs, fetching every member's status, and the
wake-ups that cut a reconcile wait short. In memory only, never state."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Mapping
from typing import Any

import aiohttp

from raftkv_operator import credentials, desired, kube, planner
from raftkv_operator.members import NodeAuth, NodeClient, NodeError, NodeUnreachable
from raftkv_operator.models import RaftCluster
from raftkv_operator.nodestatus import NodeStatus
from raftkv_operator.settings import SETTINGS


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


def node_auth(
    cluster: RaftCluster, live: Mapping[str, Mapping[str, Any] | None]
) -> NodeAuth | None:
    """The operator's NodeAuth for `cluster` (None when its client port is plain, or the
    credentials are not made yet)."""
    if not desired.client_tls(cluster):
        return None
    creds = credentials.node_credentials(cluster, live)
    if creds is None:
        return None
    hostname = f"{desired.client_service_name(cluster.name)}.{cluster.namespace}.svc"
    return NodeAuth.from_pem(creds.ca_pem, hostname, creds.token)


def node_url(ip: str, port: int, *, secure: bool = False) -> str:
    """`http(s)://<pod IP>:<port>`; an IPv6 address goes in brackets (RFC 3986)."""
    scheme = "https" if secure else "http"
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return f"{scheme}://{ip}:{port}"  # a name, not an address
    host = f"[{address.compressed}]" if address.version == 6 else address.compressed
    return f"{scheme}://{host}:{port}"


async def fetch_statuses(
    nodes: NodeClient, pods: Mapping[str, planner.PodState], port: int
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
