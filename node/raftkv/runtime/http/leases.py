"""`/v1/leases`: grant, keep alive, revoke, inspect."""

from __future__ import annotations

import time

from aiohttp import web

from raftkv.fsm import LeaseGrant, LeaseRevoke
from raftkv.runtime.errors import bad_request, not_found
from raftkv.runtime.http.params import json_int, match_int
from raftkv.runtime.http.routing import Route, json_response
from raftkv.runtime.http.service import KvService
from raftkv.runtime.jsonbytes import encoding_of, to_json


def lease_id(request: web.Request) -> int:
    value = match_int(request, "id", "lease id")
    if not 1 <= value <= 2**63 - 1:
        raise bad_request("lease id out of range")
    return value


class LeaseResource:
    def __init__(self, service: KvService) -> None:
        self.service = service
        self.node = service.node

    def routes(self) -> list[Route]:
        return [
            Route("GET", "/v1/leases", self.list, "read"),
            Route("POST", "/v1/leases", self.grant, "readwrite", leader=True),
            Route("GET", "/v1/leases/{id}", self.get, "read"),
            Route("POST", "/v1/leases/{id}/keepalive", self.keepalive, "readwrite", leader=True),
            Route("DELETE", "/v1/leases/{id}", self.revoke, "readwrite", leader=True),
        ]

    async def grant(self, request: web.Request) -> web.Response:
        body = await self.service.json_body(request)
        ttl = json_int(body, "ttl", None, 1, 9_000_000_000)
        lid = json_int(body, "id", 0)
        result = await self.service.submit(request, LeaseGrant(ttl, lid))
        return json_response(
            {"id": result["id"], "ttl": result["ttl"], "revision": result["revision"]}
        )

    async def keepalive(self, request: web.Request) -> web.Response:
        lid = lease_id(request)
        info = self.node.fsm.lease_info(lid)
        if info is None:
            raise not_found(f"lease {lid} is not granted", "lease_not_found")
        self.node.leases.keepalive(lid, info["ttl"], time.monotonic())
        return json_response({"id": lid, "ttl": info["ttl"]})

    async def revoke(self, request: web.Request) -> web.Response:
        result = await self.service.submit(request, LeaseRevoke(lease_id(request)))
        return json_response(to_json(result))

    async def get(self, request: web.Request) -> web.Response:
        lid = lease_id(request)
        await self.service.read_barrier(request)
        info = self.node.fsm.lease_info(lid)
        if info is None:
            raise not_found(f"lease {lid} is not granted", "lease_not_found")
        info["remaining"] = self.node.leases.remaining(lid, time.monotonic())
        return json_response(to_json(info, encoding_of(request.query)))

    async def list(self, request: web.Request) -> web.Response:
        await self.service.read_barrier(request)
        now = time.monotonic()
        clock = self.node.leases
        return json_response(
            {
                "leases": [
                    {"id": lid, "ttl": ttl, "remaining": clock.remaining(lid, now)}
                    for lid, ttl in self.node.fsm.leases()
                ]
            }
        )
