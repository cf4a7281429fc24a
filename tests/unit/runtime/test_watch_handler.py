"""The watch stream handler: cancelling it (server shutdown) cancels it, and the
watcher is always unsubscribed."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from raftkv.fsm import WatchEvent
from raftkv.runtime.http.watch import WATCH_PROGRESS_SECONDS, WatchResource
from raftkv.runtime.watch import WatchHub


def _request() -> Any:
    transport = mock.Mock()
    transport.is_closing.return_value = False  # an open connection
    return make_mocked_request("GET", "/v1/watch?key=a", transport=transport)


def _resource(hub: WatchHub) -> WatchResource:
    node = SimpleNamespace(watch=hub, fsm=SimpleNamespace(revision=7))
    service = SimpleNamespace(
        node=node,
        cfg=SimpleNamespace(max_key_bytes=1024),
        check_key=lambda key: None,
        check_keys=lambda request, *keys: None,
    )
    return WatchResource(service)  # type: ignore[arg-type]


async def _streaming(hub: WatchHub) -> tuple[asyncio.Task[web.StreamResponse], Any]:
    """A watch stream on key `a`, running and subscribed: (its task, its request)."""
    request = _request()
    task = asyncio.ensure_future(_resource(hub).watch(request))
    deadline = asyncio.get_running_loop().time() + 5
    while not hub.watchers:
        assert asyncio.get_running_loop().time() < deadline, "the stream never subscribed"
        await asyncio.sleep(0.01)
    return task, request


async def test_a_cancelled_watch_stream_is_cancelled_and_unsubscribed() -> None:
    hub = WatchHub()
    task, request = await _streaming(hub)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not hub.watchers


async def test_a_reset_connection_ends_the_stream_and_unsubscribes() -> None:
    hub = WatchHub()
    task, request = await _streaming(hub)
    (watcher,) = hub.watchers

    async def reset(data: bytes) -> None:
        raise ConnectionResetError("peer went away")

    request._payload_writer.write = reset
    watcher.queue.put_nowait(WatchEvent("put", b"a", b"v", 8, 8, 1, 0))
    await asyncio.wait_for(task, 5)
    assert not hub.watchers


async def test_an_idle_stream_whose_client_is_gone_ends_without_waiting_for_a_write() -> None:
    """aiohttp does not cancel the handler of a closed connection; an idle stream must
    still notice and give its slot (--max-watches) back."""
    hub = WatchHub()
    task, request = await _streaming(hub)
    request.protocol.transport = None  # what aiohttp's connection_lost leaves
    # Well before the first progress line (WATCH_PROGRESS_SECONDS), which would be the
    # first write to fail.
    await asyncio.wait_for(task, WATCH_PROGRESS_SECONDS / 2)
    assert not hub.watchers
