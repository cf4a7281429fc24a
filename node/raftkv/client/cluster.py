"""The cluster calls of `AsyncClient`: member and leader status, waiting for a
leader change, membership (add, promote, remove) and leadership transfer."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from raftkv.client.errors import ConnectError, MemberNotFoundError, NoLeaderError, RaftkvError
from raftkv.client.models import Member, Members, Status, member_from_json
from raftkv.client.resource import ResourceApi
from raftkv.client.transport import describe


class ClusterApi(ResourceApi):
    async def status(self, endpoint: str | None = None) -> Status:
        """The status of `endpoint` (default: any endpoint that answers)."""
        if endpoint is not None:
            ans = await self.request("GET", "/v1/status", target=endpoint)
        else:
            ans = await self.request("GET", "/v1/status", target="any")
        st = Status.from_json(ans.json(), ans.endpoint)
        if st.leader is not None:
            self.transport.selector.set_leader(st.leader.id, st.leader.client_url or None)
        return st

    async def statuses(self) -> list[Status | RaftkvError]:
        """The status of every configured endpoint, or the error it gave."""

        async def one(url: str) -> Status | RaftkvError:
            try:
                return await self.transport.probe(url)
            except RaftkvError as exc:
                return exc
            except (aiohttp.ClientError, TimeoutError) as exc:
                return ConnectError(f"{url}: {describe(exc)}", endpoint=url)

        return list(await asyncio.gather(*(one(u) for u in self.transport.selector.endpoints)))

    async def wait_leader_change(
        self, wait: float, *, leader: int | None = None, term: int | None = None
    ) -> Status:
        """Long-poll until the leader id or term differ from the given ones (default:
        the current ones), at most `wait` seconds."""
        params = {"wait": f"{wait:g}"}
        if leader is not None:
            params["leader"] = str(leader)
        if term is not None:
            params["term"] = str(term)
        ans = await self.request("GET", "/v1/status", target="any", params=params, extra_wait=wait)
        return Status.from_json(ans.json(), ans.endpoint)

    async def leader(self) -> Status:
        """The leader's own status (found through the endpoints)."""
        await self.transport.discover()
        url = self.transport.selector.usable_leader()
        if url is None:
            raise NoLeaderError("no endpoint knows a reachable leader", code="no_leader")
        return await self.status(url)

    async def members(self) -> Members:
        ans = await self.request("GET", "/v1/members", target="write")
        return Members.from_json(ans.json())

    async def add_member(
        self, name: str, peer_url: str, client_url: str = "", member_id: int | None = None
    ) -> Member:
        """Add a learner (idempotent: an existing member is answered as is). `member_id`:
        the joining node's own id (its status `id`); None = the founder id of `name`."""
        body: dict[str, Any] = {"name": name, "peer_url": peer_url, "client_url": client_url}
        if member_id is not None:
            body["id"] = int(member_id)
        ans = await self.request("POST", "/v1/members", target="write", json_body=body)
        obj = ans.json()
        obj.setdefault("role", "learner")
        return member_from_json(obj, ans.endpoint)

    async def promote_member(self, member_id: int) -> None:
        await self.request("POST", f"/v1/members/{int(member_id)}/promote", target="write")

    async def remove_member(self, member_id: int) -> None:
        """Remove a member. A retry that finds it gone counts as done."""
        try:
            await self.request("DELETE", f"/v1/members/{int(member_id)}", target="write")
        except MemberNotFoundError:
            members = await self.members()
            if any(m.id == member_id for m in members.members):
                raise

    async def transfer_leader(self, to: int | None = None) -> int:
        """Move leadership (default: to the most caught-up voter); the new leader's id."""
        body = {} if to is None else {"to": int(to)}
        ans = await self.request("POST", "/v1/leader/transfer", target="write", json_body=body)
        self.transport.selector.forget_leader()
        return int(ans.json()["leader"])
