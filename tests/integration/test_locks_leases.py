"""Locks and leases across real processes: fencing tokens strictly increase
from holder to holder; lease expiry releases locks and deletes keys."""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.harness import Cluster, Node, until

pytestmark = [pytest.mark.slow, pytest.mark.both_engines]


async def _grant(cluster: Cluster, node: Node, ttl: int) -> int:
    code, body = await cluster.request("POST", node, "/v1/leases", {"ttl": ttl})
    assert code == 200, body
    return int(body["id"])


async def test_fencing_tokens_strictly_increase(three_nodes: Cluster) -> None:
    cluster = three_nodes
    leader = await cluster.wait_leader()
    follower = next(n for n in cluster.nodes.values() if n is not leader)
    a, b, c = [await _grant(cluster, follower, 60) for _ in range(3)]

    code, first = await cluster.request("POST", follower, "/v1/locks/job", {"lease": a})
    assert code == 200 and first["acquired"], first
    code, body = await cluster.request("POST", follower, "/v1/locks/job", {"lease": b}, wait="0")
    assert (code, body["error"]) == (409, "lock_held")
    # Re-acquiring with the holder's lease gives the same token.
    code, again = await cluster.request("POST", leader, "/v1/locks/job", {"lease": a})
    assert code == 200 and again["token"] == first["token"]

    waiting = asyncio.create_task(
        cluster.request("POST", follower, "/v1/locks/job", {"lease": b}, timeout="20")
    )

    async def queued() -> bool:
        code, info = await cluster.request("GET", leader, "/v1/locks/job")
        return code == 200 and info["waiters"] == [b]

    await until(queued, 10, "lease b to queue for the lock")
    code, released = await cluster.request("DELETE", follower, "/v1/locks/job", lease=str(a))
    assert code == 200 and released["released"] is True
    code, second = await waiting
    assert code == 200, second
    assert second["token"] > first["token"]

    # The holder's lease is revoked: the lock goes to the next lease with a larger token.
    code, _ = await cluster.request("DELETE", leader, f"/v1/leases/{b}")
    assert code == 200
    code, third = await cluster.request("POST", leader, "/v1/locks/job", {"lease": c})
    assert code == 200 and third["token"] > second["token"]
    code, body = await cluster.request("DELETE", leader, "/v1/locks/job", lease=str(a))
    assert (code, body["error"]) == (409, "lock_not_held")


async def test_lease_expiry_releases_lock_and_deletes_keys(three_nodes: Cluster) -> None:
    cluster = three_nodes
    leader = await cluster.wait_leader()
    short = await _grant(cluster, leader, 1)
    code, held = await cluster.request("POST", leader, "/v1/locks/expiring", {"lease": short})
    assert code == 200
    code, _ = await cluster.put(leader, "ephemeral", b"x", lease=str(short))
    assert code == 200
    # A keep-alive works while it lives.
    code, body = await cluster.request("POST", leader, f"/v1/leases/{short}/keepalive")
    assert code == 200 and body["ttl"] == 1

    async def expired() -> bool:
        code, _ = await cluster.request("GET", leader, "/v1/locks/expiring")
        return code == 404

    await until(expired, 15, "the lease to expire and free the lock")
    assert (await cluster.get(leader, "ephemeral"))[0] == 404
    code, body = await cluster.request("POST", leader, f"/v1/leases/{short}/keepalive")
    assert code == 404 and body["error"] == "lease_not_found"
    other = await _grant(cluster, leader, 60)
    code, later = await cluster.request("POST", leader, "/v1/locks/expiring", {"lease": other})
    assert code == 200 and later["token"] > held["token"]
    # Every member agrees (the expiry went through the log).
    for node in cluster.nodes.values():
        await cluster.wait_caught_up(node, leader)
        assert (await cluster.get(node, "ephemeral", consistency="serializable"))[0] == 404
