"""Differential test of the client port's two paths: a corpus of raw requests --
well-formed, malformed, smuggling attempts, odd targets, methods, versions,
pipelined mixes -- is sent byte for byte to a node with the fast path
(runtime/fasthttp.py) and to one where aiohttp serves everything
(`fast_path=False`). Both must answer every case with the same status codes and
leave the same keys and values in the store.

The corpus is built from cases below, not written out: a base request, and the
ways a head, a target, a method or a sequence can go wrong. Each case writes
under its own key prefix (`{k}`, replaced by `c<n>`), so all of them run
concurrently and one store dump per node compares every effect."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from raftkv.fsm import Range
from raftkv.runtime.server import Server
from tests.unit.runtime.solo import solo_node

CRLF = b"\r\n"
# Short timeouts: each case ends when the node closes the connection (idle, head or
# body timeout, or Connection: close), so no case waits on a guess.
LIMITS = {
    "client_idle_timeout": 0.4,
    "client_header_timeout": 0.4,
    "client_body_timeout": 0.4,
    "client_max_connections": 1000,
}


@dataclass(frozen=True)
class Case:
    name: str
    payload: bytes


def request(
    method: bytes = b"PUT",
    target: bytes = b"/v1/kv/{k}/a",
    headers: list[bytes] | None = None,
    body: bytes = b"v",
    version: bytes = b"HTTP/1.1",
    eol: bytes = CRLF,
    length: bool = True,
) -> bytes:
    """One request; `headers` replace the default Host (and Content-Length if a body)."""
    lines = [method + b" " + target + b" " + version]
    if headers is None:
        headers = [b"Host: x"]
        if length and body:
            headers.append(b"Content-Length: %d" % len(body))
    lines.extend(headers)
    return eol.join(lines) + eol + eol + body


def host(*more: bytes) -> list[bytes]:
    return [b"Host: x", *more]


# --- heads: (name, headers, body) of a request whose head is odd ----------------------
HIDDEN = b"PUT /v1/kv/{k}/hidden HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nhidden"
HEADS: list[tuple[str, list[bytes], bytes]] = [
    ("plain length", host(b"Content-Length: 1"), b"v"),
    ("length 0, no body", host(b"Content-Length: 0"), b""),
    ("no length, no body", host(), b""),
    ("length with a leading zero", host(b"Content-Length: 01"), b"v"),
    ("length +1", host(b"Content-Length: +1"), b"v"),
    ("length -1", host(b"Content-Length: -1"), b"v"),
    ("length '1 1'", host(b"Content-Length: 1 1"), b"v"),
    ("length superscript two", host("Content-Length: \u00b2".encode()), b"v"),
    ("length 0x1", host(b"Content-Length: 0x1"), b"v"),
    ("length with spaces around", host(b"Content-Length:  1  "), b"v"),
    ("length as a list", host(b"Content-Length: 1, 1"), b"v"),
    ("length twice, same", host(b"Content-Length: 1", b"Content-Length: 1"), b"v"),
    ("length twice, different", host(b"Content-Length: 1", b"Content-Length: 2"), b"vv"),
    ("length name with NUL hides a request", host(b"Content-Length\x00: 0"), HIDDEN),
    ("length name, space before colon", host(b"Content-Length : 1"), b"v"),
    ("length folded (obs-fold)", host(b"Content-Length:", b" 1"), b"v"),
    ("obs-fold of another header", host(b"X-A: a", b"\tb", b"Content-Length: 1"), b"v"),
    ("header line starting with space", host(b" Content-Length: 1"), b"v"),
    ("huge length", host(b"Content-Length: 99999999999999999999999"), b"v"),
    ("length over max request", host(b"Content-Length: 3000000"), b"v"),
    ("chunked", host(b"Transfer-Encoding: chunked"), b"1\r\nv\r\n0\r\n\r\n"),
    ("chunked, upper case", host(b"Transfer-Encoding: CHUNKED"), b"1\r\nv\r\n0\r\n\r\n"),
    (
        "chunked and length",
        host(b"Transfer-Encoding: chunked", b"Content-Length: 1"),
        b"1\r\nv\r\n0\r\n\r\n",
    ),
    (
        "length and chunked",
        host(b"Content-Length: 4", b"Transfer-Encoding: chunked"),
        b"1\r\nv\r\n0\r\n\r\n",
    ),
    ("gzip, chunked", host(b"Transfer-Encoding: gzip, chunked"), b"1\r\nv\r\n0\r\n\r\n"),
    ("chunked, gzip", host(b"Transfer-Encoding: chunked, gzip"), b"1\r\nv\r\n0\r\n\r\n"),
    ("identity", host(b"Transfer-Encoding: identity", b"Content-Length: 1"), b"v"),
    ("xchunked", host(b"Transfer-Encoding: xchunked"), b"1\r\nv\r\n0\r\n\r\n"),
    (
        "chunked twice",
        host(b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"),
        b"1\r\nv\r\n0\r\n\r\n",
    ),
    ("chunk extension", host(b"Transfer-Encoding: chunked"), b"1;a=b\r\nv\r\n0\r\n\r\n"),
    ("chunk size not hex", host(b"Transfer-Encoding: chunked"), b"g\r\nv\r\n0\r\n\r\n"),
    ("chunk size with spaces", host(b"Transfer-Encoding: chunked"), b"1  \r\nv\r\n0\r\n\r\n"),
    ("chunk data without CRLF", host(b"Transfer-Encoding: chunked"), b"1\r\nvx0\r\n\r\n"),
    (
        "chunk size overflow",
        host(b"Transfer-Encoding: chunked"),
        b"fffffffffffffffffff\r\nv\r\n0\r\n\r\n",
    ),
    ("chunk size negative", host(b"Transfer-Encoding: chunked"), b"-1\r\nv\r\n0\r\n\r\n"),
    (
        "chunked with a trailer",
        host(b"Transfer-Encoding: chunked"),
        b"1\r\nv\r\n0\r\nX-T: y\r\n\r\n",
    ),
    ("chunk size ends in bare LF", host(b"Transfer-Encoding: chunked"), b"1\nv\r\n0\r\n\r\n"),
    ("chunked without last chunk", host(b"Transfer-Encoding: chunked"), b"1\r\nv\r\n"),
    ("bare LF inside the head", [b"Host: x\nContent-Length: 0", b"Content-Length: 1"], b"v"),
    ("bare CR inside a header", host(b"X-A: a\rContent-Length: 0", b"Content-Length: 1"), b"v"),
    ("bare CR hides a request", host(b"X-A: a\rContent-Length: 0"), HIDDEN),
    ("bare LF hides a request", host(b"X-A: a\nContent-Length: 0"), HIDDEN),
    ("NUL in a header value", host(b"X-A: a\x00b"), b""),
    ("DEL in a header value", host(b"X-A: a\x7fb"), b""),
    ("0xFF in a header value", host(b"X-A: a\xffb"), b""),
    ("space in a header name", host(b"X A: 1"), b""),
    ("empty header name", host(b": 1"), b""),
    ("header without colon", host(b"X-A"), b""),
    ("body shorter than length", host(b"Content-Length: 5"), b"v"),
    ("body longer than length", host(b"Content-Length: 1"), b"vXYZ"),
    ("length 0, then a request", host(b"Content-Length: 0"), HIDDEN),
    ("Expect 100-continue", host(b"Expect: 100-continue", b"Content-Length: 1"), b"v"),
    ("Connection close", host(b"Connection: close", b"Content-Length: 1"), b"v"),
    (
        "Connection keep-alive, close",
        host(b"Connection: keep-alive, close", b"Content-Length: 1"),
        b"v",
    ),
    ("Connection Close", host(b"Connection: Close", b"Content-Length: 1"), b"v"),
    (
        "websocket upgrade",
        host(b"Connection: upgrade", b"Upgrade: websocket", b"Content-Length: 1"),
        b"v",
    ),
    (
        "h2c upgrade",
        host(
            b"Connection: Upgrade, HTTP2-Settings",
            b"Upgrade: h2c",
            b"HTTP2-Settings: AAMAAABkAAQAAP__",
            b"Content-Length: 1",
        ),
        b"v",
    ),
    ("no Host", [b"Content-Length: 1"], b"v"),
    ("two Hosts", [b"Host: x", b"Host: y", b"Content-Length: 1"], b"v"),
    ("empty Host", [b"Host:", b"Content-Length: 1"], b"v"),
    ("0xFF in Host", [b"Host: \xff", b"Content-Length: 1"], b"v"),
    (
        "two Content-Types",
        host(b"Content-Type: a/b", b"Content-Type: c/d", b"Content-Length: 1"),
        b"v",
    ),
    ("two User-Agents", host(b"User-Agent: a", b"User-Agent: b", b"Content-Length: 1"), b"v"),
    ("128 headers", host(*[b"X-H%d: 1" % i for i in range(126)], b"Content-Length: 1"), b"v"),
    ("129 headers", host(*[b"X-H%d: 1" % i for i in range(127)], b"Content-Length: 1"), b"v"),
    ("a value of 8190 bytes", host(b"X-A: " + b"a" * 8190, b"Content-Length: 1"), b"v"),
    ("a value of 8191 bytes", host(b"X-A: " + b"a" * 8191, b"Content-Length: 1"), b"v"),
    ("a name of 8191 bytes", host(b"X" * 8191 + b": a", b"Content-Length: 1"), b"v"),
    ("Sec-WebSocket-Key1", host(b"Sec-WebSocket-Key1: x", b"Content-Length: 1"), b"v"),
    (
        "session headers",
        host(b"X-Raftkv-Client-Id: c", b"X-Raftkv-Seq: 1", b"Content-Length: 1"),
        b"v",
    ),
    (
        "session id with 0xFF",
        host(b"X-Raftkv-Client-Id: \xff", b"X-Raftkv-Seq: 1", b"Content-Length: 1"),
        b"v",
    ),
    (
        "session seq not a number",
        host(b"X-Raftkv-Client-Id: c", b"X-Raftkv-Seq: x", b"Content-Length: 1"),
        b"v",
    ),
]

# --- versions and request lines -------------------------------------------------------
LINES: list[tuple[str, Callable[[bytes, bytes], bytes]]] = [
    ("HTTP/1.0 with Host", lambda m, t: request(m, t, version=b"HTTP/1.0")),
    (
        "HTTP/1.0 without Host",
        lambda m, t: request(m, t, [b"Content-Length: 1"], version=b"HTTP/1.0"),
    ),
    (
        "HTTP/1.0 keep-alive",
        lambda m, t: request(
            m, t, host(b"Connection: keep-alive", b"Content-Length: 1"), version=b"HTTP/1.0"
        ),
    ),
    ("HTTP/2.0", lambda m, t: request(m, t, version=b"HTTP/2.0")),
    ("HTTP/1.2", lambda m, t: request(m, t, version=b"HTTP/1.2")),
    ("HTTP/0.9 request line", lambda m, t: m + b" " + t + CRLF),
    ("lower-case version", lambda m, t: request(m, t, version=b"http/1.1")),
    ("space after version", lambda m, t: request(m, t, version=b"HTTP/1.1 ")),
    ("two spaces after method", lambda m, t: request(m + b" ", t)),
    ("all bare LF", lambda m, t: request(m, t, eol=b"\n")),
    (
        "bare LF after request line",
        lambda m, t: m + b" " + t + b" HTTP/1.1\nHost: x\r\nContent-Length: 1\r\n\r\nv",
    ),
    ("leading CRLF", lambda m, t: CRLF + CRLF + request(m, t)),
    ("leading bare LF", lambda m, t: b"\n" + request(m, t)),
    ("incomplete head", lambda m, t: m + b" " + t + b" HTTP/1.1\r\nHost: x\r\n"),
]

# --- targets ----------------------------------------------------------------------------
TARGETS: list[bytes] = [
    b"/v1/kv/{k}/%FF",
    b"/v1/kv/{k}/\xff",
    b"/v1/kv/{k}/a\x00b",
    b"/v1/kv/{k}/a\tb",
    b"/v1/kv/{k}/%00",
    b"/v1/kv/{k}/%",
    b"/v1/kv/{k}/%zz",
    b"/v1/kv/{k}/a%2Fb",
    b"/v1/kv/{k}/..",
    b"/v1/kv/{k}/../x",
    b"/v1/kv/{k}//a",
    b"/v1/kv/{k}/./a",
    b"http://x/v1/kv/{k}/abs",
    b"https://x/v1/kv/{k}/abs",
    b"HTTP://X/v1/kv/{k}/abs",
    b"http://x:80/v1/kv/{k}/abs?prev_kv=1",
    b"http://x",
    b"http:///v1/kv/{k}/abs",
    b"*",
    b"v1/kv/{k}/a",
    b"/v1/kv/{k}/a#frag",
    b"/v1/kv/{k}/a?prev_kv=1#frag",
    "/v1/kv/{k}/\u00e9".encode(),
    b"/v1/kv/{k}/%C3%A9",
    b"/v1/kv/{k}/" + b"a" * 8170,
    b"/v1/kv/{k}/" + b"a" * 9000,
    b"/v1/kv/{k}/a?",
    b"/v1/kv/{k}/a?prev_kv",
    b"/v1/kv/{k}/a?prev_kv=1&prev_kv=0",
    b"/v1/kv/{k}/a?lease=",
    b"/v1/kv/{k}/a?lease=abc",
    b"/v1/kv/{k}/a?encoding=base64",
    b"/v1/kv/{k}/a?encoding=hex",
    b"/v1/kv/{k}/a?consistency=serializable",
    b"/v1/kv/{k}/a?consistency=eventual",
    b"/v1/kv/{k}/a?unknown=1",
    b"/v1/kv/{k}/a?prev_kv=%31",
    b"/v1/kv/{k}/a?prev_kv=tr%FFue",
    b"/v1/kv/{k}/a?a=%",
    b"/v1/kv/{k}/a+b",
    b"/v1/kv/{k}/a;b",
    b"/v1/kv/{k}/~!$&'()*+,;=:@",
    b"/v1/kv/",
    b"/v1/kv",
    b"/v1/KV/{k}/a",
    b"/v1/kv/{k}/a?prefix=1",
    b"/v1/kv/{k}/a?redirect=1",
]

METHODS: list[bytes] = [
    b"GET",
    b"PUT",
    b"POST",
    b"DELETE",
    b"HEAD",
    b"OPTIONS",
    b"PATCH",
    b"TRACE",
    b"get",
    b"FOO",
    b"PUT\t",
    b"GETS",
    b"PRI",
]


def pipelines() -> Iterator[tuple[str, bytes]]:
    put = request
    get = request(b"GET", b"/v1/kv/{k}/a", body=b"")
    health = request(b"GET", b"/healthz", body=b"")
    chunked = request(
        b"PUT", b"/v1/kv/{k}/c", host(b"Transfer-Encoding: chunked"), b"2\r\nv2\r\n0\r\n\r\n"
    )
    garbage = b"XYZ /\r\n\r\n"
    yield (
        "three puts",
        put(target=b"/v1/kv/{k}/1") + put(target=b"/v1/kv/{k}/2") + put(target=b"/v1/kv/{k}/3"),
    )
    yield "put then get", put() + get
    yield "put, aiohttp, put", put() + health + put(target=b"/v1/kv/{k}/b")
    yield "put, chunked put, get", put() + chunked + get
    yield "aiohttp first, then put", health + put()
    yield "put then garbage", put() + garbage
    yield "put then a bare-LF request", put() + request(target=b"/v1/kv/{k}/b", eol=b"\n")
    yield (
        "put with close, then put",
        put(headers=host(b"Connection: close", b"Content-Length: 1")) + put(target=b"/v1/kv/{k}/b"),
    )
    yield (
        "get with close, then put",
        request(b"GET", b"/v1/kv/{k}/a", host(b"Connection: close"), b"")
        + put(target=b"/v1/kv/{k}/b"),
    )
    yield "aiohttp, put, garbage", health + put() + garbage
    yield "put, aiohttp, garbage", put() + health + garbage
    yield (
        "put, then length superscript two",
        put() + put(target=b"/v1/kv/{k}/b", headers=host("Content-Length: \u00b2".encode())),
    )
    yield "put, then no Host", put() + put(target=b"/v1/kv/{k}/b", headers=[b"Content-Length: 1"])
    yield "twenty gets", put() + get * 20
    yield "HTTP/1.0 put, then put", put(version=b"HTTP/1.0") + put(target=b"/v1/kv/{k}/b")
    yield (
        "expect put, then put",
        put(headers=host(b"Expect: 100-continue", b"Content-Length: 1"))
        + put(target=b"/v1/kv/{k}/b"),
    )
    yield (
        "length 1 with two bytes, then put",
        put(body=b"v", headers=host(b"Content-Length: 1")) + b"x" + put(target=b"/v1/kv/{k}/b"),
    )
    yield "chunked then fast", chunked + put(target=b"/v1/kv/{k}/b") + get
    yield (
        "put, 129 headers",
        put()
        + put(
            target=b"/v1/kv/{k}/b", headers=host(*[b"X-H%d: 1" % i for i in range(128)]), body=b""
        ),
    )
    yield (
        "sixteen puts and sixteen gets",
        b"".join(put(target=b"/v1/kv/{k}/p%d" % i) + get for i in range(16)),
    )
    yield (
        "put, aiohttp with two Hosts",
        put() + request(b"GET", b"/healthz", [b"Host: x", b"Host: y"], b""),
    )


def corpus() -> list[Case]:
    cases: list[Case] = []
    for name, headers, body in HEADS:
        cases.append(Case(f"PUT kv, {name}", request(b"PUT", headers=headers, body=body)))
        cases.append(Case(f"GET kv, {name}", request(b"GET", headers=headers, body=body)))
        cases.append(Case(f"DELETE kv, {name}", request(b"DELETE", headers=headers, body=body)))
    for name, line in LINES:
        for method in (b"PUT", b"GET"):
            cases.append(Case(f"{method.decode()} kv, {name}", line(method, b"/v1/kv/{k}/a")))
    for target in TARGETS:
        for method in (b"PUT", b"GET"):
            body = b"v" if method == b"PUT" else b""
            shown = repr(target) if len(target) < 60 else f"{target[:40]!r}... ({len(target)})"
            cases.append(Case(f"{method.decode()} {shown}", request(method, target, body=body)))
    for method in METHODS:
        cases.append(Case(f"method {method!r}", request(method, b"/v1/kv/{k}/m")))
    cases.append(Case("CONNECT", request(b"CONNECT", b"x:80", body=b"")))
    for name, payload in pipelines():
        cases.append(Case(f"pipeline: {name}", payload))
    return cases


STATUS = re.compile(rb"(?:^|\r\n)HTTP/[0-9.]+ (\d{3}) ")


async def _exchange(port: int, payload: bytes) -> list[int]:
    """Send the payload in one write; read until the node closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    received = b""
    try:
        writer.write(payload)
        async with asyncio.timeout(10):
            while chunk := await reader.read(65536):
                received += chunk
    except ConnectionResetError:
        pass  # closed with bytes unread (a refused request): what came before counts
    finally:
        writer.close()
    return [int(s) for s in STATUS.findall(received)]


async def _run(server: Server, cases: list[Case]) -> tuple[list[list[int]], dict[bytes, bytes]]:
    port = server.cfg.client_port
    gate = asyncio.Semaphore(64)

    async def one(i: int, case: Case) -> list[int]:
        async with gate:
            return await _exchange(port, case.payload.replace(b"{k}", b"c%d" % i))

    statuses = await asyncio.gather(*(one(i, c) for i, c in enumerate(cases)))
    result = server.node.fsm.range(Range.prefix(b""))
    return statuses, {kv["key"]: kv["value"] for kv in result["kvs"]}


async def test_corpus_is_large_and_named_uniquely() -> None:
    cases = corpus()
    assert len(cases) >= 200
    assert len({c.name for c in cases}) == len(cases)


# Requests whose body never ends: aiohttp may answer one (a GET or DELETE does not read
# its body) before the body timeout closes the connection, or not, if the node is slow
# for 0.4 s (CI once saw GET and DELETE kv "chunked without last chunk" answered 404 on
# one path and cut off on the other). So an answer may be missing, never different.
BODY_NEVER_ENDS = ("chunked without last chunk", "body shorter than length")


def _body_never_ends(case: Case) -> bool:
    return case.name.endswith(BODY_NEVER_ENDS)


async def test_both_paths_answer_the_corpus_alike(tmp_path: Path) -> None:
    cases = corpus()
    async with solo_node(tmp_path, fast_path=False, name="slow", **LIMITS) as slow:
        slow_statuses, slow_store = await _run(slow, cases)
    async with solo_node(tmp_path, fast_path=True, name="fast", **LIMITS) as fast:
        fast_statuses, fast_store = await _run(fast, cases)
        assert fast.fast is not None and fast.fast.served > 0
    mismatches = [
        f"{c.name}: aiohttp {s} fast {f}"
        for c, s, f in zip(cases, slow_statuses, fast_statuses, strict=True)
        if s != f and not (_body_never_ends(c) and (s == f[: len(s)] or f == s[: len(f)]))
    ]
    assert not mismatches, "\n".join(mismatches)
    for i, case in enumerate(cases):
        prefix = b"c%d/" % i
        slow_keys = {k: v for k, v in slow_store.items() if k.startswith(prefix)}
        fast_keys = {k: v for k, v in fast_store.items() if k.startswith(prefix)}
        assert fast_keys == slow_keys, case.name
    assert slow_store == fast_store
    # Sanity: the corpus writes, refuses and hides nothing it should not.
    assert any(statuses == [200] for statuses in fast_statuses)
    assert any(statuses == [400] for statuses in fast_statuses)
    # Keys: an absolute-form target names the key by its path; %FF is the byte 0xFF.
    index = {c.name: i for i, c in enumerate(cases)}
    absolute = index["PUT b'http://x/v1/kv/{k}/abs'"]
    assert fast_store[b"c%d/abs" % absolute] == b"v"
    assert fast_store[b"c%d/\xff" % index["PUT b'/v1/kv/{k}/%FF'"]] == b"v"
    assert fast_statuses[index["PUT b'/v1/kv/{k}/\\xff'"]] == [400]
    assert fast_statuses[index["PUT b'/v1/kv/{k}/a#frag'"]] == [400]
    smuggled = {i for i, c in enumerate(cases) if "hides" in c.name}
    assert smuggled
    assert not [
        k for k in fast_store if k.endswith(b"/hidden") and int(k.split(b"/")[0][1:]) in smuggled
    ]
