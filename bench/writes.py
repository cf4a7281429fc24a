"""A quick write-throughput figure (a measurement, not a test).

    python bench/writes.py [--urls URL,...] [--clients 64] [--seconds 10]

With no --urls it starts a local 3-node cluster in a temporary directory
(`raftkv local up`), measures, and stops it. Each client is one coroutine doing
`PUT /v1/kv/bench-<client>-<n>` with a 256-byte value against the leader, one
request at a time on a keep-alive connection; the figure is acknowledged
writes per second and the latency percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from raftkv.runtime.credentials import ClientCredentials
from raftkv.tools.local import CREDENTIALS_DIR


async def _leader_url(session: aiohttp.ClientSession, urls: list[str]) -> str:
    for url in urls:
        try:
            async with session.get(url + "/v1/status") as resp:
                status = await resp.json()
            if status.get("leader") and status["leader"].get("client_url"):
                return str(status["leader"]["client_url"])
        except aiohttp.ClientError:
            continue
    raise SystemExit("no leader found")


async def run_load(
    urls: list[str],
    clients: int,
    seconds: float,
    value_bytes: int,
    credentials_dir: str | None = None,
) -> dict[str, float]:
    """`credentials_dir`: a `raftkv local up` credentials directory (CA + admin token)."""
    context: ssl.SSLContext | bool = True
    headers: dict[str, str] = {}
    if credentials_dir is not None:
        creds = ClientCredentials(Path(credentials_dir))
        context = ssl.create_default_context(cafile=str(creds.ca_file))
        headers = {"Authorization": f"Bearer {creds.admin_token()}"}
    connector = aiohttp.TCPConnector(limit=clients, ssl=context)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        target = await _leader_url(session, urls)
        value = os.urandom(value_bytes // 2).hex().encode()[:value_bytes]
        latencies: list[float] = []
        errors = 0
        stop_at = time.monotonic() + seconds

        async def client(n: int) -> None:
            nonlocal errors
            i = 0
            while time.monotonic() < stop_at:
                started = time.perf_counter()
                try:
                    async with session.put(
                        f"{target}/v1/kv/bench-{n}-{i % 1000}", data=value
                    ) as resp:
                        await resp.read()
                        ok = resp.status == 200
                except aiohttp.ClientError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1
                i += 1

        began = time.monotonic()
        await asyncio.gather(*(client(n) for n in range(clients)))
        elapsed = time.monotonic() - began
    latencies.sort()

    def pct(p: float) -> float:
        return (
            latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else 0.0
        )

    return {
        "writes": len(latencies),
        "errors": errors,
        "seconds": elapsed,
        "writes_per_second": len(latencies) / elapsed,
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--urls", default="")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--value-bytes", type=int, default=256)
    parser.add_argument(
        "--unsafe-no-fsync",
        action="store_true",
        help="start the local cluster in the UNSAFE no-fsync mode",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="start the local cluster without TLS and authentication",
    )
    args = parser.parse_args()
    tmp = None
    urls = [u.rstrip("/") for u in args.urls.split(",") if u]
    if not urls:
        tmp = tempfile.mkdtemp(prefix="raftkv-bench-")
        cmd = [sys.executable, "-m", "raftkv.cli", "local", "up", "--dir", tmp]
        if args.unsafe_no_fsync:
            cmd.append("--unsafe-no-fsync")
        if args.insecure:
            cmd.append("--insecure")
        urls = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.split()
    creds = str(Path(tmp) / CREDENTIALS_DIR) if tmp is not None and not args.insecure else None
    try:
        result = asyncio.run(run_load(urls, args.clients, args.seconds, args.value_bytes, creds))
    finally:
        if tmp is not None:
            subprocess.run(
                [sys.executable, "-m", "raftkv.cli", "local", "down", "--purge", "--dir", tmp],
                check=False,
            )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
