"""One in-process node: a one-member cluster on the in-memory stores. It elects
itself at once, so tests of the HTTP API need no processes and take well under a
second each."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

from raftkv.runtime.config import InitialMember, NodeConfig
from raftkv.runtime.server import Server
from raftkv.storage import CheckpointStore, MemoryRaftStore, MemorySnapshotStore
from raftkv.tools.ports import free_port


@contextlib.asynccontextmanager
async def solo_node(
    directory: Path, *, fast_path: bool = True, name: str = "solo", **config: object
) -> AsyncIterator[Server]:
    client, peer = free_port(), free_port()
    config.setdefault("tick_ms", 20)
    config.setdefault("peer_insecure", True)
    tls = "client_cert_file" in config
    if not tls:
        config.setdefault("client_insecure", True)  # explicit: these tests speak plain HTTP
    scheme = "https" if tls else "http"
    cfg = NodeConfig(
        name,
        directory / name,
        listen_host="127.0.0.1",
        client_port=client,
        peer_port=peer,
        advertise_client_url=f"{scheme}://127.0.0.1:{client}",
        advertise_peer_url=f"127.0.0.1:{peer}",
        initial_cluster=[InitialMember(name, f"127.0.0.1:{peer}")],
        **config,
    )  # type: ignore[arg-type]
    server = Server(
        cfg,
        raft_store=MemoryRaftStore(),
        snapshot_store=MemorySnapshotStore(),
        checkpoint_store=CheckpointStore(directory / f"{name}-checkpoints"),
        fast_path=fast_path,
    )
    await server.start()
    try:
        # Campaign now rather than after an election timeout (tests use long ticks).
        await server.node.call(server.node.core.campaign)
        deadline = time.monotonic() + 10
        while server.node.core.leader != server.node.id:
            assert time.monotonic() < deadline, "the single node did not elect itself"
            await asyncio.sleep(0.01)
        yield server
    finally:
        await server.shutdown(transfer_timeout=0.5)
