"""members.py against a fake node (an aiohttp app speaking the contract of docs/contracts.md),
and the small pure helpers of the operator's other modules."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from raftkv.runtime.identity import member_id as node_member_id
from raftkv_operator import connections, kube, metrics, observe, reconciler, settings
from raftkv_operator.__main__ import parse_args
from raftkv_operator.members import NodeClient, NodeError, NodeUnreachable, member_id
from raftkv_operator.models import ClusterPhase


@pytest.mark.parametrize("name", ["demo-0", "demo-1", "a", "x" * 63, ""])
def test_member_id_is_the_nodes(name: str) -> None:
    assert member_id(name) == node_member_id(name)


class FakeNode:
    """Enough of a raftkv node for the client: status (with long-poll), members, transfer,
    checkpoints."""

    def __init__(self) -> None:
        self.term = 3
        self.leader = 7
        self.changed = asyncio.Event()
        self.removed: set[int] = set()
        self.members: dict[int, dict[str, Any]] = {
            7: {
                "id": 7,
                "name": "n-0",
                "peer_url": "n-0:7380",
                "client_url": "",
                "role": "voter",
                "match_index": 10,
            },
        }
        self.requests: list[tuple[str, str, Any]] = []

    def status(self) -> dict[str, Any]:
        return {
            "name": "n-0",
            "id": 7,
            "role": "leader",
            "term": self.term,
            "leader": {"id": self.leader, "name": "n-0", "client_url": ""},
            "commit_index": 10,
            "applied_index": 10,
            "last_index": 10,
            "ready": True,
            "members": list(self.members.values()),
        }

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/status", self.get_status)
        app.router.add_post("/v1/members", self.add)
        app.router.add_post("/v1/members/{id}/promote", self.promote)
        app.router.add_delete("/v1/members/{id}", self.remove)
        app.router.add_post("/v1/leader/transfer", self.transfer)
        app.router.add_post("/v1/checkpoints", self.checkpoint)
        app.router.add_get("/v1/checkpoints/{id}", self.get_checkpoint)
        return app

    async def get_status(self, request: web.Request) -> web.Response:
        self.requests.append(("GET", "/v1/status", dict(request.query)))
        if "wait" in request.query:
            leader, term = int(request.query["leader"]), int(request.query["term"])
            if (leader, term) == (self.leader, self.term):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), float(request.query["wait"]))
        return web.json_response(self.status())

    async def add(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(("POST", "/v1/members", body))
        mid = body["id"]
        if mid in self.removed:
            return web.json_response({"error": "member_id_removed", "message": "no"}, status=409)
        self.members[mid] = {**body, "id": mid, "role": "learner", "match_index": 0}
        return web.json_response({"id": mid})

    async def promote(self, request: web.Request) -> web.Response:
        mid = int(request.match_info["id"])
        if self.members[mid]["match_index"] < 10:
            return web.json_response({"error": "not_caught_up", "message": "lags"}, status=409)
        self.members[mid]["role"] = "voter"
        return web.json_response({"id": mid, "role": "voter"})

    async def remove(self, request: web.Request) -> web.Response:
        mid = int(request.match_info["id"])
        if mid not in self.members:
            return web.json_response({"error": "member_not_found", "message": "no"}, status=404)
        del self.members[mid]
        self.removed.add(mid)
        return web.json_response({"id": mid, "removed": True})

    async def transfer(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(("POST", "/v1/leader/transfer", body))
        return web.json_response({"leader": body.get("to", 99)})

    async def checkpoint(self, request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response(
            {
                "id": body["id"],
                "index": 10,
                "term": 3,
                "sha256": "0" * 64,
                "size": 5,
                "time": 1.5,
                "members": ["n-0"],
            }
        )

    async def get_checkpoint(self, request: web.Request) -> web.Response:
        if request.match_info["id"] != "c1":
            return web.json_response({"error": "checkpoint_not_found", "message": "no"}, status=404)
        return web.json_response({"id": "c1"})


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeNode, str, NodeClient]]:
    node = FakeNode()
    runner = web.AppRunner(node.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    async with aiohttp.ClientSession() as session:
        yield node, f"http://127.0.0.1:{port}", NodeClient(session, timeout=2, commit_timeout=2)
    await runner.cleanup()


async def test_status_parses_the_contract(fake: tuple[FakeNode, str, NodeClient]) -> None:
    _, url, client = fake
    status = await client.status(url)
    assert status.is_leader and status.is_member and status.leader_id == 7
    assert status.member("n-0") is not None and status.member("n-0").voter  # type: ignore[union-attr]


async def test_a_malformed_status_is_a_node_error_not_a_crash(
    fake: tuple[FakeNode, str, NodeClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    node, url, client = fake
    monkeypatch.setattr(node, "status", lambda: {**FakeNode().status(), "term": "three"})
    with pytest.raises(NodeError) as caught:
        await client.status(url)
    assert caught.value.code == "malformed_status" and "term" in caught.value.message
    # A newer node's extra fields are no error.
    monkeypatch.setattr(node, "status", lambda: {**FakeNode().status(), "shards": [1, 2]})
    assert (await client.status(url)).term == 3


async def test_long_poll_returns_on_a_leadership_change(
    fake: tuple[FakeNode, str, NodeClient],
) -> None:
    node, url, client = fake
    poll = asyncio.create_task(client.status(url, wait=10, leader=7, term=3))

    async def arrived() -> None:
        while not any(r[2].get("wait") for r in node.requests):
            await asyncio.sleep(0.01)

    await asyncio.wait_for(arrived(), 5)  # the change must happen during the long-poll
    node.term, node.leader = 4, 8
    node.changed.set()
    status = await asyncio.wait_for(poll, 5)
    assert (status.term, status.leader_id) == (4, 8)


async def test_membership_calls(fake: tuple[FakeNode, str, NodeClient]) -> None:
    node, url, client = fake
    mid = await client.add_learner(url, "n-1", "n-1:7380", "http://n-1:7379", 4242)
    assert mid == 4242  # the joiner's own id, not member_id("n-1")
    assert node.requests[-1][2] == {
        "name": "n-1",
        "id": 4242,
        "peer_url": "n-1:7380",
        "client_url": "http://n-1:7379",
    }
    with pytest.raises(NodeError) as caught:
        await client.promote(url, mid)
    assert (caught.value.status, caught.value.code) == (409, "not_caught_up")
    node.members[mid]["match_index"] = 10
    await client.promote(url, mid)
    assert node.members[mid]["role"] == "voter"
    assert await client.remove(url, mid) is True
    assert await client.remove(url, mid) is False  # already gone: idempotent
    with pytest.raises(NodeError) as caught:
        await client.add_learner(url, "n-1", "n-1:7380", "http://n-1:7379", mid)
    assert (caught.value.status, caught.value.code) == (409, "member_id_removed")
    assert await client.transfer_leader(url, 42) == 42


async def test_checkpoints(fake: tuple[FakeNode, str, NodeClient]) -> None:
    _, url, client = fake
    manifest = await client.create_checkpoint(url, "c1")
    assert manifest["id"] == "c1" and manifest["index"] == 10
    assert await client.checkpoint(url, "c1") == {"id": "c1"}
    assert await client.checkpoint(url, "nope") is None


async def test_an_unreachable_node_is_reported_as_such() -> None:
    async with aiohttp.ClientSession() as session:
        client = NodeClient(session, timeout=0.5)
        with pytest.raises(NodeUnreachable):
            await client.status("http://127.0.0.1:1")


# ---- small helpers of the other modules ------------------------------------------------------


def test_is_subset_ignores_server_set_fields_but_not_changes() -> None:
    wanted = {"spec": {"ports": [{"port": 1}], "selector": {"a": "b"}}}
    live = {
        "spec": {
            "ports": [{"port": 1, "protocol": "TCP"}],
            "selector": {"a": "b"},
            "clusterIP": "1.2.3.4",
        },
        "status": {},
    }
    assert kube.is_subset(wanted, live)
    assert not kube.is_subset({"spec": {"selector": {"a": "c"}}}, live)
    assert not kube.is_subset({"spec": {"ports": [{"port": 1}, {"port": 2}]}}, live)
    assert kube.is_subset({"n": 5}, {"n": "5"})


def test_pod_state_reads_what_the_reconciler_needs() -> None:
    pod = {
        "metadata": {
            "name": "demo-2",
            "uid": "u",
            "labels": {"raftkv.dev/role": "leader"},
            "annotations": {"raftkv.dev/pod-template-hash": "h"},
            "deletionTimestamp": "2026-01-01T00:00:00Z",
        },
        "status": {"podIP": "127.0.0.5", "conditions": [{"type": "Ready", "status": "True"}]},
    }
    state = observe.pod_state("demo", pod)
    assert state is not None
    assert (state.ordinal, state.ip, state.ready, state.terminating) == (2, "127.0.0.5", True, True)
    assert (state.template_hash, state.role_label) == ("h", "leader")
    assert observe.pod_state("demo", {"metadata": {"name": "other-0"}}) is None


def test_recorded_volumes_tolerates_a_bad_annotation() -> None:
    key = observe.MEMBER_VOLUMES_ANNOTATION
    assert reconciler.recorded_volumes({"metadata": {"annotations": {key: '{"a": "1"}'}}}) == {
        "a": "1"
    }
    assert reconciler.recorded_volumes({"metadata": {"annotations": {key: "not json"}}}) == {}
    assert reconciler.recorded_volumes({"metadata": {}}) == {}


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = settings.Settings()
    monkeypatch.setenv("RAFTKV_OPERATOR_BUSY_SECONDS", "0.25")
    monkeypatch.setenv("RAFTKV_OPERATOR_IMAGE_REPOSITORY", "example.com/raftkv")
    loaded.load_env()
    assert loaded.busy_seconds == 0.25
    assert loaded.image_repository == "example.com/raftkv"
    assert loaded.resync_seconds == settings.Settings().resync_seconds
    monkeypatch.setenv("RAFTKV_OPERATOR_RESYNC_SECONDS", "soon")
    with pytest.raises(ValueError, match="RAFTKV_OPERATOR_RESYNC_SECONDS"):
        loaded.load_env()
    monkeypatch.setenv("RAFTKV_OPERATOR_RESYNC_SECONDS", "0")
    with pytest.raises(ValueError, match="positive"):
        loaded.load_env()


def test_metrics_count_clusters_by_phase() -> None:
    def clusters(phase: ClusterPhase) -> float:
        value = metrics.REGISTRY.get_sample_value(
            "raftkv_operator_clusters", {"phase": phase.value}
        )
        return value or 0.0

    available, scaling = clusters(ClusterPhase.AVAILABLE), clusters(ClusterPhase.SCALING)
    metrics.set_phase("unit-ns", "a", ClusterPhase.AVAILABLE)
    metrics.set_phase("unit-ns", "b", ClusterPhase.AVAILABLE)
    metrics.set_phase("unit-ns", "c", ClusterPhase.SCALING)
    metrics.RECONCILES.labels("a", "unit-ns", "success").inc()
    assert clusters(ClusterPhase.AVAILABLE) == available + 2
    assert clusters(ClusterPhase.SCALING) == scaling + 1
    text = metrics.exposition().decode()
    assert (
        'raftkv_operator_reconciles_total{cluster="a",namespace="unit-ns",result="success"}' in text
    )
    for name in ("a", "b", "c"):
        metrics.forget_cluster("unit-ns", name)
    assert clusters(ClusterPhase.AVAILABLE) == available
    assert 'namespace="unit-ns"' not in metrics.exposition().decode()
    for metric in (
        "raftkv_operator_reconcile_duration_seconds histogram",
        "raftkv_operator_checkpoints_total counter",
        "raftkv_operator_leader_switch_seconds histogram",
        "raftkv_operator_clusters gauge",
    ):
        assert f"# TYPE {metric}" in text, metric


def test_command_line() -> None:
    args = parse_args(["--namespace", "a", "-n", "b", "--peering", "p", "--metrics-port", "9090"])
    assert args.namespace == ["a", "b"] and args.peering == "p" and args.metrics_port == 9090
    assert parse_args(["-A"]).all_namespaces
    for bad in ([], ["-A", "-n", "x"], ["-A", "--metrics-port", "0"]):
        with pytest.raises(SystemExit):
            parse_args(bad)


def test_handlers_register_with_kopf() -> None:
    import kopf

    from raftkv_operator import handlers

    registry = kopf.get_default_registry()
    spawning = {h.id for h in registry._spawning.get_all_handlers()}
    assert {"reconcile", "route-leader", "checkpoint-schedule"} <= spawning
    assert handlers.FINALIZER == "raftkv.dev/finalizer"


def test_node_urls_bracket_ipv6_addresses() -> None:
    from raftkv_operator.connections import node_url

    assert node_url("10.0.0.7", 7379) == "http://10.0.0.7:7379"
    assert node_url("fd00::1:7", 7379) == "http://[fd00::1:7]:7379"
    assert node_url("FD00:0:0::7", 7379) == "http://[fd00::7]:7379"


async def test_secured_calls_check_the_clusters_ca_and_name_and_send_the_token(
    tmp_path: Any,
) -> None:
    """The operator's calls to a secured cluster: TLS to a pod IP, the certificate checked
    for `<name>.<ns>.svc` against that cluster's CA only, the operator's token sent."""
    import ssl
    from datetime import UTC, datetime

    from raftkv.security import pki
    from raftkv_operator import credentials
    from raftkv_operator.members import NodeAuth

    from .conftest import example_cluster

    cluster = example_cluster("minimal.yaml")  # "demo" in namespace "prod"
    live: dict[str, Any] = {}
    for manifest, _why in credentials.plan(cluster, {}, datetime.now(UTC)).writes:
        live[manifest["metadata"]["name"]] = manifest
    served = credentials.secret_data(live["demo-client-tls"])
    pki.CertKey(served["tls.crt"], served["tls.key"]).write(tmp_path / "c.crt", tmp_path / "c.key")
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "c.crt", tmp_path / "c.key")

    seen: list[str | None] = []

    async def status(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.json_response(FakeNode().status())

    app = web.Application()
    app.router.add_get("/v1/status", status)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = connections.node_url("127.0.0.1", port, secure=True)
    assert url.startswith("https://")
    creds = credentials.node_credentials(cluster, live)
    assert creds is not None
    auth = connections.node_auth(cluster, live)
    assert auth is not None and auth.server_hostname == "demo.prod.svc"
    try:
        async with aiohttp.ClientSession() as session:
            client = NodeClient(session, timeout=2).with_auth(auth)
            assert (await client.status(url)).name == "n-0"
            assert seen == [f"Bearer {creds.token}"]
            # Another cluster's CA, or another name: refused before any request is sent.
            other = pki.make_ca()
            for wrong in (
                NodeAuth.from_pem(other.cert_pem, "demo.prod.svc", creds.token),
                NodeAuth.from_pem(creds.ca_pem, "demo.staging.svc", creds.token),
            ):
                with pytest.raises(NodeUnreachable):
                    await client.with_auth(wrong).status(url)
            assert len(seen) == 1
    finally:
        await runner.cleanup()
