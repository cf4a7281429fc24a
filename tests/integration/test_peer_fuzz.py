"""The peer-protocol fuzzer against a live node (issue 10): at least 100k frames
per run and engine (Raft, Multi-Paxos), the node keeps serving and its state does not
change.

`make fuzz-peer` runs the same for longer (FRAMES=..., SEED=..., ENGINE=...)."""

from __future__ import annotations

import os
import time

import pytest

from tests.integration.harness import Cluster, until
from tests.integration.peer_fuzz import Stats, fuzz, hypothesis_payloads, record_frames

pytestmark = [pytest.mark.slow, pytest.mark.both_engines]

FRAMES = int(os.environ.get("RAFTKV_FUZZ_PEER_FRAMES", "100000"))


async def _kv(cluster: Cluster, node: object) -> dict[str, str]:
    code, body = await cluster.request(
        "GET",
        node,
        "/v1/kv/",
        prefix="1",  # type: ignore[arg-type]
        consistency="serializable",
    )
    assert code == 200, body
    return {kv["key"]: kv["value"] for kv in body["kvs"]}


async def run_against_cluster(
    cluster: Cluster, frames: int, seed: int, mutate_share: float = 0.12, engine: str = "raft"
) -> Stats:
    cluster.engine = engine
    cluster.create(3)
    cluster.start_all()
    leader = await cluster.wait_leader()
    for i in range(20):
        code, body = await cluster.put(leader, f"keep/{i}", f"value-{i}".encode())
        assert code == 200, body
    nodes = list(cluster.nodes.values())
    for node in nodes:
        await cluster.wait_caught_up(node, leader)
    before = await _kv(cluster, leader)
    status = await cluster.status(leader)
    assert status is not None and status["consensus"] == engine, status
    claim = next(n for n in nodes if n is not leader)

    async def still_serving() -> None:
        for node in nodes:
            assert node.running(), f"{node.name} died:\n{cluster.log_tail(node)}"
        st = await cluster.status(leader)
        assert st is not None, "the fuzzed node stopped answering /v1/status"

    started = time.monotonic()
    stats = await fuzz(
        leader.host,
        leader.peer_port,
        cluster_id=status["cluster_id"],
        engine=status["consensus"],
        claim=claim.id,
        claim_name=claim.name,
        target=leader.id,
        frames=frames,
        seed=seed,
        mutate_share=mutate_share,
        corpus=record_frames(engine),
        extra_payloads=hypothesis_payloads(300),
        check=still_serving,
    )
    elapsed = time.monotonic() - started
    print(
        f"peer fuzz: {stats.frames} frames, {stats.connections} connections, "
        f"{stats.skipped} skipped, {elapsed:.1f}s ({stats.frames / elapsed:.0f} frames/s)"
    )
    assert not stats.mismatches, stats.mismatches[:5]
    assert stats.frames >= frames
    await still_serving()
    # The cluster still works, and nothing the fuzzer sent changed its state.
    new_leader = await cluster.wait_leader()
    code, body = await cluster.put(new_leader, "after-fuzz", b"ok")
    assert code == 200, body
    for node in nodes:
        await cluster.wait_caught_up(node, new_leader)
        kv = await _kv(cluster, node)
        assert kv == {**before, "after-fuzz": "ok"}, f"{node.name}: state changed"
        st = await cluster.status(node)
        assert st is not None
        assert sorted(m["id"] for m in st["members"]) == sorted(n.id for n in nodes)

    async def counted() -> bool:
        async with cluster.session.get(leader.url + "/metrics") as r:
            text = await r.text()
        total = sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("raftkv_peer_frames_rejected_total{")
        )
        return total >= stats.closed_as_predicted

    await until(counted, 10, "every rejected frame counted")
    return stats


async def test_fuzzed_peer_frames_never_hurt_a_live_node(cluster: Cluster, engine: str) -> None:
    seed = int(os.environ.get("RAFTKV_FUZZ_SEED", "1"))
    await run_against_cluster(cluster, FRAMES, seed=seed, engine=engine)
