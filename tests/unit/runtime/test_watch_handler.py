"""The watch stream handler: cancelling it (server shutdown) cancels it, and the
watcher is always unsubscribed."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from aiohttp.test_utils import make_mocked_request

from raftkv.fsm import WatchEvent
from raftkv.runtime.http.watch import WatchResource
from raftkv.runtime.watch import WatchHub


def _resource(hub: WatchHub) -> WatchResource:
    node = SimpleNamespace(watch=hub, fsm=SimpleNamespace(revision=7))
    service = SimpleNamespace(
        node=node,
        cfg=SimpleNamespace(max_key_bytes=1024),
        check_key=lambda key: None,
        check_keys=lambda request, *keys: None,
    )
    return WatchResource(service)  # type: ignore[arg-type]


async def test_a_cancelled_watch_stream_is_cancelled_and_unsubscribed() -> None:
    hub = WatchHub()
    resource = _resource(hub)
    request = make_mocked_request("GET", "/v1/watch?key=a")
    task = asyncio.ensure_future(resource.watch(request))
    deadline = asyncio.get_running_loop().time() + 5
    while not hub.watchers:
        assert asyncio.get_running_loop().time() < deadline, "the stream never subscribed"
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not hub.watchers


async def test_a_reset_connection_ends_the_stream_and_unsubscribes() -> None:
    hub = WatchHub()
    resource = _resource(hub)
    request = make_mocked_request("GET", "/v1/watch?key=a")
    task = asyncio.ensure_future(resource.watch(request))
    deadline = asyncio.get_running_loop().time() + 5
    while not hub.watchers:
        assert asyncio.get_running_loop().time() < deadline, "the stream never subscribed"
        await asyncio.sleep(0.01)
    (watcher,) = hub.watchers

    async def reset(data: bytes) -> None:
        raise ConnectionResetError("peer went away")

    request._payload_writer.write = reset  # type: ignore[attr-defined]
    watcher.queue.put_nowait(WatchEvent("put", b"a", b"v", 8, 8, 1, 0))
    await asyncio.wait_for(task, 5)
    assert not hub.watchers
