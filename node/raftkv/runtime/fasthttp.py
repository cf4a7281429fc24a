"""The client port's front door: the hot single-key requests served without aiohttp.

aiohttp's server costs ~60 us of CPU per request on this project's machine
(parser, a task per connection, router, middlewares, Response objects); the
same PUT through a bare asyncio protocol costs ~12 us (measured with wrk, 64
connections, a trivial handler: 17k vs 81k requests/s). Under write load the
leader's event loop is the bottleneck, so the requests that carry the load are
served here:

- `PUT /v1/kv/{key}` on the leader, query `lease`, `prev_kv`, `encoding` only;
- `GET /v1/kv/{key}`, query `consistency`, `encoding` only;

with the same checks, answers and metrics as the aiohttp handlers (both call
the same `KvService` (runtime/http/service.py); tests/unit/runtime/test_fasthttp.py compares the
two paths answer for answer). Everything else -- another route, another query
parameter, a follower's write (forwarded), chunked bodies, `Expect`, HTTP/1.0,
anything unusual or malformed -- is handed to aiohttp: the connection's
transport is given to an aiohttp `RequestHandler` together with the bytes not
yet consumed, once the answers already owed on it are written, and stays with
aiohttp from then on.

No task per request: a write's answer is written from its proposal's done
callback; answers leave in request order (HTTP/1.1 pipelining).
"""

from __future__ import annotations

import asyncio
import http
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import parse_qsl

from multidict import CIMultiDict, MultiDict

from raftkv.fsm import ApplyResult
from raftkv.raft import StateRole
from raftkv.runtime.errors import ApiError
from raftkv.runtime.http import KV_ROUTE, KvService, api_error, error_parts, path_key, result_of
from raftkv.runtime.http.auth import Identity, peercert_of
from raftkv.runtime.jsonbytes import encoding_of, to_json
from raftkv.runtime.node import Completion

log = logging.getLogger("raftkv.api")

MAX_HEAD_BYTES = 16 * 1024  # a longer request head goes to aiohttp (which limits it)
IDLE_SECONDS = 75.0  # close keep-alive connections idle this long (aiohttp's default)
_PUT_PARAMS = frozenset(("lease", "prev_kv", "encoding"))
_GET_PARAMS = frozenset(("consistency", "encoding"))
_HANDED_OVER_HEADERS = ("transfer-encoding", "expect", "upgrade")
_REASONS = {s.value: s.phrase for s in http.HTTPStatus}


class _Request:
    """A parsed request head: what the `KvService` checks read."""

    __slots__ = ("method", "target", "query", "headers", "close", "identity")

    def __init__(self, method: str, target: str, query: MultiDict[str],
                 headers: CIMultiDict[str], close: bool) -> None:
        self.method = method
        self.target = target
        self.query = query
        self.headers = headers
        self.close = close
        self.identity: Identity | None = None  # set by the auth check in _serve


class FastHttp:
    """Builds the per-connection protocols; owns what they share."""

    def __init__(self, api: KvService, fallback: Callable[[], asyncio.BaseProtocol]) -> None:
        self.api = api
        self.node = api.node
        self.fallback = fallback  # aiohttp's protocol factory (web.Server)
        self.connections: set[FastProtocol] = set()
        self._children: dict[tuple[str, int], tuple[Any, Any]] = {}
        self.served = 0  # requests answered here (not handed over)
        self._idle_timer: asyncio.TimerHandle | None = None

    def __call__(self) -> FastProtocol:
        if self._idle_timer is None:
            self._sweep_idle()
        return FastProtocol(self)

    def close(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        for conn in list(self.connections):
            conn.abort()

    def observe(self, method: str, status: int, started: float) -> None:
        self.served += 1
        key = (method, status)
        children = self._children.get(key)
        if children is None:  # labels() costs a lock and a dict walk: once per key
            m = self.api.metrics
            children = self._children[key] = (
                m.http_requests.labels(KV_ROUTE, method, str(status)),
                m.http_duration.labels(KV_ROUTE))
        children[0].inc()
        children[1].observe(time.perf_counter() - started)

    def _sweep_idle(self) -> None:
        now = time.monotonic()
        for conn in list(self.connections):
            if not conn.pending and now - conn.last_active > IDLE_SECONDS:
                conn.abort()
        self._idle_timer = asyncio.get_running_loop().call_later(
            IDLE_SECONDS / 3, self._sweep_idle)


class FastProtocol(asyncio.Protocol):
    def __init__(self, shared: FastHttp) -> None:
        self.shared = shared
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        # Answers owed, in request order: [bytes | None (not ready yet), close after?].
        self.pending: deque[list[Any]] = deque()
        self.handing_over = False
        self.eof = False
        self.last_active = time.monotonic()
        self._peercert: dict[str, Any] | None = None
        self._peercert_read = False

    # --- asyncio callbacks ---------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's aren't subclasses
        self.shared.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.shared.connections.discard(self)
        self.transport = None
        self.pending.clear()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self.last_active = time.monotonic()
        if not self.handing_over:
            self._parse()

    def eof_received(self) -> bool:
        self.eof = True
        # Keep the socket open for the answers still owed; close once they're written.
        return bool(self.pending) or self.handing_over

    def peercert(self) -> dict[str, Any] | None:
        """The connection's verified client certificate, decoded once per connection."""
        if not self._peercert_read:
            self._peercert = peercert_of(self.transport)
            self._peercert_read = True
        return self._peercert

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # --- requests ------------------------------------------------------------------
    def _parse(self) -> None:
        buf = self.buffer
        while buf and not self.handing_over and self.transport is not None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD_BYTES:
                    self._hand_over()
                return
            parsed = self._parse_head(bytes(buf[:end]))
            if parsed is None:
                self._hand_over()
                return
            request, length = parsed
            start = end + 4
            if len(buf) < start + length:
                return  # the body is still on its way
            body = bytes(buf[start:start + length])
            del buf[:start + length]
            self._serve(request, body)

    def _parse_head(self, head: bytes) -> tuple[_Request, int] | None:
        """The request and its body length, or None if aiohttp should serve it."""
        try:
            text = head.decode("latin-1")
        except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes any bytes
            return None
        lines = text.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or parts[2] != "HTTP/1.1":
            return None
        method, target = parts[0], parts[1]
        if method not in ("PUT", "GET") or not target.startswith("/v1/kv/") or "#" in target:
            return None
        headers: CIMultiDict[str] = CIMultiDict()
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip() or line[0] in " \t":
                return None  # malformed, or obsolete line folding: aiohttp's call
            headers.add(name, value.strip(" \t"))
        for name in _HANDED_OVER_HEADERS:
            if name in headers:
                return None
        lengths = headers.getall("content-length", [])
        if len(lengths) > 1 or (lengths and not lengths[0].isdigit()):
            return None
        length = int(lengths[0]) if lengths else 0
        if length > self.shared.api.cfg.max_request_bytes or (method == "GET" and length):
            return None
        _, _, raw_query = target.partition("?")
        query: MultiDict[str] = (MultiDict(parse_qsl(raw_query, keep_blank_values=True))
                                 if raw_query else MultiDict())
        allowed = _PUT_PARAMS if method == "PUT" else _GET_PARAMS
        if not allowed.issuperset(query.keys()):
            return None
        if method == "PUT" and self.shared.node.core.role != StateRole.LEADER:
            return None  # aiohttp forwards it to the leader (or redirects)
        close = headers.get("connection", "").lower() == "close"
        return _Request(method, target, query, headers, close), length

    def _serve(self, request: _Request, body: bytes) -> None:
        started = time.perf_counter()
        slot: list[Any] = [None, request.close]
        self.pending.append(slot)
        try:
            # The same check as aiohttp's routes (runtime/http/auth.py).
            request.identity = self.shared.api.auth.check(
                "readwrite" if request.method == "PUT" else "read", request.headers,
                self.peercert)
            if request.method == "PUT":
                self._put(request, body, slot, started)
            else:
                self._get(request, slot, started)
        except Exception as exc:  # the one mapping: runtime/http/errors.py
            self._answer_error(slot, request, api_error(
                exc, "write", f"{request.method} {request.target}"), started)

    def _put(self, request: _Request, body: bytes, slot: list[Any], started: float) -> None:
        api = self.shared.api
        data, encoding = api.plain_put(request, path_key(request.target), body)

        def done(applied: ApplyResult | None, exc: BaseException | None) -> None:
            try:
                if exc is not None:
                    raise exc
                assert applied is not None
                result = result_of(applied)
            except Exception as error:
                self._answer_error(slot, request, api_error(error, "write"), started)
                return
            self._answer(slot, request, 200, "application/json",
                         json.dumps(to_json(result, encoding), separators=(",", ":")).encode(),
                         None, started)

        # Answered from inside the node loop, in the turn the entry applies.
        self.shared.node.propose_into(data, Completion(done))

    def _get(self, request: _Request, slot: list[Any], started: float) -> None:
        api = self.shared.api
        key = path_key(request.target)
        encoding_of(request.query)  # unused by a single key's raw answer, but checked
        api.check_key(key)
        api.check_keys(request, key)
        if not api.read_needs_barrier(request):
            self._serve_get(request, key, slot, started)
            return

        def done(_: None, exc: BaseException | None) -> None:
            try:
                if exc is not None:
                    raise exc
                self._serve_get(request, key, slot, started)
            except Exception as error:
                self._answer_error(slot, request, api_error(error, "read"), started)

        try:
            self.shared.node.read_barrier_into(Completion(done))
        except Exception as exc:
            raise api_error(exc, "read") from None

    def _serve_get(self, request: _Request, key: bytes, slot: list[Any], started: float
                   ) -> None:
        value, headers = self.shared.api.single_get_answer(key)
        self._answer(slot, request, 200, "application/octet-stream", value, headers, started)

    # --- answers -------------------------------------------------------------------
    def _answer_error(self, slot: list[Any], request: _Request, exc: ApiError,
                      started: float) -> None:
        headers, body = error_parts(exc)
        self._answer(slot, request, exc.status, "application/json",
                     json.dumps(body, separators=(",", ":")).encode(), headers, started)

    def _answer(self, slot: list[Any], request: _Request, status: int, content_type: str,
                body: bytes, headers: dict[str, str] | None, started: float) -> None:
        head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"]
        if headers:
            head.extend(f"{k}: {v}\r\n" for k, v in headers.items())
        if request.close:
            head.append("Connection: close\r\n")
        head.append("\r\n")
        slot[0] = "".join(head).encode("latin-1") + body
        self.shared.observe(request.method, status, started)
        self._flush()

    def _flush(self) -> None:
        transport = self.transport
        if transport is None:
            return
        pending = self.pending
        while pending and pending[0][0] is not None:
            out, close = pending.popleft()
            transport.write(out)
            if close:
                transport.close()
                self.transport = None
                pending.clear()
                return
        self.last_active = time.monotonic()
        if not pending:
            if self.handing_over:
                self._complete_hand_over()
            elif self.eof:
                transport.close()

    # --- hand-over to aiohttp ------------------------------------------------------
    def _hand_over(self) -> None:
        self.handing_over = True
        if self.transport is not None:
            self.transport.pause_reading()
        if not self.pending:
            self._complete_hand_over()

    def _complete_hand_over(self) -> None:
        transport = self.transport
        if transport is None:
            return
        self.shared.connections.discard(self)
        self.transport = None
        protocol = cast(asyncio.Protocol, self.shared.fallback())
        transport.set_protocol(protocol)
        transport.resume_reading()
        protocol.connection_made(transport)
        if self.buffer:
            protocol.data_received(bytes(self.buffer))
            self.buffer.clear()
        if self.eof:
            protocol.eof_received()
