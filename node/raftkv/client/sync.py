"""The blocking client: the same API as `AsyncClient`, for code without asyncio.

    with Client("http://127.0.0.1:7379") as c:
        c.put("a", "1")
        with c.hold_lock("job", ttl=10) as lock:
            use(lock.token)

It runs an `AsyncClient` on a private event loop in a daemon thread, so it works
from any thread (including one that runs its own event loop) and may be shared
by many threads.

Each call is written out (not generated), in the order of the async client's
resource modules, so signatures, types and `help()` stay plain;
tests/unit/client/test_client_layout.py fails if the two clients drift apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from typing import Any, TypeVar

from raftkv.client.aio import DEFAULT_LOCK_TIMEOUT, AsyncClient, ProgressCallback
from raftkv.client.credentials import Credentials
from raftkv.client.endpoints import DEFAULT_ENDPOINT
from raftkv.client.errors import RaftkvError
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
)
from raftkv.client.retry import RetryPolicy

T = TypeVar("T")


class Client:
    """A blocking raftkv client. Close it (or use `with`) to stop its thread."""

    def __init__(
        self,
        endpoints: str | Sequence[str] = DEFAULT_ENDPOINT,
        *,
        strategy: str = "leader",
        retry: RetryPolicy | None = None,
        attempt_timeout: float = 15.0,
        client_id: str | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="raftkv-client", daemon=True
        )
        self._thread.start()
        self._closed = False
        try:
            self._aio = self._run(
                self._make(endpoints, strategy, retry, attempt_timeout, client_id, credentials)
            )
        except BaseException:
            self._stop_loop()
            raise

    @staticmethod
    async def _make(
        endpoints: str | Sequence[str],
        strategy: str,
        retry: RetryPolicy | None,
        attempt_timeout: float,
        client_id: str | None,
        credentials: Credentials | None,
    ) -> AsyncClient:
        return AsyncClient(
            endpoints,
            strategy=strategy,
            retry=retry,
            attempt_timeout=attempt_timeout,
            client_id=client_id,
            credentials=credentials,
        )

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            coro.close()
            raise RuntimeError("the client is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def close(self) -> None:
        if self._closed:
            return
        try:
            self._run(self._aio.close())
        finally:
            self._closed = True
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._loop.is_running():
            self._loop.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def aio(self) -> AsyncClient:
        """The underlying async client (its coroutines run on this client's loop)."""
        return self._aio

    @property
    def endpoints(self) -> list[str]:
        return self._aio.endpoints

    # --- key-value (kv.py, txn.py) -----------------------------------------------------
    def get(self, key: Bytes, *, serializable: bool = False) -> KeyValue | None:
        return self._run(self._aio.get(key, serializable=serializable))

    def get_prefix(
        self,
        prefix: Bytes = b"",
        *,
        limit: int = 0,
        keys_only: bool = False,
        count_only: bool = False,
        serializable: bool = False,
    ) -> RangeResult:
        return self._run(
            self._aio.get_prefix(
                prefix,
                limit=limit,
                keys_only=keys_only,
                count_only=count_only,
                serializable=serializable,
            )
        )

    def put(
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
        return self._run(
            self._aio.put(
                key,
                value,
                lease=lease,
                prev_kv=prev_kv,
                if_version=if_version,
                if_mod_revision=if_mod_revision,
                if_exists=if_exists,
                if_value=if_value,
            )
        )

    def delete(
        self,
        key: Bytes,
        *,
        prev_kv: bool = False,
        if_version: int | None = None,
        if_mod_revision: int | None = None,
        if_exists: bool | None = None,
        if_value: Bytes | None = None,
    ) -> DeleteResult:
        return self._run(
            self._aio.delete(
                key,
                prev_kv=prev_kv,
                if_version=if_version,
                if_mod_revision=if_mod_revision,
                if_exists=if_exists,
                if_value=if_value,
            )
        )

    def delete_prefix(self, prefix: Bytes, *, prev_kv: bool = False) -> DeleteResult:
        return self._run(self._aio.delete_prefix(prefix, prev_kv=prev_kv))

    def txn(
        self,
        compare: Sequence[Compare] = (),
        success: Sequence[TxnOp] = (),
        failure: Sequence[TxnOp] = (),
    ) -> TxnResult:
        return self._run(self._aio.txn(compare, success, failure))

    # --- leases (leases.py) ------------------------------------------------------------
    def grant_lease(self, ttl: int, *, lease_id: int = 0) -> Lease:
        return self._run(self._aio.grant_lease(ttl, lease_id=lease_id))

    def keepalive(self, lease_id: int) -> Lease:
        return self._run(self._aio.keepalive(lease_id))

    def revoke_lease(self, lease_id: int) -> LeaseRevoked:
        return self._run(self._aio.revoke_lease(lease_id))

    def lease(self, lease_id: int) -> LeaseInfo | None:
        return self._run(self._aio.lease(lease_id))

    def leases(self) -> list[LeaseInfo]:
        return self._run(self._aio.leases())

    @contextlib.contextmanager
    def kept_alive(self, lease_id: int, ttl: int) -> Iterator[None]:
        """Keep the lease alive (on the client's thread) while the block runs."""
        task = self._run(_start(self._aio._keepalive_loop(lease_id, ttl)))
        try:
            yield
        finally:
            self._run(_cancel(task))

    # --- locks (locks.py) --------------------------------------------------------------
    def lock(
        self, name: str, lease: int, *, timeout: float = DEFAULT_LOCK_TIMEOUT, wait: bool = True
    ) -> Lock:
        return self._run(self._aio.lock(name, lease, timeout=timeout, wait=wait))

    def unlock(self, name: str, lease: int) -> Unlocked:
        return self._run(self._aio.unlock(name, lease))

    def lock_info(self, name: str) -> LockInfo | None:
        return self._run(self._aio.lock_info(name))

    def locks(self) -> list[LockInfo]:
        return self._run(self._aio.locks())

    @contextlib.contextmanager
    def hold_lock(
        self, name: str, *, ttl: int = 10, timeout: float = DEFAULT_LOCK_TIMEOUT, wait: bool = True
    ) -> Iterator[Lock]:
        """See `AsyncClient.hold_lock`."""
        lease = self.grant_lease(ttl)
        try:
            with self.kept_alive(lease.id, ttl):
                lock = self.lock(name, lease.id, timeout=timeout, wait=wait)
                try:
                    yield lock
                finally:
                    with contextlib.suppress(RaftkvError):
                        self.unlock(name, lease.id)
        finally:
            with contextlib.suppress(RaftkvError):
                self.revoke_lease(lease.id)

    # --- watch (watch.py) --------------------------------------------------------------
    def watch(
        self,
        key: Bytes = b"",
        *,
        prefix: bool = False,
        start_revision: int = 0,
        progress: bool = False,
        resume: bool = True,
        give_up_after: float | None = None,
    ) -> Iterator[WatchEvent]:
        """A blocking iterator of events; close it (or break out) to stop watching."""
        stream: AsyncIterator[WatchEvent] = self._aio.watch(
            key,
            prefix=prefix,
            start_revision=start_revision,
            progress=progress,
            resume=resume,
            give_up_after=give_up_after,
        )
        try:
            while True:
                try:
                    yield self._run(_anext(stream))
                except StopAsyncIteration:
                    return
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None and not self._closed:
                self._run(aclose())

    # --- cluster (cluster.py) ----------------------------------------------------------
    def status(self, endpoint: str | None = None) -> Status:
        return self._run(self._aio.status(endpoint))

    def statuses(self) -> list[Status | RaftkvError]:
        return self._run(self._aio.statuses())

    def wait_leader_change(
        self, wait: float, *, leader: int | None = None, term: int | None = None
    ) -> Status:
        return self._run(self._aio.wait_leader_change(wait, leader=leader, term=term))

    def leader(self) -> Status:
        return self._run(self._aio.leader())

    def members(self) -> Members:
        return self._run(self._aio.members())

    def add_member(
        self, name: str, peer_url: str, client_url: str = "", member_id: int | None = None
    ) -> Member:
        return self._run(self._aio.add_member(name, peer_url, client_url, member_id))

    def promote_member(self, member_id: int) -> None:
        self._run(self._aio.promote_member(member_id))

    def remove_member(self, member_id: int) -> None:
        self._run(self._aio.remove_member(member_id))

    def transfer_leader(self, to: int | None = None) -> int:
        return self._run(self._aio.transfer_leader(to))

    # --- checkpoints (checkpoints.py) --------------------------------------------------
    def create_checkpoint(self, checkpoint_id: str | None = None) -> CheckpointManifest:
        return self._run(self._aio.create_checkpoint(checkpoint_id))

    def checkpoints(self) -> list[CheckpointManifest]:
        return self._run(self._aio.checkpoints())

    def checkpoint(self, checkpoint_id: str) -> CheckpointManifest | None:
        return self._run(self._aio.checkpoint(checkpoint_id))

    def download_checkpoint(
        self,
        checkpoint_id: str,
        out_dir: str | os.PathLike[str],
        *,
        progress: ProgressCallback | None = None,
    ) -> CheckpointManifest:
        return self._run(self._aio.download_checkpoint(checkpoint_id, out_dir, progress=progress))


async def _anext(stream: AsyncIterator[T]) -> T:
    return await stream.__anext__()


async def _start(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    return asyncio.ensure_future(coro)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
