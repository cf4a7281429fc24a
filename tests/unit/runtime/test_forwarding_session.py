"""A follower forwards a write to the leader exactly once, even when the
connection drops after the leader read it (aiohttp would silently re-send)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from raftkv.runtime.http import forwarding_session


class _ReadThenDrop:
    """Reads each request, then aborts the connection: a leader that applied the
    write and died (or lost the connection) before answering."""

    def __init__(self) -> None:
        self.requests = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        self.requests += 1
        writer.transport.abort()


async def _put_through(session: aiohttp.ClientSession, server: _ReadThenDrop) -> None:
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        with pytest.raises(aiohttp.ClientError):
            async with session.put(f"http://127.0.0.1:{port}/v1/kv/x", data=b"1") as resp:
                await resp.read()
    finally:
        listener.close()
        await listener.wait_closed()
        await session.close()


async def test_the_forwarding_session_sends_a_write_once() -> None:
    server = _ReadThenDrop()
    await _put_through(forwarding_session({}), server)
    assert server.requests == 1


async def test_a_stock_session_would_send_it_twice() -> None:
    # The reason forwarding_session exists; if aiohttp stops retrying, this fails and
    # the workaround can go.
    server = _ReadThenDrop()
    await _put_through(aiohttp.ClientSession(), server)
    assert server.requests == 2
