"""The Multi-Paxos engine in real `raftkv serve --consensus multipaxos` processes:
linearizable reads on every member, membership changes through the API (learner,
promote, remove), leadership transfer, the refusal of a data directory made by the
other engine, and hostile peer frames (each closes its connection and changes
nothing).
(Failover under load, snapshot catch-up and a restart from disk run on both engines
in test_failover.py.)"""

from __future__ import annotations

import asyncio
import json
import subprocess

import pytest

from raftkv.paxos import Message, MsgType, ballot
from raftkv.raft.types import Message as RaftMessage
from raftkv.raft.types import MsgType as RaftMsgType
from raftkv.runtime import codec, paxoscodec
from raftkv.runtime.identity import CONSENSUS_FILE
from tests.integration.harness import Cluster, Node, until

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


async def _kv(cluster: Cluster, node: Node) -> dict[str, str]:
    code, body = await cluster.request(
        "GET", node, "/v1/kv/", prefix="1", consistency="serializable"
    )
    assert code == 200, body
    return {kv["key"]: kv["value"] for kv in body["kvs"]}


async def _frame_closes_the_connection(
    node: Node, hello: bytes, frame: bytes, wait: float = 10.0
) -> bool:
    """Send HELLO then `frame` as a member would; True if the node then hangs up."""
    reader, writer = await asyncio.open_connection(node.host, node.peer_port)
    try:
        writer.write(hello)
        header = await asyncio.wait_for(reader.readexactly(4), 10)
        (length,) = codec.HEADER.unpack(header)
        answer = codec.unpack_payload(await reader.readexactly(length))
        assert answer[0] == codec.WELCOME, answer
        writer.write(frame)
        await writer.drain()
        try:
            while await asyncio.wait_for(reader.read(65536), wait):
                pass
        except TimeoutError:
            return False
        except (ConnectionError, OSError):
            pass
        return True
    finally:
        writer.close()


async def test_hostile_paxos_frames_close_the_connection_and_change_nothing(
    paxos_three: Cluster,
) -> None:
    cluster = paxos_three
    leader = await cluster.wait_leader()
    for i in range(10):
        assert (await cluster.put(leader, f"keep/{i}", b"v"))[0] == 200
    status = await cluster.status(leader)
    assert status is not None
    before = await _kv(cluster, leader)
    claim = next(n for n in cluster.nodes.values() if n is not leader)
    hello = codec.pack_hello(status["cluster_id"], claim.id, leader.id, claim.name, "multipaxos")
    accept = paxoscodec.encode_message(
        Message(MsgType.ACCEPT, leader.id, claim.id, ballot(10**6, claim.id), entries=[])
    )
    bad_frames = {
        # A Raft batch: the other engine's kind is refused, not misread.
        "raft batch": codec.pack_messages(
            0, [RaftMessage(RaftMsgType.HEARTBEAT, leader.id, claim.id, 1)]
        ),
        "ballot round 2**63": codec.pack_frame(
            [paxoscodec.PAXOS_MSGS, 0, [[*accept[:3], 2**63, *accept[4:]]]]
        ),
        "slots out of order": codec.pack_frame(
            [
                paxoscodec.PAXOS_MSGS,
                0,
                [
                    [
                        *accept[:9],
                        [10**6, claim.id, 90, 0, b"x", 10**6, claim.id, 80, 0, b"y"],
                        None,
                        None,
                    ]
                ],
            ]
        ),
        "not msgpack": codec.HEADER.pack(3) + b"\xc1\xc1\xc1",
    }
    # The check itself: a valid frame (a harmless pull) keeps the connection open.
    pull = paxoscodec.pack_messages(0, [Message(MsgType.CATCHUP, leader.id, claim.id, index=1)])
    assert not await _frame_closes_the_connection(leader, hello, pull, wait=2.0)
    for what, frame in bad_frames.items():
        assert await _frame_closes_the_connection(leader, hello, frame), what
    # Nothing changed: the same data, the same leader, and it still commits.
    assert await cluster.wait_leader() is leader
    assert await _kv(cluster, leader) == before
    assert (await cluster.put(leader, "after", b"fuzz"))[0] == 200
    async with cluster.session.get(leader.url + "/metrics") as r:
        metrics = await r.text()
    rejected = sum(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("raftkv_peer_frames_rejected_total{")
    )
    assert rejected >= len(bad_frames)


async def test_leadership_transfer_through_the_api(paxos_three: Cluster) -> None:
    cluster = paxos_three
    leader = await cluster.wait_leader()
    assert (await cluster.put(leader, "before", b"1"))[0] == 200
    target = next(n for n in cluster.nodes.values() if n is not leader)
    await cluster.wait_caught_up(target, leader)
    code, body = await cluster.request("POST", leader, "/v1/leader/transfer", {"to": target.id})
    assert code == 200 and body["leader"] == target.id, body
    assert await cluster.wait_leader() is target
    assert (await cluster.put(target, "after", b"2"))[0] == 200
    assert await cluster.get(leader, "before") == (200, b"1")
    # No target: the most caught-up other voter (what each acceptor last reported).
    code, body = await cluster.request("POST", target, "/v1/leader/transfer")
    assert code == 200 and body["leader"] not in (None, target.id), body
    assert (await cluster.wait_leader()).id == body["leader"]


async def test_a_checkpoint_restores_a_new_multipaxos_cluster(
    paxos_three: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    cluster = paxos_three
    leader = await cluster.wait_leader()
    for i in range(30):
        assert (await cluster.put(leader, f"c{i}", f"v{i}".encode()))[0] == 200
    code, manifest = await cluster.request("POST", leader, "/v1/checkpoints", {"id": "cp1"})
    assert code == 200, manifest
    # The manifest's term is the ballot's round: a JSON (and Kubernetes int64) number.
    assert 1 <= manifest["term"] < 2**53
    restored = Cluster(tmp_path_factory.mktemp("restored"), cluster.session)
    try:
        (node,) = restored.create(
            1, [*PAXOS, "--restore-from", str(leader.data_dir / "checkpoints" / "cp1")]
        )
        restored.start_all()
        await restored.wait_leader()
        for i in (0, 29):
            assert await restored.get(node, f"c{i}") == (200, f"v{i}".encode())
        assert (await restored.put(node, "new", b"write"))[0] == 200
        # And from its own disk again.
        assert restored.terminate(node) == 0
        restored.start(node)
        await restored.wait_leader()
        assert await restored.get(node, "new") == (200, b"write")
    finally:
        restored.close()
