"""The one module that talks to raftkv nodes: their HTTP API (pinned in docs/contracts.md).

Plain aiohttp, no node internals. Every call names the node by a base URL
(`https://<pod IP>:<client port>`): the operator reaches pods by IP, so it needs no DNS for
the headless Service's names. On a secured cluster (the default) the client has a
`NodeAuth`: the cluster's CA, the name every member's client certificate carries (checked
instead of the IP), and the operator's own admin token. Failures are `NodeError` (the node answered an error) or
`NodeUnreachable` (no answer in time).
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

# A founding member's Raft id, computed as the node does (raftkv.protocol). Only founders
# have it: a node that joins later draws a fresh id per incarnation, so the operator reads a
# joiner's id from its own /v1/status and every other id from the leader's member list.
from raftkv.protocol.ids import member_id as member_id
from raftkv.protocol.status import StatusFormatError
from raftkv_operator.nodestatus import NodeStatus

DEFAULT_TIMEOUT = 5.0
"""Seconds for one request that does not wait on the cluster (status, add, promote)."""
COMMIT_TIMEOUT = 30.0
"""Seconds for requests that wait for a commit or an election (remove, transfer, checkpoint)."""


class NodeError(Exception):
    """A node answered with an error status."""

    def __init__(self, url: str, status: int, code: str, message: str) -> None:
        super().__init__(f"{url}: {status} {code}: {message}")
        self.url = url
        self.status = status
        self.code = code
        self.message = message


class NodeUnreachable(Exception):
    """A node did not answer (connection refused, reset, timeout)."""


@dataclass(frozen=True)
class NodeAuth:
    """How the operator calls one secured cluster."""

    ssl_context: ssl.SSLContext
    """Trusts the cluster's CA only."""
    server_hostname: str
    """Checked against the member's certificate (the client Service's name, which every
    member's client certificate carries), since the URL holds a pod IP."""
    token: str
    """The operator's admin token for this cluster."""

    @classmethod
    def from_pem(cls, ca_pem: bytes, server_hostname: str, token: str) -> NodeAuth:
        ctx = ssl.create_default_context(cadata=ca_pem.decode())
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return cls(ctx, server_hostname, token)


class NodeClient:
    """Calls to raftkv nodes over one shared aiohttp session."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        commit_timeout: float = COMMIT_TIMEOUT,
        auth: NodeAuth | None = None,
    ) -> None:
        self.session = session
        self.timeout = timeout
        self.commit_timeout = commit_timeout
        self.auth = auth

    def with_auth(self, auth: NodeAuth | None) -> NodeClient:
        """The same session and timeouts, calling a cluster with `auth`."""
        return NodeClient(
            self.session, timeout=self.timeout, commit_timeout=self.commit_timeout, auth=auth
        )

    async def _call(
        self,
        method: str,
        url: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        timeout: float,
    ) -> Any:
        target = url.rstrip("/") + path
        secured: dict[str, Any] = {}
        if self.auth is not None:
            secured = {
                "ssl": self.auth.ssl_context,
                "server_hostname": self.auth.server_hostname,
                "headers": {"Authorization": f"Bearer {self.auth.token}"},
            }
        try:
            async with self.session.request(
                method,
                target,
                json=body,
                params=params,
                timeout=aiohttp.ClientTimeout(total=timeout),
                allow_redirects=False,
                **secured,
            ) as response:
                payload: Any
                try:
                    payload = await response.json(content_type=None)
                except ValueError:
                    payload = None
                if response.status >= 400:
                    error = payload if isinstance(payload, dict) else {}
                    raise NodeError(
                        url,
                        response.status,
                        str(error.get("error") or "http_error"),
                        str(error.get("message") or response.reason or ""),
                    )
                return payload
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            raise NodeUnreachable(f"{method} {target}: {e!r}") from e

    async def status(
        self,
        url: str,
        *,
        wait: float | None = None,
        leader: int | None = None,
        term: int | None = None,
    ) -> NodeStatus:
        """`/v1/status`; with `wait`, long-polls until the leader or term differs."""
        params: dict[str, str] = {}
        timeout = self.timeout
        if wait:
            params["wait"] = f"{wait:g}"
            if leader is not None:
                params["leader"] = str(leader)
            if term is not None:
                params["term"] = str(term)
            timeout += wait
        payload = await self._call("GET", url, "/v1/status", params=params, timeout=timeout)
        try:
            return NodeStatus.parse(payload)
        except StatusFormatError as e:
            raise NodeError(url, 200, "malformed_status", str(e)) from None

    async def add_learner(
        self, url: str, name: str, peer_url: str, client_url: str, member: int
    ) -> int:
        """Add `name` as a learner under id `member`, the id the node reports in its own
        /v1/status (idempotent: an existing member is answered as is). NodeError 409
        `member_id_removed` / `member_name_in_use` when that incarnation cannot join."""
        body = {"name": name, "id": member, "peer_url": peer_url, "client_url": client_url}
        answer = await self._call(
            "POST", url, "/v1/members", body=body, timeout=self.commit_timeout
        )
        return int(answer["id"])

    async def promote(self, url: str, member: int) -> None:
        """Promote a learner to voter; NodeError 409 `not_caught_up` while it lags."""
        await self._call("POST", url, f"/v1/members/{member}/promote", timeout=self.commit_timeout)

    async def remove(self, url: str, member: int) -> bool:
        """Remove a member once committed; False if it was not a member (already removed)."""
        try:
            await self._call("DELETE", url, f"/v1/members/{member}", timeout=self.commit_timeout)
        except NodeError as e:
            if e.status == 404 and e.code == "member_not_found":
                return False
            raise
        return True

    async def transfer_leader(self, url: str, to: int | None = None) -> int:
        """Hand leadership over (to `to`, or the most caught-up voter); the new leader's id."""
        body = {"to": to} if to is not None else {}
        answer = await self._call(
            "POST", url, "/v1/leader/transfer", body=body, timeout=self.commit_timeout
        )
        return int(answer["leader"])

    async def create_checkpoint(self, url: str, checkpoint_id: str) -> dict[str, Any]:
        """Checkpoint through the log; the manifest once applied on the leader (idempotent)."""
        answer = await self._call(
            "POST",
            url,
            "/v1/checkpoints",
            body={"id": checkpoint_id},
            timeout=self.commit_timeout + 60,
        )
        if not isinstance(answer, dict):
            raise NodeError(url, 200, "bad_answer", f"not a manifest: {answer!r}")
        return answer

    async def checkpoint(self, url: str, checkpoint_id: str) -> dict[str, Any] | None:
        """A checkpoint's manifest on this node, None if it has none by that id."""
        try:
            answer = await self._call(
                "GET", url, f"/v1/checkpoints/{checkpoint_id}", timeout=self.timeout
            )
        except NodeError as e:
            if e.status == 404:
                return None
            raise
        return answer if isinstance(answer, dict) else None

    async def checkpoint_indexes(self, url: str) -> dict[str, int]:
        """{id: Raft index} of the checkpoints this node holds (`GET /v1/checkpoints`)."""
        answer = await self._call("GET", url, "/v1/checkpoints", timeout=self.timeout)
        listed = answer.get("checkpoints") if isinstance(answer, dict) else None
        if not isinstance(listed, list):
            raise NodeError(url, 200, "bad_answer", f"not a checkpoint list: {answer!r}")
        return {
            str(m["id"]): int(m["index"])
            for m in listed
            if isinstance(m, dict) and "id" in m and isinstance(m.get("index"), int)
        }
