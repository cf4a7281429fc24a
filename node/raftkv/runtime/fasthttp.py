"""The client port's front door: every connection's bytes are parsed by llhttp
(httptools); the hot single-key requests are served here, the rest by aiohttp.

aiohttp's server costs ~60 us of CPU per request on this project's machine
(a task per connection, router, middlewares, Response objects); the same PUT
through a bare asyncio protocol costs ~12 us. Under write load the leader's
event loop is the bottleneck, so the requests that carry the load are served here:

- `PUT /v1/kv/{key}` on the leader, query `lease`, `prev_kv`, `encoding` only;
- `GET /v1/kv/{key}`, query `consistency`, `encoding` only;

with the same checks, answers and metrics as the aiohttp handlers (both call the
same `KvService`, runtime/http/service.py; tests/unit/runtime/test_fasthttp*.py compare the two
paths on a corpus of raw requests). Everything else -- another route, another
query parameter, a follower's write (forwarded), a body that is not a plain
Content-Length one, `Expect`, `Upgrade`, HTTP/1.0, an absolute-form target -- is
handed to aiohttp: its `RequestHandler` receives the bytes from the first byte of
that request on, once the answers already owed on the connection are written, and
keeps the connection from then on. This protocol stays in front of it as a thin
proxy that watches the same bytes with a second parser, to enforce the same head
and body timeouts on aiohttp's connections (aiohttp has none).

Strict: what llhttp rejects (bare CR or LF, obs-fold, bad Content-Length, CL with
TE, data after `Connection: close`, control bytes in the target...) and what
aiohttp rejects on top (no Host in HTTP/1.1, a repeated singleton header, more
than 128 headers, a request line or field over 8190 bytes) is answered 400 and the
connection closed; nothing of the bytes received with it is executed -- exactly as
aiohttp drops every request of a read that ends in a parse error.

No task per request: a write's answer is written from its proposal's done
callback; answers leave in request order (HTTP/1.1 pipelining). Flow control: at
most PIPELINE_DEPTH requests are in progress per connection, and no new request
is served (nor read) while the transport's write buffer is above its high-water
mark -- a client that pipelines GETs of a large value and never reads costs the
node nothing but the socket buffers.

Authorization hook: `FastHttp.authorize`, when set, is called with each request
(`FastRequest`: method, target, query, headers) before it is served; raising an
`ApiError` (401/403) answers it with that error. It runs in `fastkv.serve`,
the one place every fast-path request passes. TLS needs nothing here: with
`create_server(ssl=...)` the protocol receives decrypted bytes.

This module is the connection (`FastProtocol`: parsing, pipelining, flow control,
timeouts, the hand-over); runtime/fastkv.py is what it serves (which requests,
serving them, the answers' bytes).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import httptools

from raftkv.runtime import fastkv
from raftkv.runtime.fastkv import FastRequest
from raftkv.runtime.http import KV_ROUTE, KvService
from raftkv.runtime.http.auth import peercert_of

log = logging.getLogger("raftkv.api")

# aiohttp's own head limits (web.Server defaults), enforced here the same way so that
# both paths refuse the same requests; they also bound a head's memory (llhttp has none).
MAX_LINE_BYTES = 8190  # the request target
MAX_FIELD_BYTES = 8190  # a header's name, and its value
MAX_HEADERS = 128
# A head still incomplete past this many bytes is refused (llhttp buffers nothing, but
# httptools joins a header's pieces until the next one starts).
MAX_HEAD_BYTES = MAX_LINE_BYTES + MAX_HEADERS * (2 * MAX_FIELD_BYTES + 4) + 64
# aiohttp refuses a second one of these (a smuggling vector: two Hosts, two lengths).
SINGLETON_HEADERS = frozenset(
    (
        b"content-length",
        b"content-location",
        b"content-range",
        b"content-type",
        b"etag",
        b"host",
        b"max-forwards",
        b"server",
        b"transfer-encoding",
        b"user-agent",
    )
)
PIPELINE_DEPTH = 16  # requests in progress per connection before reading stops
WRITE_HIGH_WATER = 64 * 1024  # stop serving (and reading) above this many unsent bytes
WRITE_LOW_WATER = 16 * 1024
# Requests with these go to aiohttp, which implements them.
_HANDED_OVER_HEADERS = frozenset((b"transfer-encoding", b"expect", b"upgrade"))
_NOTABLE_HEADERS = SINGLETON_HEADERS | _HANDED_OVER_HEADERS | {b"sec-websocket-key1"}
# One bit per singleton header: a head's "seen" set is an int (no set per request).
_SINGLETON_BITS = {name: 1 << i for i, name in enumerate(sorted(SINGLETON_HEADERS))}
_HOST_BIT = _SINGLETON_BITS[b"host"]


@dataclass(slots=True)
class ClientLimits:
    """Connection limits of the client port (flags --client-*; docs/api.md "Limits")."""

    max_connections: int = 1024
    header_timeout: float = 10.0  # first byte of a request head -> its end
    body_timeout: float = 30.0  # end of the head -> end of the body
    idle_timeout: float = 75.0  # nothing owed, nothing arriving (aiohttp's default too)

    @property
    def sweep_interval(self) -> float:
        shortest = min(self.header_timeout, self.body_timeout, self.idle_timeout)
        return min(1.0, max(0.01, shortest / 4))


class _Malformed(Exception):
    """The request breaks a rule aiohttp enforces on top of llhttp: answer 400."""


class _HandOver(Exception):
    """Stops the parser at a request aiohttp must serve."""


class _Reject:
    """A malformed request's place in the answer order: 400, then close."""

    __slots__ = ("message",)
    method = "-"
    keep_alive = False

    def __init__(self, message: str) -> None:
        self.message = message


class FastHttp:
    """Builds the per-connection protocols; owns what they share."""

    def __init__(
        self,
        api: KvService,
        fallback: Callable[[], asyncio.BaseProtocol],
        limits: ClientLimits | None = None,
        *,
        serve_fast: bool = True,
    ) -> None:
        self.api = api
        self.node = api.node
        self.fallback = fallback  # aiohttp's protocol factory (web.Server)
        self.limits = limits or ClientLimits()
        self.serve_fast = serve_fast  # False: every connection goes to aiohttp at once
        self.connections: set[FastProtocol] = set()
        self.authorize: Callable[[FastRequest], object] | None = None
        self._children: dict[tuple[str, int], tuple[Any, Any]] = {}
        self.served = 0  # requests answered here (not handed over)
        self._sweeper: asyncio.TimerHandle | None = None
        # time.monotonic() as of the read being parsed (one clock read per read, not
        # per parser callback): the head and body deadlines start from it.
        self.clock = time.monotonic()
        self.metrics = api.metrics

    def __call__(self) -> FastProtocol:
        if self._sweeper is None:
            self._sweep()
        return FastProtocol(self)

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for conn in list(self.connections):
            if conn.downstream is None:  # aiohttp's runner closes its own, gracefully
                conn.abort()

    def observe(self, method: str, status: int, started: float) -> None:
        self.served += 1
        key = (method, status)
        children = self._children.get(key)
        if children is None:  # labels() costs a lock and a dict walk: once per key
            m = self.api.metrics
            children = self._children[key] = (
                m.http_requests.labels(KV_ROUTE, method, str(status)),
                m.http_duration.labels(KV_ROUTE),
            )
        children[0].inc()
        children[1].observe(time.perf_counter() - started)

    def count_open(self) -> None:
        self.metrics.client_connections.set(len(self.connections))

    def count_rejected(self) -> None:
        self.metrics.client_connections_rejected.inc()

    def count_closed(self, reason: str) -> None:
        self.metrics.client_connections_closed.labels(reason).inc()

    def _sweep(self) -> None:
        """Close the connections past their deadline (one timer for all of them)."""
        now = self.clock = time.monotonic()
        for conn in list(self.connections):
            if conn.deadline and now > conn.deadline:
                conn.time_out()
        self._sweeper = asyncio.get_running_loop().call_later(
            self.limits.sweep_interval, self._sweep
        )


class _HeadRules:
    """The head rules aiohttp adds to llhttp's, as httptools callbacks. Shared by the
    connection's parser and the one that checks the bytes a hand-over passes on."""

    url: bytes
    headers: list[tuple[bytes, bytes]]  # (lower-case name, value) as received
    seen: int  # _SINGLETON_BITS of the headers seen
    length: int  # Content-Length (llhttp accepts digits only)
    aiohttps: bool  # a header only aiohttp handles

    def _begin_head(self) -> None:
        self.url = b""
        self.headers = []
        self.seen = 0
        self.length = 0
        self.aiohttps = False

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self.headers
        if (
            len(name) > MAX_FIELD_BYTES
            or len(value) > MAX_FIELD_BYTES
            or len(headers) >= MAX_HEADERS
        ):
            raise _Malformed(
                f"a header over {MAX_FIELD_BYTES} bytes, or more than {MAX_HEADERS} headers"
            )
        lower = name.lower()
        if lower in _NOTABLE_HEADERS:
            bit = _SINGLETON_BITS.get(lower)
            if bit is not None:
                if self.seen & bit:
                    raise _Malformed(f"duplicate {name.decode('latin-1')!r} header")
                self.seen |= bit
                if lower == b"content-length":
                    self.length = int(value)
            elif lower == b"sec-websocket-key1":
                raise _Malformed("unsupported Sec-WebSocket-Key1 header")
            if lower in _HANDED_OVER_HEADERS:
                self.aiohttps = True
        if value and value[-1] in b" \t":  # llhttp strips the OWS before a value only
            value = value.rstrip(b" \t")
        headers.append((lower, value))

    def _check_head(self, version: str) -> None:
        if version == "1.1" and not self.seen & _HOST_BIT:
            raise _Malformed("missing Host header in an HTTP/1.1 request")


class _Validator(_HeadRules):
    """Parses the bytes a hand-over passes to aiohttp: does aiohttp accept them all?"""

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self._begin_head()

    def on_message_begin(self) -> None:
        self._begin_head()

    def on_url(self, url: bytes) -> None:
        url = self.url + url if self.url else url
        if len(url) > MAX_LINE_BYTES:
            raise _Malformed(f"request target over {MAX_LINE_BYTES} bytes")
        self.url = url

    def on_headers_complete(self) -> None:
        self._check_head(self.parser.get_http_version())

    def error(self, data: bytes) -> str | None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            return None
        except httptools.HttpParserError as exc:
            return _reason(exc)
        return None


class _Observer:
    """Watches the bytes of a connection served by aiohttp, for its timeouts."""

    def __init__(self, conn: FastProtocol) -> None:
        self.conn = conn
        self.parser = httptools.HttpRequestParser(self)

    def on_message_begin(self) -> None:
        self.conn.deadline = self.conn.shared.clock + self.conn.limits.header_timeout
        self.conn.phase = "header_timeout"

    def on_headers_complete(self) -> None:
        self.conn.deadline = self.conn.shared.clock + self.conn.limits.body_timeout
        self.conn.phase = "body_timeout"

    def on_message_complete(self) -> None:
        # aiohttp serves it; its keep-alive timeout closes the connection when idle.
        self.conn.deadline = 0.0

    def feed(self, data: bytes) -> bool:
        """False once the bytes stop being HTTP/1.1 requests (aiohttp answers that)."""
        self.conn.shared.clock = time.monotonic()
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            self.conn.deadline = 0.0
            return False
        return True


def _reason(exc: BaseException) -> str:
    cause = exc.__context__
    if isinstance(cause, _Malformed):
        return str(cause)
    return str(exc) or type(exc).__name__


class FastProtocol(_HeadRules, asyncio.Protocol):
    def __init__(self, shared: FastHttp) -> None:
        self.shared = shared
        self.limits = shared.limits
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        # Bytes from the first byte of the request being parsed (what a hand-over
        # passes on); `skip`: body bytes of an accepted request still to arrive.
        self.raw = b""
        self.raw_pos = 0  # raw[:raw_pos] belongs to requests already accepted
        self.skip = 0
        self.in_message = False
        self.request: FastRequest | None = None
        self.body_parts: list[bytes] = []
        self.queue: deque[FastRequest | _Reject] = deque()  # parsed, not yet served
        self.queued_this_read = 0
        # Answers owed, in request order: [head | None (not ready), body, close after?].
        self.pending: deque[list[Any]] = deque()
        self.handing_over = False
        self.handover_bytes = b""
        self.downstream: asyncio.Protocol | None = None  # aiohttp, after a hand-over
        self.observer: _Observer | None = None
        self.dead = False  # a malformed request was seen: parse nothing more
        self.eof = False
        self.write_paused = False
        self.read_paused = False
        self.pump_scheduled = False
        self.deadline = 0.0  # monotonic; 0 = none
        self.phase = "idle_timeout"
        self.accepted = False
        self.peercert_value: dict[str, Any] | None = None
        self.peercert_read = False

    # --- asyncio callbacks ---------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's aren't subclasses
        shared = self.shared
        if len(shared.connections) >= self.limits.max_connections:
            shared.count_rejected()
            self.transport.write(fastkv.too_many_connections(self.limits.max_connections))
            self.transport.close()
            self.transport = None
            return
        self.accepted = True
        shared.connections.add(self)
        shared.count_open()
        self.transport.set_write_buffer_limits(WRITE_HIGH_WATER, WRITE_LOW_WATER)
        self.deadline = time.monotonic() + self.limits.idle_timeout
        if not shared.serve_fast:
            self._hand_over(b"")

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.accepted:
            return  # refused at connection_made
        self.shared.connections.discard(self)
        self.shared.count_open()
        self.transport = None
        self.pending.clear()
        self.queue.clear()
        if self.downstream is not None:
            self.downstream.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.downstream is not None:
            if self.observer is not None and not self.observer.feed(data):
                self.observer = None
            self.downstream.data_received(data)
            return
        if self.handing_over:
            self.handover_bytes += data
            return
        if self.dead or self.transport is None:
            return
        self.shared.clock = time.monotonic()
        skip = self.skip
        if skip:  # the rest of an accepted request's body, then perhaps more
            if skip >= len(data):
                self.skip -= len(data)
                self.body_parts.append(data)
            else:
                self.skip = 0
                self.body_parts.append(data[:skip])
                self._keep(data[skip:])
        elif self.raw_pos >= len(self.raw):  # the usual case: nothing kept from before
            self.raw, self.raw_pos = data, 0
        else:
            self._keep(data)
        self.queued_this_read = 0
        try:
            self.parser.feed_data(data)
        except _HandOver:  # pragma: no cover - httptools wraps callback errors
            raise
        except httptools.HttpParserUpgrade:
            self._malformed("unexpected protocol upgrade")  # refused before: not reached
            return
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, _HandOver):
                self._start_hand_over()
            else:
                self._malformed(_reason(exc))
            return
        if not self.in_message:
            self.raw, self.raw_pos = b"", 0
        elif self.request is None and len(self.raw) - self.raw_pos > MAX_HEAD_BYTES:
            self._malformed(f"request head over {MAX_HEAD_BYTES} bytes")
            return
        self._pump()

    def eof_received(self) -> bool | None:
        if self.downstream is not None:
            return self.downstream.eof_received()
        self.eof = True
        # Keep the socket open for the answers still owed; close once they're written.
        return bool(self.pending or self.queue) or self.handing_over

    def pause_writing(self) -> None:
        if self.downstream is not None:
            self.downstream.pause_writing()
            return
        self.write_paused = True
        self._pause_reading()
        self._rearm()

    def resume_writing(self) -> None:
        if self.downstream is not None:
            self.downstream.resume_writing()
            return
        self.write_paused = False
        self._rearm()
        self._pump()

    def peercert(self) -> dict[str, Any] | None:
        """The connection's verified client certificate (decoded once per connection)."""
        if not self.peercert_read:
            self.peercert_value = peercert_of(self.transport)
            self.peercert_read = True
        return self.peercert_value

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def time_out(self) -> None:
        self.shared.count_closed(self.phase)
        self.deadline = 0.0
        self.abort()

    # --- parser callbacks (llhttp, via httptools) ----------------------------------
    def on_message_begin(self) -> None:
        self.in_message = True
        self.headers = []
        self.seen = 0
        self.length = 0
        self.aiohttps = False
        self.request = None
        self.deadline = self.shared.clock + self.limits.header_timeout
        self.phase = "header_timeout"

    def on_headers_complete(self) -> None:
        # The target is taken from the request line llhttp has just accepted (method,
        # spaces, target, spaces, version; no other bytes allowed), not from on_url:
        # one callback less per request.
        raw = self.raw
        start = self.raw_pos
        while start < len(raw) and raw[start] in b"\r\n":
            start += 1
        line = raw[start : raw.find(b"\r\n", start)]
        tokens = line.split(b" ")
        if len(tokens) != 3:  # llhttp allows more than one space between the parts
            tokens = [token for token in tokens if token]
        url = tokens[1] if len(tokens) == 3 else b""
        if len(url) > MAX_LINE_BYTES:
            raise _Malformed(f"request target over {MAX_LINE_BYTES} bytes")
        self.url = url
        version = self.parser.get_http_version()
        if not self.seen & _HOST_BIT and version == "1.1":
            self._check_head(version)
        request = fastkv.route(self, version)
        if request is None:
            raise _HandOver()
        self._commit(request, start)
        self.request = request
        if request.length:
            self.deadline = self.shared.clock + self.limits.body_timeout
            self.phase = "body_timeout"

    def on_message_complete(self) -> None:
        self.in_message = False
        request = self.request
        assert request is not None
        parts = self.body_parts
        if parts:  # the body came in several reads (else _commit took it whole)
            request.body = b"".join(parts)
            self.body_parts = []
        self.request = None
        self.queue.append(request)
        self.queued_this_read += 1
        self.deadline = 0.0  # in progress: --request-timeout bounds it, not us

    def _keep(self, data: bytes) -> None:
        """Add received bytes to `raw` (copying only what is still unaccepted)."""
        raw = self.raw
        if self.raw_pos >= len(raw):
            self.raw, self.raw_pos = data, 0
        else:
            self.raw, self.raw_pos = raw[self.raw_pos :] + data, 0

    def _commit(self, request: FastRequest, start: int) -> None:
        """This request is served here: its bytes leave `raw` (they can no longer be
        handed over), and its body is taken from them (the parser's on_body would
        cost a call per piece). Its head ends at the first CRLFCRLF after any leading
        CRLFs (llhttp, strict, allows no other line ends); its body is Content-Length
        bytes."""
        raw = self.raw
        head_end = raw.find(b"\r\n\r\n", start) + 4
        end = head_end + request.length
        if end <= len(raw):
            if request.length:
                request.body = raw[head_end:end]
            self.raw_pos = end
        else:  # the rest arrives in later reads (data_received collects it)
            self.body_parts = [raw[head_end:]]
            self.skip = end - len(raw)
            self.raw_pos = len(raw)

    # --- serving -------------------------------------------------------------------
    def _pump(self) -> None:
        """Serve queued requests while the pipeline and the write buffer have room."""
        self.pump_scheduled = False
        queue, pending = self.queue, self.pending
        while (
            queue
            and not self.write_paused
            and len(pending) < PIPELINE_DEPTH
            and self.transport is not None
        ):
            request = queue.popleft()
            if isinstance(request, _Reject):
                self._reject(request)
                return
            fastkv.serve(self, request)
        if self.read_paused or self.write_paused or len(queue) + len(pending) >= PIPELINE_DEPTH:
            self._update_reading()

    def _update_reading(self) -> None:
        if self.transport is None or self.handing_over or self.dead:
            return
        if self.write_paused or len(self.queue) + len(self.pending) >= PIPELINE_DEPTH:
            self._pause_reading()
        else:
            self._resume_reading()

    def _schedule_pump(self) -> None:
        # Never from inside a node callback (Completion): serving proposes.
        if not self.pump_scheduled:
            self.pump_scheduled = True
            asyncio.get_running_loop().call_soon(self._pump)

    def _reject(self, request: _Reject) -> None:
        """400 for a malformed request, after the answers owed; then close."""
        self.pending.append([fastkv.bad_request(request.message), b"", True])
        self.shared.count_closed("malformed")
        self.flush()

    def flush(self) -> None:
        """Write the answers that are ready, in request order."""
        transport = self.transport
        if transport is None:
            return
        pending = self.pending
        while pending and pending[0][0] is not None:
            head, body, close = pending.popleft()
            transport.write(head)
            if body:
                transport.write(body)
            if close:
                transport.close()
                self.transport = None
                self.deadline = 0.0
                pending.clear()
                self.queue.clear()
                return
        if self.queue:
            if len(pending) < PIPELINE_DEPTH and not self.write_paused:
                self._schedule_pump()
        elif not pending:
            if self.handing_over:
                self._complete_hand_over()
                return
            if self.eof:
                transport.close()
                return
            if not self.in_message:
                self.deadline = time.monotonic() + self.limits.idle_timeout
                self.phase = "idle_timeout"
        if self.read_paused:
            self._update_reading()

    def _rearm(self) -> None:
        """The deadline once no request is being received: the idle timeout when
        nothing is owed or the client does not read its answers; none while the
        answers wait for the cluster (--request-timeout bounds that)."""
        if self.in_message or self.downstream is not None:
            return  # the head or body deadline stands; aiohttp's are the observer's
        if self.write_paused or not (self.pending or self.queue):
            self.deadline = time.monotonic() + self.limits.idle_timeout
            self.phase = "idle_timeout"
        else:
            self.deadline = 0.0

    def _pause_reading(self) -> None:
        if not self.read_paused and self.transport is not None:
            self.read_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.read_paused and self.transport is not None:
            self.read_paused = False
            self.transport.resume_reading()

    def _malformed(self, message: str) -> None:
        """Nothing received with a malformed request is executed (as in aiohttp, which
        drops every request of a read that ends in a parse error): 400, close."""
        self.dead = True
        self._pause_reading()
        for _ in range(self.queued_this_read):
            self.queue.pop()
        self.queued_this_read = 0
        self.raw, self.raw_pos = b"", 0
        self.deadline = time.monotonic() + self.limits.idle_timeout  # the answer's writing
        self.phase = "idle_timeout"
        self.queue.append(_Reject(message))
        self._pump()

    # --- hand-over to aiohttp ------------------------------------------------------
    def _start_hand_over(self) -> None:
        """The request at the start of `raw` is aiohttp's: serve what came before it,
        then pass aiohttp every byte from that request on."""
        data = self.raw[self.raw_pos :]
        self.raw, self.raw_pos = b"", 0
        problem = _Validator().error(data)
        if problem is not None:
            self._malformed(problem)
            return
        self._hand_over(data)

    def _hand_over(self, data: bytes) -> None:
        self.handing_over = True
        self.handover_bytes = data
        self._pause_reading()
        if self.queue:
            self._pump()
        if not self.pending and not self.queue:
            self._complete_hand_over()

    def _complete_hand_over(self) -> None:
        transport = self.transport
        if transport is None or self.downstream is not None:
            return
        self.handing_over = False
        protocol = cast(asyncio.Protocol, self.shared.fallback())
        self.downstream = protocol
        self.observer = _Observer(self)
        self.deadline = 0.0
        # This protocol stays the transport's: it forwards every callback to aiohttp's
        # and keeps watching the bytes for the timeouts.
        protocol.connection_made(transport)
        if self.write_paused:
            protocol.pause_writing()
        data, self.handover_bytes = self.handover_bytes, b""
        if data:
            self.data_received(data)
        if self.read_paused:
            self.read_paused = False
            transport.resume_reading()
        if self.eof and not protocol.eof_received():
            transport.close()
