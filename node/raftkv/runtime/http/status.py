"""Health, readiness, metrics and `/v1/status`."""

from __future__ import annotations

from aiohttp import web

from raftkv.runtime.errors import bad_request, unavailable
from raftkv.runtime.http.params import MAX_WAIT_SECONDS, float_param
from raftkv.runtime.http.routing import Route, json_response
from raftkv.runtime.http.service import KvService
from raftkv.runtime.metrics import CONTENT_TYPE


class StatusResource:
    def __init__(self, service: KvService) -> None:
        self.service = service
        self.node = service.node

    def routes(self) -> list[Route]:
        return [
            Route("GET", "/healthz", self.healthz, "open"),
            Route("GET", "/readyz", self.readyz, "open"),
            Route("GET", "/metrics", self.metrics, "metrics"),
            Route("GET", "/v1/status", self.status, "read"),
        ]

    async def healthz(self, request: web.Request) -> web.Response:
        return json_response({"ok": True, "name": self.service.cfg.name})

    async def readyz(self, request: web.Request) -> web.Response:
        if self.node.is_ready():
            return json_response({"ready": True})
        raise unavailable("not_ready", "not a member with a known leader, or not caught up")

    async def metrics(self, request: web.Request) -> web.Response:
        self.node.update_slow_metrics()
        return web.Response(
            body=self.service.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE}
        )

    async def status(self, request: web.Request) -> web.Response:
        wait = float_param(request, "wait", 0.0, MAX_WAIT_SECONDS)
        if wait > 0:
            leader = request.query.get("leader")
            term = request.query.get("term")
            try:
                leader_id = int(leader) if leader not in (None, "") else None
                term_n = int(term) if term not in (None, "") else None
            except ValueError:
                raise bad_request("leader and term must be integers") from None
            await self.node.wait_status_change(leader_id, term_n, wait)
        return json_response(self.node.status())
