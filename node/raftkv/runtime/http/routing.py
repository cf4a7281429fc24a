"""Route declarations: each resource module lists its routes with what they need."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from raftkv.runtime.http.auth import Access, Identity

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


KV_ROUTE = "/v1/kv/{key}"  # the route label of the single-key handlers

# Where the caller's Identity is kept on an aiohttp request (runtime/http/auth.py).
IDENTITY: Any = (
    web.RequestKey("identity", Identity) if hasattr(web, "RequestKey") else "raftkv.identity"
)


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    access: Access
    leader: bool = False  # served by the leader: a follower forwards it


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
        headers=headers,
    )
