"""Three nodes in one process over real sockets, on the in-memory stores: the node
loop, the peer transport and the HTTP API together, with per-node metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import aiohttp

from raftkv.runtime.config import InitialMember, NodeConfig
from raftkv.runtime.server import Server
from raftkv.storage import CheckpointStore, MemoryRaftStore, MemorySnapshotStore
from raftkv.tools.ports import free_port

T = TypeVar("T")


async def _wait(predicate: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def test_three_nodes_in_one_process(tmp_path: Path) -> None:
    ports = [(free_port(), free_port()) for _ in range(3)]
    initial = [InitialMember(f"m{i}", f"127.0.0.1:{p}") for i, (_, p) in enumerate(ports)]
    servers: list[Server] = []
    for i, (client, peer) in enumerate(ports):
        cfg = NodeConfig(
            f"m{i}",
            tmp_path / f"m{i}",
            listen_host="127.0.0.1",
            client_port=client,
            peer_port=peer,
            advertise_client_url=f"http://127.0.0.1:{client}",
            advertise_peer_url=f"127.0.0.1:{peer}",
            initial_cluster=initial,
            tick_ms=20,
            client_insecure=True,
            peer_insecure=True,
        )
        servers.append(
            Server(
                cfg,
                raft_store=MemoryRaftStore(),
                snapshot_store=MemorySnapshotStore(),
                checkpoint_store=CheckpointStore(tmp_path / f"ck{i}"),
            )
        )
    try:
        for s in servers:
            await s.start()

        def agreed_leader() -> Server | None:
            ids = {s.node.core.leader for s in servers}
            return next((s for s in servers if ids == {s.node.id}), None)

        leader = await _wait(agreed_leader, 10, "a leader every node knows")
        follower = next(s for s in servers if s is not leader)
        async with aiohttp.ClientSession() as http:
            url = follower.cfg.advertise_client_url
            async with http.put(url + "/v1/kv/greeting", data=b"hello") as r:
                assert r.status == 200, await r.text()  # forwarded to the leader
            async with http.get(url + "/v1/kv/greeting") as r:  # linearizable on a follower
                assert (r.status, await r.read()) == (200, b"hello")
            async with http.get(leader.cfg.advertise_client_url + "/metrics") as r:
                text = await r.text()
        assert "raftkv_is_leader 1.0" in text
        assert f'name="{leader.cfg.name}"' in text
        # The leader's per-member series carry each member's id and name.
        for s in servers:
            for metric in ("raftkv_member_healthy", "raftkv_member_lag_entries"):
                series = f'{metric}{{member="{s.node.id}",member_name="{s.cfg.name}"}}'
                assert series in text, (series, text)
        # Each node has its own registry: only the leader says it leads.
        leaders = [s.metrics.is_leader._value.get() for s in servers]
        assert sorted(leaders) == [0.0, 0.0, 1.0]
        await _wait(
            lambda: all(s.node.fsm.get(b"greeting") for s in servers),
            5,
            "every member to apply the write",
        )
    finally:
        for s in servers:
            await s.shutdown(transfer_timeout=1.0)
