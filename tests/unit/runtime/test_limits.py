"""Limits of a shared store, against one in-process node (tests/unit/runtime/solo.py):
JSON depth, caps on leases / lock waiters / watches, the backend quota and its
alarm, big session results on retry, and a WAL that fails with ENOSPC."""

from __future__ import annotations

import asyncio
import errno
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from raftkv.runtime.limits import LimitExceeded, json_depth, parse_json
from raftkv.runtime.server import Server
from tests.unit.runtime.solo import solo_node


async def _call(http: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> tuple[int, Any]:
    async with http.request(method, url, **kw) as r:
        body = await r.read()
        return r.status, (json.loads(body) if r.content_type == "application/json" else body)


async def _until(condition: Callable[[], Awaitable[bool]], what: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name} in the metrics")


# --- JSON depth ---------------------------------------------------------------


def test_parse_json_takes_the_bound_and_refuses_one_more() -> None:
    at_bound = "[" * 64 + "]" * 64
    assert json_depth(parse_json(at_bound.encode(), 64), 1000) == 64
    with pytest.raises(LimitExceeded) as info:
        parse_json(("[" * 65 + "]" * 65).encode(), 64)
    assert (info.value.status, info.value.code) == (400, "json_too_deep")
    mixed = '{"a": [{"b": {"c": [1, 2, {"d": []}]}}], "e": "[[[[[[[[[["}'
    # {a: [{b: {c: [.., {d: []}]}}]}: 7 levels; brackets inside strings don't count
    assert json_depth(parse_json(mixed.encode(), 7), 100) == 7
    with pytest.raises(LimitExceeded):
        parse_json(mixed.encode(), 6)
    with pytest.raises(ValueError):
        parse_json(b"[1,", 64)


async def test_a_body_nested_100k_deep_is_a_400_not_a_500(tmp_path: Path) -> None:
    async with solo_node(tmp_path) as server, aiohttp.ClientSession() as http:
        url = server.cfg.advertise_client_url
        for route in ("/v1/txn", "/v1/leases", "/v1/members"):
            for body in (
                b"[" * 100_000 + b"]" * 100_000,
                b'{"compare": ' + b"[" * 65 + b"]" * 65 + b"}",
            ):
                code, answer = await _call(http, "POST", url + route, data=body)
                assert code == 400, (route, answer)
                assert answer["error"] == "json_too_deep", answer
        code, ok = await _call(
            http,
            "POST",
            url + "/v1/txn",
            json={"success": [{"op": "put", "key": "k", "value": "v"}]},
        )
        assert code == 200 and ok["succeeded"], ok
        code, text = await _call(http, "GET", url + "/metrics")
        assert _metric(text.decode(), 'raftkv_limit_refusals_total{limit="json_depth"}') == 6


# --- caps ---------------------------------------------------------------------


async def _grant(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    return await _call(http, "POST", url + "/v1/leases", json={"ttl": 100})


async def test_leases_are_capped_and_a_revoke_makes_room(tmp_path: Path) -> None:
    async with solo_node(tmp_path, max_leases=2) as server, aiohttp.ClientSession() as http:
        url = server.cfg.advertise_client_url
        first = (await _grant(http, url))[1]["id"]
        assert (await _grant(http, url))[0] == 200
        code, refused = await _grant(http, url)
        assert code == 429 and refused["error"] == "too_many_leases", refused
        assert "--max-leases" in refused["message"]
        assert len(server.node.fsm.leases()) == 2  # nothing was proposed
        assert (await _call(http, "DELETE", f"{url}/v1/leases/{first}"))[0] == 200
        assert (await _grant(http, url))[0] == 200


async def test_lock_waiters_are_capped_per_lock(tmp_path: Path) -> None:
    async with solo_node(tmp_path, max_lock_waiters=1) as server, aiohttp.ClientSession() as http:
        url = server.cfg.advertise_client_url
        a, b, c = [(await _grant(http, url))[1]["id"] for _ in range(3)]
        code, held = await _call(http, "POST", url + "/v1/locks/job", json={"lease": a})
        assert code == 200 and held["acquired"]
        waiting = asyncio.ensure_future(
            _call(http, "POST", url + "/v1/locks/job?timeout=20", json={"lease": b})
        )

        async def queued() -> bool:
            return server.node.fsm.lock_waiter_count("job") == 1

        await _until(queued, "the second lease to queue")
        code, refused = await _call(
            http, "POST", url + "/v1/locks/job?timeout=1", json={"lease": c}
        )
        assert code == 429 and refused["error"] == "too_many_lock_waiters", refused
        # The queued lease may ask again; another lock is not affected.
        assert server.node.fsm.lock_status("job", c) is None
        code, other = await _call(http, "POST", url + "/v1/locks/other", json={"lease": c})
        assert code == 200 and other["acquired"]
        # The holder lets go: the waiter gets the lock, and the queue has room again.
        code, _ = await _call(http, "DELETE", url + f"/v1/locks/job?lease={a}")
        assert code == 200
        code, granted = await waiting
        assert code == 200 and granted["acquired"], granted


async def _open_watch(http: aiohttp.ClientSession, url: str, key: str) -> aiohttp.ClientResponse:
    return await http.get(f"{url}/v1/watch?key={key}")


async def test_watches_are_capped_per_client_and_per_node(tmp_path: Path) -> None:
    async with (
        solo_node(tmp_path, max_watches=2, max_watches_per_client=1) as server,
        aiohttp.ClientSession() as http,
    ):
        url = server.cfg.advertise_client_url
        hub = server.node.watch
        first = await _open_watch(http, url, "a")
        assert first.status == 200
        second = await _open_watch(http, url, "b")
        body = await second.json()
        assert second.status == 429 and body["error"] == "too_many_watches_per_client", body
        assert len(hub.watchers) == 1
        # Another client address (loopback has many): room until the node's cap.
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
        ) as other:
            third = await _open_watch(other, url, "c")
            assert third.status == 200
            async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(local_addr=("127.0.0.3", 0))
            ) as more:
                fourth = await _open_watch(more, url, "d")
                body = await fourth.json()
                assert fourth.status == 429 and body["error"] == "too_many_watches", body
            third.close()
        first.close()

        async def all_closed() -> bool:
            return not hub.watchers and hub.client_count("127.0.0.1") == 0

        await _until(all_closed, "the closed streams to leave the hub")
        again = await _open_watch(http, url, "a")
        assert again.status == 200
        again.close()


async def test_every_way_a_watch_ends_gives_its_slot_back() -> None:
    from raftkv.fsm import WatchEvent
    from raftkv.runtime.watch import WatchHub

    hub = WatchHub(max_queue=1, max_watchers=3, max_per_client=2)

    def anything(key: bytes) -> bool:
        return True

    slow = hub.subscribe(anything, 0, 1, "10.0.0.1")
    hub.subscribe(anything, 0, 1, "10.0.0.1")
    with pytest.raises(LimitExceeded) as info:
        hub.subscribe(anything, 0, 1, "10.0.0.1")
    assert info.value.code == "too_many_watches_per_client"
    hub.subscribe(anything, 0, 1, "10.0.0.2")
    with pytest.raises(LimitExceeded) as info:
        hub.subscribe(anything, 0, 1, "10.0.0.3")
    assert info.value.code == "too_many_watches"
    # A reader too slow for its queue is closed, and its stream then unsubscribes too.
    event = WatchEvent("put", b"k", b"v", 2, 2, 1, 0)
    hub.publish([event, event])
    assert not hub.watchers  # every queue (1 event) overflowed
    hub.unsubscribe(slow)
    assert hub.client_count("10.0.0.1") == 0 and hub.client_count("10.0.0.2") == 0
    for _ in range(2):
        hub.subscribe(anything, 0, 3, "10.0.0.1")
    hub.reset(5)  # a snapshot install closes every stream
    assert hub.client_count("10.0.0.1") == 0 and not hub.watchers
    hub.subscribe(anything, 0, 6, "10.0.0.1")


# --- the backend quota ------------------------------------------------------------


async def test_the_quota_refuses_growing_writes_and_clears_when_space_is_freed(
    tmp_path: Path,
) -> None:
    quota = 40_000
    async with (
        solo_node(tmp_path, quota_backend_bytes=quota) as server,
        aiohttp.ClientSession() as http,
    ):
        url = server.cfg.advertise_client_url
        fsm = server.node.fsm
        lease = (await _grant(http, url))[1]["id"]
        written = 0
        while True:  # the fast path's PUT until the quota refuses one
            code, answer = await _call(http, "PUT", f"{url}/v1/kv/k{written}", data=b"v" * 5000)
            if code != 200:
                break
            written += 1
            assert written < 20, "the quota never refused a write"
        assert code == 507 and answer["error"] == "quota_exceeded", answer
        assert "database space exceeded" in answer["message"]
        assert fsm.size_bytes >= quota and fsm.get(f"k{written}".encode()) is None
        metrics = (await _call(http, "GET", url + "/metrics"))[1].decode()
        assert _metric(metrics, "raftkv_quota_alarm") == 1
        assert _metric(metrics, "raftkv_quota_backend_bytes") == quota
        assert _metric(metrics, "raftkv_state_bytes") == fsm.size_bytes
        # Every growing write is refused, on every route ...
        refused = [
            await _call(http, "PUT", f"{url}/v1/kv/k0?prev_kv=1", data=b"x"),  # aiohttp
            await _call(http, "PUT", f"{url}/v1/kv/k0?if_version=1", data=b"x"),
            await _call(
                http,
                "POST",
                url + "/v1/txn",
                json={
                    "compare": [],
                    "success": [],
                    "failure": [{"op": "put", "key": "z", "value": "v"}],
                },
            ),
            await _grant(http, url),
            await _call(http, "POST", url + "/v1/locks/l", json={"lease": lease}),
        ]
        for code, answer in refused:
            assert code == 507 and answer["error"] == "quota_exceeded", answer
        # ... and reads, deletes, read-only txns and checkpoints go on.
        assert (await _call(http, "GET", f"{url}/v1/kv/k0"))[0] == 200
        assert (await _call(http, "GET", f"{url}/v1/kv/?prefix=1&keys_only=1"))[0] == 200
        code, txn = await _call(
            http,
            "POST",
            url + "/v1/txn",
            json={"success": [{"op": "range", "key": "k0"}, {"op": "delete", "key": "k1"}]},
        )
        assert code == 200, txn
        code, manifest = await _call(http, "POST", url + "/v1/checkpoints", json={"id": "full"})
        assert code == 200, manifest
        # Deleting below the quota clears the alarm and writes work again.
        code, _ = await _call(http, "DELETE", f"{url}/v1/kv/k?prefix=1")
        assert code == 200 and fsm.size_bytes < quota
        metrics = (await _call(http, "GET", url + "/metrics"))[1].decode()
        assert _metric(metrics, "raftkv_quota_alarm") == 0
        assert _metric(metrics, 'raftkv_limit_refusals_total{limit="quota"}') == 6
        assert (await _call(http, "PUT", f"{url}/v1/kv/again", data=b"v"))[0] == 200


async def test_a_burst_of_writes_cannot_overshoot_the_quota(tmp_path: Path) -> None:
    quota, value = 100_000, b"v" * 5000
    async with (
        solo_node(tmp_path, quota_backend_bytes=quota) as server,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http,
    ):
        url = server.cfg.advertise_client_url
        for fast_path in (True, False):  # the fast path, then aiohttp's (prev_kv)
            query = "" if fast_path else "?prev_kv=1"
            answers = await asyncio.gather(
                *(
                    _call(http, "PUT", f"{url}/v1/kv/{fast_path}-{i}{query}", data=value)
                    for i in range(64)
                )
            )  # 320 KB at once, most of it admitted together
            codes = sorted({code for code, _ in answers})
            assert codes == [200, 507], codes
            # Admitted-but-unapplied bytes count: at most one write past the quota.
            assert server.node.fsm.size_bytes < quota + len(value) + 100
            code, _ = await _call(http, "DELETE", f"{url}/v1/kv/?prefix=1")
            assert code == 200


# --- big results on retry -------------------------------------------------------------


async def test_a_retry_of_a_big_txn_says_applied_without_repeating_the_answer(
    tmp_path: Path,
) -> None:
    async with solo_node(tmp_path) as server, aiohttp.ClientSession() as http:
        url = server.cfg.advertise_client_url
        for i in range(10):
            assert (await _call(http, "PUT", f"{url}/v1/kv/k{i}", data=b"v" * 1000))[0] == 200
        txn = {
            "success": [{"op": "put", "key": "mark", "value": "1"}]
            + [{"op": "range", "key": "k", "prefix": True}] * 4
        }
        session = {"X-Raftkv-Client-Id": "big-client", "X-Raftkv-Seq": "1"}
        code, first = await _call(http, "POST", url + "/v1/txn", json=txn, headers=session)
        assert code == 200 and len(first["responses"][1]["kvs"]) == 10
        async with http.post(url + "/v1/txn", json=txn, headers=session) as r:
            retry = await r.json()
            assert r.status == 409, retry
            assert r.headers["X-Raftkv-Revision"] == str(first["revision"])
        assert retry["error"] == "result_not_retained"
        assert f"revision {first['revision']}" in retry["message"]
        assert server.node.fsm.get(b"mark").version == 1  # type: ignore[union-attr]


# --- a full disk -----------------------------------------------------------------------


async def _failing_wal(server: Server) -> list[int]:
    """From now on every WAL save raises ENOSPC; returns where exit codes land."""
    node = server.node
    exits: list[int] = []
    node.exit_process = exits.append

    def save(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    node.raft_store.save = save  # type: ignore[method-assign]
    return exits


@pytest.mark.parametrize("fast_path", [True, False])
async def test_a_wal_that_cannot_write_never_acknowledges(tmp_path: Path, fast_path: bool) -> None:
    async with solo_node(tmp_path, fast_path=fast_path) as server, aiohttp.ClientSession() as http:
        url = server.cfg.advertise_client_url
        assert (await _call(http, "PUT", f"{url}/v1/kv/before", data=b"1"))[0] == 200
        exits = await _failing_wal(server)
        results = await asyncio.gather(
            *(_call(http, "PUT", f"{url}/v1/kv/lost{i}", data=b"x") for i in range(5))
        )
        for code, answer in results:
            assert code == 503, answer
            assert answer["error"] in ("node_failed", "shutting_down"), answer
        assert any(answer["error"] == "node_failed" for _, answer in results)
        fsm = server.node.fsm
        assert all(fsm.get(f"lost{i}".encode()) is None for i in range(5))
        code, answer = await _call(http, "PUT", f"{url}/v1/kv/after", data=b"1")
        assert code == 503 and answer["error"] == "shutting_down", answer

        async def exited() -> bool:
            return exits == [70]

        await _until(exited, "the node to exit with 70")
        assert fsm.get(b"before") is not None
