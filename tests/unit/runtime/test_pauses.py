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
from raftkv.runtime.pauses import (
    FULL_COLLECTION_EVERY,
    YOUNG_THRESHOLD,
    GcPauses,
    LoopLag,
    tune_collector,
)
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


def test_tuning_freezes_the_heap_and_spaces_young_and_full_collections(
    collector_state: None,
) -> None:
    _, middle, _ = gc.get_threshold()
    tune_collector()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (YOUNG_THRESHOLD, middle, FULL_COLLECTION_EVERY)


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


class _Request:
    """Stands in for what an answer callback's closure holds (request, connection)."""


def test_a_resolved_completion_lets_go_of_its_callback() -> None:
    """The deadline queue may hold a resolved slot for up to a tick: it must not pin
    the request its callback closed over (thousands of them would age into the
    collector's older generations)."""
    import weakref

    from raftkv.runtime.outcomes import Completion

    for resolve in ("result", "exception"):
        request = _Request()
        seen: list[object] = []
        slot = Completion(
            lambda result, exc, request=request, seen=seen: seen.append((request, result))
        )
        alive = weakref.ref(request)
        del request
        if resolve == "result":
            slot.set_result(1)
        else:
            slot.set_exception(RuntimeError("x"))
        assert slot.done() and len(seen) == 1
        seen.clear()
        assert alive() is None
        with pytest.raises(asyncio.InvalidStateError):
            slot.set_result(2)  # still resolved once only


def test_answered_requests_leave_the_deadline_queue_without_waiting_for_a_tick() -> None:
    from raftkv.runtime.outcomes import Completion
    from raftkv.runtime.waiters import Waiters

    waiters = Waiters()
    slots = [Completion(lambda result, exc: None) for _ in range(4)]
    for slot in slots:
        waiters.deadline(100.0, slot)
    slots[0].set_result(None)
    slots[1].set_result(None)
    slots[3].set_result(None)
    waiters.drop_answered()
    # The front's answered ones go; one still waiting keeps its place (and those after
    # it wait for the next sweep: the queue stays in deadline order).
    assert [slot for _, slot in waiters.deadlines] == slots[2:]
