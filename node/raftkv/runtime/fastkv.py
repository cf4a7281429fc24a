"""The requests the fast path serves itself (runtime/fasthttp.py): which ones
(`route`), what a parsed one is (`FastRequest`), and serving them (`serve`) through
the same `KvService` as aiohttp's handlers: auth, a write proposed with its answer
written from the proposal's completion, a read served locally or after a read
barrier, and the answers' bytes."""

from __future__ import annotations

import http
import json
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from multidict import MultiDict, MultiDictProxy

from raftkv.consensus import StateRole
from raftkv.fsm import ApplyResult
from raftkv.runtime.errors import ApiError
from raftkv.runtime.http import api_error, error_parts, path_key, result_of
from raftkv.runtime.http.auth import Identity
from raftkv.runtime.jsonbytes import encoding_of, to_json
from raftkv.runtime.outcomes import Completion

if TYPE_CHECKING:
    from raftkv.runtime.fasthttp import FastProtocol

LARGE_BODY = 64 * 1024  # answers larger than this are written without concatenation
_PUT_PARAMS = frozenset(("lease", "prev_kv", "encoding"))
_GET_PARAMS = frozenset(("consistency", "encoding"))
_NO_QUERY: MultiDictProxy[str] = MultiDictProxy(MultiDict())
_REASONS = {s.value: s.phrase for s in http.HTTPStatus}
_STATUS_LINES: dict[tuple[int, str], bytes] = {}  # (status, type) -> head up to the length


class Headers(Mapping[str, str]):
    """A request's headers, case-insensitive, decoded like aiohttp's (names latin-1,
    values UTF-8 with surrogateescape) when read: a request's few lookups cost less
    than building a multidict of every header."""

    __slots__ = ("raw",)

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self.raw = raw  # (lower-case name, value) as received

    def get(self, name: str, default: Any = None) -> Any:
        wanted = name.lower().encode("latin-1")
        for key, value in self.raw:
            if key == wanted:
                return value.decode("utf-8", "surrogateescape")
        return default

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return str(value)

    def __iter__(self) -> Iterator[str]:
        return (key.decode("latin-1") for key, _ in self.raw)

    def __len__(self) -> int:
        return len(self.raw)

    def getall(self, name: str) -> list[str]:
        wanted = name.lower().encode("latin-1")
        return [v.decode("utf-8", "surrogateescape") for k, v in self.raw if k == wanted]


class FastRequest:
    """A parsed request: what the `KvService` checks (and an authorizer) read."""

    __slots__ = (
        "method",
        "raw_target",
        "query",
        "headers",
        "keep_alive",
        "length",
        "body",
        "identity",
    )

    def __init__(
        self,
        method: str,
        raw_target: bytes,
        query: MultiDictProxy[str],
        headers: Headers,
        keep_alive: bool,
        length: int,
    ) -> None:
        self.method = method
        self.raw_target = raw_target
        self.query = query
        self.headers = headers
        self.keep_alive = keep_alive
        self.length = length
        self.body: bytes = b""
        self.identity: Identity | None = None  # set by the auth check in serve()

    @property
    def authorization(self) -> str | None:
        """The first Authorization header."""
        value: str | None = self.headers.get("Authorization")
        return value

    @property
    def target(self) -> str:
        return self.raw_target.decode("ascii")  # llhttp accepts no other bytes in a target


def route(conn: FastProtocol, version: str) -> FastRequest | None:
    """The request if this path serves it, else None (aiohttp does)."""
    method = conn.parser.get_method()
    url = conn.url
    if (
        version != "1.1"
        or conn.aiohttps
        or method not in (b"PUT", b"GET")
        or not url.startswith(b"/v1/kv/")
        or b"#" in url
    ):
        return None
    length = conn.length
    if method == b"GET":
        if length:
            return None
    elif (
        length > conn.shared.api.cfg.max_request_bytes
        or conn.shared.node.core.role != StateRole.LEADER
    ):
        return None  # aiohttp answers 413, or forwards to the leader
    query = _NO_QUERY
    if b"?" in url:
        raw_query = url.partition(b"?")[2].decode("ascii")
        query = MultiDictProxy(MultiDict(parse_qsl(raw_query, keep_blank_values=True)))
        if not (_PUT_PARAMS if method == b"PUT" else _GET_PARAMS).issuperset(query.keys()):
            return None
    return FastRequest(
        "PUT" if method == b"PUT" else "GET",
        url,
        query,
        Headers(conn.headers),
        conn.parser.should_keep_alive(),
        length,
    )


def serve(conn: FastProtocol, request: FastRequest) -> None:
    """Check, authorize and start one request; its answer lands in its slot."""
    started = time.perf_counter()
    slot: list[Any] = [None, b"", not request.keep_alive]
    conn.pending.append(slot)
    try:
        # The same check as aiohttp's routes (runtime/http/auth.py), then the hook.
        request.identity = conn.shared.api.auth.check(
            "readwrite" if request.method == "PUT" else "read",
            request.authorization,
            conn.peercert,
        )
        authorize = conn.shared.authorize
        if authorize is not None:
            authorize(request)
        if request.method == "PUT":
            _put(conn, request, slot, started)
        else:
            _get(conn, request, slot, started)
    except Exception as exc:  # the one mapping: runtime/http/errors.py
        _answer_error(
            conn,
            slot,
            request,
            api_error(exc, "write", f"{request.method} {request.target}"),
            started,
        )


def _put(conn: FastProtocol, request: FastRequest, slot: list[Any], started: float) -> None:
    api = conn.shared.api
    data, encoding = api.plain_put(request, path_key(request.raw_target), request.body)

    def done(applied: ApplyResult | None, exc: BaseException | None) -> None:
        try:
            if exc is not None:
                raise exc
            assert applied is not None
            result = result_of(applied)
        except Exception as error:
            _answer_error(conn, slot, request, api_error(error, "write"), started)
            return
        _answer(
            conn,
            slot,
            request,
            200,
            "application/json",
            put_answer(result, encoding),
            None,
            started,
        )

    # Answered from inside the node loop, in the turn the entry applies.
    conn.shared.node.propose_into(data, Completion(done))


def put_answer(result: dict[str, Any], encoding: str) -> bytes:
    """The JSON body of an applied put: `{"revision":N}` for a plain put (no prev_kv,
    the load-carrying case) formatted directly, else through `to_json`. The same bytes
    as `json.dumps(to_json(result, encoding), separators=(",", ":"))` either way
    (tests/unit/runtime/test_fastkv_answers.py); json.dumps costs ~3 us a write."""
    if len(result) == 1:
        revision = result.get("revision")
        if type(revision) is int:
            return b'{"revision":%d}' % revision
    return json.dumps(to_json(result, encoding), separators=(",", ":")).encode()


def _get(conn: FastProtocol, request: FastRequest, slot: list[Any], started: float) -> None:
    api = conn.shared.api
    key = path_key(request.raw_target)
    encoding_of(request.query)  # unused by a single key's raw answer, but checked
    api.check_key(key)
    api.check_keys(request, key)
    if not api.read_needs_barrier(request):
        _serve_get(conn, request, key, slot, started)
        return

    def done(_: None, exc: BaseException | None) -> None:
        try:
            if exc is not None:
                raise exc
            _serve_get(conn, request, key, slot, started)
        except Exception as error:
            _answer_error(conn, slot, request, api_error(error, "read"), started)

    try:
        conn.shared.node.read_barrier_into(Completion(done))
    except Exception as exc:
        raise api_error(exc, "read") from None


def _serve_get(
    conn: FastProtocol, request: FastRequest, key: bytes, slot: list[Any], started: float
) -> None:
    value, headers = conn.shared.api.single_get_answer(key)
    _answer(conn, slot, request, 200, "application/octet-stream", value, headers, started)


def _answer_error(
    conn: FastProtocol, slot: list[Any], request: FastRequest, exc: ApiError, started: float
) -> None:
    headers, body = error_parts(exc)
    _answer(
        conn,
        slot,
        request,
        exc.status,
        "application/json",
        json.dumps(body, separators=(",", ":")).encode(),
        headers,
        started,
    )


def _answer(
    conn: FastProtocol,
    slot: list[Any],
    request: FastRequest,
    status: int,
    content_type: str,
    body: bytes,
    headers: dict[str, str] | None,
    started: float,
) -> None:
    start = _STATUS_LINES.get((status, content_type))
    if start is None:
        start = _STATUS_LINES[status, content_type] = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: "
        ).encode("latin-1")
    head = f"{len(body)}\r\n"
    if headers:
        head += "".join([f"{k}: {v}\r\n" for k, v in headers.items()])
    if not request.keep_alive:
        head += "Connection: close\r\n"
    encoded = start + (head + "\r\n").encode("latin-1")
    if len(body) < LARGE_BODY:
        slot[0] = encoded + body
    else:  # a large value is written as it is, never copied into the answer
        slot[0], slot[1] = encoded, body
    conn.shared.observe(request.method, status, started)
    conn.flush()


def too_many_connections(limit: int) -> bytes:
    """The whole answer to a connection over --client-max-connections (then closed)."""
    body = json.dumps(
        {
            "error": "too_many_connections",
            "message": f"the node serves --client-max-connections ({limit}) already; retry later",
        }
    ).encode()
    return (
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        b"Retry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )


def bad_request(message: str) -> bytes:
    """The whole answer to a malformed request (then closed)."""
    body = json.dumps(
        {"error": "bad_request", "message": f"malformed HTTP request: {message}"},
        separators=(",", ":"),
    ).encode()
    head = (
        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    return head + body
