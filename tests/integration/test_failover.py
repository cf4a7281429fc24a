"""Crash safety with real processes: kill -9 of the leader under load, follower
catch-up (through a snapshot when far behind), full-cluster restart; on both
consensus engines (`--consensus raft|multipaxos`)."""

from __future__ import annotations

import asyncio
import itertools
import time

import aiohttp
import pytest

from tests.integration.harness import Cluster, Node, until

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("engine", ["raft", "multipaxos"])]


@pytest.fixture
async def three_nodes(cluster: Cluster, engine: str) -> Cluster:
    cluster.create(3, ["--consensus", engine])
    cluster.start_all()
    await cluster.wait_leader()
    return cluster


async def _writer(
    cluster: Cluster, nodes: list[Node], worker: int, stop: asyncio.Event, acked: dict[str, bytes]
) -> None:
    """Write unique keys round-robin through the members; record what was acknowledged."""
    for n in itertools.count():
        if stop.is_set():
            return
        key, value = f"w{worker}-{n}", f"v{worker}-{n}".encode()
        node = nodes[(worker + n) % len(nodes)]
        if not node.running():
            continue
        try:
            status, _ = await cluster.put(node, key, value)
        except (TimeoutError, aiohttp.ClientError):
            continue  # unknown outcome: neither acknowledged nor counted
        if status == 200:
            acked[key] = value
        else:
            await asyncio.sleep(0.02)  # 503 while electing: back off a little


async def _check_all(cluster: Cluster, node: Node, acked: dict[str, bytes]) -> None:
    status, body = await cluster.request("GET", node, "/v1/kv/w", prefix="1")
    assert status == 200, body
    stored = {kv["key"]: kv["value"].encode() for kv in body["kvs"]}
    missing = [k for k in acked if k not in stored]
    assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"
    wrong = [k for k, v in acked.items() if stored[k] != v]
    assert not wrong, f"acknowledged writes with wrong values: {wrong[:5]}"


async def test_kill_leader_under_load_loses_no_acknowledged_write(three_nodes: Cluster) -> None:
    cluster = three_nodes
    nodes = list(cluster.nodes.values())
    leader = await cluster.wait_leader()
    acked: dict[str, bytes] = {}
    stop = asyncio.Event()
    writers = [asyncio.create_task(_writer(cluster, nodes, w, stop, acked)) for w in range(16)]
    await until(lambda: _at_least(acked, 200), 20, "200 acknowledged writes before the kill")
    cluster.kill(leader)
    before_kill = len(acked)
    survivors = [n for n in nodes if n is not leader]
    new_leader = await cluster.wait_leader(survivors, timeout=20)
    assert new_leader is not leader
    await until(
        lambda: _at_least(acked, before_kill + 200),
        20,
        "200 more acknowledged writes after failover",
    )
    stop.set()
    await asyncio.gather(*writers)
    await _check_all(cluster, new_leader, acked)

    # The old leader comes back as a follower and converges on the same data.
    cluster.start(leader)
    await cluster.wait_caught_up(leader, new_leader)
    status, value = await cluster.get(leader, next(iter(acked)), consistency="serializable")
    assert status == 200 and value == acked[next(iter(acked))]
    await _check_all(cluster, leader, acked)


async def _at_least(acked: dict[str, bytes], n: int) -> bool:
    return len(acked) >= n


async def test_killed_follower_catches_up_through_a_snapshot(cluster: Cluster, engine: str) -> None:
    cluster.create(3, extra_args=["--snapshot-entries", "40", "--consensus", engine])
    cluster.start_all()
    leader = await cluster.wait_leader()
    follower = next(n for n in cluster.nodes.values() if n is not leader)
    cluster.kill(follower)
    for i in range(300):
        status, body = await cluster.put(leader, f"k{i:04d}", f"value-{i}".encode())
        assert status == 200, body
    # Far behind and the leader compacted its log: only a snapshot can bring it back.
    assert any((leader.data_dir / "snapshots").glob("snap-*.meta.json"))
    cluster.start(follower)
    await cluster.wait_caught_up(follower, leader)
    metrics = await _metrics(cluster, follower)
    assert 'raftkv_snapshots_total{kind="installed"}' in metrics
    installed = _sample(metrics, 'raftkv_snapshots_total{kind="installed"}')
    assert installed >= 1
    for i in (0, 150, 299):
        status, value = await cluster.get(follower, f"k{i:04d}", consistency="serializable")
        assert (status, value) == (200, f"value-{i}".encode())
    # And it keeps replicating normally afterwards.
    status, _ = await cluster.put(leader, "after", b"snapshot")
    assert status == 200
    await cluster.wait_caught_up(follower, leader)
    assert await cluster.get(follower, "after", consistency="serializable") == (200, b"snapshot")


async def _metrics(cluster: Cluster, node: Node) -> str:
    async with cluster.session.get(node.url + "/metrics") as r:
        return await r.text()


def _sample(metrics: str, name: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"no sample {name}")


async def test_full_cluster_restart_keeps_all_data(three_nodes: Cluster) -> None:
    cluster = three_nodes
    leader = await cluster.wait_leader()
    written = {f"r{i}": f"x{i}".encode() for i in range(50)}
    for key, value in written.items():
        assert (await cluster.put(leader, key, value))[0] == 200
    nodes = list(cluster.nodes.values())
    # Half gracefully, half the hard way.
    assert cluster.terminate(nodes[0]) == 0
    cluster.kill(nodes[1])
    cluster.kill(nodes[2])
    started = time.monotonic()
    cluster.start_all()
    leader = await cluster.wait_leader()
    assert time.monotonic() - started < 30
    for key, value in written.items():
        got = await cluster.get(leader, key)
        assert got == (200, value), (key, got, cluster.log_tail(leader))
    for node in nodes:
        await cluster.wait_caught_up(node, leader)
        assert await cluster.get(node, "r49", consistency="serializable") == (200, b"x49")
