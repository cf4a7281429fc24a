"""Watch streams, follower reads, redirects, checkpoints (create, list, download,
restore a new cluster from one) and graceful leader shutdown, on real processes."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import aiohttp
import pytest

from tests.integration.harness import Cluster, Node, until

pytestmark = pytest.mark.slow


async def test_watch_replays_history_then_streams_live_events(three_nodes: Cluster) -> None:
    cluster = three_nodes
    leader = await cluster.wait_leader()
    follower = next(n for n in cluster.nodes.values() if n is not leader)
    code, first = await cluster.put(leader, "w/a", b"1")
    assert code == 200
    await cluster.put(leader, "other", b"x")
    await cluster.request("DELETE", leader, "/v1/kv/w/a")
    events: list[dict[str, Any]] = []
    async with cluster.session.get(
        follower.url + "/v1/watch",
        params={"key": "w/", "prefix": "1", "start_revision": str(first["revision"])},
        timeout=aiohttp.ClientTimeout(total=30),
    ) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("application/x-ndjson")
        writer = asyncio.create_task(cluster.put(leader, "w/b", b"2"))
        while len(events) < 3:
            line = await resp.content.readline()
            event = json.loads(line)
            if event["type"] != "progress":
                events.append(event)
        await writer
    assert [(e["type"], e["key"]) for e in events] == [
        ("put", "w/a"),
        ("delete", "w/a"),
        ("put", "w/b"),
    ]
    assert events[0]["value"] == "1" and events[2]["value"] == "2"
    revisions = [e["mod_revision"] for e in events]
    assert revisions == sorted(revisions) and revisions[0] == first["revision"]


async def test_watch_from_a_forgotten_revision_is_gone(cluster: Cluster) -> None:
    (node,) = cluster.create(1, extra_args=["--snapshot-entries", "20"])
    cluster.start_all()
    leader = await cluster.wait_leader()
    for i in range(30):
        assert (await cluster.put(leader, "k", str(i).encode()))[0] == 200
    # Restarted from a snapshot, the node's history starts after it.
    cluster.kill(leader)
    cluster.start(leader)
    await cluster.wait_leader()
    code, body = await cluster.request("GET", leader, "/v1/watch", key="k", start_revision="1")
    assert code == 410 and body["error"] == "compacted"


async def test_follower_reads_and_redirects(three_nodes: Cluster) -> None:
    cluster = three_nodes
    leader = await cluster.wait_leader()
    follower = next(n for n in cluster.nodes.values() if n is not leader)
    # Linearizable read on a follower sees a write acknowledged by the leader at once.
    for i in range(20):
        assert (await cluster.put(leader, f"lin{i}", str(i).encode()))[0] == 200
        assert await cluster.get(follower, f"lin{i}") == (200, str(i).encode())
    async with cluster.session.put(
        follower.url + "/v1/kv/r", data=b"v", params={"redirect": "1"}, allow_redirects=False
    ) as resp:
        assert resp.status == 307
        assert resp.headers["Location"] == leader.url + "/v1/kv/r?redirect=1"
    code, body = await cluster.request(
        "GET", follower, "/v1/kv/lin?prefix=1", consistency="serializable", limit="5"
    )
    assert code == 200 and len(body["kvs"]) == 5 and body["count"] == 20 and body["more"]


async def test_checkpoints_download_and_restore_a_new_cluster(
    three_nodes: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    cluster = three_nodes
    leader = await cluster.wait_leader()
    for i in range(30):
        assert (await cluster.put(leader, f"c{i}", f"v{i}".encode()))[0] == 200
    follower = next(n for n in cluster.nodes.values() if n is not leader)
    code, manifest = await cluster.request("POST", follower, "/v1/checkpoints", {"id": "cp1"})
    assert code == 200, manifest
    assert set(manifest) == {"id", "index", "term", "sha256", "size", "time", "members"}
    assert manifest["members"] == ["n1", "n2", "n3"]
    code, again = await cluster.request("POST", leader, "/v1/checkpoints", {"id": "cp1"})
    assert code == 200 and again["sha256"] == manifest["sha256"]  # idempotent
    for node in cluster.nodes.values():

        async def present(node: Node = node) -> dict[str, Any] | None:
            code, body = await cluster.request("GET", node, "/v1/checkpoints")
            return next((m for m in body["checkpoints"] if m["id"] == "cp1"), None)

        mine = await until(present, 15, f"cp1 on {node.name}")
        assert mine["sha256"] == manifest["sha256"]
    async with cluster.session.get(follower.url + "/v1/checkpoints/cp1/data") as resp:
        assert resp.status == 200
        data = await resp.read()
    assert (
        hashlib.sha256(data).hexdigest()
        == manifest["sha256"]
        == resp.headers["X-Raftkv-Checkpoint-Sha256"]
    )

    # A brand-new single-node cluster restored from that checkpoint has the data.
    restored = Cluster(tmp_path_factory.mktemp("restored"), cluster.session)
    try:
        (node,) = restored.create(
            1, extra_args=["--restore-from", str(leader.data_dir / "checkpoints" / "cp1")]
        )
        restored.start_all()
        await restored.wait_leader()
        for i in (0, 29):
            assert await restored.get(node, f"c{i}") == (200, f"v{i}".encode())
        assert (await restored.put(node, "new", b"write"))[0] == 200
        code, body = await restored.request("GET", node, "/v1/members")
        assert [m["name"] for m in body["members"]] == ["n1"]
    finally:
        restored.close()


async def test_sigterm_on_the_leader_hands_over_leadership(three_nodes: Cluster) -> None:
    cluster = three_nodes
    leader = await cluster.wait_leader()
    others = [n for n in cluster.nodes.values() if n is not leader]
    before = await cluster.status(others[0])
    assert before is not None
    assert cluster.terminate(leader) == 0
    log = cluster.log_tail(leader, 50)
    assert "leadership moved to" in log, log
    # The transfer means no election timeout had to pass: a leader is known right away.
    new = await cluster.wait_leader(others, timeout=5)
    assert new in others
