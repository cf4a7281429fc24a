"""Session dedup of retried writes against a real cluster: a write whose answer
is lost after the leader applied it is retried by the client with the same
(client id, seq) and applies once."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from raftkv.client import AsyncClient, RetryPolicy
from tests.integration.harness import Cluster, Node

pytestmark = [pytest.mark.slow, pytest.mark.both_engines]


class AnswerLosingProxy:
    """Forwards /v1/kv requests to one node; drops the connection instead of
    answering the first PUT (after the node has answered it: it was applied)."""

    def __init__(self, target: Node, session: aiohttp.ClientSession) -> None:
        self.target = target
        self.session = session
        self.puts: list[dict[str, str]] = []
        self.lost_answers: list[bytes] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/v1/kv/{key:.*}", self.forward)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def forward(self, request: web.Request) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower().startswith("x-raftkv")}
        async with self.session.request(
            request.method,
            self.target.url + request.raw_path,
            data=await request.read(),
            headers=headers,
        ) as resp:
            body = await resp.read()
            status = resp.status
            relay = {k: v for k, v in resp.headers.items() if k.lower().startswith("x-raftkv")}
            content_type = resp.content_type
        if request.method == "PUT":
            self.puts.append(headers)
            if len(self.puts) == 1:
                self.lost_answers.append(body)
                assert request.transport is not None
                request.transport.abort()  # the client never sees the answer
        return web.Response(body=body, status=status, headers=relay, content_type=content_type)


@pytest.fixture
async def proxy(three_nodes: Cluster) -> AsyncIterator[AnswerLosingProxy]:
    leader = await three_nodes.wait_leader()
    p = AnswerLosingProxy(leader, three_nodes.session)
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


async def test_a_write_whose_answer_was_lost_applies_once(
    three_nodes: Cluster, proxy: AnswerLosingProxy
) -> None:
    leader = await three_nodes.wait_leader()
    before = (await three_nodes.status(leader) or {})["revision"]
    policy = RetryPolicy(deadline=20, base_delay=0.05, max_delay=0.2)
    async with AsyncClient([proxy.url], retry=policy) as client:
        result = await client.put("dedup/k", "v1")
        kv = await client.get("dedup/k")
    assert len(proxy.puts) == 2, "the client did not retry the lost write"
    first, second = proxy.puts
    assert first["X-Raftkv-Client-Id"] == second["X-Raftkv-Client-Id"]
    assert first["X-Raftkv-Seq"] == second["X-Raftkv-Seq"]
    after = (await three_nodes.status(leader) or {})["revision"]
    assert after == before + 1, "the retried write was applied twice"
    assert kv is not None and kv.version == 1 and kv.mod_revision == result.revision
    assert proxy.lost_answers[0].startswith(b'{"revision":%d' % result.revision)


async def test_same_session_twice_answers_the_first_result(three_nodes: Cluster) -> None:
    leader = await three_nodes.wait_leader()
    headers = {"X-Raftkv-Client-Id": "forced-retry", "X-Raftkv-Seq": "5"}
    answers = []
    for value in (b"first", b"second"):
        async with three_nodes.session.put(
            f"{leader.url}/v1/kv/dedup/raw", data=value, headers=headers
        ) as resp:
            answers.append((resp.status, await resp.json()))
    assert answers[0] == answers[1] and answers[0][0] == 200
    status, body = await three_nodes.get(leader, "dedup/raw")
    assert (status, body) == (200, b"first")
    stale = {"X-Raftkv-Client-Id": "forced-retry", "X-Raftkv-Seq": "4"}
    async with three_nodes.session.put(
        f"{leader.url}/v1/kv/dedup/raw", data=b"old", headers=stale
    ) as resp:
        assert resp.status == 409 and (await resp.json())["error"] == "stale_sequence"
