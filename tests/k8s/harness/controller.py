"""A minimal level-triggered controller loop: events map to keys, each key is reconciled
from the current state, plus a periodic resync (kube-controller-manager's shape)."""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import Iterable

from tests.k8s.harness.runtime import Runtime
from tests.k8s.harness.store import ApiError, Subscription, WatchEvent

Key = tuple[str, str]
"""(namespace, name) of the object a controller reconciles."""


class Controller(abc.ABC):
    name = "controller"
    watches: tuple[str, ...] | None = ()
    """The kinds whose events wake this controller; None for every kind."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.store = runtime.store
        self._pending: dict[Key, None] = {}
        self._wake = asyncio.Event()

    def keys_for(self, event: WatchEvent) -> Iterable[Key]:
        """Keys to reconcile after an event; by default the object's (namespace, name)."""
        return [(event.namespace or "", event.name)]

    def all_keys(self) -> Iterable[Key]:
        return []

    @abc.abstractmethod
    async def reconcile(self, key: Key) -> None:
        """Bring the object at `key` to its desired state, from what the store holds now."""

    def enqueue(self, key: Key) -> None:
        self._pending[key] = None
        self._wake.set()

    async def run(self) -> None:
        sub = self.store.subscribe(self.watches)
        feeder = asyncio.create_task(self._feed(sub))
        resync = asyncio.create_task(self._resync())
        try:
            for key in self.all_keys():
                self.enqueue(key)
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._pending:
                    key = next(iter(self._pending))
                    del self._pending[key]
                    try:
                        await self.reconcile(key)
                    except ApiError as e:
                        if e.code not in (404, 409):
                            self.rt.warn(None, "ReconcileFailed", f"{key}: {e}", self.name)
                        self._retry(key)
                    except Exception as e:
                        self.rt.report_error(f"{self.name} reconciling {key}", e)
                        self._retry(key)
        finally:
            for task in (feeder, resync):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self.store.unsubscribe(sub)

    def _retry(self, key: Key) -> None:
        asyncio.get_running_loop().call_later(0.2, self.enqueue, key)

    async def _feed(self, sub: Subscription) -> None:
        while True:
            event = await sub.get()
            if event is None:
                return
            for key in self.keys_for(event):
                self.enqueue(key)

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.rt.options.resync_seconds)
            for key in self.all_keys():
                self.enqueue(key)
