"""A userspace TCP proxy for one directed link (loopback mode): pass, drop or delay.

It listens on the link's own loopback address, on each of the target node's
ports, and forwards to the node. Blocking a link severs its open connections
and blackholes new ones (accepted, their bytes read and discarded, nothing
forwarded), so the sender sees a connection that swallows everything, as
behind a DROP rule; healing closes the blackholed connections so the sender
reconnects. Cutting only at connection boundaries never corrupts a stream: the
receiver never sees half a frame. A delay holds every chunk for `delay`
seconds in both directions, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time

log = logging.getLogger("chaos.proxy")

_CHUNK = 1 << 16


class LinkProxy:
    def __init__(self, name: str, listen_host: str, target_host: str, ports: list[int]) -> None:
        self.name = name
        self.listen_host = listen_host
        self.target_host = target_host
        self.ports = ports
        self.delay = 0.0
        self.blocked = False
        self.servers: list[asyncio.AbstractServer] = []
        self.connections: set[_Connection] = set()

    async def start(self) -> None:
        for port in self.ports:
            server = await asyncio.start_server(
                functools.partial(self._accept, port=port),
                self.listen_host,
                port,
                reuse_address=True,
            )
            self.servers.append(server)

    async def close(self) -> None:
        for server in self.servers:
            server.close()
        for conn in list(self.connections):
            conn.abort()
        for server in self.servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)

    def set_blocked(self, blocked: bool) -> None:
        if blocked == self.blocked:
            return
        self.blocked = blocked
        # Either way the open connections end: forwarding ones must stop delivering,
        # blackholed ones must let the sender reconnect through the healed link.
        for conn in list(self.connections):
            conn.abort()

    async def _accept(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, port: int
    ) -> None:
        conn = _Connection(self, writer)
        self.connections.add(conn)
        try:
            if self.blocked:
                await conn.blackhole(reader)
                return
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(self.target_host, port), 2.0
                )
            except (OSError, TimeoutError):
                return  # the node is down: the sender sees its connection close
            conn.upstream = up_writer
            await asyncio.gather(conn.pump(reader, up_writer), conn.pump(up_reader, writer))
        finally:
            conn.abort()
            self.connections.discard(conn)


class _Connection:
    def __init__(self, proxy: LinkProxy, downstream: asyncio.StreamWriter) -> None:
        self.proxy = proxy
        self.downstream = downstream
        self.upstream: asyncio.StreamWriter | None = None
        self.closed = False

    def abort(self) -> None:
        if self.closed:
            return
        self.closed = True
        for writer in (self.downstream, self.upstream):
            if writer is not None:
                with contextlib.suppress(Exception):
                    writer.transport.abort()

    async def blackhole(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while not self.closed and await reader.read(_CHUNK):
                pass

    async def pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    break
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()
            writer.write_eof() if writer.can_write_eof() else None

        sender = asyncio.create_task(deliver())
        try:
            while not self.closed:
                data = await reader.read(_CHUNK)
                await queue.put((time.monotonic() + self.proxy.delay, data))
                if not data:
                    break
            await sender
        except (OSError, ConnectionError, RuntimeError):
            pass
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender
            self.abort()
