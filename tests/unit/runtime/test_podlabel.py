"""runtime/podlabel.py: the node keeps its own pod's role label true through a (fake) API
server over TLS: the newest role wins, failures are retried and counted, a rotated token
is picked up, an untrusted server is refused, plain HTTP is refused outright."""

from __future__ import annotations

import asyncio
import itertools
import json
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from raftkv.runtime.podlabel import (
    ROLE_LABEL,
    ROLE_TERM_ANNOTATION,
    PodLabeler,
    PodLabelError,
    PodLabelMetrics,
    in_cluster_api_url,
    label_for_role,
    make_config,
)
from raftkv.security.pki import issue_cert, make_ca


def test_label_for_each_role() -> None:
    assert label_for_role("leader") == "leader"
    assert label_for_role("learner") == "learner"
    for role in ("follower", "candidate", "pre_candidate"):
        assert label_for_role(role) == "follower"
    assert label_for_role("none") is None  # not (or no longer) a member: no label


def test_in_cluster_url_brackets_ipv6() -> None:
    assert (
        in_cluster_api_url(
            {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
        )
        == "https://10.0.0.1:443"
    )
    assert (
        in_cluster_api_url(
            {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "6443"}
        )
        == "https://[fd00::1]:6443"
    )
    with pytest.raises(ValueError, match="KUBERNETES_SERVICE_HOST"):
        in_cluster_api_url({})


def test_config_refuses_plain_http_and_missing_namespace(tmp_path: Path) -> None:
    common = {"pod": "c-0", "token_file": tmp_path / "t", "ca_file": tmp_path / "ca"}
    with pytest.raises(ValueError, match="https"):
        make_config(api_url="http://127.0.0.1:1", namespace="ns", **common)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="namespace"):
        make_config(api_url="https://127.0.0.1:1", namespace="", **common)  # type: ignore[arg-type]
    config = make_config(
        api_url="",
        namespace="ns",
        env={"KUBERNETES_SERVICE_HOST": "h", "KUBERNETES_SERVICE_PORT": "1"},
        **common,
    )  # type: ignore[arg-type]
    assert config.pod_url == "https://h:1/api/v1/namespaces/ns/pods/c-0"


@dataclass
class FakeApi:
    """PATCH .../pods/<pod>: records (token, labels); answers `status` (default 200)."""

    url: str
    ca_file: Path
    token_file: Path
    seen: list[tuple[str, dict[str, str | None]]] = field(default_factory=list)
    terms: list[str] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    accepted_token: str = "token-1"
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    gate: asyncio.Event | None = None
    arrived: int = 0  # requests seen, answered or not

    async def patch(self, request: web.Request) -> web.Response:
        self.arrived += 1
        if self.gate is not None:
            await self.gate.wait()
        assert request.content_type == "application/merge-patch+json"
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        metadata = json.loads(await request.read())["metadata"]
        self.seen.append((token, metadata["labels"]))
        self.terms.append(metadata["annotations"][ROLE_TERM_ANNOTATION])
        self.changed.set()
        if token != self.accepted_token:
            return web.json_response({"reason": "Unauthorized"}, status=401)
        status = self.statuses.pop(0) if self.statuses else 200
        return web.json_response({"kind": "Pod"}, status=status)

    def labels(self) -> list[str | None]:
        return [labels[ROLE_LABEL] for token, labels in self.seen if token == self.accepted_token]


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[FakeApi]:
    ca = make_ca("fake kube CA")
    cert = issue_cert(ca, "kube-apiserver", ip_addresses=["127.0.0.1"])
    cert.write(tmp_path / "tls.crt", tmp_path / "tls.key")
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    (tmp_path / "token").write_text("token-1\n")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    fake = FakeApi("", tmp_path / "ca.crt", tmp_path / "token")
    app = web.Application()
    app.router.add_patch("/api/v1/namespaces/ns/pods/c-0", fake.patch)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    port = runner.addresses[0][1]
    fake.url = f"https://127.0.0.1:{port}"
    yield fake
    await runner.cleanup()


def labeler_for(
    api: FakeApi,
    role: Callable[[], str | None],
    ca_file: Path | None = None,
    reassert_seconds: float = PodLabeler.REASSERT_SECONDS,
) -> tuple[PodLabeler, PodLabelMetrics]:
    config = make_config(
        api_url=api.url,
        namespace="ns",
        pod="c-0",
        token_file=api.token_file,
        ca_file=ca_file or api.ca_file,
    )
    metrics = PodLabelMetrics(CollectorRegistry())
    terms = itertools.count(1)  # a new term at each look: only label changes are written
    labeler = PodLabeler(
        config,
        lambda: (role(), next(terms)),
        metrics,
        backoff=(0.01, 0.05),
        reassert_seconds=reassert_seconds,
    )
    return labeler, metrics


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_writes_the_role_and_the_newest_role_wins(api: FakeApi) -> None:
    role = {"now": "follower"}
    labeler, metrics = labeler_for(api, lambda: role["now"])
    labeler.start()
    try:
        assert await labeler.flush(10)
        assert api.labels() == ["follower"]
        assert int(api.terms[0]) >= 1  # the term rides along with the label
        # Hold the server while three changes happen: only the newest is written next.
        api.gate = asyncio.Event()
        role["now"] = "leader"
        labeler.changed()
        await wait_until(lambda: metrics.in_sync._value.get() == 0)
        role["now"] = "follower"
        labeler.changed()
        role["now"] = None
        labeler.changed()
        api.gate.set()
        assert await labeler.flush(10)
        assert api.labels()[-1] is None
        assert api.labels().count("follower") <= 2
        assert metrics.in_sync._value.get() == 1
    finally:
        await labeler.close()


async def test_the_label_is_written_again_while_the_role_stays(api: FakeApi) -> None:
    # The node cannot read its pod, so a label changed behind its back (a human, a stale
    # writer) is only put right if the node writes it again from time to time.
    labeler, metrics = labeler_for(api, lambda: "leader", reassert_seconds=0.2)
    started = asyncio.get_running_loop().time()
    labeler.start()
    try:
        assert await labeler.flush(10)
        await wait_until(lambda: len(api.labels()) >= 3)
        elapsed = asyncio.get_running_loop().time() - started
        assert set(api.labels()) == {"leader"}
        assert len(set(api.terms)) == len(api.terms)  # each with the term of its time
        assert metrics.in_sync._value.get() == 1
        # Again from time to time, not in a loop: the first write, then one per period.
        assert len(api.labels()) <= 2 + elapsed / 0.2, (len(api.labels()), elapsed)
    finally:
        await labeler.close()


async def test_close_ends_the_task_even_if_its_cancellation_is_lost(api: FakeApi) -> None:
    # An HTTP client may turn a cancellation into a timeout (seen on CI: close() waited
    # while the task went on writing). The task must still end, and promptly.
    class LosesCancellation(PodLabeler):
        async def _patch(self, value: str | None, term: int) -> None:
            try:
                await super()._patch(value, term)
            except asyncio.CancelledError:
                raise PodLabelError("network", "timed out") from None

    base, metrics = labeler_for(api, lambda: "leader")
    labeler = LosesCancellation(
        base.config, base.current, metrics, backoff=(0.01, 0.05), reassert_seconds=0.05
    )
    labeler.start()
    assert await labeler.flush(10)
    api.gate = asyncio.Event()  # the next rewrite hangs at the server: close() cancels it
    arrived = api.arrived
    await wait_until(lambda: api.arrived > arrived)
    started = asyncio.get_running_loop().time()
    await asyncio.wait_for(labeler.close(), 3)
    assert asyncio.get_running_loop().time() - started < PodLabeler.REQUEST_TIMEOUT
    assert labeler._task is not None and labeler._task.done()
    api.gate.set()


async def test_errors_are_retried_and_counted(api: FakeApi) -> None:
    api.statuses = [500, 503, 403]
    labeler, metrics = labeler_for(api, lambda: "leader")
    labeler.start()
    try:
        assert await labeler.flush(10)
        assert api.labels() == ["leader"] * 4
        assert metrics.errors.labels("server")._value.get() == 2
        assert metrics.errors.labels("forbidden")._value.get() == 1
        assert metrics.writes._value.get() == 1
    finally:
        await labeler.close()


async def test_a_rotated_token_is_read_again(api: FakeApi) -> None:
    role = {"now": "follower"}
    labeler, metrics = labeler_for(api, lambda: role["now"])
    labeler.start()
    try:
        assert await labeler.flush(10)
        api.accepted_token = "token-2"  # the server moved on first: 401 until re-read
        role["now"] = "leader"
        labeler.changed()
        await wait_until(lambda: metrics.errors.labels("unauthorized")._value.get() >= 1)
        api.token_file.write_text("token-2\n")
        assert await labeler.flush(10)
        assert api.labels()[-1] == "leader"
    finally:
        await labeler.close()


async def test_an_untrusted_server_is_never_sent_the_token(api: FakeApi, tmp_path: Path) -> None:
    other_ca = tmp_path / "other-ca.crt"
    other_ca.write_bytes(make_ca("someone else").cert_pem)
    labeler, metrics = labeler_for(api, lambda: "leader", ca_file=other_ca)
    labeler.start()
    try:
        await wait_until(lambda: metrics.errors.labels("network")._value.get() >= 2)
        assert not await labeler.flush(0.05)
        assert api.seen == []  # the TLS handshake failed before any request
    finally:
        await labeler.close()
