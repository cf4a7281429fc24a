"""Bad requests get the documented errors (docs/api.md), and a fuzzer throwing
malformed input at every route neither crashes the node nor loses data."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tests.integration.harness import Cluster

# One node serves the whole module (starting a process per case would dominate).
pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

LIMIT_ARGS = [
    "--max-key-bytes",
    "64",
    "--max-value-bytes",
    "1000",
    "--max-request-bytes",
    "4096",
    "--max-txn-ops",
    "4",
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def single(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    session = aiohttp.ClientSession()
    cluster = Cluster(tmp_path_factory.mktemp("api"), session)
    try:
        cluster.create(1, extra_args=LIMIT_ARGS)
        cluster.start_all()
        await cluster.wait_leader()
        yield cluster
    finally:
        cluster.close()
        await session.close()


async def _raw(
    cluster: Cluster,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any], dict[str, str]]:
    node = cluster.initial[0]
    async with cluster.session.request(
        method, node.url + path, data=body, headers=headers or {}
    ) as r:
        raw = await r.read()
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = {"raw": raw}
        return r.status, parsed, dict(r.headers)


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("GET", "/v1/kv/missing", b"", 404, "key_not_found"),
        ("DELETE", "/v1/kv/missing", b"", 404, "key_not_found"),
        ("PUT", "/v1/kv/" + "k" * 65, b"v", 413, "key_too_large"),
        ("PUT", "/v1/kv/big", b"v" * 1001, 413, "value_too_large"),
        ("PUT", "/v1/kv/huge", b"v" * 5000, 413, "request_too_large"),
        ("PUT", "/v1/kv/", b"v", 400, "empty_key"),
        ("PUT", "/v1/kv/x?lease=777", b"v", 404, "lease_not_found"),
        ("PUT", "/v1/kv/x?lease=abc", b"v", 400, "bad_request"),
        ("PUT", "/v1/kv/x?if_version=3", b"v", 409, "compare_failed"),
        ("GET", "/v1/kv/x?consistency=eventual", b"", 400, "bad_request"),
        ("GET", "/v1/kv/x?prefix=1&encoding=latin1", b"", 400, "bad_request"),
        ("POST", "/v1/txn", b"{not json", 400, "bad_request"),
        ("POST", "/v1/txn", b"[]", 400, "bad_request"),
        ("POST", "/v1/txn", b'{"success": [{"op": "put", "key": "a"}]}', 400, "bad_request"),
        ("POST", "/v1/txn", b'{"success": [{"op": "frobnicate", "key": "a"}]}', 400, "bad_request"),
        (
            "POST",
            "/v1/txn",
            b'{"success": [{"op": "put", "key": "a", "value_b64": "!!"}]}',
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/txn",
            json.dumps({"success": [{"op": "range", "key": f"k{i}"} for i in range(5)]}).encode(),
            400,
            "too_many_ops",
        ),
        (
            "POST",
            "/v1/txn",
            b'{"compare": [{"key": "a", "target": "version", "op": "~", "value": 1}]}',
            400,
            "invalid_txn",
        ),
        ("POST", "/v1/leases", b'{"ttl": 0}', 400, "bad_request"),
        ("POST", "/v1/leases", b'{"ttl": "ten"}', 400, "bad_request"),
        ("POST", "/v1/leases/5/keepalive", b"", 404, "lease_not_found"),
        ("DELETE", "/v1/leases/5", b"", 404, "lease_not_found"),
        ("GET", "/v1/leases/nope", b"", 400, "bad_request"),
        ("POST", "/v1/locks/l", b"{}", 400, "bad_request"),
        ("POST", "/v1/locks/l", b'{"lease": 99}', 404, "lease_not_found"),
        ("GET", "/v1/locks/free", b"", 404, "lock_not_found"),
        ("GET", "/v1/watch", b"", 400, "bad_request"),
        ("GET", "/v1/status?wait=-1", b"", 400, "bad_request"),
        ("POST", "/v1/checkpoints", b'{"id": "../etc"}', 400, "invalid_checkpoint_id"),
        ("GET", "/v1/checkpoints/nope", b"", 404, "checkpoint_not_found"),
        ("GET", "/v1/nothing-here", b"", 404, "not_found"),
        ("PATCH", "/v1/kv/x", b"", 405, "method_not_allowed"),
    ],
)
async def test_bad_requests_get_documented_errors(
    single: Cluster, method: str, path: str, body: bytes, status: int, code: str
) -> None:
    got, parsed, _ = await _raw(single, method, path, body)
    assert (got, parsed.get("error")) == (status, code), parsed
    assert isinstance(parsed.get("message"), str) and parsed["message"]


async def test_sessions_apply_a_retried_write_once(single: Cluster) -> None:
    headers = {"X-Raftkv-Client-Id": "c1", "X-Raftkv-Seq": "7"}
    s1, first, _ = await _raw(single, "PUT", "/v1/kv/once", b"a", headers)
    s2, second, _ = await _raw(single, "PUT", "/v1/kv/once", b"a", headers)
    assert s1 == s2 == 200 and first == second  # the same answer, the same revision
    status, body, _ = await _raw(single, "GET", "/v1/kv/once")
    assert status == 200
    node = single.initial[0]
    async with single.session.get(node.url + "/v1/kv/once") as r:
        assert r.headers["X-Raftkv-Version"] == "1"
    s3, stale, _ = await _raw(
        single, "PUT", "/v1/kv/once", b"b", {"X-Raftkv-Client-Id": "c1", "X-Raftkv-Seq": "6"}
    )
    assert (s3, stale["error"]) == (409, "stale_sequence")
    s4, bad, _ = await _raw(single, "PUT", "/v1/kv/once", b"b", {"X-Raftkv-Seq": "8"})
    assert (s4, bad["error"]) == (400, "bad_request")


async def test_bytes_keys_and_values_round_trip(single: Cluster) -> None:
    key = b"bin\xff/\x00k"
    value = bytes(range(256))
    path = "/v1/kv/" + "".join(f"%{b:02X}" for b in key)
    status, _, _ = await _raw(single, "PUT", path, value)
    assert status == 200
    status, parsed, _ = await _raw(single, "GET", path)
    assert status == 200 and parsed["raw"] == value
    status, parsed, _ = await _raw(single, "GET", "/v1/kv/bin?prefix=1")
    assert status == 200
    (kv,) = parsed["kvs"]
    assert base64.b64decode(kv["key_b64"]) == key
    assert base64.b64decode(kv["value_b64"]) == value
    txn = {"success": [{"op": "range", "key_b64": base64.b64encode(key).decode()}]}
    status, parsed, _ = await _raw(
        single, "POST", "/v1/txn?encoding=base64", json.dumps(txn).encode()
    )
    assert status == 200
    assert base64.b64decode(parsed["responses"][0]["kvs"][0]["value_b64"]) == value
