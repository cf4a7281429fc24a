"""`make bench`: a local 3-node raftkv against a local 3-member etcd, driven by wrk.

    python bench/run.py [--duration 10] [--connections 1,16,64,256] [--profile]
                        [--peer-tls both|on|off]

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
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp

from raftkv.runtime.credentials import ClientCredentials
from raftkv.tools.ports import free_ports

sys.path.insert(0, str(Path(__file__).resolve().parent))
import etcdgrpc  # noqa: E402 - bench/ is a directory of scripts, not a package

HERE = Path(__file__).resolve().parent
LUA = HERE / "kv.lua"
RESULTS = HERE / "results"
KEYS = 1000
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


@dataclass
class Access:
    """How the bench reaches a system: TLS context (None: plain) and the token."""

    context: ssl.SSLContext | None = None
    token: str = ""
    bearer: bool = True  # raftkv: "Bearer <token>"; etcd: the bare token

    def headers(self) -> dict[str, str]:
        if not self.token:
            return {}
        return {"Authorization": ("Bearer " if self.bearer else "") + self.token}


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
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                     output)
    if sock:
        errors += sum(int(x) for x in sock.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non2xx:
        errors += int(non2xx[1])
    return {"ops_per_sec": float(rps[1]), "p50_ms": _ms(p50[1]), "p99_ms": _ms(p99[1]),
            "requests": int(total[1]), "errors": errors}


def run_wrk(url: str, system: str, op: str, connections: int, duration: int,
            gateway: str = "/v3", token: str = "") -> dict[str, float]:
    threads = min(2, connections)
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency",
           "--timeout", "10s", "-s", str(LUA), url, "--", system, op, str(KEYS),
           str(VALUE_BYTES), gateway, token]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                         timeout=duration + 60).stdout
    return parse_wrk(out)


# --- processes ------------------------------------------------------------------------
def http_json(method: str, url: str, body: Any = None, timeout: float = 2.0,
              access: Access | None = None) -> Any:
    access = access or Access()
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json",
                                          **access.headers()})
    with urllib.request.urlopen(req, timeout=timeout, context=access.context) as resp:
        return json.loads(resp.read())


def wait_until(what: str, check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - still starting
            last = exc
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what} (last error: {last!r})")


class Etcd:
    """A 3-member etcd on 127.0.0.1 (Debian's etcd-server; fsync is always on)."""

    def __init__(self, base: Path, peer_tls: bool = False) -> None:
        self.base = base
        self.peer_tls = peer_tls
        self._ca: Any = None
        ports = free_ports(6)
        self.members = [{"name": f"e{i}", "client": ports[2 * i], "peer": ports[2 * i + 1]}
                        for i in range(3)]
        self.procs: list[subprocess.Popen[bytes]] = []
        self.gateway = "/v3"
        self.access = Access(bearer=False)

    @property
    def urls(self) -> list[str]:
        scheme = "https" if self.peer_tls else "http"
        return [f"{scheme}://127.0.0.1:{m['client']}" for m in self.members]

    def _client_tls_args(self, name: str) -> list[str]:
        """A server certificate on the client port (clients then use etcd's token auth)."""
        from raftkv.security.pki import issue_cert

        pki = self.base / "pki"
        cert, key = pki / f"{name}-client.pem", pki / f"{name}-client-key.pem"
        issue_cert(self._ca, name, ip_addresses=["127.0.0.1"]).write(cert, key)
        self.access.context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        return ["--cert-file", str(cert), "--key-file", str(key),
                "--auth-token", "simple", "--auth-token-ttl", "3600"]

    def _enable_auth(self) -> None:
        """etcd's token auth: a root user, `auth enable`, then a token to send."""
        url, gw, plain = self.urls[0], self.gateway, Access(self.access.context)
        http_json("POST", url + gw + "/auth/user/add", {"name": "root", "password": "bench"},
                  access=plain)
        http_json("POST", url + gw + "/auth/user/grant", {"user": "root", "role": "root"},
                  access=plain)
        http_json("POST", url + gw + "/auth/enable", {}, access=plain)
        answer = http_json("POST", url + gw + "/auth/authenticate",
                           {"name": "root", "password": "bench"}, access=plain)
        self.access.token = str(answer["token"])

    def _peer_tls_args(self, name: str) -> list[str]:
        """Mutual TLS between the members, with certificates like raftkv's (P-256)."""
        from raftkv.security.pki import issue_cert, make_ca

        pki = self.base / "pki"
        pki.mkdir(exist_ok=True)
        ca_path = pki / "ca.pem"
        if self._ca is None:
            self._ca = make_ca("etcd bench peer CA")
            ca_path.write_bytes(self._ca.cert_pem)
        cert, key = pki / f"{name}.pem", pki / f"{name}-key.pem"
        issue_cert(self._ca, name, dns_names=[name, "localhost"],
                   ip_addresses=["127.0.0.1"]).write(cert, key)
        return ["--peer-cert-file", str(cert), "--peer-key-file", str(key),
                "--peer-trusted-ca-file", str(ca_path), "--peer-client-cert-auth"]

    def start(self) -> None:
        scheme = "https" if self.peer_tls else "http"
        initial = ",".join(f"{m['name']}={scheme}://127.0.0.1:{m['peer']}"
                           for m in self.members)
        for m, url in zip(self.members, self.urls, strict=True):
            log = open(self.base / f"{m['name']}.log", "wb")  # noqa: SIM115 - child owns it
            tls = [*self._peer_tls_args(str(m["name"])),
                   *self._client_tls_args(str(m["name"]))] if self.peer_tls else []
            self.procs.append(subprocess.Popen([
                "etcd", "--name", str(m["name"]), "--data-dir", str(self.base / str(m["name"])),
                "--listen-client-urls", url, "--advertise-client-urls", url,
                "--listen-peer-urls", f"{scheme}://127.0.0.1:{m['peer']}",
                "--initial-advertise-peer-urls", f"{scheme}://127.0.0.1:{m['peer']}",
                "--initial-cluster", initial, "--initial-cluster-token", "raftkv-bench",
                "--initial-cluster-state", "new", "--logger", "zap", "--log-level", "error",
                *tls],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True))
        for url in self.urls:
            wait_until(f"etcd {url} healthy", lambda u=url: http_json(
                "GET", u + "/health", access=self.access).get("health") == "true")
        self.gateway = self._gateway()
        if self.peer_tls:
            self._enable_auth()

    def _gateway(self) -> str:
        """3.4+ serves /v3; 3.3 and older only /v3beta (/v3alpha before that)."""
        for prefix in ("/v3", "/v3beta", "/v3alpha"):
            with contextlib.suppress(Exception):
                http_json("POST", self.urls[0] + prefix + "/maintenance/status", {},
                          access=self.access)
                return prefix
        raise RuntimeError("etcd answers none of /v3, /v3beta, /v3alpha")

    def leader_url(self) -> str:
        def find() -> str | None:
            for url in self.urls:
                st = http_json("POST", url + self.gateway + "/maintenance/status", {},
                               access=self.access)
                if st.get("leader") and st["header"]["member_id"] == st["leader"]:
                    return url
            return None
        return str(wait_until("an etcd leader", find))

    def version(self) -> str:
        out = subprocess.run(["etcd", "--version"], capture_output=True, text=True).stdout
        m = re.search(r"etcd Version: (\S+)", out)
        return m[1] if m else "unknown"

    def stop(self) -> None:
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError):
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


class Raftkv:
    """A 3-node raftkv through `raftkv local up` (fsync on: the default; peer TLS
    unless `peer_tls` is False)."""

    def __init__(self, base: Path, peer_tls: bool = True) -> None:
        self.dir = base / ("raftkv-peer-tls" if peer_tls else "raftkv")
        self.peer_tls = peer_tls
        self.urls: list[str] = []
        self.access = Access()

    def _cli(self, *args: str) -> str:
        return subprocess.run([sys.executable, "-m", "raftkv.cli", "local", *args,
                               "--dir", str(self.dir)], capture_output=True, text=True,
                              check=True, timeout=120).stdout

    def start(self) -> None:
        # Secure is `local up`'s default: peer mTLS, and client TLS + an admin token.
        self.urls = self._cli("up", "--nodes", "3",
                              *([] if self.peer_tls else ["--insecure"])).split()
        if self.peer_tls:
            creds = ClientCredentials(self.dir / "credentials")
            self.access = Access(ssl.create_default_context(cafile=str(creds.ca_file)),
                                 creds.admin_token())

    def leader(self) -> tuple[str, int]:
        """The leader's client URL and pid."""
        def find() -> tuple[str, int] | None:
            for url in self.urls:
                st = http_json("GET", url + "/v1/status", access=self.access)
                if st.get("role") == "leader":
                    state = json.loads((self.dir / "cluster.json").read_text())
                    pid = next(n["pid"] for n in state["nodes"] if n["name"] == st["name"])
                    return url, int(pid)
            return None
        return wait_until("a raftkv leader", find)

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, FileNotFoundError):
            self._cli("down")


async def populate(system: str, url: str, gateway: str, access: Access) -> None:
    """Write every key once so reads find them (and both stores hold the same data)."""
    value = bytes(97 + (i * 7) % 26 for i in range(1, VALUE_BYTES + 1))
    sem = asyncio.Semaphore(32)
    async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=access.context or True),
            headers=access.headers()) as session:
        async def put(i: int) -> None:
            key = f"bench/{i:06d}".encode()
            async with sem:
                if system == "raftkv":
                    req = session.put(f"{url}/v1/kv/{key.decode()}", data=value)
                else:
                    req = session.post(f"{url}{gateway}/kv/put", json={
                        "key": base64.b64encode(key).decode(),
                        "value": base64.b64encode(value).decode()})
                async with req as resp:
                    if resp.status != 200:
                        raise RuntimeError(f"populate {system}: {resp.status} "
                                           f"{await resp.text()}")

        await asyncio.gather(*(put(i) for i in range(KEYS)))


# --- profiling --------------------------------------------------------------------------
def start_profile(pid: int, duration: int, raw_path: Path) -> subprocess.Popen[bytes]:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return subprocess.Popen([py_spy, "record", "--pid", str(pid), "--duration", str(duration),
                             "--rate", "100", "--format", "raw", "--output", str(raw_path),
                             "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


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
    head = (f"{'op':<5} {'conns':>5} | {'raftkv ops/s':>12} {'p50 ms':>7} {'p99 ms':>7} | "
            f"{'etcd-json ops/s':>15} {'p99 ms':>7} | {'etcd-grpc ops/s':>15} {'p99 ms':>7} | "
            f"{'ops/json':>8} {'ops/grpc':>8} {'p99/json':>8} {'p99/grpc':>8}")
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
                f"{ratio(a.p99_ms, b, 'p99_ms')} {ratio(a.p99_ms, g, 'p99_ms')}")
    errs = [r for r in runs if r.errors]
    if errs:
        lines.append("")
        lines += [f"note: {r.system} {r.op} c={r.connections}: {r.errors} errors "
                  f"of {r.requests} requests" for r in errs]
    return "\n".join(lines)


def chart(runs: list[Run], connections: list[int], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    width = 0.38
    xs = list(range(len(connections)))
    for col, op in enumerate(("put", "get")):
        for row, (metric, label) in enumerate((("ops_per_sec", "ops/s"),
                                               ("p99_ms", "p99 latency (ms)"))):
            ax = axes[row][col]
            for k, (system, colour) in enumerate((("raftkv", "#3b7dd8"), ("etcd", "#999999"))):
                values = [next((getattr(r, metric) for r in runs if r.system == system
                                and r.op == op and r.connections == c), 0.0)
                          for c in connections]
                ax.bar([x + (k - 0.5) * width for x in xs], values, width, label=system,
                       color=colour)
            ax.set_xticks(xs, [str(c) for c in connections])
            ax.set_xlabel("connections")
            ax.set_ylabel(label)
            if metric == "p99_ms":
                ax.set_yscale("log")
            ax.set_title(f"{'writes (PUT 256 B)' if op == 'put' else 'linearizable reads'}: "
                         f"{label}")
            ax.legend()
    fig.suptitle("raftkv vs etcd, 3 members each on one machine, fsync on")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- main -------------------------------------------------------------------------------
def bench_system(name: str, url: str, gateway: str, connections: list[int], duration: int,
                 on_run: Any = None, access: Access | None = None) -> list[Run]:
    token = access.token if access is not None else ""
    runs = []
    for op in ("put", "get"):
        for c in connections:
            hook = on_run(op, c) if on_run else contextlib.nullcontext()
            with hook:
                res = run_wrk(url, name, op, c, duration, gateway, token)
            run = Run(name, op, c, res["ops_per_sec"], res["p50_ms"], res["p99_ms"],
                      int(res["requests"]), int(res["errors"]))
            print(f"  {name:<6} {op} c={c:<3} {run.ops_per_sec:>8.0f} ops/s  "
                  f"p50 {run.p50_ms:.2f} ms  p99 {run.p99_ms:.2f} ms"
                  + (f"  errors {run.errors}" if run.errors else ""), flush=True)
            runs.append(run)
    return runs


def bench_etcd_grpc(url: str, connections: list[int], duration: int) -> list[Run]:
    """The same workload through etcd's native gRPC client (system `etcd-grpc`)."""
    missing = etcdgrpc.available()
    if missing:
        print(f"  etcd-grpc: skipped: {missing} is not installed (make bench installs it)",
              flush=True)
        return []
    binary = etcdgrpc.build()
    endpoint = url.split("://", 1)[-1]
    runs = []
    for op in ("put", "get"):
        for c in connections:
            res = etcdgrpc.run(binary, endpoint, op, c, duration,
                               ["-keys", str(KEYS), "-value-size", str(VALUE_BYTES)])
            run = Run("etcd-grpc", op, c, res["ops_per_s"], res["p50_ms"], res["p99_ms"],
                      int(res["ops"]) + int(res["errors"]), int(res["errors"]))
            print(f"  {'etcd-grpc':<9} {op} c={c:<3} {run.ops_per_sec:>8.0f} ops/s  "
                  f"p50 {run.p50_ms:.2f} ms  p99 {run.p99_ms:.2f} ms"
                  + (f"  errors {run.errors}" if run.errors else ""), flush=True)
            runs.append(run)
    return runs


def bench_mode(args: argparse.Namespace, systems: list[str], connections: list[int],
               stamp: str, meta: dict[str, Any], peer_tls: bool) -> tuple[list[Run], str]:
    """Every system of `systems`, with or without mutual TLS between its members."""
    runs: list[Run] = []
    profile_text = ""
    with tempfile.TemporaryDirectory(prefix="raftkv-bench-") as tmp:
        base = Path(tmp)
        if "etcd" in systems:
            etcd = Etcd(base / "etcd", peer_tls)
            (base / "etcd").mkdir()
            try:
                etcd.start()
                meta["etcd"] = {"version": etcd.version(), "gateway": etcd.gateway}
                url = etcd.leader_url()
                print(f"etcd {meta['etcd']['version']} (gateway {etcd.gateway}), leader {url}",
                      flush=True)
                asyncio.run(populate("etcd", url, etcd.gateway, etcd.access))
                runs += bench_system("etcd", url, etcd.gateway, connections, args.duration,
                                     access=etcd.access)
                if not peer_tls:  # the Go generator speaks neither TLS nor etcd's auth here
                    runs += bench_etcd_grpc(url, connections, args.duration)
            finally:
                etcd.stop()
        if "raftkv" in systems:
            rk = Raftkv(base, peer_tls)
            try:
                rk.start()
                url, pid = rk.leader()
                print(f"raftkv leader {url} (pid {pid})", flush=True)
                asyncio.run(populate("raftkv", url, "", rk.access))
                suffix = "-peer-tls" if peer_tls else ""
                raw = args.out / f"profile-{stamp}{suffix}.collapsed"

                @contextlib.contextmanager
                def maybe_profile(op: str, c: int) -> Any:
                    if not (args.profile and op == "put" and c == 64):
                        yield
                        return
                    proc = start_profile(pid, max(1, args.duration - 1), raw)
                    try:
                        yield
                    finally:
                        _, err = proc.communicate(timeout=60)
                        if proc.returncode != 0:
                            print(f"py-spy failed: {err.decode(errors='replace')}",
                                  file=sys.stderr)

                runs += bench_system("raftkv", url, "", connections, args.duration,
                                     maybe_profile, rk.access)
                if args.profile and raw.exists():
                    profile_text = summarize_profile(raw)
                    (args.out / f"profile-{stamp}{suffix}.txt").write_text(profile_text + "\n")
            finally:
                rk.stop()
    for r in runs:
        r.peer_tls = peer_tls
    return runs, profile_text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int,
                        default=int(os.environ.get("BENCH_DURATION", "10")),
                        help="seconds per wrk run (env BENCH_DURATION; default 10)")
    parser.add_argument("--connections", default="1,16,64,256")
    parser.add_argument("--systems", default="etcd,raftkv")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy the raftkv leader during the 64-connection writes")
    parser.add_argument("--peer-tls", choices=("both", "on", "off"),
                        default=os.environ.get("BENCH_PEER_TLS", "both"),
                        help="members talk mutual TLS (on), not (off), or run both (default)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    modes = {"both": [False, True], "on": [True], "off": [False]}[args.peer_tls]
    connections = [int(c) for c in args.connections.split(",")]
    systems = args.systems.split(",")
    for tool in ("wrk", "etcd"):
        if shutil.which(tool) is None:
            print(f"bench: {tool} is not installed (make bench installs it)", file=sys.stderr)
            return 2
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    runs: list[Run] = []
    meta: dict[str, Any] = {"time": stamp, "duration_s": args.duration, "keys": KEYS,
                            "peer_tls_modes": modes,
                            "value_bytes": VALUE_BYTES, "connections": connections,
                            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                        "platform": platform.platform()}}
    profile_text = ""
    for peer_tls in modes:
        print(f"--- {'TLS + auth' if peer_tls else 'plain'} ---", flush=True)
        mode_runs, text = bench_mode(args, systems, connections, stamp, meta, peer_tls)
        runs += mode_runs
        profile_text = profile_text or text
    reports = []
    for peer_tls in modes:
        title = ("TLS on (peers mutual TLS; clients TLS + token auth), both systems"
                 if peer_tls else "plain (no TLS, no auth), both systems")
        reports.append(title + "\n" + table([r for r in runs if r.peer_tls == peer_tls],
                                              connections))
    report = "\n\n".join(reports)
    print()
    print(report)
    result_path = args.out / f"bench-{stamp}.json"
    result_path.write_text(json.dumps({**meta, "runs": [asdict(r) for r in runs]}, indent=2)
                           + "\n")
    if {"etcd", "raftkv"} <= set(systems):
        for peer_tls in modes:
            suffix = "-peer-tls" if peer_tls else ""
            chart([r for r in runs if r.peer_tls == peer_tls], connections,
                  args.out / f"bench-{stamp}{suffix}.png")
    print(f"\nresults: {result_path}")
    if profile_text:
        print(f"profile: {args.out / f'profile-{stamp}.txt'}\n\n{profile_text}")
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.exit(main())
