"""DurableWriter: fast writes run inline on the loop thread, slow ones in its thread."""

from __future__ import annotations

import threading
import time

import pytest

from raftkv.runtime.durable import DurableWriter


def _write(duration: float) -> int:
    """A stand-in for a WAL save taking `duration` (simulated work, not a wait)."""
    end = time.perf_counter() + duration
    while time.perf_counter() < end:
        pass
    return threading.get_ident()


async def test_fast_writes_inline_slow_writes_threaded_and_back() -> None:
    writer = DurableWriter(inline_max_seconds=0.002)
    loop_thread = threading.get_ident()
    try:
        assert await writer.run(_write, 0.0) == loop_thread
        # Slow writes: the first still runs inline (the average was fast), then the
        # average crosses the threshold and writes move to the thread.
        threads = [await writer.run(_write, 0.02) for _ in range(5)]
        assert threads[0] == loop_thread
        assert threads[-1] != loop_thread and not writer.inline
        # Fast again: the average decays and writes come back inline.
        for _ in range(60):
            if writer.inline:
                break
            await writer.run(_write, 0.0)
        assert writer.inline
        assert await writer.run(_write, 0.0) == loop_thread
        assert writer.inline_writes > 0 and writer.thread_writes > 0
    finally:
        writer.close()


async def test_big_batches_go_to_the_thread_even_when_fast() -> None:
    writer = DurableWriter(inline_max_seconds=1.0, inline_max_entries=16)
    loop_thread = threading.get_ident()
    try:
        assert await writer.run(_write, 0.0, entries=16) == loop_thread
        assert await writer.run(_write, 0.0, entries=17) != loop_thread
    finally:
        writer.close()


async def test_errors_reach_the_caller_in_both_modes() -> None:
    def failing() -> None:
        raise OSError("disk gone")

    for threshold in (1.0, -1.0):  # always inline, always threaded
        writer = DurableWriter(inline_max_seconds=threshold)
        try:
            with pytest.raises(OSError, match="disk gone"):
                await writer.run(failing)
        finally:
            writer.close()
