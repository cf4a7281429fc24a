"""Peer transport: persistent, pipelined connections carrying Raft messages.

Each node dials every other member and keeps one outbound connection per peer
(like etcd's streams): everything this node says to a peer goes over its own
outbound connection; replies come back over the peer's. `send` is called once
per Ready and writes one frame per peer straight into the socket (no task
switch: the follower gets the appends before the leader starts its own fsync).
Only when a peer's socket is backed up do messages queue, coalesced into one
frame that a per-peer task writes once the socket drains.

A peer that cannot be reached gets its messages dropped (Raft retransmits) and
is reported unreachable to the core; reconnection backs off exponentially.

Inbound connections are plain protocols: a frame is decoded and handed to the
node in the socket's own callback (no reader task to wake per frame).

Snapshots travel on a dedicated short-lived connection so they never hold up
heartbeats: SNAP_BEGIN, chunks, SNAP_END with a sha256, then the receiver
steps the SNAP message with the assembled data and answers SNAP_ACK.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from raftkv.raft.types import Message, MsgType, Snapshot, SnapshotMeta
from raftkv.runtime import codec
from raftkv.runtime.config import split_host_port
from raftkv.runtime.metrics import NodeMetrics

log = logging.getLogger("raftkv.transport")

SNAP_CHUNK_BYTES = 1 << 20
MAX_QUEUED_MESSAGES = 50_000  # per peer; beyond this the peer is too slow: drop and probe
# Bytes buffered in a peer socket's transport beyond which messages queue instead
# (Raft's in-flight limits keep this small unless the peer stops reading).
WRITE_BACKLOG_BYTES = 4 << 20
CONNECT_TIMEOUT = 2.0
BACKOFF_MIN, BACKOFF_MAX = 0.05, 1.0


@dataclass(slots=True)
class PeerInfo:
    id: int
    name: str
    peer_url: str
    client_url: str


# Callbacks into the node.
OnMessages = Callable[[int, int, list[Message]], None]  # (from id, sender commit, msgs)
OnHello = Callable[[PeerInfo], None]
OnUnreachable = Callable[[int], None]
OnSnapshotStatus = Callable[[int, bool], None]
# Steps a received SNAP message with its data; resolves True once accepted.
OnSnapshot = Callable[[Message, bytes], Awaitable[bool]]
# The newest durable snapshot to stream: (meta, file, size), or None.
SnapshotSource = Callable[[], tuple[SnapshotMeta, BinaryIO, int] | None]


async def read_frame(reader: asyncio.StreamReader) -> list[object]:
    header = await reader.readexactly(codec.HEADER.size)
    (length,) = codec.HEADER.unpack(header)
    if length > codec.MAX_FRAME_BYTES:
        raise codec.FrameError(f"frame of {length} bytes exceeds the limit")
    return codec.unpack_payload(await reader.readexactly(length))


class _Peer:
    """One outbound connection and its send buffer."""

    def __init__(self, transport: PeerTransport, peer_id: int, url: str) -> None:
        self.t = transport
        self.id = peer_id
        self.url = url
        self.buffer: list[Message] = []
        self.wakeup = asyncio.Event()
        self.writer: asyncio.StreamWriter | None = None
        self.connected = False
        self.snapshot_task: asyncio.Task[None] | None = None
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"peer-{peer_id}")

    def send(self, msgs: list[Message]) -> None:
        """Called from the Raft loop: must never raise (a dead socket is the peer's
        problem, reported as unreachable, never the loop's)."""
        writer = self.writer
        if not self.connected or writer is None or writer.transport.is_closing():
            self.t.on_unreachable(self.id)
            return
        if not self.buffer and writer.transport.get_write_buffer_size() < WRITE_BACKLOG_BYTES:
            try:
                writer.write(codec.pack_messages(self.t.commit_hint(), msgs))
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
        while not self.t.closing:
            reader_task: asyncio.Task[None] | None = None
            try:
                reader, writer = await self.t.open_connection(self.url)
                self.writer = writer
                writer.write(self.t.hello_frame())
                await writer.drain()
                reader_task = asyncio.create_task(self._read_replies(reader))
                self.connected = True
                self.t.metrics.peer_up.labels(label).set(1)
                backoff = BACKOFF_MIN
                await self._pump(writer, reader_task)
            except Exception as exc:  # any failure of this link (TLS, reset, closed, ...)
                if self.connected or backoff == BACKOFF_MIN:
                    log.debug("peer %s (%s): %s", self.id, self.url, exc)
                self.t.metrics.peer_errors.labels(label).inc()
            finally:
                was_connected = self.connected
                self.connected = False
                self.buffer.clear()
                self.t.metrics.peer_up.labels(label).set(0)
                if reader_task is not None:
                    reader_task.cancel()
                if self.writer is not None:
                    self.writer.close()
                    self.writer = None
                if was_connected and not self.t.closing:
                    self.t.on_unreachable(self.id)
            if self.t.closing:
                return
            await asyncio.sleep(backoff)
            backoff = min(BACKOFF_MAX, backoff * 2)

    async def _pump(self, writer: asyncio.StreamWriter, reader_task: asyncio.Task[None]) -> None:
        while not self.t.closing:
            if not self.connected:
                raise ConnectionError("connection lost while sending")
            if not self.buffer:
                self.wakeup.clear()
                waiter = asyncio.ensure_future(self.wakeup.wait())
                done, _ = await asyncio.wait({waiter, reader_task},
                                             return_when=asyncio.FIRST_COMPLETED)
                if reader_task in done:
                    waiter.cancel()
                    raise ConnectionError("peer closed the connection")
                continue
            await writer.drain()  # the backlog first goes below the transport's mark
            batch, self.buffer = self.buffer, []
            if batch:
                writer.write(codec.pack_messages(self.t.commit_hint(), batch))

    async def _read_replies(self, reader: asyncio.StreamReader) -> None:
        # The only thing a peer says on our outbound connection is its HELLO.
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError, codec.FrameError):
            while True:
                frame = await read_frame(reader)
                if frame[0] == codec.HELLO:
                    self.t.handle_hello(frame)

    def send_snapshot(self, m: Message) -> None:
        if self.snapshot_task is not None and not self.snapshot_task.done():
            return  # one stream at a time; the core re-sends after report_snapshot
        self.snapshot_task = asyncio.get_running_loop().create_task(self._stream_snapshot(m))

    async def _stream_snapshot(self, m: Message) -> None:
        ok = False
        try:
            ok = await self.t.stream_snapshot(self.url, m)
        except Exception as exc:  # any failure means "not delivered"; the core retries
            log.warning("snapshot to %s failed: %s", self.id, exc)
            self.t.metrics.peer_errors.labels(str(self.id)).inc()
        self.t.on_snapshot_status(self.id, ok)

    async def close(self) -> None:
        self.task.cancel()
        if self.snapshot_task is not None:
            self.snapshot_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task


class PeerTransport:
    def __init__(self, me: PeerInfo, *, resolve: dict[str, str], metrics: NodeMetrics,
                 spool_dir: Path, on_messages: OnMessages, on_hello: OnHello,
                 on_unreachable: OnUnreachable, on_snapshot: OnSnapshot,
                 on_snapshot_status: OnSnapshotStatus, snapshot_source: SnapshotSource,
                 commit_hint: Callable[[], int]) -> None:
        self.me = me
        self.resolve = resolve
        self.metrics = metrics
        self.spool_dir = spool_dir
        self.on_messages = on_messages
        self.on_hello = on_hello
        self.on_unreachable = on_unreachable
        self.on_snapshot = on_snapshot
        self.on_snapshot_status = on_snapshot_status
        self.snapshot_source = snapshot_source
        self.commit_hint = commit_hint
        self.peers: dict[int, _Peer] = {}
        self.closing = False
        self.server: asyncio.AbstractServer | None = None
        self._inbound: set[_InboundProtocol] = set()

    # --- lifecycle -----------------------------------------------------------
    async def start(self, host: str, port: int) -> None:
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self.server = await asyncio.get_running_loop().create_server(
            lambda: _InboundProtocol(self), host, port)

    async def close(self) -> None:
        self.closing = True
        if self.server is not None:
            self.server.close()
        for peer in list(self.peers.values()):
            await peer.close()
        self.peers.clear()
        for conn in list(self._inbound):
            conn.close()
        if self.server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 1.0)

    # --- membership ----------------------------------------------------------
    def set_peer(self, peer_id: int, url: str) -> None:
        if peer_id == self.me.id or not url:
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

    # --- sending -------------------------------------------------------------
    def send(self, messages: list[Message]) -> None:
        """One frame per peer for the messages of one Ready."""
        by_peer: dict[int, list[Message]] = {}
        for m in messages:
            if m.type == MsgType.SNAP:
                peer = self.peers.get(m.to)
                if peer is None:
                    self.on_unreachable(m.to)
                else:
                    peer.send_snapshot(m)
                continue
            batch = by_peer.get(m.to)
            if batch is None:
                by_peer[m.to] = [m]
            else:
                batch.append(m)
        for to, batch in by_peer.items():
            peer = self.peers.get(to)
            if peer is None:
                self.on_unreachable(to)
                continue
            try:
                peer.send(batch)
            except Exception:  # belt and braces: nothing on a peer link may kill the loop
                log.exception("sending to peer %s failed", to)
                self.on_unreachable(to)

    def hello_frame(self) -> bytes:
        me = self.me
        return codec.pack_frame([codec.HELLO, me.id, me.name, me.peer_url, me.client_url])

    def handle_hello(self, frame: list[object]) -> int:
        try:
            _, pid, name, peer_url, client_url = frame
        except ValueError:
            raise codec.FrameError("malformed HELLO") from None
        if type(pid) is not int or not all(type(s) is str for s in (name, peer_url, client_url)):
            raise codec.FrameError("malformed HELLO")
        self.on_hello(PeerInfo(pid, name, peer_url, client_url))  # type: ignore[arg-type]
        return pid

    async def open_connection(
            self, url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        host, port = split_host_port(url)
        host = self.resolve.get(host, host)
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, limit=1 << 20), CONNECT_TIMEOUT)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            import socket
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return reader, writer

    # --- snapshots: sender ---------------------------------------------------
    async def stream_snapshot(self, url: str, m: Message) -> bool:
        loop = asyncio.get_running_loop()
        # Opening verifies the file's sha256: a full read, so not on the event loop.
        source = await loop.run_in_executor(None, self.snapshot_source)
        if source is None:
            return False
        meta, fileobj, size = source
        # Ship the newest durable snapshot (it covers at least what the core asked for).
        m.snapshot = Snapshot(meta)
        reader, writer = await self.open_connection(url)
        try:
            writer.write(self.hello_frame())
            writer.write(codec.pack_frame([codec.SNAP_BEGIN, codec.encode_message(m), size]))
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
            while True:
                frame = await asyncio.wait_for(read_frame(reader), 60.0)
                if frame[0] == codec.SNAP_ACK:
                    if not frame[1]:
                        log.warning("peer %s refused snapshot: %s", m.to, frame[2])
                    return bool(frame[1])
        finally:
            fileobj.close()
            writer.close()

    # --- receiving -----------------------------------------------------------
    def on_frame(self, conn: _InboundProtocol, frame: list[object]) -> None:
        """One frame from an inbound connection (raises FrameError on garbage)."""
        kind = frame[0]
        if kind == codec.MSGS:
            sender_commit, raw = frame[1], frame[2]
            if type(raw) is not list or type(sender_commit) is not int:
                raise codec.FrameError("malformed MSGS frame")
            msgs = [codec.decode_message(r) for r in raw]
            if msgs:
                self.on_messages(msgs[0].frm, sender_commit, msgs)
        elif kind == codec.HELLO:
            conn.peer_id = self.handle_hello(frame)
            conn.write(self.hello_frame())
        elif kind == codec.SNAP_BEGIN:
            conn.start_snapshot(frame)
        else:
            raise codec.FrameError(f"unexpected frame kind {kind!r}")

    async def receive_snapshot(self, begin: list[object], reader: asyncio.StreamReader,
                               writer: _ReplyWriter) -> None:
        msg = codec.decode_message(begin[1])
        size = begin[2]
        if msg.type != MsgType.SNAP or msg.snapshot is None or type(size) is not int:
            raise codec.FrameError("malformed SNAP_BEGIN")
        fd, tmp = tempfile.mkstemp(prefix="snap-", suffix=".part", dir=self.spool_dir)
        ok, reason = False, ""
        try:
            digest = hashlib.sha256()
            received = 0
            with os.fdopen(fd, "wb") as out:
                while True:
                    frame = await read_frame(reader)
                    if frame[0] == codec.SNAP_CHUNK and type(frame[1]) is bytes:
                        chunk = frame[1]
                        received += len(chunk)
                        if received > size:
                            raise codec.FrameError("snapshot longer than announced")
                        digest.update(chunk)
                        out.write(chunk)
                    elif frame[0] == codec.SNAP_END:
                        break
                    else:
                        raise codec.FrameError("unexpected frame in a snapshot stream")
            if received != size or frame[1] != digest.hexdigest():
                reason = "size or sha256 mismatch"
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
            self.transport.write(data)


class _InboundProtocol(asyncio.Protocol):
    """A peer's outbound connection to us: frames in, HELLO and SNAP_ACK out.

    MSGS and HELLO frames are parsed and handled right in `data_received`. After a
    SNAP_BEGIN the rest of the connection is a snapshot stream: its bytes go to a
    StreamReader read by a task (the stream is big and rare; flow control applies).
    """

    def __init__(self, t: PeerTransport) -> None:
        self.t = t
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.peer_id = 0
        self.stream: asyncio.StreamReader | None = None
        self.stream_task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's aren't subclasses
        self.t._inbound.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.t._inbound.discard(self)
        self.transport = None
        if self.stream is not None:
            self.stream.feed_eof()

    def eof_received(self) -> bool:
        if self.stream is not None:
            self.stream.feed_eof()
        return False

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

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
                    raise codec.FrameError(f"frame of {length} bytes exceeds the limit")
                if len(buf) < header + length:
                    return
                frame = codec.unpack_payload(bytes(buf[header:header + length]))
                del buf[:header + length]
                self.t.on_frame(self, frame)
        except codec.FrameError as exc:
            log.warning("dropping peer connection (peer %s): %s", self.peer_id or "?", exc)
            self.close()

    def start_snapshot(self, begin: list[object]) -> None:
        assert self.transport is not None
        stream = self.stream = asyncio.StreamReader(limit=1 << 20)
        stream.set_transport(self.transport)  # pauses reading while it is backed up
        if self.buffer:
            stream.feed_data(bytes(self.buffer))
            self.buffer.clear()
        self.stream_task = asyncio.get_running_loop().create_task(
            self._snapshot(begin, stream, _ReplyWriter(self.transport)))

    async def _snapshot(self, begin: list[object], stream: asyncio.StreamReader,
                        writer: _ReplyWriter) -> None:
        try:
            await self.t.receive_snapshot(begin, stream, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except codec.FrameError as exc:
            log.warning("dropping snapshot stream (peer %s): %s", self.peer_id or "?", exc)
        finally:
            if self.transport is not None:
                self.transport.close()
