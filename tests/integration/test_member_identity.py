"""Member incarnations: a removed member whose data directory is wiped comes back under a
fresh id; its old id is refused forever (docs/contracts.md "Node identity")."""

from __future__ import annotations

import shutil

import pytest

from raftkv.runtime.identity import load_identity, member_id
from tests.integration.harness import Cluster, until

pytestmark = pytest.mark.slow


async def test_wiped_member_rejoins_with_a_fresh_id(three_nodes: Cluster) -> None:
    cluster = three_nodes
    leader = await cluster.wait_leader()
    for i in range(10):
        assert (await cluster.put(leader, f"before{i}", b"old"))[0] == 200

    victim = next(n for n in cluster.initial if n is not leader)
    old_id = victim.id
    assert old_id == member_id(victim.name)  # founders keep the name-derived id
    code, body = await cluster.request("DELETE", leader, f"/v1/members/{old_id}")
    assert code == 200, body
    cluster.kill(victim)
    shutil.rmtree(victim.data_dir)  # the volume is lost

    cluster.start(victim, state="existing")
    status = await until(lambda: cluster.status(victim), 15, "the wiped node to serve HTTP")
    new_id = status["id"]
    assert new_id != old_id and status["role"] == "none" and status["leader"] is None
    assert load_identity(victim.data_dir) == (victim.name, new_id)

    # The old incarnation's id never comes back, neither named nor by the legacy default.
    for body in ({"id": old_id}, {}):
        code, answer = await cluster.request(
            "POST",
            leader,
            "/v1/members",
            {"name": victim.name, "peer_url": victim.peer_url, "client_url": victim.url, **body},
        )
        assert (code, answer["error"]) == (409, "member_id_removed"), answer

    code, answer = await cluster.request(
        "POST",
        leader,
        "/v1/members",
        {"name": victim.name, "id": new_id, "peer_url": victim.peer_url, "client_url": victim.url},
    )
    assert code == 200 and answer["id"] == new_id and answer["role"] == "learner", answer
    # One name, one incarnation: another id under the same name is refused.
    code, answer = await cluster.request(
        "POST",
        leader,
        "/v1/members",
        {"name": victim.name, "id": new_id + 1, "peer_url": victim.peer_url},
    )
    assert (code, answer["error"]) == (409, "member_name_in_use"), answer

    await cluster.wait_caught_up(victim, leader)

    async def promoted() -> bool:
        code, answer = await cluster.request("POST", leader, f"/v1/members/{new_id}/promote")
        assert code in (200, 409), answer
        return code == 200

    await until(promoted, 20, "the new incarnation to be promoted")
    assert (await cluster.put(leader, "after", b"new"))[0] == 200

    # A restart keeps the persisted incarnation id.
    assert cluster.terminate(victim) == 0
    cluster.start(victim, state="existing")
    await until(lambda: cluster.status(victim), 15, "the restarted node to serve HTTP")
    assert victim.id == new_id

    # Every member agrees on membership and data.
    await cluster.wait_caught_up(victim, leader)
    for node in cluster.initial:
        code, answer = await cluster.request("GET", node, "/v1/members")
        assert code == 200
        ids = {m["name"]: m["id"] for m in answer["members"]}
        assert ids[victim.name] == new_id and old_id not in ids.values(), ids
        assert sorted(m["role"] for m in answer["members"]) == ["voter"] * 3
        await cluster.wait_caught_up(node, leader)
        for key, value in (("before9", b"old"), ("after", b"new")):
            got = await cluster.get(node, key, consistency="serializable")
            assert got == (200, value), (node.name, key, got)
