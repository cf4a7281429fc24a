"""`/v1/locks/{name}`: acquire (waiting, with a fencing token), release, inspect."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiohttp import web

from raftkv.fsm import LockAcquire, LockRelease
from raftkv.runtime.errors import ApiError, bad_request, conflict, not_found
from raftkv.runtime.http.params import (
    MAX_WAIT_SECONDS,
    flag,
    float_param,
    int_param,
)
from raftkv.runtime.http.routing import Route, json_response
from raftkv.runtime.http.service import Forward, KvService

DEFAULT_LOCK_TIMEOUT = 30.0


def _answer(name: str, lease: int, token: int, revision: int) -> dict[str, Any]:
    return {"name": name, "lease": lease, "token": token, "revision": revision, "acquired": True}


class LockResource:
    def __init__(self, service: KvService) -> None:
        self.service = service
        self.node = service.node
        self.cfg = service.cfg

    def routes(self) -> list[Route]:
        return [
            Route("GET", "/v1/locks", self.list, "read"),
            Route("GET", "/v1/locks/{name}", self.get, "read"),
            Route("POST", "/v1/locks/{name}", self.acquire, "readwrite", leader=True),
            Route("DELETE", "/v1/locks/{name}", self.release, "readwrite", leader=True),
        ]

    def _name(self, request: web.Request) -> str:
        name = request.match_info["name"]
        try:
            size = len(name.encode("utf-8"))
        except UnicodeEncodeError:
            raise bad_request("lock name must be valid UTF-8") from None
        if not name or size > self.cfg.max_key_bytes:
            raise bad_request("lock name must be 1..max-key-bytes bytes")
        return name

    async def acquire(self, request: web.Request) -> web.Response:
        svc = self.service
        name = self._name(request)
        body = await self.service.json_body(request, optional=True)
        lease = body.get("lease") if body else None
        if lease is None and "lease" in request.query:
            lease = int_param(request, "lease", 0, 1)
        if type(lease) is not int or lease < 1:
            raise bad_request('a lock needs a lease: {"lease": id}')
        no_wait = "wait" in request.query and not flag(request, "wait")
        timeout = float_param(request, "timeout", DEFAULT_LOCK_TIMEOUT, MAX_WAIT_SECONDS)
        grant = self.node.wait_lock(name, lease)  # before proposing: never miss the grant
        try:
            result = await svc.submit(request, LockAcquire(name, lease))
            if result["acquired"]:
                return json_response(_answer(name, lease, result["token"], result["revision"]))
            if not no_wait:
                try:
                    token = await asyncio.wait_for(asyncio.shield(grant), timeout)
                except TimeoutError:
                    token = None
                else:
                    if token is None:
                        raise conflict(
                            "lock_wait_cancelled",
                            f"lease {lease} stopped waiting for lock {name!r} (revoked or expired)",
                        )
                    return json_response(_answer(name, lease, token, self.node.fsm.revision))
            # Not acquired: leave the queue so a later grant does not go unclaimed.
            # Not under the request's session: its (client id, seq) is the acquire's,
            # so the release would be deduplicated away and the lease stay queued.
            with contextlib.suppress(ApiError, Forward):
                await svc.submit(request, LockRelease(name, lease), with_session=False)
            if no_wait:
                raise conflict("lock_held", f"lock {name!r} is held by another lease")
            raise conflict("lock_timeout", f"lock {name!r} not acquired within {timeout}s")
        finally:
            grant.cancel()

    async def release(self, request: web.Request) -> web.Response:
        name = self._name(request)
        body = await self.service.json_body(request, optional=True)
        lease = body.get("lease") if body else None
        if lease is None:
            lease = int_param(request, "lease", 0, 1)
        if type(lease) is not int or lease < 1:
            raise bad_request("give the lease that holds the lock: ?lease=id")
        result = await self.service.submit(request, LockRelease(name, lease))
        return json_response(result)

    async def get(self, request: web.Request) -> web.Response:
        name = self._name(request)
        await self.service.read_barrier(request)
        info = self.node.fsm.lock_info(name)
        if info is None:
            raise not_found(f"lock {name!r} is free", "lock_not_found")
        return json_response(info)

    async def list(self, request: web.Request) -> web.Response:
        await self.service.read_barrier(request)
        return json_response({"locks": self.node.fsm.locks()})
