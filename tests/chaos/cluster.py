"""The nodes of one chaos run: processes, their faults, and the cluster's view of them.

Every process started here is killed when the run ends (`close`), whatever
happened. Nodes always run with `--unsafe-crash-test-ledger` so a power cut
can be simulated after a kill -9 (the WAL's ledger of fsynced bytes).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from raftkv.runtime.identity import load_identity, member_id
from raftkv.security.pki import CertKey, issue_cert, make_ca
from raftkv.storage.wal import simulate_power_loss
from tests.chaos.net import Endpoint, Network

CHAOS_TIMINGS = ["--tick-ms", "50", "--election-ticks", "10", "--heartbeat-ticks", "1"]
ELECTION_TIMEOUT = 0.5  # seconds: tick-ms x election-ticks
_STATUS_TIMEOUT = aiohttp.ClientTimeout(total=1.5)


def no_retry_session() -> aiohttp.ClientSession:
    """A session that never silently re-sends a request.

    aiohttp re-sends an idempotent request (GET, PUT, DELETE) once when a kept-alive
    connection drops before the answer. If the node applied the first copy and then
    died, the retry's "connection refused" would be recorded as a definite failure of
    a write that happened (the chaos set checker caught exactly that). There is no
    public switch, so the private flag is turned off, and checked to still exist."""
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
    if not hasattr(session, "_retry_connection"):
        raise RuntimeError(
            "aiohttp changed: cannot turn off its automatic request retry; "
            "the chaos client's fail/info classification would be unsound"
        )
    session._retry_connection = False
    return session


@dataclass
class NodeProc:
    name: str
    endpoint: Endpoint
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    paused: bool = False
    retired: bool = False  # removed from the cluster: never restarted
    started_once: bool = False
    state: str = "new"  # --initial-cluster-state for its next start

    @property
    def id(self) -> int:
        """The id the node persisted (a joiner draws a fresh one), else the founder id."""
        persisted = load_identity(self.data_dir)
        return persisted[1] if persisted else member_id(self.name)

    @property
    def url(self) -> str:
        return self.endpoint.direct_client_url

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class Cluster:
    net: Network
    base_dir: Path
    initial: list[str]
    node_args: list[str] = field(default_factory=list)
    session: aiohttp.ClientSession | None = None
    nodes: dict[str, NodeProc] = field(default_factory=dict)
    exits: list[str] = field(default_factory=list)  # unexpected process exits seen
    peer_tls: bool = True  # mutual TLS between members (a CA made for the run)

    def __post_init__(self) -> None:
        for name in self.net.names:
            node_dir = self.base_dir / "nodes" / name
            self.nodes[name] = NodeProc(
                name, self.net.endpoint(name), node_dir / "data", node_dir.with_suffix(".log")
            )

    async def open(self) -> None:
        self.session = no_retry_session()

    def peer_args(self, node: NodeProc) -> list[str]:
        if not self.peer_tls:
            return ["--peer-insecure"]
        pki = self.base_dir / "pki"
        ca_path = pki / "ca.pem"
        if not ca_path.exists():
            ca = make_ca("raftkv chaos peer CA")
            pki.mkdir(parents=True, exist_ok=True)
            (pki / "ca-key.pem").write_bytes(ca.key_pem)
            ca_path.write_bytes(ca.cert_pem)
        cert, key = pki / f"{node.name}.pem", pki / f"{node.name}-key.pem"
        if not cert.exists():
            ca = CertKey(ca_path.read_bytes(), (pki / "ca-key.pem").read_bytes())
            issue_cert(ca, node.name, dns_names=[node.name]).write(cert, key)
        return [
            "--peer-cert-file",
            str(cert),
            "--peer-key-file",
            str(key),
            "--peer-trusted-ca-file",
            str(ca_path),
        ]

    # --- processes -------------------------------------------------------------------

    def command(self, node: NodeProc) -> list[str]:
        ep = node.endpoint
        initial = ",".join(f"{n}={self.nodes[n].endpoint.peer_url}" for n in self.initial)
        return [
            *self.net.command_prefix(node.name),
            sys.executable,
            "-m",
            "raftkv.cli",
            "serve",
            "--name",
            node.name,
            "--data-dir",
            str(node.data_dir),
            "--listen-host",
            ep.listen_host,
            "--client-port",
            str(ep.client_port),
            "--peer-port",
            str(ep.peer_port),
            "--advertise-client-url",
            ep.client_url,
            "--advertise-peer-url",
            ep.peer_url,
            "--initial-cluster",
            initial,
            "--initial-cluster-state",
            node.state,
            "--request-timeout",
            "3",
            "--snapshot-entries",
            "1000",
            "--unsafe-crash-test-ledger",
            "--client-insecure",  # the chaos suite tests consistency, not the client plane
            *CHAOS_TIMINGS,
            *self.peer_args(node),
            *self.net.node_args(node.name),
            *self.node_args,
        ]

    def _note_exit(self, node: NodeProc) -> None:
        """A process we did not kill has exited: record it before any fault or restart
        hides it (a node that crashed and was later "killed" or restarted by the
        nemesis used to pass unnoticed)."""
        if node.proc is not None and node.proc.poll() is not None:
            self.exits.append(f"{node.name} exited with {node.proc.returncode}")
            node.proc = None
            node.paused = False

    def start(self, name: str) -> None:
        node = self.nodes[name]
        self._note_exit(node)
        if node.running() or node.retired:
            return
        node.data_dir.mkdir(parents=True, exist_ok=True)
        with node.log_path.open("ab") as log:
            log.write(f"=== start {time.strftime('%H:%M:%S')}\n".encode())
            log.flush()
            env = dict(os.environ, PYTHONUNBUFFERED="1")
            node.proc = subprocess.Popen(
                self.command(node), stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env
            )
        node.paused = False
        node.started_once = True

    def kill(self, name: str) -> None:
        node = self.nodes[name]
        self._note_exit(node)
        if node.proc is not None:
            if node.proc.poll() is None:
                node.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.proc.wait(timeout=10)
        node.proc = None
        node.paused = False

    def power_loss(self, name: str) -> dict[str, int]:
        """kill -9, then drop everything the WAL had not fsynced."""
        self.kill(name)
        wal = self.nodes[name].data_dir / "wal"
        return simulate_power_loss(wal) if wal.exists() else {}

    def pause(self, name: str) -> None:
        node = self.nodes[name]
        self._note_exit(node)
        if node.running() and not node.paused:
            assert node.proc is not None
            node.proc.send_signal(signal.SIGSTOP)
            node.paused = True

    def resume(self, name: str) -> None:
        node = self.nodes[name]
        self._note_exit(node)
        if node.running() and node.paused:
            assert node.proc is not None
            node.proc.send_signal(signal.SIGCONT)
        node.paused = False

    def retire(self, name: str) -> None:
        node = self.nodes[name]
        self.kill(name)
        node.retired = True

    def check_exits(self) -> list[str]:
        """Every process that died without being killed during the run (crashes of
        the node), including those seen earlier by a fault or the watcher."""
        for node in self.nodes.values():
            self._note_exit(node)
        return list(self.exits)

    async def watch_exits(self, stop: asyncio.Event, every: float = 0.2) -> None:
        """Notice self-exits as they happen (not only when a fault touches the node)."""
        while not stop.is_set():
            self.check_exits()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)

    def close(self) -> None:
        for node in self.nodes.values():
            if node.proc is not None and node.proc.poll() is None:
                if node.paused:
                    node.proc.send_signal(signal.SIGCONT)
                node.proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    node.proc.wait(timeout=10)

    async def aclose(self) -> None:
        self.close()
        if self.session is not None:
            await self.session.close()

    def remove_data(self) -> None:
        for node in self.nodes.values():
            shutil.rmtree(node.data_dir, ignore_errors=True)

    # --- views -----------------------------------------------------------------------

    def live(self) -> list[NodeProc]:
        """Running, unpaused, not retired."""
        return [n for n in self.nodes.values() if n.running() and not n.paused and not n.retired]

    def active(self) -> list[NodeProc]:
        """Nodes that are part of the cluster (started and not retired), up or down."""
        return [n for n in self.nodes.values() if n.started_once and not n.retired]

    def spares(self) -> list[NodeProc]:
        return [n for n in self.nodes.values() if not n.started_once and not n.retired]

    async def status(self, node: NodeProc) -> dict[str, Any] | None:
        assert self.session is not None
        try:
            async with self.session.get(node.url + "/v1/status", timeout=_STATUS_TIMEOUT) as r:
                if r.status != 200:
                    return None
                body: dict[str, Any] = await r.json()
                return body
        except (TimeoutError, aiohttp.ClientError, ValueError):
            return None

    async def leader(self) -> NodeProc | None:
        """The node that says it leads, at the highest term among the live nodes."""
        statuses = await asyncio.gather(*(self.status(n) for n in self.live()))
        best: tuple[int, NodeProc] | None = None
        for node, st in zip(self.live(), statuses, strict=False):
            if st and st.get("role") == "leader" and (best is None or st["term"] > best[0]):
                best = (st["term"], node)
        return best[1] if best else None

    async def voters(self) -> list[str] | None:
        lead = await self.leader()
        st = await self.status(lead) if lead else None
        if not st:
            return None
        return [m["name"] for m in st["members"] if m["role"] == "voter"]

    async def request(
        self, method: str, node: NodeProc, path: str, json_body: Any = None, timeout: float = 5.0
    ) -> tuple[int, Any]:
        assert self.session is not None
        async with self.session.request(
            method, node.url + path, json=json_body, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as r:
            try:
                return r.status, await r.json(content_type=None)
            except ValueError:
                return r.status, None

    async def wait_healthy(self, timeout: float) -> str | None:
        """Every active node is up and agrees on one leader which accepts a write.
        Returns None when healthy, else what was wrong at the deadline."""
        deadline = time.monotonic() + timeout
        problem: str | None = "never checked"
        while time.monotonic() < deadline:
            problem = await self._health_problem()
            if problem is None:
                return None
            await asyncio.sleep(0.2)
        return problem

    async def _health_problem(self) -> str | None:
        nodes = [n for n in self.active() if n.running()]
        statuses = await asyncio.gather(*(self.status(n) for n in nodes))
        if not all(statuses):
            return "not every node answers /v1/status"
        leaders = {(st["leader"] or {}).get("name") for st in statuses if st}
        if len(leaders) != 1 or None in leaders:
            return f"no agreed leader (they say {sorted(map(str, leaders))})"
        leader_node = self.nodes.get(str(next(iter(leaders))))
        if leader_node is None:
            return "the leader is not a node of this run"
        try:
            code, _ = await self.request("PUT", leader_node, "/v1/kv/chaos-health", None, 4.0)
        except (TimeoutError, aiohttp.ClientError) as exc:
            return f"write to the leader failed: {exc!r}"
        return None if code == 200 else f"write to the leader answered {code}"
