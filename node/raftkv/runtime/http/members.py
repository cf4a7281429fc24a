"""`/v1/members` and `/v1/leader/transfer`: membership and leadership."""

from __future__ import annotations

from aiohttp import web

from raftkv.consensus import ConfChange, ConfChangeType
from raftkv.runtime.bootstrap import member_context
from raftkv.runtime.errors import bad_request, conflict, not_found
from raftkv.runtime.http.params import match_int
from raftkv.runtime.http.routing import Route, json_response
from raftkv.runtime.http.service import KvService
from raftkv.runtime.identity import member_id
from raftkv.runtime.node import PROMOTE_LAG_ENTRIES


class MemberResource:
    def __init__(self, service: KvService) -> None:
        self.service = service
        self.node = service.node
        self.cfg = service.cfg

    def routes(self) -> list[Route]:
        return [
            Route("GET", "/v1/members", self.list, "read"),
            Route("POST", "/v1/members", self.add, "admin", leader=True),
            Route("POST", "/v1/members/{id}/promote", self.promote, "admin", leader=True),
            Route("DELETE", "/v1/members/{id}", self.remove, "admin", leader=True),
            Route("POST", "/v1/leader/transfer", self.transfer, "admin", leader=True),
        ]

    async def list(self, request: web.Request) -> web.Response:
        return json_response({"members": self.node.members(), "leader": self.node.core.leader})

    async def add(self, request: web.Request) -> web.Response:
        body = await self.service.json_body(request)
        name, peer_url, client_url = (body.get(f) for f in ("name", "peer_url", "client_url"))
        if not isinstance(name, str) or not name:
            raise bad_request("'name' is required")
        if not isinstance(peer_url, str) or ":" not in peer_url:
            raise bad_request("'peer_url' (host:port) is required")
        if client_url is None:
            client_url = ""
        if not isinstance(client_url, str):
            raise bad_request("'client_url' must be a string")
        # The joining node's own id (its /v1/status); absent = member_id(name), which is
        # only right for a founder's name (legacy): a joiner draws a fresh id.
        mid = body.get("id", member_id(name))
        if type(mid) is not int or not 0 < mid < 2**53:
            raise bad_request("'id' must be an integer in (0, 2**53)")
        core = self.node.core
        members = self.node.members()
        if mid in core.conf.members():
            existing = next(m for m in members if m["id"] == mid)
            return json_response({**existing, "existing": True})
        if mid in self.node.fsm.removed_members:
            raise conflict(
                "member_id_removed",
                f"member id {mid} was removed from this cluster and never comes "
                "back: start the node with an empty data directory for a fresh id",
            )
        same_name = next((m for m in members if m["name"] == name), None)
        if same_name is not None:
            raise conflict(
                "member_name_in_use",
                f"member {same_name['id']} is already named {name!r}: remove that "
                "incarnation first",
            )
        await self.service.conf_change(
            ConfChange(ConfChangeType.ADD_LEARNER, mid, member_context(name, peer_url, client_url))
        )
        return json_response(
            {
                "id": mid,
                "name": name,
                "peer_url": peer_url,
                "client_url": client_url,
                "role": "learner",
            }
        )

    async def promote(self, request: web.Request) -> web.Response:
        mid = match_int(request, "id", "member id")
        conf = self.node.core.conf
        if mid in conf.voters:
            return json_response({"id": mid, "role": "voter"})
        if mid not in conf.learners:
            raise not_found(f"member {mid} is not a learner of this cluster", "member_not_found")
        lag = self.node.learner_lag(mid)
        if lag is None or lag > PROMOTE_LAG_ENTRIES or not self.node.core.match_index(mid):
            raise conflict(
                "not_caught_up",
                f"learner {mid} is {lag} entries behind the commit index; "
                f"promote it once within {PROMOTE_LAG_ENTRIES}",
            )
        await self.service.conf_change(ConfChange(ConfChangeType.PROMOTE, mid))
        return json_response({"id": mid, "role": "voter"})

    async def remove(self, request: web.Request) -> web.Response:
        mid = match_int(request, "id", "member id")
        if mid not in self.node.core.conf.members():
            raise not_found(f"member {mid} is not in the cluster", "member_not_found")
        await self.service.conf_change(ConfChange(ConfChangeType.REMOVE, mid))
        return json_response({"id": mid, "removed": True})

    async def transfer(self, request: web.Request) -> web.Response:
        body = await self.service.json_body(request, optional=True)
        node = self.node
        core = node.core
        target = body.get("to")
        if target is None:
            target = node.transfer_target()
            if target is None:
                raise conflict("no_transfer_target", "there is no other voter to lead")
        if type(target) is not int:
            raise bad_request("'to' must be a member id")
        if target == node.id:
            return json_response({"leader": node.id})
        if target not in core.conf.voters:
            raise bad_request(f"member {target} is not a voter", "not_a_voter")
        new_leader = await node.transfer_leadership(target, 3 * self.cfg.election_timeout + 1)
        if new_leader is None:
            raise conflict("transfer_failed", f"leadership did not move to {target} in time")
        return json_response({"leader": new_leader})
