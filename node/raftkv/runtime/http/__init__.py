"""The client port's HTTP layer (reference: docs/api.md, docs/openapi.yaml).

- `service`: the transport-neutral KV service (checks, commands, proposals,
  reads) that the aiohttp handlers and the fast path (runtime/fasthttp.py) share;
- `errors`: the one exception -> HTTP answer mapping;
- `params`: query and body parameters;
- `forward`: leader forwarding for writes that reach a follower;
- `app`: the aiohttp application and its middleware;
- one module per resource: `status`, `kv`, `txn`, `leases`, `locks`, `watch`,
  `members`, `checkpoints`.
"""

from raftkv.runtime.http.app import ClientApi
from raftkv.runtime.http.errors import api_error, error_body, error_parts
from raftkv.runtime.http.forward import FORWARDED, forwarding_session
from raftkv.runtime.http.params import path_key
from raftkv.runtime.http.routing import KV_ROUTE, Route
from raftkv.runtime.http.service import CLIENT_ID, SEQ, Forward, KvService, result_of

__all__ = [
    "CLIENT_ID",
    "FORWARDED",
    "KV_ROUTE",
    "SEQ",
    "ClientApi",
    "Forward",
    "KvService",
    "Route",
    "api_error",
    "error_body",
    "error_parts",
    "forwarding_session",
    "path_key",
    "result_of",
]
