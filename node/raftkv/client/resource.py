"""What every resource's calls (`kv.py`, `txn.py`, `leases.py`, `locks.py`,
`watch.py`, `cluster.py`, `checkpoints.py`) are written against: the client's
`Transport` and one `request` with retries. `aio.AsyncClient` is these resources
composed over one transport, as etcd's clientv3 `Client` embeds `KV`, `Lease`,
`Lock`, `Watcher`, `Cluster` and `Maintenance`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from raftkv.client.transport import Answer, Transport


class ResourceApi:
    """The base of each resource's mixin: it holds no state of its own, only
    names the transport that `AsyncClient.__init__` sets."""

    transport: Transport

    async def request(
        self,
        method: str,
        path: str,
        *,
        target: str = "read",
        params: dict[str, str] | None = None,
        data: bytes | None = None,
        json_body: Any = None,
        session: bool = False,
        extra_wait: float = 0.0,
        ok: Iterable[int] = (200,),
    ) -> Answer:
        """One API call with retries. `target`: "write" (the leader), "read" (the
        strategy), "any" (endpoints in turn) or a URL (that node only, no retries
        elsewhere). `session`: send session headers (writes). `extra_wait`: seconds
        the server may legitimately hold the request (long-polls)."""
        return await self.transport.request(
            method,
            path,
            target=target,
            params=params,
            data=data,
            json_body=json_body,
            session=session,
            extra_wait=extra_wait,
            ok=ok,
        )
