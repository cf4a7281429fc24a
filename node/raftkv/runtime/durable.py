"""Where the node loop runs its durable writes (WAL saves, compaction): inline on
the event loop while they are fast, in a dedicated thread while they are slow.

Why inline: a WAL save of one Ready is one `write` + one `fdatasync`, about
0.1-0.3 ms on an SSD. Handing it to a thread and back costs more than that on a
busy machine: a queue put, two futex wake-ups and, worst of all, the worker
waiting for the GIL (up to the 5 ms switch interval while the loop thread runs
Python). Measured on the project's 2-core machine (bench/README.md): a
single-connection put took 6.7 ms with the thread hop, most of it hand-offs.
`fdatasync` releases the GIL either way, so inline costs the process nothing
but the loop's attention for the length of the sync.

Why a thread at all: on a slow disk (a network volume: 5-50 ms per sync) an
inline sync would also hold up accepting and parsing requests. So when the
recent average of the write itself (measured without any hand-off) exceeds
`inline_max_seconds`, writes go to one long-lived thread instead, and come
back inline once they are fast again. Big batches (more than
`inline_max_entries`, i.e. many clients at once) go to the thread too: the
loop then parses and answers requests during the sync. Measured with wrk
against a 3-node cluster here (p50 / p99 ms): at 256 connections all-inline
gave 15.0 / 510-570, the thread for batches over 16 entries 14.0 / 38-42 at
the same throughput; at 1 connection inline gave 0.95 / 1.9, the thread
1.08 / 2.0. Either way the caller awaits each write before the next one: one
write at a time, in order (the WAL is not thread-safe), and nothing is
acknowledged before its write returned.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

INLINE_MAX_SECONDS = 0.002  # average write time above which writes move to the thread
INLINE_MAX_ENTRIES = 16  # bigger batches go to the thread even when writes are fast
_EWMA_WEIGHT = 0.2  # weight of the newest sample in the running average


class DurableWriter:
    def __init__(
        self,
        *,
        inline_max_seconds: float = INLINE_MAX_SECONDS,
        inline_max_entries: int = INLINE_MAX_ENTRIES,
        thread_name: str = "raftkv-wal",
    ) -> None:
        self.inline_max_seconds = inline_max_seconds
        self.inline_max_entries = inline_max_entries
        self.average_seconds = 0.0
        self.inline_writes = 0
        self.thread_writes = 0
        self._thread_name = thread_name
        self._pool: ThreadPoolExecutor | None = None

    @property
    def inline(self) -> bool:
        """Would the next write run inline?"""
        return self.average_seconds <= self.inline_max_seconds

    async def run(self, fn: Callable[..., T], *args: object, entries: int = 0) -> T:
        """Run one durable write `fn(*args)` of `entries` log entries; returns once it
        has returned."""
        if self.inline and entries <= self.inline_max_entries:
            self.inline_writes += 1
            return self._timed(fn, *args)
        self.thread_writes += 1
        return await self.run_in_thread(self._timed, fn, *args)

    async def run_in_thread(self, fn: Callable[..., T], *args: object) -> T:
        """Always in the thread: for writes known to be big (installing a snapshot)."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix=self._thread_name)
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _timed(self, fn: Callable[..., T], *args: object) -> T:
        started = time.perf_counter()
        try:
            return fn(*args)
        finally:
            elapsed = time.perf_counter() - started
            self.average_seconds += _EWMA_WEIGHT * (elapsed - self.average_seconds)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
