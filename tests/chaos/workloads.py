"""Concurrent client workloads that record histories.

- register (lin-kv): read / write / compare-and-set on a few keys; every
  written value is unique; cas is `PUT ?if_value=`.
- set: adds of unique elements (one key each under `set/`), then one final
  read of the whole prefix once the faults are healed.
- lock: grant a fresh lease, acquire a lock (fencing token), hold briefly,
  release, revoke the lease.

Each worker sends every request to a random live node (so followers forward
and serve ReadIndex reads). A worker whose operation ended `info` continues as
a new process (Jepsen's rule: an open operation stays open forever).
"""

from __future__ import annotations

import asyncio
import itertools
import random
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from tests.chaos.client import Reply, call
from tests.chaos.cluster import Cluster, NodeProc
from tests.chaos.history import Recorder

REQUEST_TIMEOUT = 5.0
WORKLOADS = ("register", "set", "lock")


@dataclass
class WorkloadOptions:
    register_workers: int = 4
    set_workers: int = 1
    lock_workers: int = 2
    keys: int = 3
    locks: int = 1
    think: float = 0.01  # seconds between a worker's operations (pacing, not synchronisation)
    lease_ttl: int = 3
    hold: float = 0.1


@dataclass
class Workloads:
    cluster: Cluster
    recorder: Recorder
    rng: random.Random
    opts: WorkloadOptions
    enabled: tuple[str, ...] = WORKLOADS
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    errors_500: list[str] = field(default_factory=list)
    _process_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(0))
    _values: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _set_elements: list[int] = field(default_factory=list)

    def _new_process(self) -> int:
        return next(self._process_ids)

    def _target(self) -> NodeProc | None:
        live = self.cluster.live()
        return self.rng.choice(live) if live else None

    async def _idle(self, reply: Reply | None = None) -> None:
        pause = self.opts.think * (0.5 + self.rng.random())
        if reply is not None and reply.outcome == "fail" and reply.status in (0, 503):
            pause += 0.05  # the node is down or leaderless: do not spin on it
        await asyncio.sleep(pause)

    def _note(self, reply: Reply, what: str) -> None:
        if reply.status == 500:
            self.errors_500.append(f"{what}: {reply.body[:200]!r}")

    async def run(self) -> None:
        tasks = []
        if "register" in self.enabled:
            tasks += [self._register_worker(i) for i in range(self.opts.register_workers)]
        if "set" in self.enabled:
            tasks += [self._set_worker() for _ in range(self.opts.set_workers)]
        if "lock" in self.enabled:
            tasks += [self._lock_worker() for _ in range(self.opts.lock_workers)]
        await asyncio.gather(*tasks)

    # --- register ------------------------------------------------------------------------

    async def _register_worker(self, worker: int) -> None:
        rng, rec = self.rng, self.recorder
        process = self._new_process()
        last_seen: dict[str, Any] = {}
        while not self.stopping.is_set():
            node = self._target()
            if node is None:
                await asyncio.sleep(0.05)
                continue
            key = f"r{rng.randrange(self.opts.keys)}"
            url = f"{node.url}/v1/kv/{key}"
            session = self.cluster.session
            assert session is not None
            roll = rng.random()
            if roll < 0.5:
                rec.invoke(process, "read", key, None, node.name)
                reply = await call(
                    session, "GET", url, timeout=REQUEST_TIMEOUT, ok_codes=(200, 404)
                )
                if reply.outcome == "ok":
                    value = _parse_value(reply.body) if reply.status == 200 else None
                    last_seen[key] = value
                    rec.complete(process, "ok", value)
                else:
                    # A read that did not complete has no effect: a plain failure.
                    rec.complete(process, "fail", None, reply.error)
            elif roll < 0.75:
                value = next(self._values)
                rec.invoke(process, "write", key, value, node.name)
                reply = await call(
                    session, "PUT", url, data=str(value).encode(), timeout=REQUEST_TIMEOUT
                )
                rec.complete(process, reply.outcome, None, reply.error)
                if reply.outcome == "ok":
                    last_seen[key] = value
            else:
                expected = last_seen.get(key)
                if expected is None and rng.random() < 0.7:
                    expected = rng.randint(1, max(1, next(self._values)))
                new = next(self._values)
                rec.invoke(process, "cas", key, [expected, new], node.name)
                params = {"if_value": str(expected)} if expected is not None else {"if_exists": "0"}
                reply = await call(
                    session,
                    "PUT",
                    url,
                    data=str(new).encode(),
                    params=params,
                    timeout=REQUEST_TIMEOUT,
                    ok_codes=(200, 409),
                )
                if reply.outcome == "ok" and reply.status == 200:
                    rec.complete(process, "ok", {"succeeded": True})
                    last_seen[key] = new
                elif reply.outcome == "ok":
                    body = reply.json()
                    if body.get("error") != "compare_failed":
                        rec.complete(process, "fail", None, str(body.get("error")))
                    else:
                        current = body.get("current")
                        seen = _parse_value(current["value"].encode()) if current else None
                        rec.complete(process, "ok", {"succeeded": False, "current": seen})
                        last_seen[key] = seen
                else:
                    rec.complete(process, reply.outcome, None, reply.error)
            self._note(reply, f"register {key}")
            if rec.events[-1].type == "info":
                process = self._new_process()
            await self._idle(reply)

    # --- set -------------------------------------------------------------------------------

    async def _set_worker(self) -> None:
        rec = self.recorder
        process = self._new_process()
        while not self.stopping.is_set():
            node = self._target()
            if node is None:
                await asyncio.sleep(0.05)
                continue
            element = next(self._values)
            rec.invoke(process, "add", "set", element, node.name)
            assert self.cluster.session is not None
            reply = await call(
                self.cluster.session,
                "PUT",
                f"{node.url}/v1/kv/set/{element}",
                data=b"1",
                timeout=REQUEST_TIMEOUT,
            )
            rec.complete(process, reply.outcome, None, reply.error)
            self._note(reply, "set add")
            if reply.outcome == "info":
                process = self._new_process()
            await self._idle(reply)

    async def final_set_read(self, attempts_deadline: float) -> None:
        """After healing: read the whole set (retried until one read succeeds)."""
        if "set" not in self.enabled:
            return
        loop = asyncio.get_running_loop()
        while loop.time() < attempts_deadline:
            node = self._target()
            if node is None:
                await asyncio.sleep(0.2)
                continue
            process = self._new_process()
            self.recorder.invoke(process, "read", "set", None, node.name)
            assert self.cluster.session is not None
            reply = await call(
                self.cluster.session,
                "GET",
                f"{node.url}/v1/kv/set/",
                params={"prefix": "1", "keys_only": "1"},
                timeout=10,
            )
            if reply.outcome == "ok":
                body = reply.json()
                elements = sorted(int(kv["key"].split("/", 1)[1]) for kv in body["kvs"])
                self.recorder.complete(process, "ok", elements)
                return
            self.recorder.complete(process, "fail", None, reply.error)
            await asyncio.sleep(0.3)

    # --- lock ------------------------------------------------------------------------------

    async def _lock_worker(self) -> None:
        rng, rec = self.rng, self.recorder
        process = self._new_process()
        while not self.stopping.is_set():
            node = self._target()
            if node is None:
                await asyncio.sleep(0.05)
                continue
            session = self.cluster.session
            assert session is not None
            grant = await call(
                session,
                "POST",
                f"{node.url}/v1/leases",
                json_body={"ttl": self.opts.lease_ttl},
                timeout=REQUEST_TIMEOUT,
            )
            if grant.outcome != "ok":
                await self._idle()
                continue
            lease = int(grant.json()["id"])
            lock = f"L{rng.randrange(self.opts.locks)}"
            path = f"/v1/locks/{quote(lock)}"
            rec.invoke(process, "acquire", lock, {"lease": lease}, node.name)
            reply = await call(
                session,
                "POST",
                f"{node.url}{path}",
                json_body={"lease": lease},
                params={"timeout": "2"},
                timeout=REQUEST_TIMEOUT,
            )
            self._note(reply, "lock acquire")
            if reply.outcome == "ok":
                rec.complete(process, "ok", {"token": int(reply.json()["token"])})
                await asyncio.sleep(self.opts.hold * (0.5 + rng.random()))
                node = self._target() or node
                rec.invoke(process, "release", lock, {"lease": lease}, node.name)
                rel = await call(
                    session,
                    "DELETE",
                    f"{node.url}{path}",
                    params={"lease": str(lease)},
                    timeout=REQUEST_TIMEOUT,
                )
                self._note(rel, "lock release")
                if rel.outcome == "ok":
                    rec.complete(process, "ok", {"released": bool(rel.json().get("released"))})
                elif rel.status == 409:
                    rec.complete(process, "ok", {"released": False})
                else:
                    rec.complete(process, rel.outcome, None, rel.error)
            else:
                rec.complete(process, reply.outcome, None, reply.error)
            if rec.events[-1].type == "info":
                process = self._new_process()
            # Best effort: revoking the lease frees the lock even if we lost track of it.
            await call(session, "DELETE", f"{node.url}/v1/leases/{lease}", timeout=2.0)
            await self._idle()


def _parse_value(raw: bytes) -> Any:
    try:
        return int(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")  # never written by us: the checker objects
