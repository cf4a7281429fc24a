"""kill -9 of the leader while a loop of `raftkv put` runs: every put the CLI
acknowledged (exit 0) is readable afterwards, and the puts that failed did so
with exit 3 and one line on stderr, never a traceback."""

from __future__ import annotations

import asyncio
import time

import pytest

from raftkv.client import AsyncClient
from raftkv.client.commands import EXIT_UNAVAILABLE
from tests.integration.clitools import CliResult, raftkv
from tests.integration.harness import Cluster, until

pytestmark = pytest.mark.slow


async def test_acknowledged_cli_puts_survive_a_leader_kill(three_nodes: Cluster) -> None:
    cluster = three_nodes
    endpoints = ",".join(n.url for n in cluster.nodes.values())
    acked: dict[str, str] = {}
    failed: list[CliResult] = []
    stop = asyncio.Event()
    durations: list[float] = []

    async def put_loop() -> None:
        i = 0
        while not stop.is_set():
            key, value = f"fo/{i:04d}", f"value-{i}"
            started = time.monotonic()
            r = await raftkv("put", key, value, "--endpoints", endpoints, "--timeout", "20")
            durations.append(time.monotonic() - started)
            if r.code == 0:
                acked[key] = value
            else:
                failed.append(r)
            i += 1

    loop = asyncio.ensure_future(put_loop())
    try:
        await until(lambda: _at_least(acked, 8), 60, "8 acknowledged puts before the kill")
        leader = await cluster.wait_leader()
        cluster.kill(leader)
        killed_at = len(acked)
        await until(
            lambda: _at_least(acked, killed_at + 8), 60, "8 acknowledged puts after the kill"
        )
    finally:
        stop.set()
        await asyncio.wait_for(loop, 60)
    survivors = [n for n in cluster.nodes.values() if n.running()]
    await cluster.wait_leader(survivors)
    for r in failed:
        assert r.code == EXIT_UNAVAILABLE, (r.code, r.err)
        assert len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err, r.err
    async with AsyncClient([n.url for n in survivors]) as client:
        stored = await client.get_prefix("fo/")
    values = {kv.key.decode(): kv.value.decode() for kv in stored.kvs}
    missing = [k for k in acked if values.get(k) != acked[k]]
    assert not missing, f"acknowledged puts lost or wrong: {missing}"
    # Each put is its own process and session: none may have applied twice.
    assert all(kv.version == 1 for kv in stored.kvs)


async def _at_least(acked: dict[str, str], n: int) -> bool:
    return len(acked) >= n
