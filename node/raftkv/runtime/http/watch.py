"""`GET /v1/watch`: a stream of events (NDJSON) for a key or a prefix."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from raftkv.fsm import prefix_end
from raftkv.fsm.commands import ALL_KEYS_END
from raftkv.protocol.headers import REVISION
from raftkv.runtime.errors import ApiError, bad_request
from raftkv.runtime.http.params import flag, int_param
from raftkv.runtime.http.routing import Route
from raftkv.runtime.http.service import KvService
from raftkv.runtime.jsonbytes import encoding_of, get_bytes, to_json
from raftkv.runtime.watch import Compacted

WATCH_PROGRESS_SECONDS = 10.0
# aiohttp does not cancel a handler whose client went away (handler_cancellation is off),
# and an idle stream would only notice at its next write: look at the connection this
# often, so a gone watcher gives its --max-watches slot back promptly.
DISCONNECT_CHECK_SECONDS = 1.0


class WatchResource:
    def __init__(self, service: KvService) -> None:
        self.service = service
        self.node = service.node

    def routes(self) -> list[Route]:
        return [Route("GET", "/v1/watch", self.watch, "read")]

    async def watch(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        key = get_bytes(dict(q), "key", required=False)
        prefix = flag(request, "prefix")
        encoding = encoding_of(q)
        start = int_param(request, "start_revision", 0)
        if not key and not prefix:
            raise bad_request("give a key (or key_b64), or prefix=1 to watch every key")
        if len(key) > self.service.cfg.max_key_bytes:
            self.service.check_key(key)
        if prefix:
            end = prefix_end(key) if key else ALL_KEYS_END
            self.service.check_keys(request, key or b"\0", end)

            def match(k: bytes) -> bool:
                return k >= key and (end == ALL_KEYS_END or k < end)
        else:
            self.service.check_keys(request, key)

            def match(k: bytes) -> bool:
                return k == key

        hub = self.node.watch
        try:
            watcher = hub.subscribe(
                match, start, self.node.fsm.revision, request.remote or ""
            )  # LimitExceeded: caps
        except Compacted as exc:
            raise ApiError(410, "compacted", str(exc)) from None
        response = web.StreamResponse(
            headers={"Content-Type": "application/x-ndjson", REVISION: str(self.node.fsm.revision)}
        )
        await response.prepare(request)
        loop = asyncio.get_running_loop()
        try:
            progress_at = loop.time() + WATCH_PROGRESS_SECONDS
            while True:
                try:
                    ev = await asyncio.wait_for(watcher.queue.get(), DISCONNECT_CHECK_SECONDS)
                except TimeoutError:
                    if request.transport is None or request.transport.is_closing():
                        break  # the client is gone
                    if loop.time() >= progress_at:
                        line = {"type": "progress", "revision": self.node.fsm.revision}
                        await response.write(json.dumps(line).encode() + b"\n")
                        progress_at = loop.time() + WATCH_PROGRESS_SECONDS
                    continue
                if ev is None:
                    line = {
                        "type": "error",
                        "error": watcher.closed_reason,
                        "message": "the watch was closed by the server; re-watch",
                    }
                    await response.write(json.dumps(line).encode() + b"\n")
                    break
                batch = [ev]
                while not watcher.queue.empty() and len(batch) < 512:
                    nxt = watcher.queue.get_nowait()
                    if nxt is None:
                        watcher.queue.put_nowait(None)
                        break
                    batch.append(nxt)
                out = b"".join(
                    json.dumps(to_json(e._asdict(), encoding)).encode() + b"\n" for e in batch
                )
                await response.write(out)
                progress_at = loop.time() + WATCH_PROGRESS_SECONDS
        except ConnectionResetError:
            pass  # the client went away; a cancellation (shutdown) propagates
        finally:
            hub.unsubscribe(watcher)
        return response
