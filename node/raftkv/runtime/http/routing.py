"""Route declarations: each resource module lists its routes with what they need."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# What a route needs of its caller (runtime/http/auth.py): "open" = anyone (health
# probes); "metrics" = open or authenticated by --metrics-auth; the rest are roles.
Access = Literal["open", "metrics", "read", "readwrite", "admin"]

KV_ROUTE = "/v1/kv/{key}"  # the route label of the single-key handlers


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    access: Access
    leader: bool = False  # served by the leader: a follower forwards it


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None
                  ) -> web.Response:
    return web.Response(body=json.dumps(body, separators=(",", ":")).encode(), status=status,
                        content_type="application/json", headers=headers)
