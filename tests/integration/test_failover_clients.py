"""What clients see while the leader goes away (issue 15 item 1): requests pending
on a follower move on as soon as a new leader is known, not after fixed timers."""

from __future__ import annotations

import asyncio
import signal
import time

import aiohttp
import pytest

from tests.integration.harness import Cluster, Node

pytestmark = pytest.mark.slow


async def _raw(
    cluster: Cluster, method: str, node: Node, path: str, **kw: object
) -> tuple[int, dict[str, str], bytes]:
    async with cluster.session.request(
        method, node.url + path, timeout=aiohttp.ClientTimeout(total=30), **kw
    ) as r:  # type: ignore[arg-type]
        return r.status, dict(r.headers), await r.read()


async def test_a_write_forwarded_to_a_paused_leader_is_answered_once_another_leads(
    three_nodes: Cluster,
) -> None:
    """SIGSTOP of the leader: the follower's forwarded write used to hang for
    --request-timeout + 5 s. Now it ends when a new leader is known: 503
    outcome_unknown (it reached the old leader), naming the new leader; the retry
    there with the same session headers succeeds."""
    cluster = three_nodes
    leader = await cluster.wait_leader()
    follower = next(n for n in cluster.nodes.values() if n is not leader)
    session = {"X-Raftkv-Client-Id": "failover-test", "X-Raftkv-Seq": "1"}
    status, _, _ = await _raw(
        cluster,
        "PUT",
        follower,
        "/v1/kv/warm",
        data=b"x",
        headers={"X-Raftkv-Client-Id": "warm", "X-Raftkv-Seq": "1"},
    )
    assert status == 200  # the follower's forwarding connection to the leader is open
    assert leader.proc is not None
    leader.proc.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        status, headers, body = await _raw(
            cluster, "PUT", follower, "/v1/kv/k", data=b"v", headers=session
        )
        elapsed = time.monotonic() - started
        assert status == 503 and b'"outcome_unknown"' in body, (status, body)
        assert elapsed < 5.0, f"answered after {elapsed:.1f}s"
        survivors = [n for n in cluster.nodes.values() if n is not leader]
        new_leader = await cluster.wait_leader(survivors)
        assert headers.get("X-Raftkv-Leader") == new_leader.url, headers
        status, _, body = await _raw(
            cluster, "PUT", new_leader, "/v1/kv/k", data=b"v", headers=session
        )
        assert status == 200, body
    finally:
        leader.proc.send_signal(signal.SIGCONT)


async def test_a_read_pending_on_a_follower_is_asked_again_of_the_new_leader(
    cluster: Cluster,
) -> None:
    """kill -9 of the leader while a follower's linearizable read waits for its read
    index: the read is re-issued to the new leader when it is known, not after three
    election timeouts (3 s with these 1 s election timeouts)."""
    cluster.create(3, ["--election-ticks", "20"])  # 50 ms ticks: 1 s election timeouts
    cluster.start_all()
    leader = await cluster.wait_leader()
    follower = next(n for n in cluster.nodes.values() if n is not leader)
    status, _, _ = await _raw(cluster, "PUT", follower, "/v1/kv/r", data=b"1")
    assert status == 200
    killed = time.monotonic()
    cluster.kill(leader)
    while True:
        status, _, body = await _raw(cluster, "GET", follower, "/v1/kv/r")
        if status == 200 or time.monotonic() - killed > 20:
            break
        await asyncio.sleep(0.02)  # 503 no_leader while the election runs
    elapsed = time.monotonic() - killed
    assert status == 200 and body == b"1", (status, body)
    assert elapsed < 2.5, f"the read was answered {elapsed:.2f}s after the kill"
