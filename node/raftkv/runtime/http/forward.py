"""Leader forwarding: a write that reaches a follower is sent on to the leader
over a keep-alive session (or answered 307 when the client asks `?redirect=1`)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import aiohttp.abc
from aiohttp import web

from raftkv.consensus import NONE, StateRole
from raftkv.protocol.headers import FORWARDED, LEADER_HINT
from raftkv.runtime.errors import ApiError, no_leader, unavailable
from raftkv.runtime.http.errors import wait_interrupted
from raftkv.runtime.http.params import MAX_WAIT_SECONDS, flag, float_param, read_body
from raftkv.runtime.http.service import Forward, KvService, identity_of
from raftkv.security.tls import ReloadingTLS

# On a 503 from the forward path: the client URL of the leader this node knows now.

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class LeaderForwarder:
    def __init__(self, service: KvService, tls: ReloadingTLS | None = None) -> None:
        self.service = service
        self.node = service.node
        self.cfg = service.cfg
        self.tls = tls
        self.session: aiohttp.ClientSession | None = None

    async def open(self, app: web.Application) -> None:
        self.session = forwarding_session(self.cfg.resolve)

    async def close(self, app: web.Application) -> None:
        if self.session is not None:
            await self.session.close()

    def leader_only(self, handler: Handler) -> Handler:
        """Run `handler` here if this node leads, else forward or redirect to the leader."""

        async def wrapped(request: web.Request) -> web.StreamResponse:
            if self.node.core.role == StateRole.LEADER:
                try:
                    return await handler(request)
                except Forward:
                    pass  # lost leadership before anything was proposed: forward after all
            return await self.to_leader(request)

        return wrapped

    async def to_leader(self, request: web.Request) -> web.StreamResponse:
        node = self.node
        url = node.leader_client_url() or await node.leader_client_url_within(
            2 * node.cfg.election_timeout
        )
        leader = node.core.leader
        if leader == NONE or leader == node.id or url is None:
            raise no_leader()
        if request.headers.get(FORWARDED):
            # Forwarded once already: the cluster moved on; let the client retry there.
            raise ApiError(
                503,
                "not_leader",
                f"not the leader; leader is {leader} at {url}",
                retry_after=1.0,
                headers={LEADER_HINT: url},
            )
        target = url.rstrip("/") + request.path_qs
        # The caller's identity travels with its own credential: the Authorization
        # header is forwarded and the leader checks it again (it trusts no follower's
        # word). A client certificate cannot be forwarded: such a caller is sent to
        # the leader with a 307 and presents its certificate there (docs/security.md).
        if flag(request, "redirect") or identity_of(request).source == "certificate":
            raise ApiError(307, "redirect", f"the leader is at {url}", headers={"Location": target})
        try:
            return await self._forward(request, target, leader)
        except ApiError as exc:
            if exc.status == 503 and LEADER_HINT not in exc.headers:
                exc.headers.update(await self._hint(leader))
            raise

    async def _hint(self, stale: int) -> dict[str, str]:
        """Where the client should go next: the leader now known, if not `stale` (a
        first-time leader's URL is learnt one commit after its election: wait that
        long, at most an election timeout)."""
        if self.node.core.leader in (NONE, stale):
            return {}
        url = await self.node.leader_client_url_within(self.cfg.election_timeout)
        return {LEADER_HINT: url} if url and self.node.core.leader != stale else {}

    async def _forward(self, request: web.Request, target: str, leader: int) -> web.Response:
        assert self.session is not None
        if self.tls is not None and not target.startswith("https://"):
            # A secure node never sends a caller's token in clear (a leader advertising
            # an http:// client URL is a misconfiguration).
            raise unavailable(
                "leader_unreachable",
                "the leader's client URL is not https; not forwarding credentials in clear",
            )
        body = await read_body(request, self.cfg.max_request_bytes)
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower().startswith("x-raftkv-") or k.lower() in ("content-type", "authorization")
        }
        headers[FORWARDED] = self.cfg.name
        wait = float_param(request, "timeout", 0, MAX_WAIT_SECONDS)
        relaying = asyncio.ensure_future(
            self._relay(request.method, target, body, headers, self.cfg.request_timeout + wait)
        )
        # The relay also ends when another member is known to lead (the one we
        # forwarded to died or is paused: waiting for its answer only delays the
        # client), and, for a request that may wait at the leader (a queued lock
        # acquire), when this node shuts down (acquiring is idempotent per lease).
        moved = asyncio.ensure_future(self.node.wait_leader_moved(leader))
        stopping = asyncio.ensure_future(self.node.long_polls_ended.wait()) if wait else None
        waiting = {relaying, moved} | ({stopping} if stopping is not None else set())
        try:
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (moved, stopping):
                if task is not None:
                    task.cancel()
            if not relaying.done():
                relaying.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await relaying
        if not relaying.cancelled():
            return relaying.result()
        if stopping is not None and stopping.done():
            raise wait_interrupted()
        raise ApiError(
            503,
            "outcome_unknown",
            "leadership moved while the request was forwarded to the old leader; "
            "it may or may not have applied: retry (with the same session headers "
            "it applies at most once)",
            retry_after=1.0,
            headers=await self._hint(leader),
        )

    async def _relay(
        self, method: str, target: str, body: bytes, headers: dict[str, str], budget: float
    ) -> web.Response:
        assert self.session is not None
        # A leader that does not accept a connection within an election timeout is as
        # good as gone; one that accepted answers within its --request-timeout, plus
        # slack of two election timeouts (the relay also ends when leadership moves).
        election = self.cfg.election_timeout
        try:
            async with self.session.request(
                method,
                target,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=budget + 2 * election, sock_connect=election),
                ssl=self.tls.client_context() if self.tls is not None else True,
            ) as resp:
                payload = await resp.read()
                relay = {
                    k: v
                    for k, v in resp.headers.items()
                    if k.lower().startswith("x-raftkv-") or k.lower() in ("retry-after", "location")
                }
                return web.Response(
                    body=payload, status=resp.status, headers=relay, content_type=resp.content_type
                )
        except aiohttp.ClientConnectorError as exc:  # never connected: not applied
            raise unavailable(
                "leader_unreachable", f"forwarding to the leader failed: {exc!r}"
            ) from None
        except (TimeoutError, aiohttp.ClientError) as exc:  # sent, or may have been
            raise unavailable(
                "outcome_unknown",
                f"forwarding to the leader failed after sending: {exc!r}; the "
                "write may or may not have applied (retry with the same "
                "session headers to apply it at most once)",
            ) from None


def _resolver(resolve: dict[str, str]) -> aiohttp.abc.AbstractResolver:
    base = aiohttp.ThreadedResolver()
    if not resolve:
        return base

    class StaticFirst(aiohttp.abc.AbstractResolver):
        async def resolve(
            self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
        ) -> list[Any]:
            return await base.resolve(resolve.get(host, host), port, family)

        async def close(self) -> None:
            await base.close()

    return StaticFirst()


def forwarding_session(resolve: dict[str, str]) -> aiohttp.ClientSession:
    """The session a follower forwards writes to the leader with.

    It must never re-send a request by itself: aiohttp silently retries an
    "idempotent" PUT/DELETE once when a kept-alive connection drops before the
    answer, so a write the leader applied just before the drop would be applied
    twice (a linearizability bug the chaos suite's checker reasons about). aiohttp
    has no public switch; its private flag is turned off, and where it is gone
    connections are not kept alive, which also rules the retry out."""
    keep_alive = "_retry_connection" in getattr(aiohttp.ClientSession, "ATTRS", ())
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(
            limit=256, ttl_dns_cache=30, force_close=not keep_alive, resolver=_resolver(resolve)
        ),
        auto_decompress=False,
    )
    if keep_alive:
        session._retry_connection = False
    return session
