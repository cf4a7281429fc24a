"""Ending a background task whose cancellation may be lost.

`task.cancel()` alone does not always end a task: on Python 3.11 a `wait_for` whose
inner future completes in the same turn as the cancel returns instead of raising it,
and an HTTP client can turn a cancel into a timeout. A loop that must end therefore
also checks its own closed flag; `stop_task` cancels it and waits with a bound, so
`close()` returns either way.
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger("raftkv.node")


async def stop_task(task: asyncio.Task[None], timeout: float, what: str) -> None:
    """Cancel `task` and wait for it at most `timeout` seconds; log an error it ended
    with, or that it did not end."""
    task.cancel()
    await asyncio.wait({task}, timeout=timeout)
    if not task.done():
        log.warning("%s did not end on close", what)
    elif not task.cancelled() and (error := task.exception()) is not None:
        log.warning("%s ended with %r", what, error)
