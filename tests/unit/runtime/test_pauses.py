"""runtime/pauses.py: collector pauses and loop stalls are measured, the collector is
tuned for a server; and the watch history stays out of the collector's way."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Histogram

from raftkv.fsm import WatchEvent
from raftkv.runtime.pauses import FULL_COLLECTION_EVERY, GcPauses, LoopLag, tune_collector
from raftkv.runtime.watch import WatchHub


def _histogram(*labels: str) -> tuple[Histogram, CollectorRegistry]:
    registry = CollectorRegistry()
    return Histogram("pause_seconds", "x", list(labels), registry=registry), registry


def test_every_collection_is_timed_by_generation() -> None:
    hist, registry = _histogram("generation")
    pauses = GcPauses(hist)
    try:
        gc.collect(0)
        gc.collect(2)
    finally:
        pauses.close()
    assert registry.get_sample_value("pause_seconds_count", {"generation": "0"}) >= 1
    assert registry.get_sample_value("pause_seconds_count", {"generation": "2"}) >= 1
    gc.collect(2)  # closed: no longer counted
    assert registry.get_sample_value("pause_seconds_count", {"generation": "2"}) == 1


async def test_a_blocked_loop_shows_as_lag() -> None:
    hist, registry = _histogram()
    lag = LoopLag(hist)
    lag.start()
    try:
        await asyncio.sleep(0)  # the probe arms its first timer
        time.sleep(0.3)  # the stall under test: the loop runs nothing meanwhile
        deadline = time.monotonic() + 10
        while not registry.get_sample_value("pause_seconds_count"):
            assert time.monotonic() < deadline, "the probe never reported"
            await asyncio.sleep(0.01)
    finally:
        await lag.stop()
    assert registry.get_sample_value("pause_seconds_sum") >= 0.2
    assert registry.get_sample_value("pause_seconds_bucket", {"le": "0.1"}) == 0


@pytest.fixture
def collector_state() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_tuning_freezes_the_heap_and_spaces_full_collections(collector_state: None) -> None:
    young, middle, _ = gc.get_threshold()
    tune_collector()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (young, middle, FULL_COLLECTION_EVERY)


def test_the_watch_history_is_not_tracked_by_the_collector_and_resumes_as_events() -> None:
    hub = WatchHub(capacity=4)
    events = [WatchEvent("put", b"k%d" % i, b"v", i, i, 1, 0) for i in range(1, 6)]
    hub.publish(events)
    gc.collect()
    assert not any(gc.is_tracked(item) for item in hub.history)
    assert hub.compacted == 1
    w = hub.subscribe(lambda k: True, start_revision=3, current_revision=5)
    got = [w.queue.get_nowait() for _ in range(3)]
    assert got == events[2:] and all(type(ev) is WatchEvent for ev in got)
