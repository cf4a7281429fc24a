"""`make bench`: a local 3-node raftkv, on each consensus engine (Raft, Multi-Paxos),
against a local 3-member etcd, driven by wrk.

    python bench/run.py [--duration 10] [--connections 1,16,64,256] [--profile]
                        [--peer-tls both|on|off] [--systems etcd,raftkv,multipaxos]

`--systems`: `raftkv` is raftkv on Raft (the default engine), `multipaxos` the
same raftkv on Multi-Paxos (`raftkv local up --consensus multipaxos`); the
engines table prints the two beside etcd.

Both clusters run on 127.0.0.1 with fsync on (raftkv's default; etcd always
fsyncs), in separate temporary data directories on distinct ports, one system at
a time so they do not share the two cores. For each system: pre-populate the key
space, then wrk (`-t2`, `--latency`, bench/kv.lua) sends PUTs of 256-byte values
on random keys to the leader at each connection count, then linearizable reads
(raftkv `GET /v1/kv/<key>`, etcd `POST /v3/kv/range`). Prints a table (ops/s,
p50/p99 latency, raftkv/etcd ratios), writes bench/results/bench-<time>.json and
a PNG chart beside it.

`--peer-tls` (default `both`): run both systems with mutual TLS between their
members (etcd `--peer-cert-file`/`--peer-key-file`/`--peer-trusted-ca-file`
with `--peer-client-cert-auth`; raftkv `raftkv local up`, whose default is peer
TLS), without it (etcd's plain peer URLs; raftkv `local up --insecure`), or
both; one table per mode. Both get the same kind of certificate: ECDSA P-256
from one CA made for the run (`raftkv.security.pki`). The TLS mode is secure on
the client plane too: raftkv as `local up` makes it (https, a bearer token on
every request), etcd with a server certificate and its token auth (`auth
enable`, a simple token from `/v3/auth/authenticate` on every request; wrk
cannot present client certificates, so `--client-cert-auth` is not the mode
compared). The native gRPC generator runs in the plain mode only.

`--profile` also samples the raftkv leader with py-spy during the 64-connection
write run and writes the top functions (by own time and by inclusive time) to
bench/results/profile-<time>.txt and the collapsed stacks beside it.

Absolute numbers depend on the machine; the ratios of one run are what count.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
# bench/ is a directory of scripts, not a package
import etcdgrpc  # noqa: E402
import failover  # noqa: E402
from clusters import Access, Etcd, Raftkv  # noqa: E402
from goals import Kill, Stability, evaluate, goals_table  # noqa: E402

HERE = Path(__file__).resolve().parent
LUA = HERE / "kv.lua"
RESULTS = HERE / "results"
KEYS = 1000
FAILOVER_WRITERS = 8
FAILOVER_READERS = 8
VALUE_BYTES = 256


@dataclass
class Run:
    system: str
    op: str  # put | get
    connections: int
    ops_per_sec: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # socket errors + non-2xx answers
    peer_tls: bool = False  # members talk mutual TLS; clients TLS + token auth


# --- wrk ------------------------------------------------------------------------------
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise ValueError(f"cannot parse wrk latency {text!r}")
    return float(m[1]) * _UNITS[m[2]]


def parse_wrk(output: str) -> dict[str, float]:
    """Requests/sec, p50/p99 (ms), request and error counts from `wrk --latency`."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    total = re.search(r"(\d+) requests in", output)
    if not (rps and p50 and p99 and total):
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    errors = 0
    sock = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if sock:
        errors += sum(int(x) for x in sock.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non2xx:
        errors += int(non2xx[1])
    return {
        "ops_per_sec": float(rps[1]),
        "p50_ms": _ms(p50[1]),
        "p99_ms": _ms(p99[1]),
        "requests": int(total[1]),
        "errors": errors,
    }


def run_wrk(
    url: str,
    system: str,
    op: str,
    connections: int,
    duration: int,
    gateway: str = "/v3",
    token: str = "",
) -> dict[str, float]:
    threads = min(2, connections)
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        url,
        "--",
        system,
        op,
        str(KEYS),
        str(VALUE_BYTES),
        gateway,
        token,
    ]
    out = subprocess.run(
        cmd, capture_output=True, text=True, check=True, timeout=duration + 60
    ).stdout
    return parse_wrk(out)


async def populate(system: str, url: str, gateway: str, access: Access) -> None:
    """Write every key once so reads find them (and both stores hold the same data)."""
    value = bytes(97 + (i * 7) % 26 for i in range(1, VALUE_BYTES + 1))
    sem = asyncio.Semaphore(32)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=access.context or True), headers=access.headers()
    ) as session:

        async def put(i: int) -> None:
            key = f"bench/{i:06d}".encode()
            async with sem:
                if system == "raftkv":
                    req = session.put(f"{url}/v1/kv/{key.decode()}", data=value)
                else:
                    req = session.post(
                        f"{url}{gateway}/kv/put",
                        json={
                            "key": base64.b64encode(key).decode(),
                            "value": base64.b64encode(value).decode(),
                        },
                    )
                async with req as resp:
                    if resp.status != 200:
                        raise RuntimeError(f"populate {system}: {resp.status} {await resp.text()}")

        await asyncio.gather(*(put(i) for i in range(KEYS)))


# --- profiling --------------------------------------------------------------------------
def start_profile(pid: int, duration: int, raw_path: Path) -> subprocess.Popen[bytes]:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(duration),
            "--rate",
            "100",
            "--format",
            "raw",
            "--output",
            str(raw_path),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def summarize_profile(raw_path: Path, top: int = 25) -> str:
    """Top functions by own samples and by inclusive samples from collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw_path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    lines = [f"{total} samples", "", "own time (where the CPU is):"]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    lines += ["", "inclusive time (what it is spent under):"]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(top)]
    return "\n".join(lines)


def _short(frame: str) -> str:
    # "func (path/to/module.py:123)" -> "func (module.py)"; line numbers split a function
    m = re.match(r"(.*) \((.*?):\d+\)$", frame)
    if not m:
        return frame
    path = m[2]
    for marker in ("site-packages/", "node/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{m[1]} ({path})"


# --- report -----------------------------------------------------------------------------
def table(runs: list[Run], connections: list[int]) -> str:
    """raftkv against etcd through its JSON gateway and through native gRPC
    (ratios: raftkv / etcd; ops above 1 and p99 below 1 favour raftkv)."""
    by = {(r.system, r.op, r.connections): r for r in runs}
    head = (
        f"{'op':<5} {'conns':>5} | {'raftkv ops/s':>12} {'p50 ms':>7} {'p99 ms':>7} | "
        f"{'etcd-json ops/s':>15} {'p99 ms':>7} | {'etcd-grpc ops/s':>15} {'p99 ms':>7} | "
        f"{'ops/json':>8} {'ops/grpc':>8} {'p99/json':>8} {'p99/grpc':>8}"
    )
    lines = [head, "-" * len(head)]

    def cells(r: Run | None) -> str:
        return f"{'-':>15} {'-':>7}" if r is None else f"{r.ops_per_sec:>15.0f} {r.p99_ms:>7.2f}"

    def ratio(a: float, b: Run | None, field: str) -> str:
        return f"{'-':>8}" if b is None else f"{a / getattr(b, field):>8.2f}"

    for op in ("put", "get"):
        for c in connections:
            a = by.get(("raftkv", op, c))
            b, g = by.get(("etcd", op, c)), by.get(("etcd-grpc", op, c))
            if a is None or (b is None and g is None):
                continue
            lines.append(
                f"{op:<5} {c:>5} | {a.ops_per_sec:>12.0f} {a.p50_ms:>7.2f} {a.p99_ms:>7.2f} | "
                f"{cells(b)} | {cells(g)} | "
                f"{ratio(a.ops_per_sec, b, 'ops_per_sec')} {ratio(a.ops_per_sec, g, 'ops_per_sec')} "
                f"{ratio(a.p99_ms, b, 'p99_ms')} {ratio(a.p99_ms, g, 'p99_ms')}"
            )
    errs = [r for r in runs if r.errors]
    if errs:
        lines.append("")
        lines += [
            f"note: {r.system} {r.op} c={r.connections}: {r.errors} errors of {r.requests} requests"
            for r in errs
        ]
    return "\n".join(lines)


def chart(runs: list[Run], connections: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    shown = [
        (system, colour)
        for system, colour in (
            ("raftkv", "#3b7dd8"),
            ("multipaxos", "#d8893b"),
            ("etcd", "#999999"),
        )
        if any(r.system == system for r in runs)
    ]
    width = 0.76 / max(len(shown), 1)
    xs = list(range(len(connections)))
    for col, op in enumerate(("put", "get")):
        for row, (metric, label) in enumerate(
            (("ops_per_sec", "ops/s"), ("p99_ms", "p99 latency (ms)"))
        ):
            ax = axes[row][col]
            for k, (system, colour) in enumerate(shown):
                values = [
                    next(
                        (
                            getattr(r, metric)
                            for r in runs
                            if r.system == system and r.op == op and r.connections == c
                        ),
                        0.0,
                    )
                    for c in connections
                ]
                ax.bar(
                    [x + (k - (len(shown) - 1) / 2) * width for x in xs],
                    values,
                    width,
                    label=system,
                    color=colour,
                )
            ax.set_xticks(xs, [str(c) for c in connections])
            ax.set_xlabel("connections")
            ax.set_ylabel(label)
            if metric == "p99_ms":
                ax.set_yscale("log")
            ax.set_title(
                f"{'writes (PUT 256 B)' if op == 'put' else 'linearizable reads'}: {label}"
            )
            ax.legend()
    fig.suptitle("raftkv (Raft, Multi-Paxos) vs etcd, 3 members each on one machine, fsync on")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- main -------------------------------------------------------------------------------
def bench_system(
    name: str,
    url: str,
    gateway: str,
    connections: list[int],
    duration: int,
    on_run: Any = None,
    access: Access | None = None,
    label: str | None = None,
) -> list[Run]:
    """wrk at each connection count; `name` is kv.lua's system (raftkv | etcd),
    `label` the system the runs are recorded as (default: `name`)."""
    token = access.token if access is not None else ""
    label = label or name
    runs = []
    for op in ("put", "get"):
        for c in connections:
            hook = on_run(op, c) if on_run else contextlib.nullcontext()
            with hook:
                res = run_wrk(url, name, op, c, duration, gateway, token)
            run = Run(
                label,
                op,
                c,
                res["ops_per_sec"],
                res["p50_ms"],
                res["p99_ms"],
                int(res["requests"]),
                int(res["errors"]),
            )
            print(
                f"  {label:<6} {op} c={c:<3} {run.ops_per_sec:>8.0f} ops/s  "
                f"p50 {run.p50_ms:.2f} ms  p99 {run.p99_ms:.2f} ms"
                + (f"  errors {run.errors}" if run.errors else ""),
                flush=True,
            )
            runs.append(run)
    return runs


def bench_etcd_grpc(url: str, connections: list[int], duration: int) -> list[Run]:
    """The same workload through etcd's native gRPC client (system `etcd-grpc`)."""
    missing = etcdgrpc.available()
    if missing:
        print(
            f"  etcd-grpc: skipped: {missing} is not installed (make bench installs it)", flush=True
        )
        return []
    binary = etcdgrpc.build()
    endpoint = url.split("://", 1)[-1]
    runs = []
    for op in ("put", "get"):
        for c in connections:
            res = etcdgrpc.run(
                binary,
                endpoint,
                op,
                c,
                duration,
                ["-keys", str(KEYS), "-value-size", str(VALUE_BYTES)],
            )
            run = Run(
                "etcd-grpc",
                op,
                c,
                res["ops_per_s"],
                res["p50_ms"],
                res["p99_ms"],
                int(res["ops"]) + int(res["errors"]),
                int(res["errors"]),
            )
            print(
                f"  {'etcd-grpc':<9} {op} c={c:<3} {run.ops_per_sec:>8.0f} ops/s  "
                f"p50 {run.p50_ms:.2f} ms  p99 {run.p99_ms:.2f} ms"
                + (f"  errors {run.errors}" if run.errors else ""),
                flush=True,
            )
            runs.append(run)
    return runs


def stability_run(
    label: str, cluster: Etcd | Raftkv, url: str, gateway: str, access: Access, seconds: int
) -> Stability:
    """Saturated writes (wrk, 256 connections) for `seconds`: the leader changes the
    members saw meanwhile (issue 15's goal: none in 5 minutes)."""
    before = cluster.leader_changes()
    res = run_wrk(
        url,
        "etcd" if isinstance(cluster, Etcd) else "raftkv",
        "put",
        256,
        seconds,
        gateway,
        access.token,
    )
    changes = cluster.leader_changes() - before
    print(
        f"  {label} saturated writes for {seconds} s (256 connections): "
        f"{res['ops_per_sec']:.0f} ops/s, p99 {res['p99_ms']:.1f} ms, "
        f"{changes:.0f} leader changes",
        flush=True,
    )
    return Stability(changes, seconds)


@dataclass
class ModeResult:
    runs: list[Run] = field(default_factory=list)
    profile_text: str = ""
    kills: dict[str, list[Kill]] = field(default_factory=dict)
    stability: dict[str, Stability] = field(default_factory=dict)


def bench_mode(
    args: argparse.Namespace,
    systems: list[str],
    connections: list[int],
    stamp: str,
    meta: dict[str, Any],
    peer_tls: bool,
    extras: bool,
) -> ModeResult:
    """Every system of `systems`, with or without mutual TLS between its members.
    `extras`: also the saturated-writes stability run and the kill -9 failovers."""
    out = ModeResult()
    with tempfile.TemporaryDirectory(prefix="raftkv-bench-") as tmp:
        base = Path(tmp)
        if "etcd" in systems:
            etcd = Etcd(base / "etcd", peer_tls)
            (base / "etcd").mkdir()
            try:
                etcd.start()
                meta["etcd"] = {"version": etcd.version(), "gateway": etcd.gateway}
                url = etcd.leader_url()
                print(
                    f"etcd {meta['etcd']['version']} (gateway {etcd.gateway}), leader {url}",
                    flush=True,
                )
                asyncio.run(populate("etcd", url, etcd.gateway, etcd.access))
                out.runs += bench_system(
                    "etcd", url, etcd.gateway, connections, args.duration, access=etcd.access
                )
                if not peer_tls:  # the Go generator speaks neither TLS nor etcd's auth here
                    out.runs += bench_etcd_grpc(url, connections, args.duration)
                if extras and args.stable_seconds:
                    out.stability["etcd"] = stability_run(
                        "etcd", etcd, url, etcd.gateway, etcd.access, args.stable_seconds
                    )
                if extras and args.kills:
                    out.kills["etcd"] = _kills(
                        asyncio.run(
                            failover.measure_etcd(
                                etcd, args.kills, FAILOVER_WRITERS, FAILOVER_READERS
                            )
                        )
                    )
                if extras and args.kills and not peer_tls and etcdgrpc.available() is None:
                    # The same kills through clientv3 (plain mode only, as above).
                    out.kills["etcd-grpc"] = _kills(
                        asyncio.run(
                            failover.measure_etcd_grpc(
                                etcd, args.kills, FAILOVER_WRITERS, FAILOVER_READERS
                            )
                        )
                    )
            finally:
                etcd.stop()
        builds = [("raftkv-before", args.baseline_src, "raft")] if args.baseline_src else []
        builds += [("raftkv", None, "raft")] if "raftkv" in systems else []
        builds += [("multipaxos", None, "multipaxos")] if "multipaxos" in systems else []
        for label, source, engine in builds:
            _bench_raftkv(
                args, base, label, source, connections, stamp, peer_tls, extras, out, engine
            )
    for r in out.runs:
        r.peer_tls = peer_tls
    return out


def _bench_raftkv(
    args: argparse.Namespace,
    base: Path,
    label: str,
    source: Path | None,
    connections: list[int],
    stamp: str,
    peer_tls: bool,
    extras: bool,
    out: ModeResult,
    consensus: str = "raft",
) -> None:
    rk = Raftkv(base, peer_tls, name=label, source=source, consensus=consensus)
    try:
        rk.start()
        url, pid = rk.leader()
        print(
            f"{label} leader {url} (pid {pid})" + (f", source {source}" if source else ""),
            flush=True,
        )
        asyncio.run(populate("raftkv", url, "", rk.access))
        suffix = (
            ("-peer-tls" if peer_tls else "")
            + ("-before" if source else "")
            + ("" if consensus == "raft" else f"-{consensus}")
        )
        raw = args.out / f"profile-{stamp}{suffix}.collapsed"

        @contextlib.contextmanager
        def maybe_profile(op: str, c: int) -> Any:
            if not (args.profile and op == "put" and c in args.profile_connections):
                yield
                return
            path = raw.with_name(f"{raw.stem}-c{c}.collapsed")
            proc = start_profile(pid, max(1, args.duration - 1), path)
            try:
                yield
            finally:
                _, err = proc.communicate(timeout=60)
                if proc.returncode != 0:
                    print(f"py-spy failed: {err.decode(errors='replace')}", file=sys.stderr)
                elif path.exists():
                    text = f"{label} put c={c}: " + summarize_profile(path)
                    path.with_suffix(".txt").write_text(text + "\n")
                    out.profile_text += text + "\n\n"

        out.runs += bench_system(
            "raftkv", url, "", connections, args.duration, maybe_profile, rk.access, label=label
        )
        if extras and args.stable_seconds:
            out.stability[label] = stability_run(label, rk, url, "", rk.access, args.stable_seconds)
        if extras and args.kills:
            out.kills[label] = _kills(
                asyncio.run(
                    failover.measure_raftkv(
                        rk, args.kills, FAILOVER_WRITERS, FAILOVER_READERS, label
                    )
                )
            )
    finally:
        rk.stop()


def _kills(results: list[failover.KillResult]) -> list[Kill]:
    return [Kill(r.failover_s, r.outage_s) for r in results]


def before_after_table(runs: list[Run], connections: list[int]) -> str:
    """raftkv before and after (a baseline build in the same run), etcd's p99 beside."""
    by = {(r.system, r.op, r.connections): r for r in runs}
    head = (
        f"{'op':<5} {'conns':>5} | {'before ops/s':>12} {'p50':>6} {'p99':>7} | "
        f"{'after ops/s':>11} {'p50':>6} {'p99':>7} | {'ops x':>6} {'p99 x':>6} | "
        f"{'etcd ops/s':>10} {'p99':>7}"
    )
    lines = [head, "-" * len(head)]
    for op in ("put", "get"):
        for c in connections:
            b, a = by.get(("raftkv-before", op, c)), by.get(("raftkv", op, c))
            e = by.get(("etcd-grpc", op, c)) or by.get(("etcd", op, c))
            if a is None or b is None:
                continue
            etcd = f"{e.ops_per_sec:>10.0f} {e.p99_ms:>7.2f}" if e else f"{'-':>10} {'-':>7}"
            lines.append(
                f"{op:<5} {c:>5} | {b.ops_per_sec:>12.0f} {b.p50_ms:>6.2f} {b.p99_ms:>7.2f} | "
                f"{a.ops_per_sec:>11.0f} {a.p50_ms:>6.2f} {a.p99_ms:>7.2f} | "
                f"{a.ops_per_sec / b.ops_per_sec:>6.2f} {a.p99_ms / b.p99_ms:>6.2f} | {etcd}"
            )
    return "\n".join(lines)


def engines_table(runs: list[Run], connections: list[int]) -> str:
    """raftkv on Raft and on Multi-Paxos beside etcd (its native gRPC client where it
    ran, else its JSON gateway): ops/s, p50 and p99 (ms) of each."""
    by = {(r.system, r.op, r.connections): r for r in runs}
    head = (
        f"{'op':<5} {'conns':>5} | {'raft ops/s':>10} {'p50':>6} {'p99':>7} | "
        f"{'multipaxos ops/s':>16} {'p50':>6} {'p99':>7} | "
        f"{'etcd ops/s':>10} {'p50':>6} {'p99':>7} {'via':>4}"
    )
    lines = [head, "-" * len(head)]

    def cells(r: Run | None, width: int) -> str:
        if r is None:
            return f"{'-':>{width}} {'-':>6} {'-':>7}"
        return f"{r.ops_per_sec:>{width}.0f} {r.p50_ms:>6.2f} {r.p99_ms:>7.2f}"

    for op in ("put", "get"):
        for c in connections:
            raft, paxos = by.get(("raftkv", op, c)), by.get(("multipaxos", op, c))
            grpc = by.get(("etcd-grpc", op, c))
            etcd = grpc or by.get(("etcd", op, c))
            if raft is None and paxos is None:
                continue
            via = "-" if etcd is None else ("grpc" if grpc is not None else "json")
            lines.append(
                f"{op:<5} {c:>5} | {cells(raft, 10)} | {cells(paxos, 16)} | "
                f"{cells(etcd, 10)} {via:>4}"
            )
    return "\n".join(lines)


def failover_lines(kills: dict[str, list[Kill]], stability: dict[str, Stability]) -> str:
    lines = []
    for system, results in kills.items():
        fo = sorted(k.failover_s for k in results)
        outage = sorted(k.outage_s for k in results)
        lines.append(
            f"{system:<14} kill -9 of the leader x{len(results)}: failover median "
            f"{statistics.median(fo):.3f} s, max {fo[-1]:.3f} s; no successful op "
            f"for median {statistics.median(outage):.3f} s, max {outage[-1]:.3f} s"
        )
    for system, st in stability.items():
        lines.append(
            f"{system:<14} leader changes in {st.seconds:.0f} s of saturated writes: "
            f"{st.leader_changes:.0f}"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--duration",
        type=int,
        default=int(os.environ.get("BENCH_DURATION", "10")),
        help="seconds per wrk run (env BENCH_DURATION; default 10)",
    )
    parser.add_argument("--connections", default="1,16,64,256")
    parser.add_argument(
        "--systems",
        default=os.environ.get("BENCH_SYSTEMS", "etcd,raftkv,multipaxos"),
        help="etcd, raftkv (on Raft), multipaxos (raftkv on Multi-Paxos); env BENCH_SYSTEMS",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy the raftkv leader during the writes at --profile-connections",
    )
    parser.add_argument(
        "--profile-connections",
        default="64",
        help="comma-separated connection counts to profile (default 64)",
    )
    parser.add_argument(
        "--kills",
        type=int,
        default=int(os.environ.get("BENCH_KILLS", "5")),
        help="kill -9 failovers per system (env BENCH_KILLS; 0: none)",
    )
    parser.add_argument(
        "--stable-seconds",
        type=int,
        default=int(os.environ.get("BENCH_STABLE_SECONDS", "300")),
        help="saturated writes counting leader changes, per system (env "
        "BENCH_STABLE_SECONDS; default 300, the goal's; 0: none)",
    )
    parser.add_argument(
        "--baseline-src",
        type=Path,
        default=os.environ.get("BENCH_BASELINE_SRC") or None,
        help="also run raftkv from this checkout's node/ directory as "
        "`raftkv-before` (e.g. `git archive main node | tar -x -C DIR`)",
    )
    parser.add_argument(
        "--peer-tls",
        choices=("both", "on", "off"),
        default=os.environ.get("BENCH_PEER_TLS", "both"),
        help="members talk mutual TLS (on), not (off), or run both (default)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    modes = {"both": [False, True], "on": [True], "off": [False]}[args.peer_tls]
    connections = [int(c) for c in args.connections.split(",")]
    args.profile_connections = {int(c) for c in args.profile_connections.split(",")}
    if args.baseline_src is not None:
        args.baseline_src = args.baseline_src.resolve()
        if not (args.baseline_src / "raftkv" / "cli.py").is_file():
            parser.error(
                f"--baseline-src {args.baseline_src}: no raftkv/cli.py there "
                "(point it at a checkout's node/ directory)"
            )
    systems = args.systems.split(",")
    for tool in ("wrk", "etcd"):
        if shutil.which(tool) is None:
            print(f"bench: {tool} is not installed (make bench installs it)", file=sys.stderr)
            return 2
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    runs: list[Run] = []
    meta: dict[str, Any] = {
        "time": stamp,
        "duration_s": args.duration,
        "keys": KEYS,
        "load_average_start": os.getloadavg(),
        "baseline_src": str(args.baseline_src or ""),
        "peer_tls_modes": modes,
        "value_bytes": VALUE_BYTES,
        "connections": connections,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
    }
    profile_text = ""
    kills: dict[str, list[Kill]] = {}
    stability: dict[str, Stability] = {}
    print(
        f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
        f"({os.cpu_count()} CPUs)",
        flush=True,
    )
    for peer_tls in modes:
        print(f"--- {'TLS + auth' if peer_tls else 'plain'} ---", flush=True)
        result = bench_mode(
            args, systems, connections, stamp, meta, peer_tls, extras=peer_tls == modes[0]
        )
        runs += result.runs
        profile_text = profile_text or result.profile_text
        kills.update(result.kills)
        stability.update(result.stability)
    meta["load_average_end"] = os.getloadavg()
    reports = []
    for peer_tls in modes:
        title = (
            "TLS on (peers mutual TLS; clients TLS + token auth), both systems"
            if peer_tls
            else "plain (no TLS, no auth), both systems"
        )
        reports.append(
            title + "\n" + table([r for r in runs if r.peer_tls == peer_tls], connections)
        )
    first = [r for r in runs if r.peer_tls == modes[0]]
    if "multipaxos" in systems:
        reports.append(
            f"engines: raftkv on Raft and on Multi-Paxos, etcd beside "
            f"({'TLS on' if modes[0] else 'plain'})\n" + engines_table(first, connections)
        )
    if args.baseline_src:
        reports.append(
            "raftkv before (baseline build) and after, same run "
            f"({'TLS on' if modes[0] else 'plain'})\n" + before_after_table(first, connections)
        )
    if kills or stability:
        reports.append("failover and stability\n" + failover_lines(kills, stability))
    if {"etcd", "raftkv"} <= set(systems):
        goal_rows = evaluate(first, kills, stability)
        reports.append(
            f"goals (issue 15), raftkv, {'TLS on' if modes[0] else 'plain'}\n"
            + goals_table(goal_rows)
        )
        if args.baseline_src:
            reports.append(
                "goals, raftkv-before\n"
                + goals_table(evaluate(first, kills, stability, "raftkv-before"))
            )
    reports.append(f"load average at end: {' '.join(f'{x:.2f}' for x in meta['load_average_end'])}")
    report = "\n\n".join(reports)
    print()
    print(report)
    result_path = args.out / f"bench-{stamp}.json"
    result_path.write_text(
        json.dumps(
            {
                **meta,
                "runs": [asdict(r) for r in runs],
                "kills": {k: [asdict(x) for x in v] for k, v in kills.items()},
                "stability": {k: asdict(v) for k, v in stability.items()},
            },
            indent=2,
        )
        + "\n"
    )
    if {"etcd", "raftkv"} <= set(systems):
        for peer_tls in modes:
            suffix = "-peer-tls" if peer_tls else ""
            chart(
                [r for r in runs if r.peer_tls == peer_tls],
                connections,
                args.out / f"bench-{stamp}{suffix}.png",
            )
    print(f"\nresults: {result_path}")
    if profile_text:
        print(f"profiles: {args.out}/profile-{stamp}*.txt\n\n{profile_text}")
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.exit(main())
