"""A follower learns the leader's client URL only from the replicated membership (a
new leader writes it as an entry; never from the peer handshake), yet forwards a
write it gets the moment it knows the leader: it waits that one commit instead of
answering 503."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from raftkv.runtime.config import InitialMember, NodeConfig
from raftkv.runtime.node import RaftNode
from raftkv.runtime.server import Server
from raftkv.storage import CheckpointStore, MemoryRaftStore, MemorySnapshotStore
from raftkv.tools.ports import free_port


async def test_a_write_to_a_follower_right_after_the_first_election(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Widen the window between "a follower knows the leader" and "the leader's URL is
    # in the replicated directory" (a few ms, usually) so the test always sees it.
    register = RaftNode._register_client_url

    def later(node: RaftNode) -> None:
        def now() -> None:
            register(node)
            node._wake()

        asyncio.get_running_loop().call_later(0.25, now)

    monkeypatch.setattr(RaftNode, "_register_client_url", later)
    ports = [(free_port(), free_port()) for _ in range(3)]
    initial = [InitialMember(f"u{i}", f"127.0.0.1:{p}") for i, (_, p) in enumerate(ports)]
    servers = [
        Server(
            NodeConfig(
                f"u{i}",
                tmp_path / f"u{i}",
                listen_host="127.0.0.1",
                client_port=client,
                peer_port=peer,
                advertise_client_url=f"http://127.0.0.1:{client}",
                advertise_peer_url=f"127.0.0.1:{peer}",
                initial_cluster=initial,
                tick_ms=20,
                peer_insecure=True,
                client_insecure=True,
            ),
            raft_store=MemoryRaftStore(),
            snapshot_store=MemorySnapshotStore(),
            checkpoint_store=CheckpointStore(tmp_path / f"ck{i}"),
        )
        for i, (client, peer) in enumerate(ports)
    ]
    try:
        for s in servers:
            await s.start()
        deadline = time.monotonic() + 10
        follower = None
        while follower is None:  # the first moment a follower knows a leader
            assert time.monotonic() < deadline, "no leader"
            follower = next((s for s in servers if s.node.core.leader not in (0, s.node.id)), None)
            await asyncio.sleep(0.001)
        # Nothing told it the leader's client URL on the wire.
        assert follower.node.leader_client_url() is None
        leader_id = follower.node.core.leader
        async with aiohttp.ClientSession() as http:
            url = follower.cfg.advertise_client_url + "/v1/kv/first"
            async with http.put(url, data=b"write") as r:
                assert r.status == 200, await r.text()
        leader = next(s for s in servers if s.node.id == leader_id)
        assert follower.node.member_info(leader_id)["client_url"] == leader.cfg.advertise_client_url
    finally:
        for s in servers:
            await s.shutdown(transfer_timeout=1.0)
