"""The client port's limits, on both paths (fast path, and aiohttp behind the same
front): flow control for clients that pipeline and never read, head / body / idle
timeouts (slow-loris, silent bodies), and the connection cap with its metric.
Timeouts are configured short so the tests run in about a second each."""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from raftkv.runtime.fasthttp import PIPELINE_DEPTH
from raftkv.runtime.server import Server
from tests.unit.runtime.solo import solo_node

SHORT = {"client_header_timeout": 0.3, "client_body_timeout": 0.3, "client_idle_timeout": 0.5}
MiB = 1 << 20


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def metric(server: Server, name: str, **labels: str) -> float:
    value = server.metrics.registry.get_sample_value(name, labels or None)
    return 0.0 if value is None else value


async def closed_by_node(reader: asyncio.StreamReader, seconds: float = 5.0) -> bytes:
    """Everything the node sends until it closes the connection (fails if it doesn't).
    A timeout aborts the connection: with bytes still unread it ends in a reset."""
    try:
        return await asyncio.wait_for(reader.read(-1), seconds)
    except ConnectionResetError:
        return b""


async def test_pipelined_gets_never_read_keep_memory_flat(tmp_path: Path) -> None:
    async with solo_node(tmp_path, client_idle_timeout=60.0) as server:
        port = server.cfg.client_port
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        value = os.urandom(MiB)
        writer.write(
            b"PUT /v1/kv/big HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(value) + value
        )
        assert (await reader.readuntil(b"}")).startswith(b"HTTP/1.1 200")
        writer.write(b"GET /v1/kv/big HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        assert await reader.readexactly(MiB) == value  # one GET answered: the path is warm
        writer.close()
        gc.collect()
        before = rss()
        # 12.8 KB of pipelined GETs of the 1 MiB value, on a socket that never reads.
        get = b"GET /v1/kv/big HTTP/1.1\r\nHost: x\r\n\r\n"
        count = 12800 // len(get)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        try:
            await loop.sock_connect(sock, ("127.0.0.1", port))
            served = server.fast.served if server.fast else 0
            await loop.sock_sendall(sock, get * count)
            assert server.fast is not None

            def stalled() -> bool:
                return any(c.write_paused and c.read_paused for c in server.fast.connections)

            await until(stalled)
            grown = rss() - before
            answered = server.fast.served - served
            # Stopped: the write buffer is full, reading paused, at most a pipeline's worth
            # of answers made (the old fast path answered all 348: +195 MiB).
            assert answered <= PIPELINE_DEPTH + 1 <= 17, answered
            # 16 answers of 1 MiB at most, and a margin for the allocator (measured: +13).
            assert grown < 40 * MiB, f"RSS grew {grown / MiB:.0f} MiB"
        finally:
            sock.close()
        # The node itself goes on serving other clients.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        writer.close()


@pytest.mark.parametrize("fast_path", [True, False])
async def test_slow_loris_head_is_closed(tmp_path: Path, fast_path: bool) -> None:
    async with solo_node(tmp_path, fast_path=fast_path, **SHORT) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.cfg.client_port)
        head = b"GET /v1/kv/a HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000

        async def drip() -> None:  # one byte every 0.1 s, never the end of the head
            for byte in head:
                writer.write(bytes([byte]))
                await asyncio.sleep(0.1)

        dripping = asyncio.create_task(drip())
        started = time.monotonic()
        try:
            assert await closed_by_node(reader) == b""
        finally:
            dripping.cancel()
            writer.close()
        assert time.monotonic() - started >= 0.3
        await until(
            lambda: (
                metric(server, "raftkv_client_connections_closed_total", reason="header_timeout")
                == 1
            )
        )


async def test_slow_head_after_a_hand_over_is_closed(tmp_path: Path) -> None:
    """A connection the fast path gave to aiohttp keeps the head timeout."""
    async with solo_node(tmp_path, **SHORT) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.cfg.client_port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/kv/a HTTP/1.1\r\n")
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        assert server.fast is not None
        assert all(c.downstream is not None for c in server.fast.connections)
        body = await closed_by_node(reader)
        writer.close()
        assert b"HTTP/1.1" not in body.split(b"\r\n\r\n", 1)[-1]  # no second answer
        assert (
            metric(server, "raftkv_client_connections_closed_total", reason="header_timeout") == 1
        )


@pytest.mark.parametrize("fast_path", [True, False])
async def test_silent_bodies_are_closed_and_freed(tmp_path: Path, fast_path: bool) -> None:
    async with solo_node(tmp_path, fast_path=fast_path, **SHORT) as server:
        port = server.cfg.client_port
        streams = [await asyncio.open_connection("127.0.0.1", port) for _ in range(30)]
        for _, writer in streams:
            writer.write(
                b"PUT /v1/kv/silent HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (2 * MiB)
                + b"v" * MiB
            )  # half the body, then silence
        for reader, writer in streams:
            assert await closed_by_node(reader) == b""
            writer.close()
        assert server.fast is not None
        await until(lambda: not server.fast.connections)
        assert metric(server, "raftkv_client_connections_closed_total", reason="body_timeout") == 30
        assert server.node.fsm.get(b"silent") is None


@pytest.mark.parametrize("fast_path", [True, False])
async def test_idle_connections_are_closed(tmp_path: Path, fast_path: bool) -> None:
    async with solo_node(tmp_path, fast_path=fast_path, **SHORT) as server:
        port = server.cfg.client_port
        silent_reader, silent = await asyncio.open_connection("127.0.0.1", port)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"PUT /v1/kv/k HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nv")
        answer = await closed_by_node(reader)  # answered, then closed when idle
        assert answer.startswith(b"HTTP/1.1 200")
        assert await closed_by_node(silent_reader) == b""
        writer.close()
        silent.close()


@pytest.mark.parametrize("fast_path", [True, False])
async def test_connections_over_the_cap_get_503(tmp_path: Path, fast_path: bool) -> None:
    async with solo_node(tmp_path, fast_path=fast_path, client_max_connections=3) as server:
        port = server.cfg.client_port
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        assert server.fast is not None
        await until(lambda: len(server.fast.connections) == 3)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        refused = await closed_by_node(reader)
        writer.close()
        assert refused.startswith(b"HTTP/1.1 503")
        assert b'"error": "too_many_connections"' in refused
        assert metric(server, "raftkv_client_connections_rejected_total") == 1
        assert metric(server, "raftkv_client_connections") == 3
        # The held connections work; once one closes, a new client is served.
        reader, writer = held[0]
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert (await closed_by_node(reader)).startswith(b"HTTP/1.1 200")
        writer.close()
        await until(lambda: len(server.fast.connections) == 2)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert (await closed_by_node(reader)).startswith(b"HTTP/1.1 200")
        writer.close()
        for _, w in held[1:]:
            w.close()
