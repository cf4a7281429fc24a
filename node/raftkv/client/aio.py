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
endpoint strategy (`leader`, `random`, `round-robin`). Retries, backoff and the
error classes are described in `retry.py` and `errors.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import random
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from raftkv.client.credentials import Credentials
from raftkv.client.endpoints import DEFAULT_ENDPOINT, EndpointSelector
from raftkv.client.errors import (
    NOT_APPLIED_CODES,
    CheckpointNotFoundError,
    CheckpointVerifyError,
    CompactedError,
    ConnectError,
    KeyNotFoundError,
    LeaseNotFoundError,
    LockNotFoundError,
    MemberNotFoundError,
    NoLeaderError,
    RaftkvError,
    ServerError,
    UnavailableError,
    error_from_response,
)
from raftkv.client.models import (
    Bytes,
    CheckpointManifest,
    Compare,
    DeleteResult,
    KeyValue,
    Lease,
    LeaseInfo,
    LeaseRevoked,
    Lock,
    LockInfo,
    Member,
    Members,
    PutResult,
    RangeResult,
    Status,
    TxnOp,
    TxnResult,
    Unlocked,
    WatchEvent,
    to_bytes,
)
from raftkv.client.retry import LEADER_CHANGE_CODES, RetryPolicy, Session, SessionPool

CLIENT_ID_HEADER = "X-Raftkv-Client-Id"
SEQ_HEADER = "X-Raftkv-Seq"
# Per attempt: above the server's own 10 s commit timeout, so its 503 arrives first.
DEFAULT_ATTEMPT_TIMEOUT = 15.0
# A 503 from a follower's forward path names the leader it knows now (same scheme only).
LEADER_HINT = "X-Raftkv-Leader"
STATUS_PROBE_TIMEOUT = 2.0
WATCH_IDLE_TIMEOUT = 35.0  # the server sends a progress line every 10 s
DOWNLOAD_CHUNK = 1 << 16
DEFAULT_LOCK_TIMEOUT = 30.0

ProgressCallback = Callable[[int, int], None]  # (bytes so far, total bytes)


def key_path(key: bytes) -> str:
    """Percent-encode every byte but [A-Za-z0-9_~-]: `.`/`..` and `/` survive any
    URL normalisation on the way (the server decodes the raw path)."""
    return quote(key, safe="").replace(".", "%2E")


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
            raise ServerError(f"{self.endpoint} answered {self.status} with a body that is "
                              "not JSON", status=self.status, endpoint=self.endpoint) from None


class AsyncClient:
    """An asyncio raftkv client; use as `async with AsyncClient(...) as c:` or call
    `close()`. Safe for concurrent use by many tasks of one event loop."""

    def __init__(self, endpoints: str | Sequence[str] = DEFAULT_ENDPOINT, *,
                 strategy: str = "leader", retry: RetryPolicy | None = None,
                 attempt_timeout: float = DEFAULT_ATTEMPT_TIMEOUT,
                 client_id: str | None = None,
                 session: aiohttp.ClientSession | None = None,
                 rng: random.Random | None = None,
                 credentials: Credentials | None = None) -> None:
        """`credentials`: the CA to verify https endpoints with, a client certificate
        and/or a bearer token (`credentials_from_env()` reads the RAFTKV_* ones).
        Not used with a `session` of your own: configure that session instead."""
        self.credentials = credentials or Credentials()
        self._ssl = self.credentials.ssl_context()  # files are read (and checked) now
        self.selector = EndpointSelector(
            endpoints.split(",") if isinstance(endpoints, str) else endpoints, strategy, rng)
        self.retry = retry or RetryPolicy()
        self.attempt_timeout = attempt_timeout
        self.sessions = SessionPool(client_id)
        self._rng = rng or random.Random()
        self._http = session
        self._owns_http = session is None
        self._discovery: asyncio.Task[None] | None = None

    @property
    def endpoints(self) -> list[str]:
        return list(self.selector.endpoints)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._discovery is not None:
            self._discovery.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._discovery
        if self._http is not None and self._owns_http:
            await self._http.close()
        self._http = None

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=256, ssl=self._ssl or True),
                headers=self.credentials.headers(), auto_decompress=True)
            self._owns_http = True
        return self._http

    # ==================================================================================
    # Transport: endpoint choice, retries, sessions
    # ==================================================================================
    async def request(self, method: str, path: str, *, target: str = "read",
                      params: dict[str, str] | None = None, data: bytes | None = None,
                      json_body: Any = None, session: bool = False,
                      extra_wait: float = 0.0, ok: Iterable[int] = (200,)) -> Answer:
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
            headers[CLIENT_ID_HEADER] = held.client_id
            headers[SEQ_HEADER] = str(seq)
        try:
            return await self._with_retries(method, path, target, params or {}, body, headers,
                                            extra_wait, frozenset(ok), is_write=session)
        finally:
            if held is not None:
                self.sessions.release(held)

    async def _with_retries(self, method: str, path: str, target: str, params: dict[str, str],
                            body: bytes | None, headers: dict[str, str], extra_wait: float,
                            ok: frozenset[int], *, is_write: bool) -> Answer:
        policy = self.retry
        deadline = time.monotonic() + policy.deadline + extra_wait
        attempt = 0
        sent = False  # a write may have reached a node: its outcome is unknown on failure
        last: RaftkvError | None = None
        redirects = 0
        redirect_to: str | None = None
        while True:
            url = redirect_to or await self._pick(target)
            redirect_to = None
            query = dict(params)
            via_leader = target == "write" and url == self.selector.usable_leader()
            if via_leader and method != "GET":
                query["redirect"] = "1"  # a stale leader tells us the new one (307)
            remaining = deadline - time.monotonic()
            timeout = aiohttp.ClientTimeout(
                total=max(0.1, min(self.attempt_timeout + extra_wait, remaining)),
                sock_connect=min(5.0, self.attempt_timeout))
            code = ""
            retry_after: float | None = None
            try:
                async with self._session().request(
                        method, URL(url + path, encoded=True), params=query or None,
                        data=body, headers=headers, timeout=timeout,
                        allow_redirects=False) as resp:
                    payload = await resp.read()
                    status = resp.status
                    resp_headers = resp.headers
            except (aiohttp.ClientError, TimeoutError) as exc:
                sent = sent or not isinstance(exc, aiohttp.ClientConnectorError)
                self._endpoint_failed(url)
                last = ConnectError(f"{url}: {_describe(exc)}", endpoint=url,
                                    outcome_unknown=is_write and sent)
            else:
                if status in ok:
                    return Answer(status, resp_headers, payload, url)
                if status == 307 and "Location" in resp_headers and redirects < 5:
                    redirects += 1
                    redirect_to = self._follow_redirect(resp_headers["Location"])
                    if redirect_to is not None:
                        continue
                parsed = _parse_json(payload)
                retry_after = _retry_after(resp_headers.get("Retry-After"))
                error = error_from_response(status, parsed, endpoint=url,
                                            retry_after=retry_after)
                if not isinstance(error, UnavailableError):
                    raise error
                code = error.code
                if code in LEADER_CHANGE_CODES:
                    self.selector.forget_leader()
                elif is_write and code not in NOT_APPLIED_CODES:
                    sent = True  # e.g. 503 timeout, outcome_unknown: may have applied
                hint = resp_headers.get(LEADER_HINT, "")
                if hint.startswith(url.split("://", 1)[0] + "://") and (
                        self._follow_redirect(hint) is not None):
                    retry_after = None  # the node named the new leader: go there now
                error.outcome_unknown = is_write and sent
                last = error
            if target not in ("write", "read", "any") or not policy.may_retry(attempt):
                raise last
            wait = policy.delay(attempt, code, retry_after, self._rng)
            if time.monotonic() + wait >= deadline:
                raise last
            attempt += 1
            await asyncio.sleep(wait)

    async def _pick(self, target: str) -> str:
        sel = self.selector
        if target == "write" or (target == "read" and sel.strategy == "leader"):
            if sel.usable_leader() is None:
                await self._discover()
            return sel.for_write() if target == "write" else sel.for_read()
        if target == "read":
            return sel.for_read()
        if target == "any":
            return sel.any()
        return target

    def _endpoint_failed(self, url: str) -> None:
        sel = self.selector
        if url == sel.leader_url:
            if url in sel.endpoints:
                sel.forget_leader()
            else:
                sel.leader_unreachable(url)

    def _follow_redirect(self, location: str) -> str | None:
        parts = urlsplit(location)
        if not parts.scheme or not parts.netloc:
            return None
        origin = f"{parts.scheme}://{parts.netloc}"
        self.selector.set_leader(None, origin)
        return origin

    async def _discover(self) -> None:
        """Ask every endpoint's /v1/status for the leader; concurrent callers share one
        round. Leaves the leader unknown if nobody knows one (the caller then sends to
        an endpoint, which answers 503 no_leader, and backs off)."""
        if self._discovery is None or self._discovery.done():
            self._discovery = asyncio.ensure_future(self._discover_round())
        with contextlib.suppress(Exception):
            await asyncio.shield(self._discovery)

    async def _discover_round(self) -> None:
        statuses = await asyncio.gather(
            *(self._probe(url) for url in self.selector.endpoints), return_exceptions=True)
        best: Status | None = None
        for st in statuses:
            if isinstance(st, Status) and st.leader is not None and (
                    best is None or st.term > best.term):
                best = st
        if best is not None and best.leader is not None:
            url = best.leader.client_url or (best.endpoint if best.role == "leader" else "")
            self.selector.set_leader(best.leader.id, url or None)

    async def _probe(self, url: str) -> Status:
        timeout = aiohttp.ClientTimeout(total=STATUS_PROBE_TIMEOUT)
        async with self._session().get(url + "/v1/status", timeout=timeout) as resp:
            if resp.status != 200:
                raise error_from_response(resp.status, _parse_json(await resp.read()),
                                          endpoint=url)
            return Status.from_json(await resp.json(), url)

    # ==================================================================================
    # Key-value
    # ==================================================================================
    @staticmethod
    def _read_params(serializable: bool) -> dict[str, str]:
        params = {"encoding": "base64"}
        if serializable:
            params["consistency"] = "serializable"
        return params

    async def get(self, key: Bytes, *, serializable: bool = False) -> KeyValue | None:
        """The key's value and revisions, or None if it does not exist."""
        k = to_bytes(key)
        try:
            ans = await self.request("GET", "/v1/kv/" + key_path(k),
                                     params=self._read_params(serializable))
        except KeyNotFoundError:
            return None
        return KeyValue.from_headers(k, ans.body, ans.headers)

    async def get_prefix(self, prefix: Bytes = b"", *, limit: int = 0, keys_only: bool = False,
                         count_only: bool = False, serializable: bool = False) -> RangeResult:
        """Every key starting with `prefix` (b"": every key), sorted by key."""
        params = self._read_params(serializable)
        params["prefix"] = "1"
        if limit:
            params["limit"] = str(limit)
        if keys_only:
            params["keys_only"] = "1"
        if count_only:
            params["count_only"] = "1"
        ans = await self.request("GET", "/v1/kv/" + key_path(to_bytes(prefix)), params=params)
        return RangeResult.from_json(ans.json())

    async def put(self, key: Bytes, value: Bytes, *, lease: int = 0, prev_kv: bool = False,
                  if_version: int | None = None, if_mod_revision: int | None = None,
                  if_exists: bool | None = None, if_value: Bytes | None = None) -> PutResult:
        """Write `key`. The `if_*` conditions make it a compare-and-swap: when one does
        not hold, `CompareFailedError` (with `.current`) is raised and nothing changes."""
        params = {"encoding": "base64"}
        if lease:
            params["lease"] = str(lease)
        if prev_kv:
            params["prev_kv"] = "1"
        params.update(_conditions(if_version, if_mod_revision, if_exists, if_value))
        ans = await self.request("PUT", "/v1/kv/" + key_path(to_bytes(key)), target="write",
                                 params=params, data=to_bytes(value), session=True)
        return PutResult.from_json(ans.json())

    async def delete(self, key: Bytes, *, prev_kv: bool = False,
                     if_version: int | None = None, if_mod_revision: int | None = None,
                     if_exists: bool | None = None, if_value: Bytes | None = None
                     ) -> DeleteResult:
        """Delete `key`; `deleted` is 0 if it did not exist."""
        params = {"encoding": "base64"}
        if prev_kv:
            params["prev_kv"] = "1"
        params.update(_conditions(if_version, if_mod_revision, if_exists, if_value))
        try:
            ans = await self.request("DELETE", "/v1/kv/" + key_path(to_bytes(key)),
                                     target="write", params=params, session=True)
        except KeyNotFoundError:
            return DeleteResult(0)
        return DeleteResult.from_json(ans.json())

    async def delete_prefix(self, prefix: Bytes, *, prev_kv: bool = False) -> DeleteResult:
        params = {"encoding": "base64", "prefix": "1"}
        if prev_kv:
            params["prev_kv"] = "1"
        ans = await self.request("DELETE", "/v1/kv/" + key_path(to_bytes(prefix)),
                                 target="write", params=params, session=True)
        return DeleteResult.from_json(ans.json())

    async def txn(self, compare: Sequence[Compare] = (), success: Sequence[TxnOp] = (),
                  failure: Sequence[TxnOp] = ()) -> TxnResult:
        """All compares hold -> `success` ops, else `failure` ops; one revision, all or
        nothing. A failed compare is not an error: see `TxnResult.succeeded`."""
        body = {"compare": [c.to_json() for c in compare],
                "success": [op.to_json() for op in success],
                "failure": [op.to_json() for op in failure]}
        ans = await self.request("POST", "/v1/txn", target="write",
                                 params={"encoding": "base64"}, json_body=body, session=True)
        return TxnResult.from_json(ans.json())

    # ==================================================================================
    # Leases
    # ==================================================================================
    async def grant_lease(self, ttl: int, *, lease_id: int = 0) -> Lease:
        body: dict[str, int] = {"ttl": int(ttl)}
        if lease_id:
            body["id"] = lease_id
        ans = await self.request("POST", "/v1/leases", target="write", json_body=body,
                                 session=True)
        return Lease.from_json(ans.json())

    async def keepalive(self, lease_id: int) -> Lease:
        """Restart the lease's TTL (not a log entry: idempotent, retried freely)."""
        ans = await self.request("POST", f"/v1/leases/{int(lease_id)}/keepalive",
                                 target="write")
        return Lease.from_json(ans.json())

    async def revoke_lease(self, lease_id: int) -> LeaseRevoked:
        """Delete the lease, its keys, and release its locks."""
        ans = await self.request("DELETE", f"/v1/leases/{int(lease_id)}", target="write",
                                 session=True)
        return LeaseRevoked.from_json(ans.json())

    async def lease(self, lease_id: int) -> LeaseInfo | None:
        try:
            ans = await self.request("GET", f"/v1/leases/{int(lease_id)}",
                                     params={"encoding": "base64"})
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

    # ==================================================================================
    # Locks
    # ==================================================================================
    async def lock(self, name: str, lease: int, *, timeout: float = DEFAULT_LOCK_TIMEOUT,
                   wait: bool = True) -> Lock:
        """Acquire lock `name` for `lease`, waiting in FIFO order up to `timeout` s
        (`LockTimeoutError`), or not at all with `wait=False` (`LockHeldError`).

        Acquiring is idempotent per lease (the holder re-acquiring gets the same
        token), so it is retried without a session."""
        params = {"timeout": f"{timeout:g}"}
        if not wait:
            params["wait"] = "0"
        ans = await self.request("POST", f"/v1/locks/{quote(name, safe='')}", target="write",
                                 params=params, json_body={"lease": int(lease)},
                                 extra_wait=timeout if wait else 0.0)
        return Lock.from_json(ans.json())

    async def unlock(self, name: str, lease: int) -> Unlocked:
        ans = await self.request("DELETE", f"/v1/locks/{quote(name, safe='')}", target="write",
                                 params={"lease": str(int(lease))}, session=True)
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
    async def hold_lock(self, name: str, *, ttl: int = 10,
                        timeout: float = DEFAULT_LOCK_TIMEOUT, wait: bool = True
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

    # ==================================================================================
    # Watch
    # ==================================================================================
    async def watch(self, key: Bytes = b"", *, prefix: bool = False, start_revision: int = 0,
                    progress: bool = False, resume: bool = True,
                    give_up_after: float | None = None) -> AsyncIterator[WatchEvent]:
        """Changes of `key` (or of every key with that prefix), in revision order.

        `start_revision` replays history from there (else: changes from now on).
        With `resume` (default) a dropped stream is re-opened, on another member if
        need be, from where it stopped: no event is lost or repeated, for as long as
        it takes, or until no member could serve it for `give_up_after` seconds. A
        history that no longer reaches back raises `CompactedError`."""
        k = to_bytes(key)
        if not k and not prefix:
            raise ValueError("watch a key, or prefix=True (an empty prefix: every key)")
        next_rev = start_revision
        delivered = 0  # events of revision next_rev delivered (a txn's events share one)
        attempt = 0
        failing_since: float | None = None
        while True:
            url = await self._pick("read")
            params = {"encoding": "base64", "key_b64": _b64(k)}
            if prefix:
                params["prefix"] = "1"
            if next_rev:
                params["start_revision"] = str(next_rev)
            to_skip = delivered  # a re-opened stream replays revision next_rev
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=5.0,
                                            sock_read=WATCH_IDLE_TIMEOUT)
            error: RaftkvError | None = None
            try:
                async with self._session().get(url + "/v1/watch", params=params,
                                               timeout=timeout) as resp:
                    if resp.status != 200:
                        err = error_from_response(
                            resp.status, _parse_json(await resp.read()), endpoint=url,
                            retry_after=_retry_after(resp.headers.get("Retry-After")))
                        if not isinstance(err, UnavailableError) or not resume:
                            raise err
                        error = err
                    else:
                        attempt, failing_since = 0, None
                        if not next_rev:
                            next_rev = int(resp.headers.get("X-Raftkv-Revision", "0")) + 1
                        async for line in resp.content:
                            if not line.strip():
                                continue
                            obj = json.loads(line)
                            kind = obj.get("type")
                            if kind == "error":
                                if obj.get("error") == "compacted":
                                    raise CompactedError(str(obj.get("message")),
                                                         code="compacted", endpoint=url)
                                error = UnavailableError(
                                    f"watch closed by {url}: {obj.get('error')}",
                                    code=str(obj.get("error", "")), endpoint=url)
                                break
                            event = WatchEvent.from_json(obj)
                            if kind == "progress":
                                if event.revision + 1 > next_rev:
                                    next_rev, delivered, to_skip = event.revision + 1, 0, 0
                                if progress:
                                    yield event
                                continue
                            if event.revision == next_rev and to_skip:
                                to_skip -= 1
                                continue
                            if event.revision > next_rev:
                                next_rev, delivered, to_skip = event.revision, 0, 0
                            delivered += 1
                            yield event
                        else:
                            error = UnavailableError(f"watch stream from {url} ended",
                                                     endpoint=url)
            except (aiohttp.ClientError, TimeoutError) as exc:
                self._endpoint_failed(url)
                error = ConnectError(f"{url}: {_describe(exc)}", endpoint=url)
            assert error is not None
            now = time.monotonic()
            failing_since = now if failing_since is None else failing_since
            if not resume or (give_up_after is not None and now - failing_since > give_up_after):
                raise error
            if isinstance(error, NoLeaderError):
                self.selector.forget_leader()
            await asyncio.sleep(self.retry.backoff(attempt, self._rng))
            attempt += 1

    # ==================================================================================
    # Cluster
    # ==================================================================================
    async def status(self, endpoint: str | None = None) -> Status:
        """The status of `endpoint` (default: any endpoint that answers)."""
        if endpoint is not None:
            ans = await self.request("GET", "/v1/status", target=endpoint)
        else:
            ans = await self.request("GET", "/v1/status", target="any")
        st = Status.from_json(ans.json(), ans.endpoint)
        if st.leader is not None:
            self.selector.set_leader(st.leader.id, st.leader.client_url or None)
        return st

    async def statuses(self) -> list[Status | RaftkvError]:
        """The status of every configured endpoint, or the error it gave."""
        async def one(url: str) -> Status | RaftkvError:
            try:
                return await self._probe(url)
            except RaftkvError as exc:
                return exc
            except (aiohttp.ClientError, TimeoutError) as exc:
                return ConnectError(f"{url}: {_describe(exc)}", endpoint=url)

        return list(await asyncio.gather(*(one(u) for u in self.selector.endpoints)))

    async def wait_leader_change(self, wait: float, *, leader: int | None = None,
                                 term: int | None = None) -> Status:
        """Long-poll until the leader id or term differ from the given ones (default:
        the current ones), at most `wait` seconds."""
        params = {"wait": f"{wait:g}"}
        if leader is not None:
            params["leader"] = str(leader)
        if term is not None:
            params["term"] = str(term)
        ans = await self.request("GET", "/v1/status", target="any", params=params,
                                 extra_wait=wait)
        return Status.from_json(ans.json(), ans.endpoint)

    async def leader(self) -> Status:
        """The leader's own status (found through the endpoints)."""
        await self._discover()
        url = self.selector.usable_leader()
        if url is None:
            raise NoLeaderError("no endpoint knows a reachable leader", code="no_leader")
        return await self.status(url)

    async def members(self) -> Members:
        ans = await self.request("GET", "/v1/members", target="write")
        return Members.from_json(ans.json())

    async def add_member(self, name: str, peer_url: str, client_url: str = "",
                         member_id: int | None = None) -> Member:
        """Add a learner (idempotent: an existing member is answered as is). `member_id`:
        the joining node's own id (its status `id`); None = the founder id of `name`."""
        body: dict[str, Any] = {"name": name, "peer_url": peer_url, "client_url": client_url}
        if member_id is not None:
            body["id"] = int(member_id)
        ans = await self.request("POST", "/v1/members", target="write", json_body=body)
        obj = ans.json()
        obj.setdefault("role", "learner")
        return Member.from_json(obj)

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
        self.selector.forget_leader()
        return int(ans.json()["leader"])

    # ==================================================================================
    # Checkpoints
    # ==================================================================================
    async def create_checkpoint(self, checkpoint_id: str | None = None) -> CheckpointManifest:
        """Checkpoint the state machine on every member; the leader's manifest.

        The id is chosen here when not given, so a retry cannot make two."""
        cid = checkpoint_id or (time.strftime("ckpt-%Y%m%dT%H%M%SZ-", time.gmtime())
                                + secrets.token_hex(3))
        ans = await self.request("POST", "/v1/checkpoints", target="write",
                                 json_body={"id": cid}, session=True, extra_wait=60.0)
        return CheckpointManifest.from_json(ans.json())

    async def checkpoints(self) -> list[CheckpointManifest]:
        ans = await self.request("GET", "/v1/checkpoints", target="write")
        return [CheckpointManifest.from_json(m) for m in ans.json()["checkpoints"]]

    async def checkpoint(self, checkpoint_id: str) -> CheckpointManifest | None:
        try:
            ans = await self.request("GET", f"/v1/checkpoints/{quote(checkpoint_id, safe='')}",
                                     target="write")
        except CheckpointNotFoundError:
            return None
        return CheckpointManifest.from_json(ans.json())

    async def download_checkpoint(self, checkpoint_id: str, out_dir: str | os.PathLike[str], *,
                                  progress: ProgressCallback | None = None
                                  ) -> CheckpointManifest:
        """Write `<out_dir>/data` and `<out_dir>/manifest.json` of a checkpoint and
        verify size and sha256 against the manifest (`CheckpointVerifyError`).

        Every member holds the same bytes, so the endpoints are tried in turn until
        one has it. Files appear only once verified (written to temp names, fsynced,
        renamed)."""
        cid = quote(checkpoint_id, safe="")
        last: RaftkvError | None = None
        for url in self._download_order():
            try:
                ans = await self.request("GET", f"/v1/checkpoints/{cid}", target=url)
                manifest = CheckpointManifest.from_json(ans.json())
                await self._download_data(url, cid, manifest, Path(out_dir), progress)
                return manifest
            except (CheckpointNotFoundError, UnavailableError) as exc:
                last = exc
        assert last is not None
        raise last

    def _download_order(self) -> list[str]:
        leader = self.selector.usable_leader()
        urls = list(self.selector.endpoints)
        if leader in urls:
            urls.remove(leader)
            urls.insert(0, leader)
        return urls

    async def _download_data(self, url: str, cid: str, manifest: CheckpointManifest,
                             out_dir: Path, progress: ProgressCallback | None) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        part = out_dir / f".data.{secrets.token_hex(4)}.part"
        digest = hashlib.sha256()
        size = 0
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5.0,
                                        sock_read=self.attempt_timeout)
        try:
            try:
                async with self._session().get(f"{url}/v1/checkpoints/{cid}/data",
                                               timeout=timeout) as resp:
                    if resp.status != 200:
                        raise error_from_response(resp.status, _parse_json(await resp.read()),
                                                  endpoint=url)
                    header_sum = resp.headers.get("X-Raftkv-Checkpoint-Sha256")
                    if header_sum and header_sum != manifest.sha256:
                        raise CheckpointVerifyError(
                            f"{url} serves checkpoint {manifest.id} with sha256 {header_sum}, "
                            f"its manifest says {manifest.sha256}", endpoint=url)
                    with open(part, "wb") as f:
                        if progress is not None:
                            progress(0, manifest.size)
                        async for chunk in resp.content.iter_chunked(DOWNLOAD_CHUNK):
                            f.write(chunk)
                            digest.update(chunk)
                            size += len(chunk)
                            if progress is not None:
                                progress(size, manifest.size)
                        f.flush()
                        os.fsync(f.fileno())
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise ConnectError(f"{url}: download failed: {_describe(exc)}",
                                   endpoint=url) from None
            if size != manifest.size:
                raise CheckpointVerifyError(
                    f"checkpoint {manifest.id}: downloaded {size} bytes, the manifest says size "
                    f"{manifest.size}", endpoint=url)
            if digest.hexdigest() != manifest.sha256:
                raise CheckpointVerifyError(
                    f"checkpoint {manifest.id}: sha256 {digest.hexdigest()} does not match "
                    f"the manifest's {manifest.sha256}", endpoint=url)
            os.replace(part, out_dir / "data")
            _write_durably(out_dir / "manifest.json",
                           json.dumps(manifest.raw or _manifest_json(manifest),
                                      indent=2).encode())
            _fsync_dir(out_dir)
        finally:
            with contextlib.suppress(FileNotFoundError):
                part.unlink()


# --- helpers ------------------------------------------------------------------------
def _conditions(if_version: int | None, if_mod_revision: int | None, if_exists: bool | None,
                if_value: Bytes | None) -> dict[str, str]:
    out: dict[str, str] = {}
    if if_version is not None:
        out["if_version"] = str(int(if_version))
    if if_mod_revision is not None:
        out["if_mod_revision"] = str(int(if_mod_revision))
    if if_exists is not None:
        out["if_exists"] = "1" if if_exists else "0"
    if if_value is not None:
        raw = to_bytes(if_value)
        try:
            out["if_value"] = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("if_value must be UTF-8 text (a query parameter)") from None
    return out


def _parse_json(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return (f"TLS: the server's certificate is not trusted ({exc.certificate_error}); "
                "give the cluster's CA with --cacert / RAFTKV_CACERT")
    if isinstance(exc, aiohttp.ClientConnectorSSLError):
        return f"TLS handshake failed: {exc.os_error}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        errno = exc.os_error.errno
        return f"cannot connect: {os.strerror(errno) if errno else exc.os_error}"
    text = str(exc) or type(exc).__name__
    return text


def _b64(data: bytes) -> str:
    import base64
    return base64.b64encode(data).decode("ascii")


def _manifest_json(m: CheckpointManifest) -> dict[str, Any]:
    return {"id": m.id, "index": m.index, "term": m.term, "sha256": m.sha256, "size": m.size,
            "time": m.time, "members": m.members}


def _write_durably(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
