"""The asyncio client (aiohttp). Uses only the public HTTP API (docs/api.md).

    async with AsyncClient("http://127.0.0.1:7379,http://127.0.0.1:7381") as c:
        await c.put("a", "1")
        kv = await c.get("a")                     # KeyValue | None
        async with c.hold_lock("job", ttl=10) as lock:
            use(lock.token)                       # the fencing token
        async for event in c.watch("a", prefix=True):
            ...

Writes go to the leader (found through `/v1/status`, followed through 307s)
and carry a session, so a retried write applies once; reads follow the
endpoint strategy (`leader`, `random`, `round-robin`). How calls reach the
cluster (endpoints, retries, sessions) is `transport.py`; the calls themselves
are one module per resource, composed here over that one transport, as etcd's
clientv3 `Client` embeds `KV`, `Lease`, `Lock`, `Watcher`, `Cluster` and
`Maintenance`:

    kv.py           KvApi          get, get_prefix, put, delete, delete_prefix
    txn.py          TxnApi         txn
    leases.py       LeaseApi       grant_lease, keepalive, revoke_lease, lease,
                                   leases, kept_alive
    locks.py        LockApi        lock, unlock, lock_info, locks, hold_lock
    watch.py        WatchApi       watch
    cluster.py      ClusterApi     status, statuses, wait_leader_change, leader,
                                   members, add_member, promote_member,
                                   remove_member, transfer_leader
    checkpoints.py  CheckpointApi  create_checkpoint, checkpoints, checkpoint,
                                   download_checkpoint

Each is a mixin over `resource.ResourceApi` (the transport and `request`), so
every call is still a method of `AsyncClient` (`help(AsyncClient)`, completion)
and no resource holds state of its own. Retries, backoff and the error classes
are described in `retry.py` and `errors.py`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import aiohttp

from raftkv.client.checkpoints import CheckpointApi
from raftkv.client.cluster import ClusterApi
from raftkv.client.credentials import Credentials
from raftkv.client.download import ProgressCallback
from raftkv.client.endpoints import DEFAULT_ENDPOINT, EndpointSelector
from raftkv.client.kv import KvApi, key_path
from raftkv.client.leases import LeaseApi
from raftkv.client.locks import DEFAULT_LOCK_TIMEOUT, LockApi
from raftkv.client.retry import RetryPolicy, SessionPool
from raftkv.client.transport import DEFAULT_ATTEMPT_TIMEOUT, Transport
from raftkv.client.txn import TxnApi
from raftkv.client.watch import WatchApi

__all__ = ["DEFAULT_LOCK_TIMEOUT", "AsyncClient", "ProgressCallback", "key_path"]


class AsyncClient(KvApi, TxnApi, LockApi, LeaseApi, WatchApi, ClusterApi, CheckpointApi):
    """An asyncio raftkv client; use as `async with AsyncClient(...) as c:` or call
    `close()`. Safe for concurrent use by many tasks of one event loop."""

    def __init__(
        self,
        endpoints: str | Sequence[str] = DEFAULT_ENDPOINT,
        *,
        strategy: str = "leader",
        retry: RetryPolicy | None = None,
        attempt_timeout: float = DEFAULT_ATTEMPT_TIMEOUT,
        client_id: str | None = None,
        session: aiohttp.ClientSession | None = None,
        rng: random.Random | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        """`credentials`: the CA to verify https endpoints with, a client certificate
        and/or a bearer token (`credentials_from_env()` reads the RAFTKV_* ones).
        Not used with a `session` of your own: configure that session instead."""
        self.transport = Transport(
            endpoints.split(",") if isinstance(endpoints, str) else endpoints,
            strategy=strategy,
            retry=retry or RetryPolicy(),
            attempt_timeout=attempt_timeout,
            client_id=client_id,
            session=session,
            rng=rng,
            credentials=credentials or Credentials(),
        )

    # What the transport holds, as the client has always shown it.
    @property
    def credentials(self) -> Credentials:
        return self.transport.credentials

    @property
    def selector(self) -> EndpointSelector:
        return self.transport.selector

    @property
    def retry(self) -> RetryPolicy:
        return self.transport.retry

    @property
    def attempt_timeout(self) -> float:
        return self.transport.attempt_timeout

    @property
    def sessions(self) -> SessionPool:
        return self.transport.sessions

    @property
    def endpoints(self) -> list[str]:
        return list(self.selector.endpoints)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.transport.close()
