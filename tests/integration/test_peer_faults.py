"""Errors on peer connections never reach the Raft loop (issue 10).

Killing a follower with kill -9 used to crash the leader: writing into the dead
follower's already-closed socket raised `RuntimeError ... handler is closed` inside
the Raft loop (exit 70), leaving the cluster without a quorum."""

from __future__ import annotations

import asyncio
import itertools

import aiohttp
import pytest

from tests.integration.harness import Cluster, Node, until

pytestmark = pytest.mark.slow

KILL_ROUNDS = 6


async def _writer(
    cluster: Cluster, leader: Node, worker: int, stop: asyncio.Event, acked: dict[str, bytes]
) -> None:
    for n in itertools.count():
        if stop.is_set():
            return
        key, value = f"k{worker}-{n}", f"v{worker}-{n}".encode()
        try:
            status, _ = await cluster.put(leader, key, value)
        except (TimeoutError, aiohttp.ClientError):
            continue
        if status == 200:
            acked[key] = value
        else:
            await asyncio.sleep(0.02)


async def test_killing_followers_under_load_never_stops_the_leader(three_nodes: Cluster) -> None:
    cluster = three_nodes
    leader = await cluster.wait_leader()
    followers = [n for n in cluster.nodes.values() if n is not leader]
    acked: dict[str, bytes] = {}
    stop = asyncio.Event()
    writers = [asyncio.create_task(_writer(cluster, leader, w, stop, acked)) for w in range(8)]
    try:
        for round_no in range(KILL_ROUNDS):
            victim = followers[round_no % 2]
            survivor = followers[(round_no + 1) % 2]
            floor = len(acked) + 50
            await until(
                lambda f=floor: _at_least(acked, f), 20, f"writes committing before kill {round_no}"
            )
            cluster.kill(victim)  # kill -9 while appends are in flight to it
            floor = len(acked) + 100
            await until(
                lambda f=floor: _at_least(acked, f),
                20,
                f"the leader committing with {victim.name} dead (round {round_no})",
            )
            assert leader.running(), cluster.log_tail(leader)
            cluster.start(victim)
            await cluster.wait_caught_up(victim, leader)
            assert survivor.running()
    finally:
        stop.set()
        await asyncio.gather(*writers)
    assert leader.running(), cluster.log_tail(leader)
    assert await cluster.wait_leader() is leader
    log_text = leader.log_path.read_text(errors="replace") if leader.log_path else ""
    assert "Raft loop died" not in log_text
    for node in cluster.nodes.values():
        await cluster.wait_caught_up(node, leader)
        status, body = await cluster.request(
            "GET", node, "/v1/kv/k", prefix="1", consistency="serializable"
        )
        assert status == 200, body
        stored = {kv["key"]: kv["value"].encode() for kv in body["kvs"]}
        lost = [k for k, v in acked.items() if stored.get(k) != v]
        assert not lost, f"{node.name}: {len(lost)} acknowledged writes missing"


async def _at_least(acked: dict[str, bytes], n: int) -> bool:
    return len(acked) >= n
