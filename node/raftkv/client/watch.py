"""A watch as one stream of events that survives its connections: a dropped
stream is re-opened (on another member if need be) from the revision where it
stopped, skipping what was delivered already, so no event is lost or repeated.
`WatchApi` is the watch call of `AsyncClient`."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator

import aiohttp

from raftkv.client.errors import (
    CompactedError,
    ConnectError,
    NoLeaderError,
    RaftkvError,
    UnavailableError,
    error_from_response,
)
from raftkv.client.models import Bytes, WatchEvent, to_bytes
from raftkv.client.resource import ResourceApi
from raftkv.client.transport import Transport, describe, parse_json, parse_retry_after
from raftkv.protocol.headers import REVISION

WATCH_IDLE_TIMEOUT = 35.0  # the server sends a progress line every 10 s


async def watch_events(
    transport: Transport,
    key: Bytes,
    *,
    prefix: bool,
    start_revision: int,
    progress: bool,
    resume: bool,
    give_up_after: float | None,
) -> AsyncIterator[WatchEvent]:
    """Changes of `key` (or of every key with that prefix), in revision order.

    `start_revision` replays history from there (else: changes from now on).
    With `resume` (default) a dropped stream is re-opened, on another member if
    need be, from where it stopped: no event is lost or repeated, for as long as
    it takes, or until no member could serve it for `give_up_after` seconds. A
    history that no longer reaches back raises `CompactedError`."""
    k = to_bytes(key)
    if not k and not prefix:
        raise ValueError("watch a key, or prefix=True (an empty prefix: every key)")
    next_rev = start_revision
    delivered = 0  # events of revision next_rev delivered (a txn's events share one)
    attempt = 0
    failing_since: float | None = None
    while True:
        url = await transport.pick("read")
        params = {"encoding": "base64", "key_b64": b64(k)}
        if prefix:
            params["prefix"] = "1"
        if next_rev:
            params["start_revision"] = str(next_rev)
        to_skip = delivered  # a re-opened stream replays revision next_rev
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5.0, sock_read=WATCH_IDLE_TIMEOUT)
        error: RaftkvError | None = None
        try:
            async with transport.session().get(
                url + "/v1/watch", params=params, timeout=timeout
            ) as resp:
                if resp.status != 200:
                    err = error_from_response(
                        resp.status,
                        parse_json(await resp.read()),
                        endpoint=url,
                        retry_after=parse_retry_after(resp.headers.get("Retry-After")),
                    )
                    if not isinstance(err, UnavailableError) or not resume:
                        raise err
                    error = err
                else:
                    attempt, failing_since = 0, None
                    if not next_rev:
                        next_rev = int(resp.headers.get(REVISION, "0")) + 1
                    async for line in resp.content:
                        if not line.strip():
                            continue
                        obj = json.loads(line)
                        kind = obj.get("type")
                        if kind == "error":
                            if obj.get("error") == "compacted":
                                raise CompactedError(
                                    str(obj.get("message")), code="compacted", endpoint=url
                                )
                            error = UnavailableError(
                                f"watch closed by {url}: {obj.get('error')}",
                                code=str(obj.get("error", "")),
                                endpoint=url,
                            )
                            break
                        event = WatchEvent.from_json(obj)
                        if kind == "progress":
                            if event.revision + 1 > next_rev:
                                next_rev, delivered, to_skip = event.revision + 1, 0, 0
                            if progress:
                                yield event
                            continue
                        if event.revision == next_rev and to_skip:
                            to_skip -= 1
                            continue
                        if event.revision > next_rev:
                            next_rev, delivered, to_skip = event.revision, 0, 0
                        delivered += 1
                        yield event
                    else:
                        error = UnavailableError(f"watch stream from {url} ended", endpoint=url)
        except (aiohttp.ClientError, TimeoutError) as exc:
            transport.endpoint_failed(url)
            error = ConnectError(f"{url}: {describe(exc)}", endpoint=url)
        assert error is not None
        now = time.monotonic()
        failing_since = now if failing_since is None else failing_since
        if not resume or (give_up_after is not None and now - failing_since > give_up_after):
            raise error
        if isinstance(error, NoLeaderError):
            transport.selector.forget_leader()
        await asyncio.sleep(transport.retry.backoff(attempt, transport.rng))
        attempt += 1


class WatchApi(ResourceApi):
    def watch(
        self,
        key: Bytes = b"",
        *,
        prefix: bool = False,
        start_revision: int = 0,
        progress: bool = False,
        resume: bool = True,
        give_up_after: float | None = None,
    ) -> AsyncIterator[WatchEvent]:
        """Changes of `key` (or of every key with that prefix), in revision order.

        `start_revision` replays history from there (else: changes from now on).
        With `resume` (default) a dropped stream is re-opened, on another member if
        need be, from where it stopped: no event is lost or repeated, for as long as
        it takes, or until no member could serve it for `give_up_after` seconds. A
        history that no longer reaches back raises `CompactedError`."""
        return watch_events(
            self.transport,
            key,
            prefix=prefix,
            start_revision=start_revision,
            progress=progress,
            resume=resume,
            give_up_after=give_up_after,
        )


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
