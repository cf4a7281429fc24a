"""Linearizable reads served by followers (issue 15 item 4): a follower asks the
leader for a read index (ReadIndex), waits until it has applied that far and
answers from its own state machine. The request is never forwarded, and a read
that starts after a write was acknowledged elsewhere sees the write. On both
consensus engines (Multi-Paxos: its read barrier, docs/consensus.md)."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import signal
from urllib.parse import urlsplit

import pytest
from prometheus_client.parser import text_string_to_metric_families

from raftkv.runtime.http.routing import KV_ROUTE
from tests.integration.harness import Cluster, Node

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("engine", ["raft", "multipaxos"])]


@pytest.fixture
async def three_nodes(cluster: Cluster, engine: str) -> Cluster:
    cluster.create(3, ["--consensus", engine])
    cluster.start_all()
    await cluster.wait_leader()
    return cluster


WRITES = 200


async def _kv_gets(cluster: Cluster, node: Node) -> float:
    """GETs of single keys this node answered itself (its raftkv_http_requests_total)."""
    async with cluster.session.get(node.url + "/metrics") as r:
        text = await r.text()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "raftkv_http_requests"
        for sample in family.samples
        if sample.name == "raftkv_http_requests_total"
        and sample.labels.get("route") == KV_ROUTE
        and sample.labels.get("method") == "GET"
    )


def _send_get(node: Node, key: str) -> http.client.HTTPConnection:
    parts = urlsplit(node.url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    conn.request("GET", f"/v1/kv/{key}")
    return conn


def _answer(conn: http.client.HTTPConnection) -> tuple[int, bytes]:
    with contextlib.closing(conn):
        resp = conn.getresponse()
        return resp.status, resp.read()


async def test_a_lagging_follower_serves_a_linearizable_read_of_writes_acked_elsewhere(
    three_nodes: Cluster,
) -> None:
    """The follower is paused while the leader and the other follower acknowledge
    WRITES writes; resumed, it is asked for the last one at once. It has none of
    them when the request arrives (a read served from its state machine without a
    read index would be 404), so the answer proves it waited for the read index;
    the metrics prove the follower answered and the leader saw no read."""
    cluster = three_nodes
    leader = await cluster.wait_leader()
    lagging = next(n for n in cluster.nodes.values() if n is not leader)
    status, body = await cluster.put(leader, "warm", b"x")
    assert status == 200, body
    await cluster.wait_caught_up(lagging, leader)
    leader_gets = await _kv_gets(cluster, leader)
    follower_gets = await _kv_gets(cluster, lagging)
    assert lagging.proc is not None
    lagging.proc.send_signal(signal.SIGSTOP)
    try:
        for i in range(WRITES):
            status, body = await cluster.put(leader, f"fr/{i}", f"v{i}".encode())
            assert status == 200, body  # acknowledged by the leader and the other follower
        # Sent while it is paused: the request waits in its socket buffer.
        conn = await asyncio.to_thread(_send_get, lagging, f"fr/{WRITES - 1}")
    finally:
        lagging.proc.send_signal(signal.SIGCONT)
    status, value = await asyncio.to_thread(_answer, conn)
    if status == 503:  # resumed before hearing from the leader: no leader known yet
        status, value = await cluster.get(lagging, f"fr/{WRITES - 1}")
    assert (status, value) == (200, f"v{WRITES - 1}".encode())
    assert await _kv_gets(cluster, lagging) > follower_gets, "the follower did not answer"
    assert await _kv_gets(cluster, leader) == leader_gets, "the read reached the leader"


async def test_concurrent_follower_reads_all_see_a_write_acked_before_they_began(
    three_nodes: Cluster,
) -> None:
    """Many linearizable reads at once on both followers (batched into a few read
    index rounds): every one of them sees the value acknowledged before it began."""
    cluster = three_nodes
    leader = await cluster.wait_leader()
    followers = [n for n in cluster.nodes.values() if n is not leader]
    for round_no in range(5):
        value = f"round-{round_no}".encode()
        status, body = await cluster.put(leader, "shared", value)
        assert status == 200, body
        answers = await asyncio.gather(
            *(cluster.get(followers[i % 2], "shared") for i in range(64))
        )
        assert answers == [(200, value)] * 64
