"""Failover of a 3-member cluster, raftkv or etcd: kill -9 of the leader under load,
then the time to the first acknowledged write started after the kill, and the
longest time with no successful client operation at all.

    .venv/bin/python bench/failover.py [--system raftkv,multipaxos,etcd] [--kills 5] [--writers 8]
                                       [--readers 8] [--insecure]

Not a test (nothing is asserted): it prints one line per kill and the median and
max. `make bench` runs the same measurement for both systems (bench/run.py).

The load is closed-loop clients that retry quickly (20-100 ms backoff, 2 s per
attempt), so the figures are the cluster's (detection, election, clients finding
the new leader), not a client's backoff:

- raftkv: writers are `AsyncClient`s with the leader strategy (sessions on),
  readers `AsyncClient`s with the random strategy (linearizable reads on any
  member);
- etcd: through its JSON gateway; a writer keeps to one member (etcd forwards a
  follower's proposal to its leader) and moves to the next on an error, as
  clientv3 does; a reader asks a random member (linearizable range);
- etcd-grpc: through etcd's native client, clientv3 (`bench/etcdload -op failover`,
  Go): the same writers and readers, clientv3's balancer over every member, the
  same attempt timeout and backoff; each success is reported with its times.

Per kill: **failover** = first acknowledgement of a write started after the kill,
minus the kill; **outage** = the longest interval, from the kill until a second
after that first acknowledgement, in which no operation (read or write, any
client) succeeded. After each kill the member is started again and the next kill
waits until all three agree on a leader. fsync stays on (raftkv's default; etcd's
only mode).

To measure another build of raftkv (e.g. before a change), put its source first:
`PYTHONPATH=/path/to/other/node .venv/bin/python bench/failover.py` (the nodes are
started by `raftkv local up` with this interpreter, and inherit PYTHONPATH), or
`bench/run.py --baseline-src`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from raftkv.client import AsyncClient, RaftkvError
from raftkv.client.retry import RetryPolicy

sys.path.insert(0, str(Path(__file__).resolve().parent))
# bench/ is a directory of scripts, not a package
import etcdgrpc  # noqa: E402
from clusters import Access, Etcd, Raftkv, http_json  # noqa: E402

ATTEMPT_TIMEOUT = 2.0
BACKOFF = (0.02, 0.1)
STEADY_SECONDS = 1.0  # load runs this long before each kill
AFTER_SECONDS = 1.0  # the outage window ends this long after the first write ack


class Target(Protocol):
    """A 3-member cluster the measurement can kill members of."""

    urls: list[str]
    access: Access

    def kill_leader(self) -> tuple[str, float]: ...
    def restart(self) -> None: ...


@dataclass
class KillResult:
    failover_s: float
    outage_s: float
    killed: str


@dataclass
class Load:
    """What the clients did: (started, finished, "put" | "get") of every success."""

    done: list[tuple[float, float, str]] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def ok(self, started: float, kind: str) -> None:
        self.done.append((started, time.monotonic(), kind))


def outage(done: list[tuple[float, float, str]], killed: float, until: float) -> float:
    """The longest interval in [killed, until] without a successful completion."""
    ends = sorted(f for _, f, _ in done if killed < f <= until)
    longest, last = 0.0, killed
    for end in ends:
        longest = max(longest, end - last)
        last = end
    return max(longest, until - last)


def first_write_after(done: list[tuple[float, float, str]], killed: float) -> float | None:
    acks = [f for s, f, kind in done if kind == "put" and s > killed]
    return min(acks) if acks else None


# --- raftkv's clients ---------------------------------------------------------------
async def raftkv_load(target: Raftkv, writers: int, readers: int, load: Load) -> None:
    policy = RetryPolicy(deadline=30.0, base_delay=BACKOFF[0], max_delay=BACKOFF[1])
    creds = target.client_credentials()
    async with (
        AsyncClient(
            target.urls, retry=policy, attempt_timeout=ATTEMPT_TIMEOUT, credentials=creds
        ) as wc,
        AsyncClient(
            target.urls,
            strategy="random",
            retry=policy,
            attempt_timeout=ATTEMPT_TIMEOUT,
            credentials=creds,
        ) as rc,
    ):

        async def writer(i: int) -> None:
            value = os.urandom(128).hex()  # 256 bytes
            n = 0
            while not load.stop.is_set():
                started = time.monotonic()
                try:
                    await wc.put(f"failover/{i}/{n % 100}", value)
                except RaftkvError:
                    continue
                load.ok(started, "put")
                n += 1

        async def reader(i: int) -> None:
            n = 0
            while not load.stop.is_set():
                started = time.monotonic()
                try:
                    await rc.get(f"failover/{i % max(writers, 1)}/{n % 100}")
                except RaftkvError:
                    continue
                load.ok(started, "get")
                n += 1

        await asyncio.gather(
            *(writer(i) for i in range(writers)), *(reader(i) for i in range(readers))
        )


# --- etcd's clients (JSON gateway) ----------------------------------------------------
async def etcd_load(target: Etcd, writers: int, readers: int, load: Load) -> None:
    gw = target.gateway
    timeout = aiohttp.ClientTimeout(total=ATTEMPT_TIMEOUT)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=target.access.context or True),
        headers=target.access.headers(),
        timeout=timeout,
    ) as session:

        async def call(url: str, body: dict[str, Any]) -> bool:
            try:
                async with session.post(url, json=body) as resp:
                    answer = await resp.json(content_type=None)
                    return resp.status == 200 and "error" not in answer
            except (aiohttp.ClientError, TimeoutError, ValueError):
                return False

        def b64(text: str) -> str:
            return base64.b64encode(text.encode()).decode()

        async def writer(i: int) -> None:
            value = b64(os.urandom(128).hex())
            member, n = i % len(target.urls), 0
            while not load.stop.is_set():
                started = time.monotonic()
                body = {"key": b64(f"failover/{i}/{n % 100}"), "value": value}
                if await call(target.urls[member] + gw + "/kv/put", body):
                    load.ok(started, "put")
                    n += 1
                else:  # as clientv3 does: the next endpoint, after a short backoff
                    member = (member + 1) % len(target.urls)
                    await asyncio.sleep(random.uniform(*BACKOFF))

        async def reader(i: int) -> None:
            n = 0
            while not load.stop.is_set():
                started = time.monotonic()
                body = {"key": b64(f"failover/{i % max(writers, 1)}/{n % 100}")}
                if await call(random.choice(target.urls) + gw + "/kv/range", body):
                    load.ok(started, "get")
                    n += 1
                else:
                    await asyncio.sleep(random.uniform(*BACKOFF))

        await asyncio.gather(
            *(writer(i) for i in range(writers)), *(reader(i) for i in range(readers))
        )


# --- etcd's native gRPC client (clientv3, bench/etcdload) -------------------------------
async def etcd_grpc_load(target: Etcd, writers: int, readers: int, load: Load) -> None:
    """The same load through clientv3 (`etcdload -op failover`): its balancer over every
    member, a 2 s timeout per attempt, 20-100 ms after an error. Its lines carry Unix
    times, put on this process's monotonic clock (same machine, one offset)."""
    binary = await asyncio.to_thread(etcdgrpc.build)
    endpoints = ",".join(url.split("://", 1)[-1] for url in target.urls)
    proc = await asyncio.create_subprocess_exec(
        str(binary),
        "-endpoints",
        endpoints,
        "-op",
        "failover",
        "-writers",
        str(writers),
        "-readers",
        str(readers),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdin is not None and proc.stdout is not None
    offset = time.monotonic() - time.time()

    async def collect() -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            kind, started, finished = line.split()
            load.done.append(
                (int(started) / 1e9 + offset, int(finished) / 1e9 + offset, kind.decode())
            )

    reading = asyncio.create_task(collect())
    try:
        await load.stop.wait()
    finally:
        proc.stdin.close()  # etcdload stops when its stdin closes
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        await reading
    if proc.returncode:
        raise RuntimeError(f"etcdload -op failover exited {proc.returncode}")


# --- readiness ------------------------------------------------------------------------
def raftkv_settled(target: Raftkv) -> bool:
    """Every member ready, one leader they all name."""
    leaders = set()
    for url in target.urls:
        st = http_json("GET", url + "/v1/status", access=target.access)
        if not st.get("ready"):
            return False
        leaders.add((st.get("leader") or {}).get("name"))
    return len(leaders) == 1 and None not in leaders


def etcd_settled(target: Etcd) -> bool:
    leaders = {
        http_json(
            "POST", url + target.gateway + "/maintenance/status", {}, access=target.access
        ).get("leader")
        for url in target.urls
    }
    return len(leaders) == 1 and None not in leaders and "0" not in leaders


async def wait_settled(settled: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if await asyncio.to_thread(settled):
                return
        except Exception:  # noqa: BLE001 - a member still starting
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the cluster did not settle in {timeout}s")


# --- the measurement ------------------------------------------------------------------
async def measure(
    target: Target,
    run_load: Callable[[Load], Awaitable[None]],
    settled: Callable[[], bool],
    kills: int,
    label: str,
) -> list[KillResult]:
    load = Load()
    task = asyncio.create_task(run_load(load))
    results: list[KillResult] = []
    try:
        for k in range(kills):
            await wait_settled(settled)
            await asyncio.sleep(STEADY_SECONDS)  # steady load before the kill
            # In this thread: a worker thread could lose the GIL between the kill and
            # reading the clock, and writes started meanwhile would count as after it.
            name, killed = target.kill_leader()
            deadline = killed + 30
            first: float | None = None
            while first is None and time.monotonic() < deadline:
                if task.done():
                    task.result()  # the load died: say why
                first = first_write_after(load.done, killed)
                await asyncio.sleep(0.02)
            if first is None:
                raise RuntimeError(f"{label} kill {k + 1}: no write acknowledged within 30 s")
            while time.monotonic() < first + AFTER_SECONDS:
                await asyncio.sleep(0.05)
            result = KillResult(
                first - killed, outage(load.done, killed, first + AFTER_SECONDS), name
            )
            results.append(result)
            print(
                f"  {label} kill {k + 1}: leader {name} killed; failover "
                f"{result.failover_s:.3f} s, outage {result.outage_s:.3f} s",
                flush=True,
            )
            await asyncio.to_thread(target.restart)
    finally:
        load.stop.set()
        await asyncio.wait_for(task, 60)
    return results


async def measure_raftkv(
    target: Raftkv, kills: int, writers: int, readers: int, label: str = "raftkv"
) -> list[KillResult]:
    return await measure(
        target,
        lambda load: raftkv_load(target, writers, readers, load),
        lambda: raftkv_settled(target),
        kills,
        label,
    )


async def measure_etcd(
    target: Etcd, kills: int, writers: int, readers: int, label: str = "etcd"
) -> list[KillResult]:
    return await measure(
        target,
        lambda load: etcd_load(target, writers, readers, load),
        lambda: etcd_settled(target),
        kills,
        label,
    )


async def measure_etcd_grpc(
    target: Etcd, kills: int, writers: int, readers: int, label: str = "etcd-grpc"
) -> list[KillResult]:
    return await measure(
        target,
        lambda load: etcd_grpc_load(target, writers, readers, load),
        lambda: etcd_settled(target),
        kills,
        label,
    )


def summary(label: str, results: list[KillResult]) -> str:
    fo = [r.failover_s for r in results]
    out = [r.outage_s for r in results]
    return (
        f"{label}: failover over {len(fo)} kills: median {statistics.median(fo):.3f} s, "
        f"max {max(fo):.3f} s; outage (no successful op) median "
        f"{statistics.median(out):.3f} s, max {max(out):.3f} s"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--system",
        default="raftkv",
        help="raftkv (Raft), multipaxos (raftkv on Multi-Paxos), etcd (JSON gateway), "
        "etcd-grpc (clientv3), or several: raftkv,multipaxos,etcd",
    )
    p.add_argument("--kills", type=int, default=5)
    p.add_argument("--writers", type=int, default=8)
    p.add_argument("--readers", type=int, default=8)
    p.add_argument(
        "--insecure",
        action="store_true",
        help="raftkv: plain peer and client connections (etcd: always plain here)",
    )
    args = p.parse_args(argv)
    lines = []
    with tempfile.TemporaryDirectory(prefix="raftkv-failover-") as tmp:
        for system in args.system.split(","):
            cluster: Etcd | Raftkv
            if system == "raftkv":
                cluster = Raftkv(Path(tmp), peer_tls=not args.insecure)
            elif system == "multipaxos":
                cluster = Raftkv(
                    Path(tmp), peer_tls=not args.insecure, name=system, consensus=system
                )
            elif system in ("etcd", "etcd-grpc"):
                (Path(tmp) / system).mkdir()
                cluster = Etcd(Path(tmp) / system)
            else:
                p.error(f"unknown system {system!r}")
            try:
                cluster.start()
                n = (args.kills, args.writers, args.readers)
                res = asyncio.run(
                    measure_raftkv(cluster, *n, label=system)
                    if isinstance(cluster, Raftkv)
                    else measure_etcd_grpc(cluster, *n)
                    if system == "etcd-grpc"
                    else measure_etcd(cluster, *n)
                )
            finally:
                cluster.stop()
            lines.append(summary(system, res))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
