"""`raftkv recover` with real `raftkv serve` processes (issue 13, docs/recovery.md):
majority loss -> recover the survivor -> writable with every acknowledged write; old
members refused by the new cluster id; fresh members re-added as learners and promoted;
recover refuses while a quorum answers and on a running member's directory. The
majority-loss scenario runs on both engines (`--consensus raft|multipaxos`)."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from raftkv.runtime.identity import load_cluster_id
from tests.integration.clitools import raftkv
from tests.integration.harness import Cluster, Node, running_cluster, until

pytestmark = pytest.mark.slow


@pytest.fixture
async def tls_cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    session = aiohttp.ClientSession()
    c = Cluster(tmp_path, session, peer_tls=True)
    try:
        yield c
    finally:
        c.close()
        await session.close()


async def old_member_refusals(cluster: Cluster, node: Node) -> float:
    """Handshakes `node` refused as from a removed member or another cluster (the gate
    checks membership first: an old member is a tombstone AND of another cluster)."""
    async with cluster.session.get(
        node.url + "/metrics", timeout=aiohttp.ClientTimeout(total=5)
    ) as r:
        text = await r.text()
    found = re.findall(
        r'^raftkv_peer_frames_rejected_total\{reason="(?:removed|wrong_cluster)"\} (\S+)$',
        text,
        re.M,
    )
    return sum(float(v) for v in found)


async def readd(cluster: Cluster, leader: Node, node: Node) -> None:
    """The normal way back: an empty data directory, added as a learner, then promoted."""
    shutil.rmtree(node.data_dir, ignore_errors=True)
    cluster.start(node, state="existing")
    await until(lambda: cluster.status(node), 20, f"{node.name} (empty) to serve HTTP")
    added = await raftkv(
        "members",
        "add",
        node.name,
        node.peer_url,
        "--client-url",
        node.url,
        "--endpoints",
        leader.url,
    )
    assert added.code == 0, added.err
    await cluster.wait_caught_up(node, leader)

    async def promoted() -> bool:
        result = await raftkv("members", "promote", node.name, "--endpoints", leader.url)
        return result.code == 0

    await until(promoted, 30, f"{node.name} to be promoted", interval=0.3)


@pytest.mark.parametrize("engine", ["raft", "multipaxos"])
async def test_majority_loss_then_recover(tls_cluster: Cluster, engine: str) -> None:
    cluster = tls_cluster
    # Small snapshots: the survivor starts from a snapshot plus a log tail.
    cluster.create(3, extra_args=["--snapshot-entries", "10", "--consensus", engine])
    cluster.start_all()
    survivor = await cluster.wait_leader()
    kept_aside, lost = [n for n in cluster.initial if n is not survivor]
    acknowledged = {}
    for i in range(40):
        code, _ = await cluster.put(survivor, f"k{i}", f"v{i}".encode())
        assert code == 200
        acknowledged[f"k{i}"] = f"v{i}".encode()
    old_status = await cluster.status(survivor)
    assert old_status is not None
    old_cluster = old_status["cluster_id"]

    # Majority loss: both followers die, one volume is gone, the other is "unreachable"
    # (its directory kept aside to come back later); then the survivor stops too.
    cluster.kill(kept_aside)
    cluster.kill(lost)
    cluster.kill(survivor)
    assert list((survivor.data_dir / "snapshots").glob("*.data")), "no snapshot was taken"
    aside = cluster.base_dir / "aside"
    shutil.move(kept_aside.data_dir, aside)
    shutil.rmtree(lost.data_dir)

    endpoints = f"{kept_aside.url},{lost.url}"
    plan = await raftkv(
        "recover",
        "--data-dir",
        str(survivor.data_dir),
        "--endpoints",
        endpoints,
        "--probe-timeout",
        "1",
    )
    assert plan.code == 2 and "add --yes" in plan.err, plan
    assert plan.out.startswith(f"kept: {survivor.name}") and plan.out.count("\n") == 1
    # /v1/status gave the same (last term, last index) as the data directory: what the
    # operator compares to pick the survivor (docs/recovery.md).
    position = f"log up to index {old_status['last_index']} (term {old_status['last_term']})"
    assert position in plan.out, (position, plan.out)
    assert load_cluster_id(survivor.data_dir) == old_cluster  # the plan changed nothing

    done = await raftkv(
        "recover",
        "--data-dir",
        str(survivor.data_dir),
        "--yes",
        "--endpoints",
        endpoints,
        "--probe-timeout",
        "1",
    )
    assert done.code == 0, done
    assert "recovered:" in done.out and "unreachable" in done.err
    new_cluster = load_cluster_id(survivor.data_dir)
    assert new_cluster not in (None, old_cluster)
    assert list(survivor.data_dir.glob("recover-backup-*"))

    started = time.monotonic()
    cluster.start(survivor)
    assert await cluster.wait_leader([survivor]) is survivor
    status = await cluster.status(survivor)
    assert status is not None and status["cluster_id"] == new_cluster
    assert [m["name"] for m in status["members"]] == [survivor.name]
    for key, value in acknowledged.items():  # every acknowledged write is there
        assert await cluster.get(survivor, key) == (200, value), key
    assert (await cluster.put(survivor, "after", b"recovered"))[0] == 200
    print(f"recovered member start -> writable: {time.monotonic() - started:.2f} s")

    # The old member comes back with its old data: refused (another cluster id), and the
    # recovered cluster does not notice beyond counting the refusals.
    term = status["term"]
    shutil.move(aside, kept_aside.data_dir)
    cluster.start(kept_aside)

    async def refused() -> bool:
        return await old_member_refusals(cluster, survivor) >= 1

    await until(refused, 20, "the recovered node to refuse the old member")
    old = await cluster.status(kept_aside)
    assert old is not None and old["cluster_id"] == old_cluster and old["leader"] is None
    status = await cluster.status(survivor)
    assert status is not None and status["role"] == "leader" and status["term"] == term
    assert [m["name"] for m in status["members"]] == [survivor.name]
    assert (await cluster.put(survivor, "still", b"writable"))[0] == 200
    cluster.kill(kept_aside)

    # Re-adding them the normal way: empty data directories, learners, then voters.
    for node in (kept_aside, lost):
        await readd(cluster, survivor, node)
    leader = await cluster.wait_leader()
    status = await cluster.status(leader)
    assert status is not None
    assert sorted(m["role"] for m in status["members"]) == ["voter"] * 3
    assert (await cluster.put(leader, "three", b"again"))[0] == 200
    for node in cluster.initial:
        await cluster.wait_caught_up(node, leader)
        assert await cluster.get(node, "k0", consistency="serializable") == (200, b"v0")
        node_status = await cluster.status(node)
        assert node_status is not None and node_status["cluster_id"] == new_cluster


@pytest.fixture
async def secure_three(tmp_path: Path) -> AsyncIterator[Cluster]:
    """TLS and tokens on the client port: /v1/status needs the `read` role."""
    async with running_cluster(tmp_path, secure=True) as cluster:
        yield cluster


async def test_recover_refuses_a_live_quorum_and_a_running_member(secure_three: Cluster) -> None:
    cluster = secure_three
    leader = await cluster.wait_leader()
    assert (await cluster.put(leader, "k", b"v"))[0] == 200
    follower = next(n for n in cluster.initial if n is not leader)

    running = await raftkv("recover", "--data-dir", str(follower.data_dir), "--yes")
    assert running.code == 2 and "is running" in running.err, running

    # The follower knows the leader's client URL once the leader's registration reached it.
    await cluster.wait_caught_up(follower, leader)
    assert cluster.terminate(follower) == 0
    before = {p: p.read_bytes() for p in follower.data_dir.rglob("*") if p.is_file()}
    # Without credentials the leader cannot be read (TLS with an unknown CA): refused too.
    blind = await raftkv("recover", "--data-dir", str(follower.data_dir), "--yes")
    assert blind.code == 2 and "could not be read" in blind.err, blind
    creds = cluster.credentials
    assert creds is not None
    # With the CA but no token: 401, refused the same way.
    no_token = await raftkv(
        "recover", "--data-dir", str(follower.data_dir), "--yes", "--cacert", str(creds.ca_file)
    )
    assert no_token.code == 2 and "HTTP 401" in no_token.err, no_token
    refused = await raftkv(
        "recover",
        "--data-dir",
        str(follower.data_dir),
        "--yes",
        "--cacert",
        str(creds.ca_file),
        "--token-file",
        str(creds.admin_token_file),
    )
    assert refused.code == 2 and "still has a leader" in refused.err, refused
    assert {p: p.read_bytes() for p in follower.data_dir.rglob("*") if p.is_file()} == before

    # Refused means untouched: the follower rejoins its cluster as before.
    cluster.start(follower)
    await cluster.wait_caught_up(follower, leader)
    assert await cluster.get(follower, "k", consistency="serializable") == (200, b"v")
