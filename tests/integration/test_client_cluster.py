"""The Python client against a real cluster: locks hand over in FIFO order with
increasing fencing tokens, and a watch survives the loss of the member serving
it without losing or repeating an event."""

from __future__ import annotations

import asyncio

import pytest

from raftkv.client import AsyncClient, Client, LockHeldError, RetryPolicy
from tests.integration.harness import Cluster, until

pytestmark = pytest.mark.slow


async def test_lock_handover_and_fencing_tokens(three_nodes: Cluster) -> None:
    urls = [n.url for n in three_nodes.nodes.values()]
    async with AsyncClient(urls) as client:
        async with client.hold_lock("job", ttl=5) as first:
            waiter_lease = await client.grant_lease(30)
            waiting = asyncio.ensure_future(client.lock("job", waiter_lease.id, timeout=20))

            async def queued() -> bool:
                info = await client.lock_info("job")
                return info is not None and info.waiters == [waiter_lease.id]

            await until(queued, 10, "the second lease queued for the lock")
            with pytest.raises(LockHeldError):
                other = await client.grant_lease(30)
                await client.lock("job", other.id, wait=False)
            assert not waiting.done()
        second = await asyncio.wait_for(waiting, 20)  # hold_lock released on exit
        assert second.token > first.token
        info = await client.lock_info("job")
        assert info is not None and info.holder == waiter_lease.id
        await client.revoke_lease(waiter_lease.id)
        assert await client.lock_info("job") is None

    def blocking() -> tuple[int, int]:
        with Client(urls, strategy="round-robin") as c, c.hold_lock("job", ttl=5) as lock:
            # Linearizable: a serializable read may come from a follower that has not
            # applied the acquisition yet, and its revision would trail the token.
            kv = c.get_prefix("", count_only=True)
            return lock.token, kv.revision

    token, revision = await asyncio.to_thread(blocking)
    assert token > second.token and revision >= token


async def test_watch_resumes_on_another_member_when_its_node_dies(three_nodes: Cluster) -> None:
    leader = await three_nodes.wait_leader()
    followers = [n for n in three_nodes.nodes.values() if n is not leader]
    retry = RetryPolicy(deadline=20, base_delay=0.05, max_delay=0.5)
    got: list[bytes] = []
    async with (
        AsyncClient([leader.url], retry=retry) as writer,
        AsyncClient([f.url for f in followers], strategy="round-robin", retry=retry) as reader,
    ):

        async def watch() -> None:
            async for ev in reader.watch("wr/", prefix=True):
                assert ev.kv is not None
                got.append(ev.kv.key)
                if ev.kv.key == b"wr/last":
                    return

        watcher = asyncio.ensure_future(watch())
        await writer.put("wr/0", "x")  # may race the watch start: resume covers the rest
        await until(lambda: _nonempty(got, watcher), 10, "the first event")
        for i in range(1, 20):
            await writer.put(f"wr/{i}", "x")
        await until(lambda: _at_least(got, 19), 10, "the events before the kill")
        # The watch is served by the first follower in turn: kill it mid-stream.
        three_nodes.kill(followers[0])
        for i in range(20, 40):
            await writer.put(f"wr/{i}", "x")
        await writer.put("wr/last", "x")
        await asyncio.wait_for(watcher, 30)
    expected = [f"wr/{i}".encode() for i in range(40)] + [b"wr/last"]
    # The very first put may precede the watch; everything after it arrives once, in order.
    assert got == expected[len(expected) - len(got) :] and len(got) >= len(expected) - 1


async def _nonempty(got: list[bytes], watcher: asyncio.Future[None]) -> bool:
    if watcher.done():
        watcher.result()
    return bool(got)


async def _at_least(got: list[bytes], n: int) -> bool:
    return len(got) >= n
