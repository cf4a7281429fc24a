"""Failover time of a 3-node `raftkv local up` cluster: kill -9 of the leader under
write load, then the time to the first acknowledged write started after the kill.

    .venv/bin/python bench/failover.py [--kills 5] [--writers 8] [--insecure]

Not a test (nothing is asserted): it prints one line per kill and the median and
max. Writers are closed-loop `AsyncClient`s (all three endpoints, the leader
strategy, sessions on) that retry quickly (20-100 ms backoff, 2 s per attempt), so
the figure is the cluster's (detection, election, clients finding the new leader),
not a client's backoff. After each kill the node is started again
(`raftkv local up --dir`, which restarts the stopped members) and the next kill
waits until all three are ready. fsync stays on (the default).

To measure another build of the node (e.g. before a change), put its source first:
`PYTHONPATH=/path/to/other/node .venv/bin/python bench/failover.py` (the nodes are
started by `raftkv local up` with this interpreter, and inherit PYTHONPATH).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from raftkv.client import AsyncClient, RaftkvError
from raftkv.client.credentials import Credentials, credentials_from_env
from raftkv.client.retry import RetryPolicy


def local(*args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "raftkv.cli", "local", *args], check=True,
                         capture_output=True, text=True, timeout=120)
    return out.stdout


def cluster_credentials(directory: Path) -> Credentials:
    """`raftkv local env`'s CA and token (a secure cluster; empty for --insecure)."""
    env = {}
    for line in local("env", "--dir", str(directory)).splitlines():
        if line.startswith("export ") and "=" in line:
            key, _, value = line[len("export "):].partition("=")
            env[key] = value.strip("'\"")
    return credentials_from_env(env)


async def statuses(session: aiohttp.ClientSession, urls: list[str]) -> list[dict[str, Any]]:
    async def one(url: str) -> dict[str, Any]:
        try:
            async with session.get(url + "/v1/status",
                                   timeout=aiohttp.ClientTimeout(total=1)) as r:
                return dict(await r.json()) if r.status == 200 else {}
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return {}
    return list(await asyncio.gather(*(one(u) for u in urls)))


async def wait_all_ready(session: aiohttp.ClientSession, urls: list[str],
                         timeout: float = 60) -> dict[str, Any]:
    """Every member ready, one leader they agree on: returns the leader's status."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sts = await statuses(session, urls)
        leaders = {(s.get("leader") or {}).get("name") for s in sts}
        if all(s.get("ready") for s in sts) and len(leaders) == 1 and None not in leaders:
            return next(s for s in sts if s.get("role") == "leader") if any(
                s.get("role") == "leader" for s in sts) else sts[0]
        await asyncio.sleep(0.1)
    raise SystemExit(f"the cluster did not become ready in {timeout}s")


class Writers:
    def __init__(self, urls: list[str], count: int, credentials: Credentials) -> None:
        self.urls = urls
        self.count = count
        self.credentials = credentials
        self.acks: list[tuple[float, float]] = []  # (started, acknowledged)
        self.stop = asyncio.Event()

    async def run(self) -> None:
        policy = RetryPolicy(deadline=30.0, base_delay=0.02, max_delay=0.1)
        async with AsyncClient(self.urls, retry=policy, attempt_timeout=2.0,
                               credentials=self.credentials) as client:
            await asyncio.gather(*(self._writer(client, i) for i in range(self.count)))

    async def _writer(self, client: AsyncClient, i: int) -> None:
        value = os.urandom(128).hex()  # 256 bytes
        n = 0
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                await client.put(f"failover/{i}/{n % 100}", value)
            except RaftkvError:
                continue
            self.acks.append((started, time.monotonic()))
            n += 1


async def measure(directory: Path, kills: int, writers: int, insecure: bool) -> list[float]:
    args = ["up", "--nodes", "3", "--dir", str(directory)] + (["--insecure"] if insecure else [])
    urls = local(*args).split()
    state_path = directory / "cluster.json"
    results: list[float] = []
    creds = cluster_credentials(directory)
    headers = {"Authorization": f"Bearer {creds.token}"} if creds.token else None
    async with aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(
            ssl=creds.ssl_context() or True)) as session:
        load = Writers(urls, writers, creds)
        task = asyncio.create_task(load.run())
        try:
            for k in range(kills):
                leader = await wait_all_ready(session, urls)
                await asyncio.sleep(1.0)  # steady load before the kill
                state = json.loads(state_path.read_text())
                name = leader["name"]
                pid = next(n["pid"] for n in state["nodes"] if n["name"] == name)
                killed = time.monotonic()
                os.kill(pid, signal.SIGKILL)
                deadline = killed + 30
                first: float | None = None
                while first is None and time.monotonic() < deadline:
                    after = [ack for started, ack in load.acks if started > killed]
                    first = min(after) if after else None
                    await asyncio.sleep(0.02)
                if first is None:
                    raise SystemExit(f"kill {k + 1}: no write acknowledged within 30 s")
                results.append(first - killed)
                new = await wait_all_ready_without(session, urls, name)
                print(f"kill {k + 1}: leader {name} killed; first ack of a write started "
                      f"after the kill: {first - killed:.3f} s; new leader {new}", flush=True)
                with contextlib.suppress(ChildProcessError):  # not our child: `local up`'s
                    os.waitpid(pid, os.WNOHANG)
                local(*args)  # start the killed member again
        finally:
            load.stop.set()
            await asyncio.wait_for(task, 60)
    return results


async def wait_all_ready_without(session: aiohttp.ClientSession, urls: list[str],
                                 dead: str) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for s in await statuses(session, urls):
            if s.get("role") == "leader" and s.get("name") != dead:
                return str(s["name"])
        await asyncio.sleep(0.05)
    return "?"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kills", type=int, default=5)
    p.add_argument("--writers", type=int, default=8)
    p.add_argument("--insecure", action="store_true", help="plain peer connections")
    p.add_argument("--keep", type=Path, default=None,
                   help="run the cluster in this directory and keep it (logs) afterwards")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="raftkv-failover-") as tmp:
        directory = args.keep or Path(tmp) / "cluster"
        try:
            times = asyncio.run(measure(directory, args.kills, args.writers, args.insecure))
        finally:
            subprocess.run([sys.executable, "-m", "raftkv.cli", "local", "down", "--dir",
                            str(directory)], capture_output=True, timeout=60, check=False)
    print(f"failover over {len(times)} kills: median {statistics.median(times):.3f} s, "
          f"max {max(times):.3f} s, min {min(times):.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
