"""The client port's fast path (runtime/fasthttp.py) answers exactly like aiohttp's
handlers, and hands every other request to aiohttp on the same connection."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

from tests.unit.runtime.solo import solo_node

# (method, path, body, headers): single-key requests, the good and the bad.
REQUESTS: list[tuple[str, str, bytes, dict[str, str]]] = [
    ("PUT", "/v1/kv/a", b"1", {}),
    ("PUT", "/v1/kv/a?prev_kv=1", b"2", {}),
    ("PUT", "/v1/kv/%FFbin?prev_kv=true&encoding=base64", b"\xff", {}),
    ("PUT", "/v1/kv/%FFbin?prev_kv=1", b"x", {}),
    ("PUT", "/v1/kv/a/b%2Fc?lease=0", b"slash", {}),
    ("PUT", "/v1/kv/leased?lease=12345", b"v", {}),  # no such lease: 404
    ("PUT", "/v1/kv/a?lease=x", b"v", {}),
    ("PUT", "/v1/kv/a?prev_kv=maybe", b"v", {}),
    ("PUT", "/v1/kv/a?encoding=rot13", b"v", {}),  # refused before anything is proposed
    ("PUT", "/v1/kv/", b"v", {}),
    ("PUT", "/v1/kv/" + "k" * 5000, b"v", {}),
    ("PUT", "/v1/kv/big", b"v" * 2000, {}),  # over --max-value-bytes (1000 here)
    ("PUT", "/v1/kv/s", b"1", {"X-Raftkv-Client-Id": "c", "X-Raftkv-Seq": "5"}),
    ("PUT", "/v1/kv/s", b"2", {"X-Raftkv-Client-Id": "c", "X-Raftkv-Seq": "5"}),  # replay
    ("PUT", "/v1/kv/s", b"3", {"X-Raftkv-Client-Id": "c", "X-Raftkv-Seq": "4"}),  # stale
    ("PUT", "/v1/kv/s", b"4", {"X-Raftkv-Client-Id": "c"}),
    ("PUT", "/v1/kv/s", b"5", {"X-Raftkv-Client-Id": "c", "X-Raftkv-Seq": "x"}),
    ("GET", "/v1/kv/a", b"", {}),
    ("GET", "/v1/kv/a?consistency=serializable", b"", {}),
    ("GET", "/v1/kv/a?consistency=eventual", b"", {}),
    ("GET", "/v1/kv/a?encoding=nope", b"", {}),
    ("GET", "/v1/kv/%FFbin", b"", {}),
    ("GET", "/v1/kv/missing", b"", {}),
    ("GET", "/v1/kv/a/b%2Fc", b"", {}),
    ("GET", "/v1/kv/", b"", {}),
    ("GET", "/v1/kv/s", b"", {}),
]


async def _answers(url: str) -> list[tuple[Any, ...]]:
    out = []
    async with aiohttp.ClientSession(auto_decompress=False) as http:
        for method, path, body, headers in REQUESTS:
            async with http.request(method, url + path, data=body or None, headers=headers) as r:
                kept = sorted(
                    (k, v)
                    for k, v in r.headers.items()
                    if k.lower().startswith("x-raftkv-") or k == "Retry-After"
                )
                out.append((method, path, r.status, r.content_type, await r.read(), kept))
    return out


async def test_fast_path_answers_like_aiohttp(tmp_path: Path) -> None:
    limits = {"max_value_bytes": 1000}
    async with solo_node(tmp_path, fast_path=False, name="slow", **limits) as slow:
        expected = await _answers(slow.cfg.advertise_client_url)
    async with solo_node(tmp_path, fast_path=True, name="fast", **limits) as fast:
        got = await _answers(fast.cfg.advertise_client_url)
        assert fast.fast is not None and fast.fast.served == len(REQUESTS)  # none handed over
        metrics = fast.metrics.http_requests
        served = {
            (labels["route"], labels["method"], labels["code"]): sample.value
            for family in metrics.collect()
            for sample in family.samples
            if sample.name.endswith("_total")
            for labels in [sample.labels]
        }
    for want, have in zip(expected, got, strict=True):
        assert have == want
    # Sanity: the list covers successes and each kind of failure.
    assert {a[2] for a in got} >= {200, 400, 404, 409, 413}
    # Every one of them was counted under the single-key route, fast path or not.
    assert sum(v for (route, _, _), v in served.items() if route == "/v1/kv/{key}") == len(REQUESTS)


async def _raw(host: str, port: int, payload: bytes, answers: int) -> list[bytes]:
    """Send raw bytes on one connection; read `answers` HTTP responses (fixed length)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(payload)
        out = []
        for _ in range(answers):
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            out.append(head + await asyncio.wait_for(reader.readexactly(length), 10))
        return out
    finally:
        writer.close()


async def test_pipelined_requests_are_answered_in_order(tmp_path: Path) -> None:
    async with solo_node(tmp_path) as server:
        port = server.cfg.client_port
        before = b"PUT /v1/kv/old HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nold"
        assert (await _raw("127.0.0.1", port, before, 1))[0].startswith(b"HTTP/1.1 200")
        # Five writes and a read in one go. (The read may or may not see those writes:
        # it is concurrent with them, its client has no answer yet. It must see `old`.)
        payload = (
            b"".join(
                b"PUT /v1/kv/p%d HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n%d" % (i, i)
                for i in range(5)
            )
            + b"GET /v1/kv/old HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        answers = await _raw("127.0.0.1", port, payload, 6)
    revisions = [int(a.split(b'"revision":')[1].split(b"}")[0]) for a in answers[:5]]
    assert revisions == sorted(revisions) and len(set(revisions)) == 5
    assert answers[5].startswith(b"HTTP/1.1 200") and answers[5].endswith(b"\r\n\r\nold")


async def test_other_requests_are_handed_to_aiohttp_on_the_same_connection(tmp_path: Path) -> None:
    async with solo_node(tmp_path) as server:
        port = server.cfg.client_port
        payload = (
            b"PUT /v1/kv/h HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nv1"  # fast
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"  # another route: aiohttp's
            b"PUT /v1/kv/h HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2\r\nv2\r\n0\r\n\r\n"  # chunked: aiohttp's
            b"GET /v1/kv/h HTTP/1.1\r\nHost: x\r\n\r\n"
        )  # after a hand-over: still aiohttp
        answers = await _raw("127.0.0.1", port, payload, 4)
        assert [a.split(b" ")[1] for a in answers] == [b"200"] * 4
        assert b'"ok":true' in answers[1]
        assert answers[3].endswith(b"\r\n\r\nv2")
        # Handed over: aiohttp serves the connection (FastHttp stays in front of it).
        assert server.fast is not None and server.fast.connections
        assert all(c.downstream is not None for c in server.fast.connections)
        assert server.fast.served == 1


async def test_the_authorization_hook_answers_its_error(tmp_path: Path) -> None:
    """FastHttp.authorize sees every fast-path request first; its ApiError is the answer."""
    from raftkv.runtime.errors import ApiError
    from raftkv.runtime.fasthttp import FastRequest

    seen: list[tuple[str, str, str | None]] = []

    def authorize(request: FastRequest) -> None:
        token = request.headers.get("Authorization")
        seen.append((request.method, request.target, token))
        if token != "Bearer good":
            raise ApiError(401, "unauthenticated", "a bearer token is required")

    async with solo_node(tmp_path) as server:
        assert server.fast is not None
        server.fast.authorize = authorize
        port = server.cfg.client_port
        refused, allowed = await _raw(
            "127.0.0.1",
            port,
            (
                b"PUT /v1/kv/x HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n1"
                b"PUT /v1/kv/x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer good\r\n"
                b"Content-Length: 1\r\n\r\n2"
            ),
            2,
        )
        assert refused.startswith(b"HTTP/1.1 401") and b'"unauthenticated"' in refused
        assert allowed.startswith(b"HTTP/1.1 200")
        assert server.node.fsm.get(b"x") is not None
        assert server.node.fsm.get(b"x").value == b"2"  # type: ignore[union-attr]
    assert seen == [("PUT", "/v1/kv/x", None), ("PUT", "/v1/kv/x", "Bearer good")]


async def test_requests_split_across_reads_are_parsed_the_same(tmp_path: Path) -> None:
    """Bodies and heads cut at any byte (here every 7 bytes, each sent apart) give the
    same answers as in one piece: the fast path tracks where each request ends."""
    payload = b"".join(
        b"PUT /v1/kv/s%d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
        % (i, 40 + i, bytes([97 + i]) * (40 + i))
        for i in range(4)
    )
    async with solo_node(tmp_path) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.cfg.client_port)
        for at in range(0, len(payload), 7):
            writer.write(payload[at : at + 7])
            await writer.drain()
            await asyncio.sleep(0.001)  # the load pattern: separate reads, not a sync
        for _ in range(4):
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 200")
            length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # then a hand-over
        assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).startswith(
            b"HTTP/1.1 200"
        )
        writer.close()
        for i in range(4):
            kv = server.node.fsm.get(b"s%d" % i)
            assert kv is not None and kv.value == bytes([97 + i]) * (40 + i)


async def test_connection_close_in_a_token_list_closes(tmp_path: Path) -> None:
    """`Connection: keep-alive, close` means close (llhttp reads the token list)."""
    async with solo_node(tmp_path, client_idle_timeout=60.0) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.cfg.client_port)
        writer.write(
            b"PUT /v1/kv/c HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, close\r\n"
            b"Content-Length: 1\r\n\r\nv"
        )
        answer = await asyncio.wait_for(reader.read(-1), 5)  # EOF long before 60 s
        writer.close()
        assert answer.startswith(b"HTTP/1.1 200") and b"Connection: close\r\n" in answer
