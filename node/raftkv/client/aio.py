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
cluster (endpoints, retries, sessions) is `transport.py`; this module is the API
surface. Retries, backoff and the error classes are described in `retry.py` and
`errors.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from raftkv.client.credentials import Credentials
from raftkv.client.download import ProgressCallback, download_data
from raftkv.client.endpoints import DEFAULT_ENDPOINT, EndpointSelector
from raftkv.client.errors import (
    CheckpointNotFoundError,
    ConnectError,
    KeyNotFoundError,
    LeaseNotFoundError,
    LockNotFoundError,
    MemberNotFoundError,
    NoLeaderError,
    RaftkvError,
    UnavailableError,
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
    member_from_json,
    to_bytes,
)
from raftkv.client.retry import RetryPolicy, SessionPool
from raftkv.client.transport import (
    DEFAULT_ATTEMPT_TIMEOUT,
    Answer,
    Transport,
    describe,
)
from raftkv.client.watch import watch_events

__all__ = ["DEFAULT_LOCK_TIMEOUT", "AsyncClient", "ProgressCallback", "key_path"]

DEFAULT_LOCK_TIMEOUT = 30.0


def key_path(key: bytes) -> str:
    """Percent-encode every byte but [A-Za-z0-9_~-]: `.`/`..` and `/` survive any
    URL normalisation on the way (the server decodes the raw path)."""
    return quote(key, safe="").replace(".", "%2E")


class AsyncClient:
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
            ans = await self.request(
                "GET", "/v1/kv/" + key_path(k), params=self._read_params(serializable)
            )
        except KeyNotFoundError:
            return None
        return KeyValue.from_headers(k, ans.body, ans.headers)

    async def get_prefix(
        self,
        prefix: Bytes = b"",
        *,
        limit: int = 0,
        keys_only: bool = False,
        count_only: bool = False,
        serializable: bool = False,
    ) -> RangeResult:
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

    async def put(
        self,
        key: Bytes,
        value: Bytes,
        *,
        lease: int = 0,
        prev_kv: bool = False,
        if_version: int | None = None,
        if_mod_revision: int | None = None,
        if_exists: bool | None = None,
        if_value: Bytes | None = None,
    ) -> PutResult:
        """Write `key`. The `if_*` conditions make it a compare-and-swap: when one does
        not hold, `CompareFailedError` (with `.current`) is raised and nothing changes."""
        params = {"encoding": "base64"}
        if lease:
            params["lease"] = str(lease)
        if prev_kv:
            params["prev_kv"] = "1"
        params.update(_conditions(if_version, if_mod_revision, if_exists, if_value))
        ans = await self.request(
            "PUT",
            "/v1/kv/" + key_path(to_bytes(key)),
            target="write",
            params=params,
            data=to_bytes(value),
            session=True,
        )
        return PutResult.from_json(ans.json())

    async def delete(
        self,
        key: Bytes,
        *,
        prev_kv: bool = False,
        if_version: int | None = None,
        if_mod_revision: int | None = None,
        if_exists: bool | None = None,
        if_value: Bytes | None = None,
    ) -> DeleteResult:
        """Delete `key`; `deleted` is 0 if it did not exist."""
        params = {"encoding": "base64"}
        if prev_kv:
            params["prev_kv"] = "1"
        params.update(_conditions(if_version, if_mod_revision, if_exists, if_value))
        try:
            ans = await self.request(
                "DELETE",
                "/v1/kv/" + key_path(to_bytes(key)),
                target="write",
                params=params,
                session=True,
            )
        except KeyNotFoundError:
            return DeleteResult(0)
        return DeleteResult.from_json(ans.json())

    async def delete_prefix(self, prefix: Bytes, *, prev_kv: bool = False) -> DeleteResult:
        params = {"encoding": "base64", "prefix": "1"}
        if prev_kv:
            params["prev_kv"] = "1"
        ans = await self.request(
            "DELETE",
            "/v1/kv/" + key_path(to_bytes(prefix)),
            target="write",
            params=params,
            session=True,
        )
        return DeleteResult.from_json(ans.json())

    async def txn(
        self,
        compare: Sequence[Compare] = (),
        success: Sequence[TxnOp] = (),
        failure: Sequence[TxnOp] = (),
    ) -> TxnResult:
        """All compares hold -> `success` ops, else `failure` ops; one revision, all or
        nothing. A failed compare is not an error: see `TxnResult.succeeded`."""
        body = {
            "compare": [c.to_json() for c in compare],
            "success": [op.to_json() for op in success],
            "failure": [op.to_json() for op in failure],
        }
        ans = await self.request(
            "POST",
            "/v1/txn",
            target="write",
            params={"encoding": "base64"},
            json_body=body,
            session=True,
        )
        return TxnResult.from_json(ans.json())

    # ==================================================================================
    # Leases
    # ==================================================================================
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

    # ==================================================================================
    # Locks
    # ==================================================================================
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

    # ==================================================================================
    # Watch
    # ==================================================================================
    def watch(
        self,
        key: Bytes = b"",
        *,
        prefix: bool = False,
        start_revision: int = 0,
        progress: bool = False,
        resume: bool = True,
        give_up_after: float | None = None,
    ) -> AsyncIterator[WatchEvent]:
        """Changes of `key` (or of every key with that prefix), in revision order.

        `start_revision` replays history from there (else: changes from now on).
        With `resume` (default) a dropped stream is re-opened, on another member if
        need be, from where it stopped: no event is lost or repeated, for as long as
        it takes, or until no member could serve it for `give_up_after` seconds. A
        history that no longer reaches back raises `CompactedError`."""
        return watch_events(
            self.transport,
            key,
            prefix=prefix,
            start_revision=start_revision,
            progress=progress,
            resume=resume,
            give_up_after=give_up_after,
        )

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
                return await self.transport.probe(url)
            except RaftkvError as exc:
                return exc
            except (aiohttp.ClientError, TimeoutError) as exc:
                return ConnectError(f"{url}: {describe(exc)}", endpoint=url)

        return list(await asyncio.gather(*(one(u) for u in self.selector.endpoints)))

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
        url = self.selector.usable_leader()
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
        self.selector.forget_leader()
        return int(ans.json()["leader"])

    # ==================================================================================
    # Checkpoints
    # ==================================================================================
    async def create_checkpoint(self, checkpoint_id: str | None = None) -> CheckpointManifest:
        """Checkpoint the state machine on every member; the leader's manifest.

        The id is chosen here when not given, so a retry cannot make two."""
        cid = checkpoint_id or (
            time.strftime("ckpt-%Y%m%dT%H%M%SZ-", time.gmtime()) + secrets.token_hex(3)
        )
        ans = await self.request(
            "POST",
            "/v1/checkpoints",
            target="write",
            json_body={"id": cid},
            session=True,
            extra_wait=60.0,
        )
        return CheckpointManifest.from_json(ans.json())

    async def checkpoints(self) -> list[CheckpointManifest]:
        ans = await self.request("GET", "/v1/checkpoints", target="write")
        return [CheckpointManifest.from_json(m) for m in ans.json()["checkpoints"]]

    async def checkpoint(self, checkpoint_id: str) -> CheckpointManifest | None:
        try:
            ans = await self.request(
                "GET", f"/v1/checkpoints/{quote(checkpoint_id, safe='')}", target="write"
            )
        except CheckpointNotFoundError:
            return None
        return CheckpointManifest.from_json(ans.json())

    async def download_checkpoint(
        self,
        checkpoint_id: str,
        out_dir: str | os.PathLike[str],
        *,
        progress: ProgressCallback | None = None,
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
                await download_data(self.transport, url, cid, manifest, Path(out_dir), progress)
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


# --- helpers ------------------------------------------------------------------------
def _conditions(
    if_version: int | None,
    if_mod_revision: int | None,
    if_exists: bool | None,
    if_value: Bytes | None,
) -> dict[str, str]:
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
