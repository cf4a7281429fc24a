"""Membership through the HTTP API: add a learner, promote it, remove a member,
transfer leadership; and the status long-poll that notices the change."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from raftkv.runtime.identity import member_id
from tests.integration.harness import Cluster, Node, running_cluster, until

pytestmark = [pytest.mark.slow, pytest.mark.both_engines]


async def test_learner_promote_remove_and_transfer(three_nodes: Cluster) -> None:
    cluster = three_nodes
    leader = await cluster.wait_leader()
    for i in range(20):
        assert (await cluster.put(leader, f"m{i}", b"v"))[0] == 200

    # A new node starts empty and waits to be added.
    newcomer = cluster.add_node("n4")
    cluster.start(newcomer, state="existing")
    status = await until(lambda: cluster.status(newcomer), 15, "n4 to serve HTTP")
    assert status["leader"] is None and status["ready"] is False
    assert status["role"] == "none" and status["id"] == newcomer.id
    assert status["id"] != member_id("n4")  # a joiner draws a fresh incarnation id

    follower = next(n for n in cluster.initial if n is not leader)
    code, body = await cluster.request(
        "POST",
        follower,
        "/v1/members",
        {
            "name": "n4",
            "id": status["id"],
            "peer_url": newcomer.peer_url,
            "client_url": newcomer.url,
        },
    )
    assert code == 200, body  # forwarded to the leader
    assert body["id"] == newcomer.id and body["role"] == "learner"

    await cluster.wait_caught_up(newcomer, leader)
    assert await cluster.get(newcomer, "m19", consistency="serializable") == (200, b"v")
    learner_status = await cluster.status(newcomer)
    assert learner_status is not None and learner_status["role"] == "learner"

    async def promoted() -> bool:
        code, body = await cluster.request("POST", leader, f"/v1/members/{newcomer.id}/promote")
        assert code in (200, 409), body
        return code == 200

    await until(promoted, 20, "the learner to be promoted")
    code, body = await cluster.request("GET", leader, "/v1/members")
    roles = {m["name"]: m["role"] for m in body["members"]}
    assert roles == {"n1": "voter", "n2": "voter", "n3": "voter", "n4": "voter"}

    # Remove an original follower; the cluster keeps working with the rest.
    victim = next(n for n in cluster.initial if n is not leader)
    code, body = await cluster.request("DELETE", leader, f"/v1/members/{victim.id}")
    assert code == 200, body
    code, body = await cluster.request("GET", leader, "/v1/members")
    assert victim.id not in {m["id"] for m in body["members"]}
    cluster.kill(victim)

    # Watch for the leadership change with the long-poll while transferring to n4.
    before = await cluster.status(leader)
    assert before is not None
    poll = asyncio.create_task(
        cluster.request(
            "GET",
            newcomer,
            "/v1/status",
            wait="20",
            leader=str(before["leader"]["id"]),
            term=str(before["term"]),
        )
    )
    code, body = await cluster.request("POST", leader, "/v1/leader/transfer", {"to": newcomer.id})
    assert (code, body) == (200, {"leader": newcomer.id})
    code, polled = await poll
    assert code == 200 and polled["term"] > before["term"]
    new_leader = await cluster.wait_leader([n for n in cluster.nodes.values() if n.running()])
    assert new_leader is newcomer
    assert (await cluster.put(leader, "after-transfer", b"ok"))[0] == 200  # forwarded
    assert await cluster.get(newcomer, "after-transfer") == (200, b"ok")


async def test_membership_errors(three_nodes: Cluster) -> None:
    cluster = three_nodes
    leader = await cluster.wait_leader()
    code, body = await cluster.request("DELETE", leader, "/v1/members/12345")
    assert code == 404 and body["error"] == "member_not_found"
    code, body = await cluster.request("POST", leader, "/v1/members/12345/promote")
    assert code == 404
    code, body = await cluster.request("POST", leader, "/v1/members", {"name": "x"})
    assert code == 400 and body["error"] == "bad_request"
    code, body = await cluster.request("POST", leader, "/v1/leader/transfer", {"to": 99})
    assert code == 400 and body["error"] == "not_a_voter"
    # An existing member is not added twice.
    code, body = await cluster.request(
        "POST", leader, "/v1/members", {"name": "n2", "peer_url": cluster.nodes["n2"].peer_url}
    )
    assert code == 200 and body["existing"] is True


async def _add_voter(cluster: Cluster, via: Node, name: str) -> Node:
    """Start a joiner, add it as a learner through `via`, promote it."""
    node = cluster.add_node(name)
    cluster.start(node, state="existing")
    status = await until(lambda: cluster.status(node), 15, f"{name} to serve HTTP")
    code, body = await cluster.request(
        "POST",
        via,
        "/v1/members",
        {"name": name, "id": status["id"], "peer_url": node.peer_url, "client_url": node.url},
    )
    assert code == 200, body

    async def promoted() -> bool:
        code, body = await cluster.request("POST", via, f"/v1/members/{node.id}/promote")
        assert code in (200, 409), body
        return code == 200

    await until(promoted, 20, f"{name} to be promoted")
    return node


@pytest.mark.parametrize("peer_tls", [True, False], ids=["peer-tls", "peer-insecure"])
async def test_a_member_behind_a_membership_change_follows_a_leader_it_does_not_know(
    tmp_path: Path, peer_tls: bool
) -> None:
    """Found by the chaos runs (seed 58724): n2 was down while n4 was added, then n4
    became leader. Back up, n2's log did not name n4 yet, so n2 refused n4's peer
    connection as a non-member, never heard from any leader, and stayed leaderless
    for good (n1 and n3, in their lease on n4, ignore its pre-votes). A member that
    has no leader must admit a member it does not know yet (authenticated as usual)
    and learn of it from the log, as Raft expects."""
    async with running_cluster(tmp_path, peer_tls=peer_tls) as cluster:
        leader = await cluster.wait_leader()
        behind = next(n for n in cluster.initial if n is not leader)
        cluster.kill(behind)
        n4 = await _add_voter(cluster, leader, "n4")
        for i in range(10):
            assert (await cluster.put(leader, f"k{i}", b"v"))[0] == 200
        code, body = await cluster.request("POST", leader, "/v1/leader/transfer", {"to": n4.id})
        assert (code, body) == (200, {"leader": n4.id}), body

        cluster.start(behind)
        assert await cluster.wait_leader(timeout=30) is n4, cluster.log_tail(behind)
        await cluster.wait_caught_up(behind, n4)
        status = await cluster.status(behind)
        assert status is not None
        assert sorted(m["name"] for m in status["members"]) == ["n1", "n2", "n3", "n4"]
        assert await cluster.get(behind, "k9", consistency="serializable") == (200, b"v")
