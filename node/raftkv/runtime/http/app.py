"""The aiohttp application of the client port: routes from the resource modules,
one middleware (errors -> answers through http/errors.py, request metrics)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from raftkv.runtime.http.auth import Authenticator, peercert_of
from raftkv.runtime.http.checkpoints import CheckpointResource
from raftkv.runtime.http.errors import api_error, error_parts
from raftkv.runtime.http.forward import LeaderForwarder
from raftkv.runtime.http.kv import KvResource
from raftkv.runtime.http.leases import LeaseResource
from raftkv.runtime.http.locks import LockResource
from raftkv.runtime.http.members import MemberResource
from raftkv.runtime.http.routing import IDENTITY, Handler, Route, json_response
from raftkv.runtime.http.service import KvService
from raftkv.runtime.http.status import StatusResource
from raftkv.runtime.http.txn import TxnResource
from raftkv.runtime.http.watch import WatchResource
from raftkv.runtime.limits import LimitExceeded
from raftkv.runtime.node import RaftNode
from raftkv.security.tls import ReloadingTLS

RESOURCES = (
    StatusResource,
    KvResource,
    TxnResource,
    LeaseResource,
    LockResource,
    WatchResource,
    MemberResource,
    CheckpointResource,
)


class ClientApi:
    """The client port: the KV service, the leader forwarder and the aiohttp app."""

    def __init__(self, node: RaftNode, *, forward_tls: ReloadingTLS | None = None) -> None:
        """`forward_tls`: the client context a follower forwards writes to the leader
        with (None: plain HTTP, for --client-insecure)."""
        self.node = node
        self.cfg = node.cfg
        self.metrics = node.metrics
        self.auth = Authenticator(
            self.cfg.auth_file, metrics_open=self.cfg.metrics_access == "open"
        )
        self.service = KvService(node, self.auth)
        self.forwarder = LeaderForwarder(self.service, forward_tls)
        self.routes: list[Route] = [
            r for resource in RESOURCES for r in resource(self.service).routes()
        ]
        self._http_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def app(self) -> web.Application:
        app = web.Application(
            client_max_size=self.cfg.max_request_bytes, middlewares=[self._middleware]
        )
        for route in self.routes:
            handler = self.forwarder.leader_only(route.handler) if route.leader else route.handler
            # Authenticated first: a follower never forwards a request it would refuse.
            guarded = self._guarded(route, handler)
            if route.method == "GET":
                app.router.add_get(route.path, guarded)  # and HEAD, as aiohttp does
            else:
                app.router.add_route(route.method, route.path, guarded)
        app.on_startup.append(self.forwarder.open)
        app.on_cleanup.append(self.forwarder.close)
        return app

    def _guarded(self, route: Route, handler: Handler) -> Handler:
        check, access = self.auth.check, route.access

        async def guarded(request: web.Request) -> web.StreamResponse:
            request[IDENTITY] = check(
                access, request.headers.get("Authorization"), lambda: peercert_of(request.transport)
            )
            return await handler(request)

        return guarded

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        route = _route_name(request)
        try:
            if route == "unmatched" and self.auth.enabled:
                # No route (404/405): anonymous callers learn nothing about the paths.
                self.auth.check(
                    "read",
                    request.headers.get("Authorization"),
                    lambda: peercert_of(request.transport),
                )
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = _error_response(api_error(exc))
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except LimitExceeded as exc:  # JSON depth, watch caps (proposals: in the service)
            self.metrics.limit_refusals.labels(exc.limit).inc()
            response = _error_response(api_error(exc))
        except Exception as exc:
            response = _error_response(api_error(exc, where=f"{request.method} {request.path}"))
        key = (route, request.method, response.status)
        children = self._http_children.get(key)
        if children is None:  # labels() costs a lock and a dict walk: once per key
            children = self._http_children[key] = (
                self.metrics.http_requests.labels(route, request.method, str(response.status)),
                self.metrics.http_duration.labels(route),
            )
        children[0].inc()
        children[1].observe(time.perf_counter() - started)
        return response


def _error_response(exc: Any) -> web.Response:
    headers, body = error_parts(exc)
    return json_response(body, exc.status, headers)


def _route_name(request: web.Request) -> str:
    info = request.match_info
    route = getattr(info, "route", None)
    resource = getattr(route, "resource", None)
    if resource is None:
        return "unmatched"
    return str(resource.canonical)
