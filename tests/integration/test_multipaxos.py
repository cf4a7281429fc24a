"""The Multi-Paxos engine in real `raftkv serve --consensus multipaxos` processes:
linearizable reads on every member, membership changes through the API (learner,
promote, remove), and the refusal of a data directory made by the other engine.
(Failover under load, snapshot catch-up and a restart from disk run on both engines
in test_failover.py.)"""

from __future__ import annotations

import json
import subprocess

import pytest

from raftkv.runtime.identity import CONSENSUS_FILE
from tests.integration.harness import Cluster, until

pytestmark = pytest.mark.slow

PAXOS = ["--consensus", "multipaxos"]


@pytest.fixture
async def paxos_three(cluster: Cluster) -> Cluster:
    cluster.create(3, PAXOS)
    cluster.start_all()
    await cluster.wait_leader()
    return cluster


async def test_every_member_reads_every_acknowledged_write(paxos_three: Cluster) -> None:
    cluster = paxos_three
    nodes = list(cluster.nodes.values())
    for node in nodes:
        assert json.loads((node.data_dir / CONSENSUS_FILE).read_text()) == {"engine": "multipaxos"}
    for i in range(30):
        writer = nodes[i % 3]  # followers forward to the leader
        status, body = await cluster.put(writer, f"p{i}", f"v{i}".encode())
        assert status == 200, body
        # A linearizable read on any member right after the ack sees the write.
        reader = nodes[(i + 1) % 3]
        assert await cluster.get(reader, f"p{i}") == (200, f"v{i}".encode())
    leader = await cluster.wait_leader()
    status = await cluster.status(leader)
    assert status is not None and status["role"] == "leader" and status["term"] >= 1


async def test_learner_promote_remove(paxos_three: Cluster) -> None:
    cluster = paxos_three
    leader = await cluster.wait_leader()
    for i in range(20):
        assert (await cluster.put(leader, f"m{i}", b"v"))[0] == 200
    newcomer = cluster.add_node("n4", PAXOS)
    cluster.start(newcomer, state="existing")
    joined = await until(lambda: cluster.status(newcomer), 15, "n4 to serve HTTP")
    assert joined["role"] == "none"
    code, body = await cluster.request(
        "POST",
        leader,
        "/v1/members",
        {
            "name": "n4",
            "id": joined["id"],
            "peer_url": newcomer.peer_url,
            "client_url": newcomer.url,
        },
    )
    assert code == 200 and body["role"] == "learner", body
    await cluster.wait_caught_up(newcomer, leader)
    assert await cluster.get(newcomer, "m19", consistency="serializable") == (200, b"v")

    async def promoted() -> bool:
        code, body = await cluster.request("POST", leader, f"/v1/members/{newcomer.id}/promote")
        assert code in (200, 409), body
        return code == 200

    await until(promoted, 20, "the learner to be promoted")
    victim = next(n for n in cluster.initial if n is not leader)
    code, body = await cluster.request("DELETE", leader, f"/v1/members/{victim.id}")
    assert code == 200, body
    cluster.kill(victim)
    code, body = await cluster.request("GET", leader, "/v1/members")
    assert {m["name"]: m["role"] for m in body["members"]} == {
        n.name: "voter" for n in cluster.nodes.values() if n is not victim
    }
    # The new voter is part of the quorum now: writes still commit and reach it.
    assert (await cluster.put(leader, "after", b"change"))[0] == 200
    assert await cluster.get(newcomer, "after") == (200, b"change")


async def test_a_directory_of_the_other_engine_is_refused(paxos_three: Cluster) -> None:
    cluster = paxos_three
    leader = await cluster.wait_leader()
    assert (await cluster.put(leader, "kept", b"yes"))[0] == 200
    node = next(n for n in cluster.nodes.values() if n is not leader)
    await cluster.wait_caught_up(node, leader)
    assert cluster.terminate(node) == 0
    raft_command = [a for a in cluster.command(node) if a not in PAXOS]
    assert "--consensus" not in raft_command  # the default engine: raft
    done = subprocess.run(raft_command, capture_output=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert b"holds the state of a multipaxos node" in done.stderr
    assert b"--consensus multipaxos" in done.stderr
    # Refused before anything was opened: it starts again with its own engine.
    cluster.start(node)
    await cluster.wait_leader()
    assert await cluster.get(node, "kept", consistency="serializable") == (200, b"yes")
