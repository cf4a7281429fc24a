"""The chaos client's classification of answers: what counts as fail and as info."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.chaos.client import call
from tests.chaos.cluster import no_retry_session


class DroppingServer:
    """Reads each request, then closes the connection without answering (a node that
    applied a write and died before replying)."""

    def __init__(self) -> None:
        self.requests = 0
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        self.requests += 1
        writer.transport.abort()

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}/v1/kv/x"


@pytest.fixture
async def dropping() -> AsyncIterator[DroppingServer]:
    srv = DroppingServer()
    srv.server = await asyncio.start_server(srv.handle, "127.0.0.1", 0)
    try:
        yield srv
    finally:
        srv.server.close()


async def test_a_write_whose_connection_dropped_is_indeterminate_and_sent_once(
    dropping: DroppingServer,
) -> None:
    async with no_retry_session() as session:
        reply = await call(session, "PUT", dropping.url, data=b"1", timeout=5)
    assert reply.outcome == "info"
    assert dropping.requests == 1


async def test_stock_aiohttp_would_resend_the_write(dropping: DroppingServer) -> None:
    # Why no_retry_session exists: the stock session sends an idempotent request twice.
    async with aiohttp.ClientSession() as session:
        reply = await call(session, "PUT", dropping.url, data=b"1", timeout=5)
    assert reply.outcome == "info"
    assert dropping.requests == 2


async def test_a_refused_connection_is_a_definite_failure() -> None:
    listener = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    listener.close()
    await listener.wait_closed()
    async with no_retry_session() as session:
        reply = await call(session, "PUT", f"http://127.0.0.1:{port}/v1/kv/x", data=b"1")
    assert reply.outcome == "fail" and reply.status == 0
