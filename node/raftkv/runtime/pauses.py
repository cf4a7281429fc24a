"""Where the event loop stops serving: garbage-collector pauses and loop stalls.

Both are measured (`raftkv_gc_pause_seconds{generation}`,
`raftkv_event_loop_lag_seconds`) because a tail latency is a pause somebody
waited through, and a profile of where CPU goes does not show it. And the
collector is told what a long-lived server knows: everything allocated while
starting (modules, the recovered state machine and log) lives as long as the
process, so `gc.freeze()` moves it out of the collector's view, and a full
collection no longer rescans it on every pass (its cost grew with the state
held). Freezing changes nothing else: frozen objects are still freed by
reference counting when they go (only a cycle among them would stay). Full
collections are also spaced further apart (FULL_COLLECTION_EVERY), and the
youngest generation is collected after YOUNG_THRESHOLD new objects, not 700.
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

from prometheus_client import Histogram

LAG_INTERVAL = 0.05  # seconds between two loop-lag probes


# Full collections: after this many collections of generation 1 (CPython's default is
# 10). Their cost grows with every tracked object alive (the Raft log's entries until
# compaction, connections, futures), and each pauses every request in flight; once
# the start-up heap is frozen the "25% new long-lived objects" rule no longer spaces
# them out.
FULL_COLLECTION_EVERY = 100
# Generation 0: a pass after this many more container objects alive than at the last
# pass (CPython's default is 700). A write lives for tens of milliseconds under load,
# so with 700 the objects of every request in flight (its parsed request, headers,
# result slot, closure, log entry) were scanned by several young passes and promoted
# to generation 1, whose passes scanned them again. With 10,000 most of them are freed
# by reference counting before any pass sees them; a pass over 10,000 young objects
# is still well under a millisecond. Generation 1 keeps CPython's 10.
YOUNG_THRESHOLD = 10_000


def tune_collector() -> None:
    """Collect once, keep what survives out of every later collection (freeze), and
    space the young and the full collections further apart."""
    gc.collect()
    gc.freeze()
    _, middle, _ = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, FULL_COLLECTION_EVERY)


class GcPauses:
    """Times every collection of this process (gc.callbacks) into `histogram`."""

    def __init__(self, histogram: Histogram) -> None:
        self._children = [histogram.labels(str(generation)) for generation in range(3)]
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self._children[info["generation"]].observe(time.perf_counter() - self._started)

    def close(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)


class LoopLag:
    """A task that asks to wake every LAG_INTERVAL and records how late it woke:
    how long the loop ran something else without yielding (a stall)."""

    def __init__(self, histogram: Histogram) -> None:
        self._histogram = histogram
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._probe())

    async def _probe(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time() + LAG_INTERVAL
            await asyncio.sleep(LAG_INTERVAL)
            self._histogram.observe(max(0.0, loop.time() - asked))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
