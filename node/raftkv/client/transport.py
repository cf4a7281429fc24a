"""How the client reaches the cluster: one HTTP connection pool, the endpoint
to send each call to (the leader for writes, the read strategy for reads,
`/v1/status` to find the leader, 307s and leader hints to follow it), sessions
on writes so a retried write applies once, and retries with backoff within a
deadline (`retry.py`, `errors.py`). The API surface is `aio.AsyncClient`: one
mixin per resource (`kv.py`, `leases.py`, ...) over `resource.ResourceApi`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from raftkv.client.credentials import Credentials
from raftkv.client.endpoints import EndpointSelector
from raftkv.client.errors import (
    NOT_APPLIED_CODES,
    ConnectError,
    RaftkvError,
    ServerError,
    UnavailableError,
    error_from_response,
)
from raftkv.client.models import Status
from raftkv.client.retry import LEADER_CHANGE_CODES, RetryPolicy, Session, SessionPool
from raftkv.protocol.headers import CLIENT_ID, LEADER_HINT, SEQ

# Per attempt: above the server's own 10 s commit timeout, so its 503 arrives first.
DEFAULT_ATTEMPT_TIMEOUT = 15.0
STATUS_PROBE_TIMEOUT = 2.0


@dataclass(frozen=True, slots=True)
class Answer:
    """A successful HTTP answer."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    endpoint: str

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            raise ServerError(
                f"{self.endpoint} answered {self.status} with a body that is not JSON",
                status=self.status,
                endpoint=self.endpoint,
            ) from None


class Transport:
    """Safe for concurrent use by many tasks of one event loop."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        strategy: str,
        retry: RetryPolicy,
        attempt_timeout: float,
        client_id: str | None,
        session: aiohttp.ClientSession | None,
        rng: random.Random | None,
        credentials: Credentials,
    ) -> None:
        self.credentials = credentials
        self._ssl = credentials.ssl_context()  # files are read (and checked) now
        self.selector = EndpointSelector(endpoints, strategy, rng)
        self.retry = retry
        self.attempt_timeout = attempt_timeout
        self.sessions = SessionPool(client_id)
        self.rng = rng or random.Random()
        self._http = session
        self._owns_http = session is None
        self._discovery: asyncio.Task[None] | None = None

    async def close(self) -> None:
        if self._discovery is not None:
            self._discovery.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._discovery
        if self._http is not None and self._owns_http:
            await self._http.close()
        self._http = None

    def session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=256, ssl=self._ssl or True),
                headers=self.credentials.headers(),
                auto_decompress=True,
            )
            self._owns_http = True
        return self._http

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
        body = data
        headers: dict[str, str] = {}
        if json_body is not None:
            body = json.dumps(json_body, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        held: Session | None = None
        if session:
            held, seq = self.sessions.acquire()
            headers[CLIENT_ID] = held.client_id
            headers[SEQ] = str(seq)
        try:
            return await self._with_retries(
                method,
                path,
                target,
                params or {},
                body,
                headers,
                extra_wait,
                frozenset(ok),
                is_write=session,
            )
        finally:
            if held is not None:
                self.sessions.release(held)

    async def _with_retries(
        self,
        method: str,
        path: str,
        target: str,
        params: dict[str, str],
        body: bytes | None,
        headers: dict[str, str],
        extra_wait: float,
        ok: frozenset[int],
        *,
        is_write: bool,
    ) -> Answer:
        policy = self.retry
        deadline = time.monotonic() + policy.deadline + extra_wait
        attempt = 0
        sent = False  # a write may have reached a node: its outcome is unknown on failure
        last: RaftkvError | None = None
        redirects = 0
        redirect_to: str | None = None
        while True:
            url = redirect_to or await self.pick(target)
            redirect_to = None
            query = dict(params)
            via_leader = target == "write" and url == self.selector.usable_leader()
            if via_leader and method != "GET":
                query["redirect"] = "1"  # a stale leader tells us the new one (307)
            remaining = deadline - time.monotonic()
            timeout = aiohttp.ClientTimeout(
                total=max(0.1, min(self.attempt_timeout + extra_wait, remaining)),
                sock_connect=min(5.0, self.attempt_timeout),
            )
            code = ""
            retry_after: float | None = None
            try:
                async with self.session().request(
                    method,
                    URL(url + path, encoded=True),
                    params=query or None,
                    data=body,
                    headers=headers,
                    timeout=timeout,
                    allow_redirects=False,
                ) as resp:
                    payload = await resp.read()
                    status = resp.status
                    resp_headers = resp.headers
            except (aiohttp.ClientError, TimeoutError) as exc:
                sent = sent or not isinstance(exc, aiohttp.ClientConnectorError)
                self.endpoint_failed(url)
                last = ConnectError(
                    f"{url}: {describe(exc)}", endpoint=url, outcome_unknown=is_write and sent
                )
            else:
                if status in ok:
                    return Answer(status, resp_headers, payload, url)
                if status == 307 and "Location" in resp_headers and redirects < 5:
                    redirects += 1
                    redirect_to = self.follow_redirect(resp_headers["Location"])
                    if redirect_to is not None:
                        continue
                parsed = parse_json(payload)
                retry_after = parse_retry_after(resp_headers.get("Retry-After"))
                error = error_from_response(status, parsed, endpoint=url, retry_after=retry_after)
                if not isinstance(error, UnavailableError):
                    raise error
                code = error.code
                if code in LEADER_CHANGE_CODES:
                    self.selector.forget_leader()
                elif is_write and code not in NOT_APPLIED_CODES:
                    sent = True  # e.g. 503 timeout, outcome_unknown: may have applied
                # A 503 from a follower's forward path names the leader it knows now (same
                # scheme only).
                hint = resp_headers.get(LEADER_HINT, "")
                if hint.startswith(url.split("://", 1)[0] + "://") and (
                    self.follow_redirect(hint) is not None
                ):
                    retry_after = None  # the node named the new leader: go there now
                error.outcome_unknown = is_write and sent
                last = error
            if target not in ("write", "read", "any") or not policy.may_retry(attempt):
                raise last
            wait = policy.delay(attempt, code, retry_after, self.rng)
            if time.monotonic() + wait >= deadline:
                raise last
            attempt += 1
            await asyncio.sleep(wait)

    async def pick(self, target: str) -> str:
        sel = self.selector
        if target == "write" or (target == "read" and sel.strategy == "leader"):
            if sel.usable_leader() is None:
                await self.discover()
            return sel.for_write() if target == "write" else sel.for_read()
        if target == "read":
            return sel.for_read()
        if target == "any":
            return sel.any()
        return target

    def endpoint_failed(self, url: str) -> None:
        sel = self.selector
        if url == sel.leader_url:
            if url in sel.endpoints:
                sel.forget_leader()
            else:
                sel.leader_unreachable(url)

    def follow_redirect(self, location: str) -> str | None:
        parts = urlsplit(location)
        if not parts.scheme or not parts.netloc:
            return None
        origin = f"{parts.scheme}://{parts.netloc}"
        self.selector.set_leader(None, origin)
        return origin

    async def discover(self) -> None:
        """Ask every endpoint's /v1/status for the leader; concurrent callers share one
        round. Leaves the leader unknown if nobody knows one (the caller then sends to
        an endpoint, which answers 503 no_leader, and backs off)."""
        if self._discovery is None or self._discovery.done():
            self._discovery = asyncio.ensure_future(self._discover_round())
        with contextlib.suppress(Exception):
            await asyncio.shield(self._discovery)

    async def _discover_round(self) -> None:
        statuses = await asyncio.gather(
            *(self.probe(url) for url in self.selector.endpoints), return_exceptions=True
        )
        best: Status | None = None
        for st in statuses:
            if (
                isinstance(st, Status)
                and st.leader is not None
                and (best is None or st.term > best.term)
            ):
                best = st
        if best is not None and best.leader is not None:
            url = best.leader.client_url or (best.endpoint if best.role == "leader" else "")
            self.selector.set_leader(best.leader.id, url or None)

    async def probe(self, url: str) -> Status:
        timeout = aiohttp.ClientTimeout(total=STATUS_PROBE_TIMEOUT)
        async with self.session().get(url + "/v1/status", timeout=timeout) as resp:
            if resp.status != 200:
                raise error_from_response(resp.status, parse_json(await resp.read()), endpoint=url)
            return Status.from_json(await resp.json(), url)


def parse_json(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None


def parse_retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return (
            f"TLS: the server's certificate is not trusted ({exc.certificate_error}); "
            "give the cluster's CA with --cacert / RAFTKV_CACERT"
        )
    if isinstance(exc, aiohttp.ClientConnectorSSLError):
        return f"TLS handshake failed: {exc.os_error}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        errno = exc.os_error.errno
        return f"cannot connect: {os.strerror(errno) if errno else exc.os_error}"
    text = str(exc) or type(exc).__name__
    return text
