"""The node loop acts on an input as soon as it arrives: a write does not wait for
a tick (ticks only drive timers), and its answer leaves in the turn it applies."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import aiohttp

from tests.unit.runtime.solo import solo_node

TICK_MS = 1000  # a write that waited for a tick would take about this long


async def test_writes_and_reads_do_not_wait_for_a_tick(tmp_path: Path) -> None:
    async with solo_node(tmp_path, tick_ms=TICK_MS) as server, aiohttp.ClientSession() as http:
        url = server.cfg.advertise_client_url
        took = []
        for i in range(20):
            started = time.perf_counter()
            async with http.put(f"{url}/v1/kv/k{i}", data=b"v") as r:
                assert r.status == 200
            async with http.get(f"{url}/v1/kv/k{i}") as r:  # linearizable: a ReadIndex
                assert r.status == 200 and await r.read() == b"v"
            took.append(time.perf_counter() - started)
    # Generous for a loaded machine, yet far below one tick.
    assert statistics.median(took) < TICK_MS / 1000 / 5, took
