"""A node of the other consensus engine is refused by the peer plane, by name.

A cluster runs one engine (docs/consensus.md). Before the engine was in the peer
handshake, a joiner of the other engine was admitted: it received frames it could not
use, refused them one by one, and never caught up, with no clear error anywhere. Now
the handshake carries the engine: the joiner refuses the leader's HELLO
(`wrong_consensus`), adopts no cluster id, and says why in `/v1/status` and its log;
the leader counts the refusal and shows whom it concerns; the cluster keeps serving.

`raftkv members add --client-url` reads the joiner's engine first and refuses a joiner
of the other engine before any membership change is proposed, with or without `--id`.
"""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import pytest

from tests.integration.clitools import raftkv
from tests.integration.harness import Cluster, Node, until

pytestmark = [pytest.mark.slow, pytest.mark.both_engines]

OTHER = {"raft": "multipaxos", "multipaxos": "raft"}


async def _rejected(cluster: Cluster, node: Node) -> dict[str, float]:
    """`raftkv_peer_frames_rejected_total` of `node`, by reason."""
    async with cluster.session.get(
        node.url + "/metrics", timeout=aiohttp.ClientTimeout(total=5)
    ) as r:
        text = await r.text()
    found = re.findall(r'^raftkv_peer_frames_rejected_total\{reason="(\w+)"\} (\S+)$', text, re.M)
    return {reason: float(value) for reason, value in found}


async def test_a_joiner_of_the_other_engine_is_refused_by_name(
    three_nodes: Cluster, engine: str
) -> None:
    cluster = three_nodes
    other = OTHER[engine]
    leader = await cluster.wait_leader()
    before = await cluster.status(leader)
    assert before is not None and before["consensus"] == engine
    assert before["engine_mismatch"] is None

    joiner = cluster.add_node("n4", ["--consensus", other])
    cluster.start(joiner, state="existing")
    status = await until(lambda: cluster.status(joiner), 15, "n4 to serve HTTP")
    assert status["consensus"] == other and status["role"] == "none"
    code, body = await cluster.request(
        "POST",
        leader,
        "/v1/members",
        {"name": "n4", "id": status["id"], "peer_url": joiner.peer_url, "client_url": joiner.url},
    )
    assert code == 200, body  # the leader cannot tell yet: it adds the learner

    # Every member dials the learner; the joiner refuses their HELLOs and says why,
    # naming the members' engine and its own.
    async def joiner_says_why() -> dict[str, Any] | None:
        s = await cluster.status(joiner)
        return s["engine_mismatch"] if s else None

    seen = await until(joiner_says_why, 20, "n4 to report the engine mismatch")
    founders = {n.id for n in cluster.initial}
    assert seen["engine"] == engine and seen["member"] in founders, seen
    assert f"runs {engine}; this node runs {other}" in seen["message"], seen
    assert "cannot join" in seen["message"] and f"--consensus {engine}" in seen["message"]
    log = cluster.log_tail(joiner, 200)
    assert "wrong_consensus" in log and f"runs {engine}; this node runs {other}" in log, log

    # The leader counts its HELLOs refused by that member, and shows whom it concerns.
    async def leader_counts() -> dict[str, Any] | None:
        if (await _rejected(cluster, leader)).get("wrong_consensus", 0) < 1:
            return None
        s = await cluster.status(leader)
        return s["engine_mismatch"] if s else None

    at_leader = await until(leader_counts, 20, "the leader to count the refusal")
    assert at_leader["member"] == joiner.id and f"this node's {engine}" in at_leader["message"]

    # The joiner took nothing from the cluster: no cluster id, no log, not a frame it
    # could not use (before the fix: every frame refused as `unexpected`).
    status = await cluster.status(joiner)
    assert status is not None
    assert status["cluster_id"] is None and status["commit_index"] == 0, status
    assert status["members"] == [] and status["role"] == "none", status
    refusals = await _rejected(cluster, joiner)
    assert refusals["wrong_consensus"] >= 1 and refusals["unexpected"] == 0, refusals
    assert joiner.running(), cluster.log_tail(joiner)

    # The cluster keeps serving writes, with the learner that will never catch up.
    for i in range(10):
        code, body = await cluster.put(leader, f"after/{i}", b"v")
        assert code == 200, body
    for node in cluster.initial:
        await cluster.wait_caught_up(node, leader)


async def _members(cluster: Cluster, leader: Node) -> set[tuple[int, str, str]]:
    """The configuration as (id, name, role): not the match indexes, which move."""
    code, body = await cluster.request("GET", leader, "/v1/members")
    assert code == 200, body
    return {(m["id"], m["name"], m["role"]) for m in body["members"]}


async def _start_and_add(cluster: Cluster, leader: Node, name: str, engine: str) -> Any:
    """Start node `name` on `engine` and `raftkv members add` it through the leader; the
    node and the CLI's result."""
    node = cluster.add_node(name, ["--consensus", engine])
    cluster.start(node, state="existing")
    await until(lambda: cluster.status(node), 15, f"{name} to serve HTTP")
    result = await raftkv(
        "members", "add", name, node.peer_url, "--client-url", node.url,
        "--endpoints", leader.url,
    )  # fmt: skip
    return node, result


async def test_members_add_refuses_a_joiner_of_the_other_engine(
    three_nodes: Cluster, engine: str
) -> None:
    cluster = three_nodes
    other = OTHER[engine]
    leader = await cluster.wait_leader()
    before = await _members(cluster, leader)

    wrong, refused = await _start_and_add(cluster, leader, "n4", other)
    assert refused.code == 1, refused
    assert refused.err.startswith("raftkv members add: wrong_consensus: "), refused
    assert f"n4 runs {other} but the cluster runs {engine}" in refused.err, refused
    assert f"--consensus {engine}" in refused.err and "empty data directory" in refused.err
    # Nothing was proposed: the membership is as it was, n4 is no learner.
    assert await _members(cluster, leader) == before
    # Naming the joiner's id does not skip the engine check; a wrong id is refused.
    for member_id, expected in (
        (wrong.id, "raftkv members add: wrong_consensus: "),
        (wrong.id + 1, f"has id {wrong.id}, not {wrong.id + 1}; nothing was changed"),
    ):
        named = await raftkv(
            "members", "add", "n4", wrong.peer_url, "--client-url", wrong.url,
            "--id", str(member_id), "--endpoints", leader.url,
        )  # fmt: skip
        assert named.code != 0 and expected in named.err, named
    assert await _members(cluster, leader) == before
    cluster.kill(wrong)

    # A joiner of the cluster's engine is added as before.
    right, added = await _start_and_add(cluster, leader, "n5", engine)
    assert added.code == 0, added
    assert await _members(cluster, leader) == before | {(right.id, "n5", "learner")}
    await cluster.wait_caught_up(right, leader)
