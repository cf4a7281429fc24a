"""The lease calls of `AsyncClient`: grant, keep alive (once, or for as long as a
block runs), revoke, inspect."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from raftkv.client.errors import LeaseNotFoundError, UnavailableError
from raftkv.client.models import Lease, LeaseInfo, LeaseRevoked
from raftkv.client.resource import ResourceApi


class LeaseApi(ResourceApi):
    async def grant_lease(self, ttl: int, *, lease_id: int = 0) -> Lease:
        body: dict[str, int] = {"ttl": int(ttl)}
        if lease_id:
            body["id"] = lease_id
        ans = await self.request("POST", "/v1/leases", target="write", json_body=body, session=True)
        return Lease.from_json(ans.json())

    async def keepalive(self, lease_id: int) -> Lease:
        """Restart the lease's TTL (not a log entry: idempotent, retried freely)."""
        ans = await self.request("POST", f"/v1/leases/{int(lease_id)}/keepalive", target="write")
        return Lease.from_json(ans.json())

    async def revoke_lease(self, lease_id: int) -> LeaseRevoked:
        """Delete the lease, its keys, and release its locks."""
        ans = await self.request(
            "DELETE", f"/v1/leases/{int(lease_id)}", target="write", session=True
        )
        return LeaseRevoked.from_json(ans.json())

    async def lease(self, lease_id: int) -> LeaseInfo | None:
        try:
            ans = await self.request(
                "GET", f"/v1/leases/{int(lease_id)}", params={"encoding": "base64"}
            )
        except LeaseNotFoundError:
            return None
        return LeaseInfo.from_json(ans.json())

    async def leases(self) -> list[LeaseInfo]:
        ans = await self.request("GET", "/v1/leases")
        return [LeaseInfo.from_json(obj) for obj in ans.json()["leases"]]

    @contextlib.asynccontextmanager
    async def kept_alive(self, lease_id: int, ttl: int) -> AsyncIterator[None]:
        """Keep the lease alive (every ttl/3 s) while the block runs."""
        task = asyncio.ensure_future(self._keepalive_loop(lease_id, ttl))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _keepalive_loop(self, lease_id: int, ttl: int) -> None:
        interval = max(0.2, ttl / 3)
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(UnavailableError):
                await self.keepalive(lease_id)
