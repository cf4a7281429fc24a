"""Peer transport: authenticated, persistent, pipelined connections carrying Raft messages.

Each node dials every current member (the replicated membership gives the URL; the
name is resolved again on every dial) and keeps one outbound connection per peer
(like etcd's streams). Everything this node says to a peer goes over its own
outbound connection; a peer it cannot dial (a new learner does not know the
leader's URL until the log reaches it) is answered over that peer's connection to
us instead. `send` is called once per Ready and writes one frame per peer straight
into the socket (no task switch: the follower gets the appends before the leader
starts its own fsync). Only when a peer's socket is backed up do messages queue,
coalesced into one frame that a per-peer task writes once the socket drains.

Every connection starts with a handshake (HELLO from the dialer, WELCOME or
REFUSED from the acceptor) checked by `admission.PeerGate` (cluster id,
membership, consensus engine, and with peer TLS the certificate) before any frame
can reach the core; every later frame is checked against the schema in `codec`. A bad frame
closes its connection, counts in `raftkv_peer_frames_rejected_total{reason}` and
is logged (rate-limited); messages whose from/to are not the connection's are
dropped. Nothing that happens on a peer connection (connect, TLS, send, receive,
close) raises into the Raft loop.

A peer that cannot be reached gets its messages dropped (Raft retransmits) and is
reported unreachable to the core; reconnection backs off exponentially. Sockets
have TCP keepalive and TCP_USER_TIMEOUT, so a peer that vanished (a rescheduled
pod) is noticed in seconds and redialled at its new address.

With peer TLS the port runs its own accept loop: each accepted socket's first byte is
peeked (MSG_PEEK, nothing consumed); a TLS handshake record (0x16) gets the server
SSLContext (Python's ssl does the handshake and the mutual-TLS checks), so sockets
waiting for their first byte or in their TLS handshake are bounded in number
(MAX_INBOUND, the oldest making room) as well as in time. Anything else is closed,
except during a migration of a plain-text cluster to TLS (`accept_plain`,
docs/security.md "Migrating a pre-TLS cluster"), when the port takes both: it gets the
plain path, whose frame checks are unchanged (a HELLO's length starts with 0x00, so the
two never overlap). Plain connections are admitted unauthenticated, as under
--peer-insecure. `dial_tls` says how this node dials.

Snapshots travel on a dedicated short-lived connection so they never hold up
heartbeats: HELLO/WELCOME, SNAP_BEGIN, chunks, SNAP_END with a sha256, then the
receiver steps the SNAP message with the assembled data and answers SNAP_ACK. A
snapshot is only taken from the leader of the receiver's current term.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import ssl
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, Protocol, cast

from raftkv.consensus import Snapshot, SnapshotMeta
from raftkv.runtime import codec
from raftkv.runtime.admission import PeerGate
from raftkv.runtime.config import split_host_port
from raftkv.runtime.metrics import NodeMetrics
from raftkv.runtime.tasks import stop_task

log = logging.getLogger("raftkv.transport")

# An engine's message (Raft's or Multi-Paxos's): the transport reads only its `to`,
# `frm` and `snapshot`; the engine's `codec.Wire` encodes and checks the rest.
PeerMessage = Any

SNAP_CHUNK_BYTES = 1 << 20
MAX_QUEUED_MESSAGES = 50_000  # per peer; beyond this the peer is too slow: drop and probe
# Bytes buffered in a peer socket's transport beyond which messages queue instead
# (Raft's in-flight limits keep this small unless the peer stops reading).
WRITE_BACKLOG_BYTES = 4 << 20
CONNECT_TIMEOUT = 2.0
HANDSHAKE_TIMEOUT = 5.0  # TLS + HELLO/WELCOME; an inbound connection that says nothing is cut
# Bounds on inbound connections, so that whoever reaches the port cannot use up this
# process's descriptors. At MAX_INBOUND a new connection pushes out the oldest one that has
# not been admitted yet (a member says HELLO within milliseconds; a flood waits for the
# timeout), and is itself closed if every one has been. An admitted member keeps at most
# MAX_INBOUND_PER_MEMBER (its message path, snapshot streams, a redial overlapping the old
# connection): admitting one more closes that member's oldest.
MAX_INBOUND = 512
MAX_INBOUND_PER_MEMBER = 8
BACKOFF_MIN, BACKOFF_MAX = 0.05, 1.0
# After an established connection ends: redials that ask "is the process gone?" (a
# refusal says yes), GONE_PROBE_GAP seconds apart, before the usual backoff.
GONE_PROBES, GONE_PROBE_GAP = 3, 0.02
# Dead-peer detection: unacknowledged data for this long aborts the connection
# (TCP_USER_TIMEOUT); an idle one is probed after KEEPALIVE_IDLE s, every
# KEEPALIVE_INTERVAL s, KEEPALIVE_COUNT times.
USER_TIMEOUT_MS = 3000
KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_COUNT = 2, 1, 2
# A peer we keep sending to that has said nothing (on any connection) for this long is
# redialled: its address may have changed under a connection TCP still thinks is fine.
PEER_SILENCE = 3.0
# The first byte of a TLS connection: a handshake record (RFC 8446 5.1, content type 22).
TLS_HANDSHAKE_RECORD = 0x16
# A plain connection starts with a frame's 4-byte big-endian length: frames are capped
# well below 0x16 << 24 bytes, so its first byte can never be a TLS record's.
assert codec.MAX_FRAME_BYTES >> 24 < TLS_HANDSHAKE_RECORD
LOG_EVERY = 10.0  # seconds between two warnings of the same kind


class PeerTLS(Protocol):
    """Reloading TLS contexts (security.tls.ReloadingTLS) for the peer port."""

    def server_context(self) -> ssl.SSLContext: ...

    def client_context(self) -> ssl.SSLContext: ...


# Callbacks into the node.
OnMessages = Callable[[int, int, list[PeerMessage]], None]  # (from id, sender commit, msgs)
OnUnreachable = Callable[[int], None]
OnSnapshotStatus = Callable[[int, bool], None]
# Steps a received SNAP message with its data; resolves True once accepted.
OnSnapshot = Callable[[PeerMessage, bytes], Awaitable[bool]]
# Whether a SNAP message may be taken now (from the leader of our current term).
SnapshotAllowed = Callable[[PeerMessage], bool]
# The newest durable snapshot to stream: (meta, file, size), or None.
SnapshotSource = Callable[[], tuple[SnapshotMeta, BinaryIO, int] | None]
# host -> address to dial (asked on every dial).
Resolver = Callable[[str], Awaitable[str]]


def tune_socket(sock: socket.socket | None) -> None:
    """No Nagle delay; keepalive and a user timeout so a vanished peer is noticed."""
    if sock is None:
        return
    options = [
        (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),
        (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
    ]
    for name, value in (
        ("TCP_KEEPIDLE", KEEPALIVE_IDLE),
        ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL),
        ("TCP_KEEPCNT", KEEPALIVE_COUNT),
        ("TCP_USER_TIMEOUT", USER_TIMEOUT_MS),
    ):
        if hasattr(socket, name):  # Linux; other systems keep their defaults
            options.append((socket.IPPROTO_TCP, getattr(socket, name), value))
    for level, opt, value in options:
        with contextlib.suppress(OSError):
            sock.setsockopt(level, opt, value)


class _RateLimitedLog:
    """At most one warning per kind every LOG_EVERY seconds, with a count of the rest."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, kind: str, msg: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last.get(kind, -LOG_EVERY) < LOG_EVERY:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        self._last[kind] = now
        skipped = self._suppressed.pop(kind, 0)
        log.warning(msg + (f" ({skipped} more like it suppressed)" if skipped else ""), *args)


async def read_frame(reader: asyncio.StreamReader) -> list[Any]:
    header = await reader.readexactly(codec.HEADER.size)
    (length,) = codec.HEADER.unpack(header)
    if length > codec.MAX_FRAME_BYTES:
        raise codec.FrameError("too_large", f"frame of {length} bytes")
    return codec.unpack_payload(await reader.readexactly(length))


def _over_tls(writer_or_transport: Any) -> bool:
    getter = writer_or_transport.get_extra_info
    return getter("sslcontext") is not None or getter("ssl_object") is not None


def _peercert(writer_or_transport: Any) -> dict[str, Any] | None:
    if not _over_tls(writer_or_transport):
        return None
    return cast("dict[str, Any] | None", writer_or_transport.get_extra_info("peercert"))


def is_tls_start(first: bytes) -> bool:
    """Whether a connection whose first byte is `first` speaks TLS (else: plain frames)."""
    return bool(first) and first[0] == TLS_HANDSHAKE_RECORD


def _set_once(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _peek_first_byte(sock: socket.socket) -> bytes:
    """The first byte the peer sent, left in the socket (b"": it closed first)."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            return sock.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            pass
        readable: asyncio.Future[None] = loop.create_future()
        fd = sock.fileno()
        loop.add_reader(fd, _set_once, readable)
        try:
            await readable
        finally:
            loop.remove_reader(fd)


def _listening_sockets(host: str, port: int) -> list[socket.socket]:
    """Listening sockets as create_server makes them: "" / "::" every address (both
    families where the system can), a name or address every address it resolves to."""
    if host in ("", "::") and socket.has_dualstack_ipv6():
        socks = [
            socket.create_server(
                ("", port), family=socket.AF_INET6, dualstack_ipv6=True, backlog=128
            )
        ]
    else:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        socks = []
        try:
            for family, address in dict.fromkeys((info[0], info[4]) for info in infos):
                # IPv6 sockets are IPv6-only here: the IPv4 addresses get their own.
                socks.append(socket.create_server(address, family=family, backlog=128))
        except OSError:
            for sock in socks:
                sock.close()
            raise
    for sock in socks:
        sock.setblocking(False)
    return socks


class _Peer:
    """One outbound connection to a member and its send buffer."""

    def __init__(self, transport: PeerTransport, peer_id: int, url: str) -> None:
        self.t = transport
        self.id = peer_id
        self.url = url
        self.buffer: list[PeerMessage] = []
        self.wakeup = asyncio.Event()
        self.writer: asyncio.StreamWriter | None = None
        self.connected = False
        self.connected_at = 0.0
        self.last_sent = 0.0  # monotonic time of the last message written to the peer
        self.snapshot_task: asyncio.Task[None] | None = None
        self.closed = False  # close() ran: the dial loop ends even if its cancel is lost
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"peer-{peer_id}")

    def send(self, msgs: list[PeerMessage]) -> None:
        """Called from the Raft loop: must never raise (a dead socket is the peer's
        problem, reported as unreachable, never the loop's)."""
        writer = self.writer
        if not self.connected or writer is None or writer.transport.is_closing():
            self.t.send_elsewhere(self.id, msgs)
            return
        if not self.buffer and writer.transport.get_write_buffer_size() < WRITE_BACKLOG_BYTES:
            try:
                writer.write(self.t.wire.pack_messages(self.t.commit_hint(), msgs))
                self.last_sent = time.monotonic()
            except Exception as exc:  # closed under us (uvloop: RuntimeError), or OSError
                self._lost(f"write failed: {exc!r}")
            return
        if len(self.buffer) + len(msgs) > MAX_QUEUED_MESSAGES:
            self.buffer.clear()
            self.t.on_unreachable(self.id)
            self.t.metrics.peer_errors.labels(str(self.id)).inc()
            return
        self.buffer.extend(msgs)  # behind the backlog, in order
        self.wakeup.set()

    def _lost(self, why: str) -> None:
        """The connection failed outside the dial task: close it so `_run` redials."""
        log.debug("peer %s (%s): %s", self.id, self.url, why)
        self.connected = False
        self.buffer.clear()
        self.t.metrics.peer_errors.labels(str(self.id)).inc()
        self.t.on_unreachable(self.id)
        writer = self.writer
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.transport.abort()
        self.wakeup.set()

    async def _run(self) -> None:
        backoff = BACKOFF_MIN
        label = str(self.id)
        probes = 0  # an established connection ended: redials left to ask "is it gone?"
        while not (self.t.closing or self.closed):
            reader_task: asyncio.Task[None] | None = None
            probing = probes > 0
            probes = max(0, probes - 1)  # any failure of a probing dial uses one up
            established = False  # this round got a connection (whoever noticed its end)
            try:
                try:
                    reader, writer = await self.t.dial(self.id, self.url)
                except ConnectionRefusedError:
                    # The peer closed our connection and nothing listens on its port
                    # now: its process died (kill -9, crash, a container restart).
                    # Tell the node at once rather than let it wait out a timeout.
                    if probing:
                        probes = 0
                        self.t.on_peer_gone(self.id)
                    raise
                # (A reset or EOF instead: a process being killed may still accept a
                # connection, its listening socket closing last. Ask again shortly.)
                probes = 0
                self.writer = writer
                reader_task = asyncio.create_task(self._read(reader))
                self.connected = established = True
                self.connected_at = time.monotonic()
                self.t.metrics.peer_up.labels(label).set(1)
                backoff = BACKOFF_MIN
                await self._pump(writer, reader_task)
            except codec.FrameError as exc:
                self.t.rejected(exc, f"peer {self.id} ({self.url})")
                self.t.metrics.peer_errors.labels(label).inc()
            except Exception as exc:  # any failure of this link (TLS, reset, closed, ...)
                if self.connected or backoff == BACKOFF_MIN:
                    log.debug("peer %s (%s): %r", self.id, self.url, exc)
                self.t.metrics.peer_errors.labels(label).inc()
            finally:
                was_connected = self.connected
                self.connected = False
                self.buffer.clear()
                self.t.metrics.peer_up.labels(label).set(0)
                if reader_task is not None:
                    reader_task.cancel()
                if self.writer is not None:
                    with contextlib.suppress(Exception):
                        self.writer.close()
                    self.writer = None
                if was_connected and not (self.t.closing or self.closed):
                    self.t.on_unreachable(self.id)
                if established:
                    # However it ended (EOF, reset, a write from the Raft loop that failed
                    # first, under load): probe. Only a refused redial counts, so a live
                    # peer is never reported.
                    probes = GONE_PROBES
            if self.t.closing or self.closed:
                return
            if probes > 0:
                # Redial at once, then a moment apart: a refusal is the signal, a
                # success costs nothing.
                if probing:
                    await asyncio.sleep(GONE_PROBE_GAP)
                continue
            await asyncio.sleep(backoff)
            backoff = min(BACKOFF_MAX, backoff * 2)

    async def _pump(self, writer: asyncio.StreamWriter, reader_task: asyncio.Task[None]) -> None:
        while not (self.t.closing or self.closed):
            if not self.connected:
                raise ConnectionError("connection lost while sending")
            if not self.buffer:
                self.wakeup.clear()
                waiter = asyncio.ensure_future(self.wakeup.wait())
                done, _ = await asyncio.wait(
                    {waiter, reader_task}, timeout=1.0, return_when=asyncio.FIRST_COMPLETED
                )
                if reader_task in done:
                    waiter.cancel()
                    reader_task.result()  # a FrameError from the peer surfaces here
                    raise ConnectionError("peer closed the connection")
                if not done:
                    waiter.cancel()
                    self._check_silence()
                continue
            await writer.drain()  # the backlog first goes below the transport's mark
            batch, self.buffer = self.buffer, []
            if batch:
                writer.write(self.t.wire.pack_messages(self.t.commit_hint(), batch))
                self.last_sent = time.monotonic()

    def _check_silence(self) -> None:
        """We keep talking and the peer has not answered for PEER_SILENCE seconds (on
        this connection or its own): drop the connection and dial its name again."""
        heard = max(self.t.last_heard.get(self.id, 0.0), self.connected_at)
        if self.last_sent - heard > PEER_SILENCE:
            raise ConnectionError(f"no answer for {self.last_sent - heard:.1f}s")

    async def _read(self, reader: asyncio.StreamReader) -> None:
        """What the peer says on our connection: messages when it cannot dial us."""
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                frame = await read_frame(reader)
                if frame[0] != self.t.wire.MSGS:
                    raise codec.FrameError("unexpected", f"frame kind {frame[0]} after WELCOME")
                self.t.deliver(self.id, frame)

    def send_snapshot(self, m: PeerMessage) -> None:
        if self.snapshot_task is not None and not self.snapshot_task.done():
            return  # one stream at a time; the core re-sends after report_snapshot
        self.snapshot_task = asyncio.get_running_loop().create_task(self._stream_snapshot(m))

    async def _stream_snapshot(self, m: PeerMessage) -> None:
        ok = False
        try:
            ok = await self.t.stream_snapshot(self.id, self.url, m)
        except Exception as exc:  # any failure means "not delivered"; the core retries
            log.warning("snapshot to %s failed: %r", self.id, exc)
            self.t.metrics.peer_errors.labels(str(self.id)).inc()
        self.t.on_snapshot_status(self.id, ok)

    async def close(self) -> None:
        """End the dial loop (a member removed or moved, or the transport closing).
        Cancelling alone is not enough on Python 3.11: a `wait_for` whose inner dial
        completes in the same turn returns instead of raising the cancel, and the loop
        would go on dialing a removed member forever. So the loop also stops on
        `closed` (within a backoff), and the wait here is bounded (runtime.tasks)."""
        self.closed = True
        self.wakeup.set()
        if self.snapshot_task is not None:
            self.snapshot_task.cancel()
        await stop_task(self.task, BACKOFF_MAX + 1.0, f"the dial loop of peer {self.id}")


async def _default_resolve(host: str) -> str:
    return host  # asyncio's connect asks the system resolver on every dial


class PeerTransport:
    def __init__(
        self,
        my_id: int,
        my_name: str,
        *,
        gate: PeerGate,
        metrics: NodeMetrics,
        spool_dir: Path,
        on_messages: OnMessages,
        on_unreachable: OnUnreachable,
        on_snapshot: OnSnapshot,
        on_snapshot_status: OnSnapshotStatus,
        snapshot_allowed: SnapshotAllowed,
        snapshot_source: SnapshotSource,
        commit_hint: Callable[[], int],
        resolve: dict[str, str] | None = None,
        resolver: Resolver | None = None,
        tls: PeerTLS | None = None,
        accept_plain: bool = False,
        dial_tls: bool = True,
        on_peer_gone: OnUnreachable | None = None,
        wire: codec.Wire | None = None,
    ) -> None:
        self.my_id = my_id
        # The engine's messages on the wire (default: Raft's).
        self.wire: codec.Wire = wire or codec.RaftWire()
        assert gate.engine == self.wire.ENGINE, (gate.engine, self.wire.ENGINE)
        self.my_name = my_name
        self.gate = gate
        self.static_resolve = dict(resolve or {})
        self.resolver = resolver or _default_resolve
        self.tls = tls
        # A TLS migration stage (INSECURE): the port also takes plain text; and whether
        # this node dials with TLS (only meaningful with `tls`).
        self.accept_plain = accept_plain and tls is not None
        self.dial_tls = dial_tls
        self.metrics = metrics
        self.spool_dir = spool_dir
        self.on_messages = on_messages
        self.on_unreachable = on_unreachable
        # A peer closed its connection and refuses a redial: its process is gone.
        self.on_peer_gone: OnUnreachable = on_peer_gone or (lambda peer: None)
        self.on_snapshot = on_snapshot
        self.on_snapshot_status = on_snapshot_status
        self.snapshot_allowed = snapshot_allowed
        self.snapshot_source = snapshot_source
        self.commit_hint = commit_hint
        self.peers: dict[int, _Peer] = {}
        self.closing = False
        self.server: asyncio.AbstractServer | None = None
        self._listeners: list[socket.socket] = []  # with TLS: our own accept loops
        self._accept_tasks: list[asyncio.Task[None]] = []
        # Accepted sockets before their first byte or in their TLS handshake, oldest first.
        self._classifying: dict[asyncio.Task[None], None] = {}
        self._inbound = _InboundConnections(self.rejected)
        self._return_paths: dict[int, _InboundProtocol] = {}  # peer id -> its connection to us
        self.last_heard: dict[int, float] = {}  # peer id -> when it last sent us messages
        self._probing: set[int] = set()  # peers with a probe_gone in flight
        self._probe_tasks: set[asyncio.Task[None]] = set()
        self._log = _RateLimitedLog()

    # --- lifecycle -----------------------------------------------------------
    async def start(self, host: str, port: int) -> None:
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        if self.tls is not None:
            self._listeners = _listening_sockets(host, port)
            self._accept_tasks = [
                asyncio.get_running_loop().create_task(self._accept(sock), name="peer-accept")
                for sock in self._listeners
            ]
            return
        self.server = await asyncio.get_running_loop().create_server(
            lambda: _InboundProtocol(self), host, port
        )

    async def close(self) -> None:
        self.closing = True
        if self.server is not None:
            self.server.close()
        for accept_task in self._accept_tasks:
            accept_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await accept_task
        for sock in self._listeners:
            sock.close()
        for task in list(self._classifying):
            task.cancel()
        for peer in list(self.peers.values()):
            await peer.close()
        self.peers.clear()
        for task in list(self._probe_tasks):
            task.cancel()
        for conn in list(self._inbound):
            conn.close()
        if self.server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 1.0)

    async def _accept(self, listener: socket.socket) -> None:
        """With TLS: every connection is classified by its first byte."""
        loop = asyncio.get_running_loop()
        while not self.closing:
            try:
                sock, _ = await loop.sock_accept(listener)
            except OSError as exc:  # out of descriptors, ...: keep the port serving
                self._log.warning("accept", "peer port accept failed: %r", exc)
                await asyncio.sleep(0.1)
                continue
            if len(self._classifying) >= MAX_INBOUND:  # a flood: the oldest makes room
                oldest = next(iter(self._classifying))
                self._classifying.pop(oldest, None)
                oldest.cancel()
                self.rejected(codec.FrameError("too_many_connections", "handshakes"), "inbound")
            task = loop.create_task(self._classify(sock))
            self._classifying[task] = None
            task.add_done_callback(self._classified)

    def _classified(self, task: asyncio.Task[None]) -> None:
        self._classifying.pop(task, None)

    async def _classify(self, sock: socket.socket) -> None:
        """Hand `sock` to the TLS server context, or with accept_plain to the plain path,
        by its first byte; one that says nothing within HANDSHAKE_TIMEOUT is cut."""
        loop = asyncio.get_running_loop()
        handed = False
        try:
            sock.setblocking(False)
            try:
                first = await asyncio.wait_for(_peek_first_byte(sock), HANDSHAKE_TIMEOUT)
            except TimeoutError:
                self.rejected(codec.FrameError("unexpected", "no first byte in time"), "inbound")
                return
            if not first:
                return  # closed before saying anything
            tls = is_tls_start(first)
            if not tls and not self.accept_plain:
                log.debug("plain bytes on the TLS peer port: closed")
                return
            assert self.tls is not None  # the accept loop runs only with TLS
            ctx = self.tls.server_context() if tls else None
            handed = True  # from here the transport owns the socket
            await loop.connect_accepted_socket(
                lambda: _InboundProtocol(self, plain=not tls),
                sock,
                ssl=ctx,
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT if tls else None,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a failed TLS handshake, a reset: this connection only
            log.debug("inbound peer connection dropped before HELLO: %r", exc)
        finally:
            if not handed:
                sock.close()

    # --- membership ----------------------------------------------------------
    def set_peer(self, peer_id: int, url: str) -> None:
        if peer_id == self.my_id or not url:
            return
        peer = self.peers.get(peer_id)
        if peer is not None and peer.url == url:
            return
        if peer is not None:
            asyncio.get_running_loop().create_task(peer.close())
        self.peers[peer_id] = _Peer(self, peer_id, url)

    def remove_peer(self, peer_id: int) -> None:
        peer = self.peers.pop(peer_id, None)
        if peer is not None:
            asyncio.get_running_loop().create_task(peer.close())
            self.metrics.peer_up.labels(str(peer_id)).set(0)
        self.last_heard.pop(peer_id, None)
        conn = self._return_paths.pop(peer_id, None)
        if conn is not None:
            conn.close()  # a removed member keeps no connection to us

    # --- sending -------------------------------------------------------------
    def send(self, messages: list[PeerMessage]) -> None:
        """One frame per peer for the messages of one Ready. Never raises."""
        by_peer: dict[int, list[PeerMessage]] = {}
        for m in messages:
            if m.snapshot is not None:  # a snapshot: streamed on its own connection
                peer = self.peers.get(m.to)
                if peer is None:
                    # Not even queued: say so, or the core would wait for its report
                    # (sending that member nothing) until the next election.
                    self.on_unreachable(m.to)
                    self.on_snapshot_status(m.to, False)
                else:
                    peer.send_snapshot(m)
                continue
            batch = by_peer.get(m.to)
            if batch is None:
                by_peer[m.to] = [m]
            else:
                batch.append(m)
        for to, batch in by_peer.items():
            try:
                peer = self.peers.get(to)
                if peer is None:
                    self.send_elsewhere(to, batch)
                else:
                    peer.send(batch)
            except Exception:  # belt and braces: nothing on a peer link may kill the loop
                log.exception("sending to peer %s failed", to)
                self.on_unreachable(to)

    def send_elsewhere(self, to: int, msgs: list[PeerMessage]) -> None:
        """No outbound connection to `to`: answer over its connection to us, if any."""
        conn = self._return_paths.get(to)
        if conn is None or not conn.write(self.wire.pack_messages(self.commit_hint(), msgs)):
            self.on_unreachable(to)

    def probe_gone(self, peer_id: int) -> None:
        """A connection from `peer_id` ended: is its process gone? A plain TCP connect
        to its peer port that is refused says so (on_peer_gone); anything else (it
        connects, or times out: a paused process or a network cut) says nothing."""
        peer = self.peers.get(peer_id)
        if peer is None or peer_id in self._probing:
            return
        self._probing.add(peer_id)

        async def probe() -> None:
            try:
                host, port = split_host_port(peer.url)
                address = await self.resolve(host)
                for _ in range(GONE_PROBES):  # a dying process may accept one last time
                    _, writer = await asyncio.wait_for(
                        asyncio.open_connection(address, port), CONNECT_TIMEOUT
                    )
                    writer.close()
                    await asyncio.sleep(GONE_PROBE_GAP)
            except ConnectionRefusedError:
                if not self.closing:
                    self.on_peer_gone(peer_id)
            except Exception:  # noqa: S110 - no answer is no evidence either way
                pass
            finally:
                self._probing.discard(peer_id)

        self._probe_tasks.add(task := asyncio.get_running_loop().create_task(probe()))
        task.add_done_callback(self._probe_tasks.discard)

    # --- dialing -------------------------------------------------------------
    async def resolve(self, host: str) -> str:
        """Asked again on every dial: a member back on a new address is found there."""
        return self.static_resolve.get(host) or await self.resolver(host)

    async def dial(
        self, peer_id: int, url: str
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Connect, (TLS,) HELLO, and check the WELCOME: a connection to member
        `peer_id` proven as far as the gate can tell."""
        host, port = split_host_port(url)
        address = await self.resolve(host)
        ctx = self.tls.client_context() if self.tls is not None and self.dial_tls else None
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                address,
                port,
                limit=1 << 20,
                ssl=ctx,
                server_hostname=host if ctx is not None else None,
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT if ctx else None,
            ),
            CONNECT_TIMEOUT + (HANDSHAKE_TIMEOUT if ctx is not None else 0),
        )
        try:
            tune_socket(writer.get_extra_info("socket"))
            gate = self.gate
            writer.write(
                codec.pack_hello(gate.cluster.value, self.my_id, peer_id, self.my_name, gate.engine)
            )
            frame = await asyncio.wait_for(read_frame(reader), HANDSHAKE_TIMEOUT)
            try:
                cluster_id, member, name, engine = codec.decode_welcome(frame)
            except codec.FrameError as exc:
                if exc.reason == "wrong_consensus":  # refused by name: say whose engine
                    raise gate.refused_for_engine(peer_id) from None
                raise
            gate.check_welcome(
                peer_id,
                cluster_id,
                member,
                name,
                engine,
                _peercert(writer),
                plain=not _over_tls(writer),
            )
        except BaseException:
            writer.close()
            raise
        return reader, writer

    # --- snapshots: sender ---------------------------------------------------
    async def stream_snapshot(self, peer_id: int, url: str, m: PeerMessage) -> bool:
        loop = asyncio.get_running_loop()
        # Opening verifies the file's sha256: a full read, so not on the event loop.
        source = await loop.run_in_executor(None, self.snapshot_source)
        if source is None:
            return False
        meta, fileobj, size = source
        # Ship the newest durable snapshot (it covers at least what the core asked for).
        m.snapshot = Snapshot(meta)
        try:
            reader, writer = await self.dial(peer_id, url)
        except BaseException:
            fileobj.close()
            raise
        try:
            writer.write(codec.pack_frame([codec.SNAP_BEGIN, self.wire.encode_message(m), size]))
            digest = hashlib.sha256()
            while True:
                chunk = await loop.run_in_executor(None, fileobj.read, SNAP_CHUNK_BYTES)
                if not chunk:
                    break
                digest.update(chunk)
                writer.write(codec.pack_frame([codec.SNAP_CHUNK, chunk]))
                await writer.drain()
            writer.write(codec.pack_frame([codec.SNAP_END, digest.hexdigest()]))
            await writer.drain()
            ok, reason = codec.decode_snap_ack(await asyncio.wait_for(read_frame(reader), 60.0))
            if not ok:
                log.warning("peer %s refused snapshot: %s", m.to, reason)
            return ok
        finally:
            fileobj.close()
            writer.close()

    # --- receiving -----------------------------------------------------------
    def rejected(self, exc: codec.FrameError, who: str) -> None:
        self.metrics.frames_rejected.labels(exc.reason).inc()
        self._log.warning(exc.reason, "peer connection %s dropped: %s", who, exc)

    def deliver(self, peer_id: int, frame: list[Any]) -> None:
        """A MSGS frame on a connection bound to `peer_id`: only messages from that
        peer to this node go on."""
        sender_commit, msgs = self.wire.decode_msgs(frame)
        good = [m for m in msgs if m.frm == peer_id and m.to == self.my_id]
        if len(good) != len(msgs):
            self.metrics.frames_rejected.labels("wrong_sender").inc(len(msgs) - len(good))
            self._log.warning(
                "wrong_sender",
                "dropped %d message(s) from member %s that claim another sender or receiver",
                len(msgs) - len(good),
                peer_id,
            )
        if good:
            self.last_heard[peer_id] = time.monotonic()
            self.on_messages(peer_id, sender_commit, good)

    def bound(self, conn: _InboundProtocol) -> None:
        self._return_paths[conn.peer_id] = conn  # the newest connection of that peer

    def unbound(self, conn: _InboundProtocol) -> None:
        if self._return_paths.get(conn.peer_id) is conn:
            del self._return_paths[conn.peer_id]

    async def receive_snapshot(
        self, msg: PeerMessage, size: int, reader: asyncio.StreamReader, writer: _ReplyWriter
    ) -> None:
        fd, tmp = tempfile.mkstemp(prefix="snap-", suffix=".part", dir=self.spool_dir)
        ok, reason = False, ""
        try:
            digest = hashlib.sha256()
            received = 0
            with os.fdopen(fd, "wb") as out:
                while True:
                    frame = await read_frame(reader)
                    if frame[0] == codec.SNAP_CHUNK:
                        chunk = codec.decode_snap_chunk(frame)
                        received += len(chunk)
                        if received > size:
                            raise codec.FrameError("too_large", "snapshot longer than announced")
                        digest.update(chunk)
                        out.write(chunk)
                    elif frame[0] == codec.SNAP_END:
                        expected = codec.decode_snap_end(frame)
                        break
                    else:
                        raise codec.FrameError("unexpected", "frame kind in a snapshot stream")
            if received != size or expected != digest.hexdigest():
                reason = "size or sha256 mismatch"
            elif not self.snapshot_allowed(msg):
                reason = "not from the leader of the current term"
            else:
                data = Path(tmp).read_bytes()
                ok = await self.on_snapshot(msg, data)
                reason = "" if ok else "not accepted"
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        writer.write(codec.pack_frame([codec.SNAP_ACK, ok, reason]))


class _ReplyWriter:
    """What `receive_snapshot` writes its answer with."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport

    def write(self, data: bytes) -> None:
        if not self.transport.is_closing():
            with contextlib.suppress(Exception):
                self.transport.write(data)


class _InboundConnections:
    """The inbound connections, in the order they arrived, within their bounds
    (MAX_INBOUND, MAX_INBOUND_PER_MEMBER); every close for a bound is reported to
    `rejected` as `too_many_connections`."""

    def __init__(self, rejected: Callable[[codec.FrameError, str], None]) -> None:
        self._rejected = rejected
        self._conns: dict[_InboundProtocol, None] = {}  # a dict keeps the arrival order

    def __iter__(self) -> Iterator[_InboundProtocol]:
        return iter(self._conns)

    def __len__(self) -> int:
        return len(self._conns)

    def arrived(self, conn: _InboundProtocol) -> bool:
        """A new connection: False if it must be closed (every slot is an admitted
        member's); at the cap the oldest one not admitted yet makes room."""
        if len(self._conns) >= MAX_INBOUND:
            oldest = next((c for c in self._conns if not c.peer_id), None)
            self._rejected(codec.FrameError("too_many_connections", "inbound cap"), "inbound")
            if oldest is None:
                return False
            oldest.close()
            self._conns.pop(oldest, None)
        self._conns[conn] = None
        return True

    def admitted(self, conn: _InboundProtocol) -> None:
        """`conn` was admitted as conn.peer_id: close that member's first beyond the cap."""
        mine = [c for c in self._conns if c.peer_id == conn.peer_id]
        for old in mine[: max(0, len(mine) - MAX_INBOUND_PER_MEMBER)]:
            self._rejected(codec.FrameError("too_many_connections", "per-member cap"), old._who())
            old.close()
            self._conns.pop(old, None)

    def lost(self, conn: _InboundProtocol) -> None:
        self._conns.pop(conn, None)


class _InboundProtocol(asyncio.Protocol):
    """A peer's outbound connection to us.

    The first frame must be a HELLO the gate admits (else REFUSED and close; also
    closed if none arrives within HANDSHAKE_TIMEOUT); then MSGS frames are parsed
    and handled right in `data_received`. After a SNAP_BEGIN the rest of the
    connection is a snapshot stream: its bytes go to a StreamReader read by a task
    (the stream is big and rare; flow control applies).
    """

    def __init__(self, t: PeerTransport, *, plain: bool = False) -> None:
        self.t = t
        self.plain = plain  # arrived in plain text on a port that takes both
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.peer_id = 0  # 0 until the HELLO is admitted
        self._return_path = False  # registered as the way back to peer_id
        self.stream: asyncio.StreamReader | None = None
        self.stream_task: asyncio.Task[None] | None = None
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's aren't subclasses
        if not self.t._inbound.arrived(self):
            self.transport.abort()
            self.transport = None
            return
        tune_socket(transport.get_extra_info("socket"))
        self._deadline = asyncio.get_running_loop().call_later(HANDSHAKE_TIMEOUT, self._no_hello)

    def _no_hello(self) -> None:
        if not self.peer_id:
            self.t.rejected(codec.FrameError("unexpected", "no HELLO in time"), self._who())
            self.close()

    def _who(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        return f"from {peer} (member {self.peer_id or '?'})"

    def connection_lost(self, exc: Exception | None) -> None:
        self.t._inbound.lost(self)
        if self.peer_id and not self.t.closing:
            self.t.probe_gone(self.peer_id)  # the member's own connection to us ended
        if self._return_path:
            self.t.unbound(self)
        if self._deadline is not None:
            self._deadline.cancel()
        self.transport = None
        if self.stream is not None:
            self.stream.feed_eof()

    def eof_received(self) -> bool:
        if self.stream is not None:
            self.stream.feed_eof()
        return False

    def write(self, data: bytes) -> bool:
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        try:
            transport.write(data)
        except Exception:
            return False
        return True

    def close(self) -> None:
        if self.stream_task is not None:
            self.stream_task.cancel()
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.stream is not None:
            self.stream.feed_data(data)
            return
        buf = self.buffer
        buf += data
        header = codec.HEADER.size
        try:
            while len(buf) >= header and self.stream is None and self.transport is not None:
                (length,) = codec.HEADER.unpack_from(buf)
                if length > codec.MAX_FRAME_BYTES:
                    raise codec.FrameError("too_large", f"frame of {length} bytes")
                if not self.peer_id and length > 4096:
                    raise codec.FrameError("too_large", "a HELLO is small")
                if len(buf) < header + length:
                    return
                frame = codec.unpack_payload(bytes(buf[header : header + length]))
                del buf[: header + length]
                self._on_frame(frame)
        except codec.FrameError as exc:
            self._refuse(exc)
        except Exception as exc:  # a bug here must cost this connection only
            log.exception("peer connection %s: unexpected error", self._who())
            self._refuse(codec.FrameError("malformed", repr(exc)))

    def _refuse(self, exc: codec.FrameError) -> None:
        self.t.rejected(exc, self._who())
        if not self.peer_id:
            self.write(codec.pack_frame([codec.REFUSED, exc.reason]))
        self.close()

    def _on_frame(self, frame: list[Any]) -> None:
        if not self.peer_id:
            hello = codec.decode_hello(frame)
            self.t.gate.check_hello(
                hello,
                _peercert(self.transport),
                plain=self.plain,
            )
            if self.plain:
                self.t.metrics.peer_plain_connections.inc()
            self.peer_id = hello.frm
            if self._deadline is not None:
                self._deadline.cancel()
            self.t._inbound.admitted(self)
            gate = self.t.gate
            self.write(
                codec.pack_welcome(gate.cluster.value, self.t.my_id, self.t.my_name, gate.engine)
            )
            return
        kind = frame[0]
        if kind == self.t.wire.MSGS:
            self.t.deliver(self.peer_id, frame)
            if not self._return_path:
                self._return_path = True  # a connection that carries messages, not a snapshot
                self.t.bound(self)
        elif kind == codec.SNAP_BEGIN:
            msg, size = self.t.wire.decode_snap_begin(frame)
            if msg.frm != self.peer_id or msg.to != self.t.my_id:
                raise codec.FrameError("wrong_sender", "a snapshot for or from someone else")
            if not self.t.snapshot_allowed(msg):
                raise codec.FrameError("snapshot", "not from the leader of the current term")
            self._start_snapshot(msg, size)
        else:
            raise codec.FrameError("unexpected", f"frame kind {kind} on an inbound connection")

    def _start_snapshot(self, msg: PeerMessage, size: int) -> None:
        assert self.transport is not None
        stream = self.stream = asyncio.StreamReader(limit=1 << 20)
        stream.set_transport(self.transport)  # pauses reading while it is backed up
        if self.buffer:
            stream.feed_data(bytes(self.buffer))
            self.buffer.clear()
        self.stream_task = asyncio.get_running_loop().create_task(
            self._snapshot(msg, size, stream, _ReplyWriter(self.transport))
        )

    async def _snapshot(
        self, msg: PeerMessage, size: int, stream: asyncio.StreamReader, writer: _ReplyWriter
    ) -> None:
        try:
            await self.t.receive_snapshot(msg, size, stream, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except codec.FrameError as exc:
            self.t.rejected(exc, self._who())
        except Exception:
            log.exception("snapshot stream %s failed", self._who())
        finally:
            if self.transport is not None:
                self.transport.close()
