"""Regressions of the HTTP API, against one in-process node (tests/unit/runtime/solo.py)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.unit.runtime.solo import solo_node


@pytest.fixture
async def node_url(tmp_path: Path) -> AsyncIterator[str]:
    async with solo_node(tmp_path) as server:
        yield server.cfg.advertise_client_url


async def _call(http: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> tuple[int, Any]:
    async with http.request(method, url, **kw) as r:
        body = await r.read()
        return r.status, (await r.json() if r.content_type == "application/json" else body)


async def test_lease_with_keys_is_shown_with_bytes_encoded(node_url: str) -> None:
    async with aiohttp.ClientSession() as http:
        code, lease = await _call(http, "POST", node_url + "/v1/leases", json={"ttl": 100})
        assert code == 200, lease
        lid = lease["id"]
        for key in ("k2", "k1"):
            code, _ = await _call(http, "PUT", f"{node_url}/v1/kv/{key}?lease={lid}", data=b"v")
            assert code == 200
        code, info = await _call(http, "GET", f"{node_url}/v1/leases/{lid}")
        assert code == 200, info
        assert info["keys"] == ["k1", "k2"] and info["ttl"] == 100
        code, info = await _call(http, "GET", f"{node_url}/v1/leases/{lid}?encoding=base64")
        assert code == 200 and "keys" not in info
        assert [base64.b64decode(k) for k in info["keys_b64"]] == [b"k1", b"k2"]
        # A key that is not UTF-8 puts the whole list in base64 (lossless).
        code, _ = await _call(http, "PUT", f"{node_url}/v1/kv/%FF?lease={lid}", data=b"v")
        assert code == 200
        code, info = await _call(http, "GET", f"{node_url}/v1/leases/{lid}")
        assert code == 200 and "keys" not in info
        assert [base64.b64decode(k) for k in info["keys_b64"]] == [b"k1", b"k2", b"\xff"]


async def test_timed_out_lock_acquire_with_session_leaves_the_queue(node_url: str) -> None:
    async with aiohttp.ClientSession() as http:
        leases = []
        for _ in range(2):
            code, body = await _call(http, "POST", node_url + "/v1/leases", json={"ttl": 100})
            assert code == 200
            leases.append(body["id"])
        a, b = leases
        code, held = await _call(http, "POST", node_url + "/v1/locks/bug", json={"lease": a})
        assert code == 200 and held["acquired"]
        session = {"X-Raftkv-Client-Id": "c1", "X-Raftkv-Seq": "1"}
        code, body = await _call(
            http, "POST", node_url + "/v1/locks/bug?timeout=0.3", json={"lease": b}, headers=session
        )
        assert (code, body["error"]) == (409, "lock_timeout")
        code, info = await _call(http, "GET", node_url + "/v1/locks/bug")
        assert code == 200 and info["holder"] == a
        assert info["waiters"] == []  # b gave up: it is no longer queued
        # So when a releases, nobody holds the lock (b must not get it unasked).
        code, _ = await _call(http, "DELETE", f"{node_url}/v1/locks/bug?lease={a}")
        assert code == 200
        code, info = await _call(http, "GET", node_url + "/v1/locks/bug")
        assert code == 404, info


async def test_retried_checkpoint_request_answers_the_first_checkpoint(node_url: str) -> None:
    session = {"X-Raftkv-Client-Id": "ck", "X-Raftkv-Seq": "1"}
    timeout = aiohttp.ClientTimeout(total=8)  # the bug: the retry hung for 70 s
    async with aiohttp.ClientSession(timeout=timeout) as http:
        code, first = await _call(http, "POST", node_url + "/v1/checkpoints", headers=session)
        assert code == 200, first
        code, again = await _call(http, "POST", node_url + "/v1/checkpoints", headers=session)
        assert code == 200, again
        assert again == first  # the same checkpoint, not a new one
        code, listed = await _call(http, "GET", node_url + "/v1/checkpoints")
        assert code == 200 and [m["id"] for m in listed["checkpoints"]] == [first["id"]]
        # The same session used by another kind of request first: a clear conflict.
        reused = {"X-Raftkv-Client-Id": "ck", "X-Raftkv-Seq": "2"}
        code, _ = await _call(http, "PUT", node_url + "/v1/kv/x", data=b"v", headers=reused)
        assert code == 200
        code, body = await _call(http, "POST", node_url + "/v1/checkpoints", headers=reused)
        assert (code, body["error"]) == (409, "session_reused")
