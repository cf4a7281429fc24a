"""The lock calls of `AsyncClient`: acquire (FIFO, with a timeout), release,
inspect, and `hold_lock`, which also grants and keeps alive the lease a lock is
held by (hence `LockApi` builds on `LeaseApi`)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from urllib.parse import quote

from raftkv.client.errors import LockNotFoundError, RaftkvError
from raftkv.client.leases import LeaseApi
from raftkv.client.models import Lock, LockInfo, Unlocked

DEFAULT_LOCK_TIMEOUT = 30.0


class LockApi(LeaseApi):
    async def lock(
        self, name: str, lease: int, *, timeout: float = DEFAULT_LOCK_TIMEOUT, wait: bool = True
    ) -> Lock:
        """Acquire lock `name` for `lease`, waiting in FIFO order up to `timeout` s
        (`LockTimeoutError`), or not at all with `wait=False` (`LockHeldError`).

        Acquiring is idempotent per lease (the holder re-acquiring gets the same
        token), so it is retried without a session."""
        params = {"timeout": f"{timeout:g}"}
        if not wait:
            params["wait"] = "0"
        ans = await self.request(
            "POST",
            f"/v1/locks/{quote(name, safe='')}",
            target="write",
            params=params,
            json_body={"lease": int(lease)},
            extra_wait=timeout if wait else 0.0,
        )
        return Lock.from_json(ans.json())

    async def unlock(self, name: str, lease: int) -> Unlocked:
        ans = await self.request(
            "DELETE",
            f"/v1/locks/{quote(name, safe='')}",
            target="write",
            params={"lease": str(int(lease))},
            session=True,
        )
        return Unlocked.from_json(ans.json())

    async def lock_info(self, name: str) -> LockInfo | None:
        """The holder, fencing token and waiters of lock `name`, or None if it is free."""
        try:
            ans = await self.request("GET", f"/v1/locks/{quote(name, safe='')}")
        except LockNotFoundError:
            return None
        return LockInfo.from_json(ans.json())

    async def locks(self) -> list[LockInfo]:
        ans = await self.request("GET", "/v1/locks")
        return [LockInfo.from_json(obj) for obj in ans.json()["locks"]]

    @contextlib.asynccontextmanager
    async def hold_lock(
        self, name: str, *, ttl: int = 10, timeout: float = DEFAULT_LOCK_TIMEOUT, wait: bool = True
    ) -> AsyncIterator[Lock]:
        """Grant a lease, keep it alive, acquire the lock; on exit release the lock
        and revoke the lease. If this process dies the lease expires after `ttl`."""
        lease = await self.grant_lease(ttl)
        try:
            async with self.kept_alive(lease.id, ttl):
                lock = await self.lock(name, lease.id, timeout=timeout, wait=wait)
                try:
                    yield lock
                finally:
                    with contextlib.suppress(RaftkvError):
                        await self.unlock(name, lease.id)
        finally:
            with contextlib.suppress(RaftkvError):
                await self.revoke_lease(lease.id)
