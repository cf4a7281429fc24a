"""Interleaved before/after of raftkv builds (a measurement, not a test).

    python bench/ab.py --baseline-src DIR [--connections 16,64,256] [--ops put]
                       [--rounds 3] [--seconds 8]

Starts a 3-node `raftkv local up --insecure` cluster from this checkout and one from
`--baseline-src` (another checkout's `node/`), both at once, and runs the same wrk
cells against each leader in turn, alternating which build goes first, `--rounds`
times. On a shared machine the load swings within minutes, so only figures taken
side by side say anything; per cell it prints the median over the rounds of ops/s,
p99 and the leader's CPU time per request (user + system from /proc/<pid>/stat over
the cell, divided by the requests wrk counted), a measure the other processes on the
machine disturb far less than wall-clock figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent))

from clusters import Raftkv  # noqa: E402
from run import KEYS, populate, run_wrk  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def gc_seconds(url: str) -> float:
    """Seconds the leader spent in garbage collections so far (every generation)."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        if f.name == "raftkv_gc_pause_seconds"
        for s in f.samples
        if s.name == "raftkv_gc_pause_seconds_sum"
    )


def node_pids(rk: Raftkv) -> list[int]:
    state = json.loads((rk.dir / "cluster.json").read_text())
    return [int(n["pid"]) for n in state["nodes"]]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline-src", type=Path, required=True)
    parser.add_argument("--connections", default="16,64,256")
    parser.add_argument("--ops", default="put")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    args = parser.parse_args()
    connections = [int(c) for c in args.connections.split(",")]
    ops = args.ops.split(",")
    print(f"load average at start: {os.getloadavg()}", flush=True)
    results: dict[tuple[str, str, int], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="raftkv-ab-") as tmp:
        builds = {
            "before": Raftkv(Path(tmp), False, name="before", source=args.baseline_src.resolve()),
            "after": Raftkv(Path(tmp), False, name="after"),
        }
        try:
            leaders = {}
            for label, rk in builds.items():
                rk.start()
                leaders[label] = rk.leader()
                asyncio.run(populate("raftkv", leaders[label][0], "", rk.access))
            for r in range(args.rounds):
                order = list(builds) if r % 2 == 0 else list(reversed(builds))
                for op in ops:
                    for c in connections:
                        for label in order:
                            url, pid = leaders[label]
                            pids = node_pids(builds[label])
                            cpu0 = cpu_seconds(pid)
                            all0 = sum(map(cpu_seconds, pids))
                            gc0 = gc_seconds(url)
                            res = run_wrk(url, "raftkv", op, c, args.seconds)
                            requests = max(1, res["requests"])
                            res["cpu_us"] = (cpu_seconds(pid) - cpu0) * 1e6 / requests
                            res["gc_us"] = (gc_seconds(url) - gc0) * 1e6 / requests
                            res["cluster_cpu_us"] = (
                                (sum(map(cpu_seconds, pids)) - all0) * 1e6 / requests
                            )
                            results.setdefault((label, op, c), []).append(res)
                            print(
                                f"round {r} {label:<6} {op} c={c:<3} "
                                f"{res['ops_per_sec']:>7.0f} ops/s p99 {res['p99_ms']:>7.1f} ms "
                                f"leader cpu {res['cpu_us']:>4.0f} us/req, 3 nodes {res['cluster_cpu_us']:>4.0f}, "
                                f"leader gc {res['gc_us']:>5.1f} us/req"
                                + (f" errors {res['errors']:.0f}" if res["errors"] else ""),
                                flush=True,
                            )
        finally:
            for rk in builds.values():
                rk.stop()
    print(f"load average at end: {os.getloadavg()}")
    print(f"\nmedians over {args.rounds} interleaved rounds ({KEYS} keys, {args.seconds} s cells)")
    print(
        "| op | conns | before ops/s | after ops/s | before p99 ms | after p99 ms "
        "| before leader cpu us/req | after | before 3 nodes cpu us/req | after "
        "| before leader gc us/req | after |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for op in ops:
        for c in connections:
            b, a = results[("before", op, c)], results[("after", op, c)]

            def med(rs: list[dict[str, float]], k: str) -> float:
                return statistics.median(x[k] for x in rs)

            print(
                f"| {op} | {c} | {med(b, 'ops_per_sec'):.0f} | {med(a, 'ops_per_sec'):.0f} "
                f"| {med(b, 'p99_ms'):.1f} | {med(a, 'p99_ms'):.1f} "
                f"| {med(b, 'cpu_us'):.0f} | {med(a, 'cpu_us'):.0f} "
                f"| {med(b, 'cluster_cpu_us'):.0f} | {med(a, 'cluster_cpu_us'):.0f} "
                f"| {med(b, 'gc_us'):.1f} | {med(a, 'gc_us'):.1f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
