"""Real `raftkv serve` processes on 127.0.0.x for the integration tests.

Each node gets its own loopback address (127.0.0.<10+i>) and free ports; every
process started here is killed at teardown (the `cluster` fixture), whatever
the test did. Waiting is always "poll a condition until a deadline", never a
bare sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from raftkv.runtime.credentials import ClientCredentials
from raftkv.runtime.identity import load_identity, member_id
from raftkv.security.pki import CertKey, issue_cert, make_ca
from raftkv.tools.ports import free_port

T = TypeVar("T")

RETRY_503_SECONDS = 10.0
FAST_TIMINGS = ["--tick-ms", "50", "--election-ticks", "10", "--heartbeat-ticks", "1"]
_next_host = 10


def allocate_host() -> str:
    """A loopback address not used by another cluster of this test process."""
    global _next_host
    host = f"127.0.0.{_next_host}"
    _next_host = 10 + (_next_host - 9) % 200
    return host


@dataclass
class Node:
    name: str
    host: str
    client_port: int
    peer_port: int
    data_dir: Path
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    scheme: str = "http"

    @property
    def id(self) -> int:
        """The id the node persisted (a joiner draws a fresh one), else the founder id."""
        persisted = load_identity(self.data_dir)
        return persisted[1] if persisted else member_id(self.name)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"{self.host}:{self.peer_port}"

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


async def until(
    condition: Callable[[], Awaitable[T | None]], timeout: float, what: str, interval: float = 0.05
) -> T:
    """Poll `condition` until it returns something truthy; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = await condition()
            if value:
                return value
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            last_exc = exc
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what}"
                + (f" (last error: {last_exc!r})" if last_exc else "")
            )
        await asyncio.sleep(interval)


class Cluster:
    def __init__(
        self,
        base_dir: Path,
        session: aiohttp.ClientSession,
        *,
        secure: bool = False,
        peer_tls: bool = False,
    ) -> None:
        """`secure`: TLS and authentication on the client port (credentials made in
        `base_dir/credentials`; `session` must then trust `ssl_context()` and send
        `auth_headers()`); else the explicit --client-insecure. `peer_tls`: mutual TLS
        between the members (a CA made for this cluster, a certificate per node naming
        it and its address); else --peer-insecure."""
        self.base_dir = base_dir
        self.session = session
        self.nodes: dict[str, Node] = {}
        self.engine: str | None = None
        """--consensus for every node this cluster starts (None: the node's default);
        a node's own extra_args may still name one."""
        self.initial: list[Node] = []
        self.credentials: ClientCredentials | None = None
        self.admin_token = ""
        if secure:
            self.credentials = ClientCredentials(base_dir / "credentials")
            self.credentials.ca()
            self.admin_token = self.credentials.ensure_admin()
        self.ca: CertKey | None = make_ca("raftkv test peer CA") if peer_tls else None
        if self.ca is not None:
            (base_dir / "pki").mkdir(parents=True, exist_ok=True)
            (base_dir / "pki" / "ca.pem").write_bytes(self.ca.cert_pem)

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.credentials is None:
            return None
        return ssl.create_default_context(cafile=str(self.credentials.ca_file))

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"} if self.admin_token else {}

    def client_plane_args(self, node: Node) -> list[str]:
        creds = self.credentials
        if creds is None:
            return ["--client-insecure"]
        cert, key = creds.issue(node.name, [node.host])
        return [
            "--client-cert-file",
            str(cert),
            "--client-key-file",
            str(key),
            "--client-trusted-ca-file",
            str(creds.ca_file),
            "--auth-file",
            str(creds.auth_file),
        ]

    def peer_args(self, node: Node) -> list[str]:
        if self.ca is None:
            return ["--peer-insecure"]
        pki = self.base_dir / "pki"
        cert, key = pki / f"{node.name}.pem", pki / f"{node.name}-key.pem"
        if not cert.exists():
            issue_cert(self.ca, node.name, dns_names=[node.name], ip_addresses=[node.host]).write(
                cert, key
            )
        return [
            "--peer-cert-file",
            str(cert),
            "--peer-key-file",
            str(key),
            "--peer-trusted-ca-file",
            str(pki / "ca.pem"),
        ]

    # --- processes -------------------------------------------------------------
    def add_node(self, name: str, extra_args: list[str] | None = None) -> Node:
        host = allocate_host()
        node = Node(
            name,
            host,
            free_port(host),
            free_port(host),
            self.base_dir / name,
            extra_args=list(extra_args or []),
            scheme="https" if self.credentials is not None else "http",
        )
        self.nodes[name] = node
        return node

    def create(self, count: int, extra_args: list[str] | None = None) -> list[Node]:
        nodes = [self.add_node(f"n{i + 1}", extra_args) for i in range(count)]
        self.initial = nodes
        return nodes

    def command(self, node: Node, state: str = "new") -> list[str]:
        initial = ",".join(f"{n.name}={n.peer_url}" for n in self.initial)
        return [
            sys.executable,
            "-m",
            "raftkv.cli",
            "serve",
            "--name",
            node.name,
            "--data-dir",
            str(node.data_dir),
            "--listen-host",
            node.host,
            "--client-port",
            str(node.client_port),
            "--peer-port",
            str(node.peer_port),
            "--initial-cluster",
            initial,
            "--initial-cluster-state",
            state,
            *FAST_TIMINGS,
            *self.client_plane_args(node),
            *self.peer_args(node),
            *self.engine_args(node),
            *node.extra_args,
        ]

    def engine_args(self, node: Node) -> list[str]:
        if self.engine is None or "--consensus" in node.extra_args:
            return []
        return ["--consensus", self.engine]

    def start(self, node: Node, state: str = "new") -> None:
        assert not node.running(), f"{node.name} is already running"
        node.log_path = self.base_dir / f"{node.name}.log"
        log = open(node.log_path, "ab")  # noqa: SIM115 - the child owns it
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        node.proc = subprocess.Popen(
            self.command(node, state), stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env
        )
        log.close()

    def start_all(self) -> None:
        for node in self.initial:
            self.start(node)

    def kill(self, node: Node, sig: int = signal.SIGKILL) -> None:
        if node.proc is not None and node.proc.poll() is None:
            node.proc.send_signal(sig)
            node.proc.wait(timeout=20)
        node.proc = None

    def terminate(self, node: Node) -> int:
        assert node.proc is not None
        node.proc.send_signal(signal.SIGTERM)
        rc = node.proc.wait(timeout=20)
        node.proc = None
        return rc

    def close(self) -> None:
        for node in self.nodes.values():
            if node.proc is not None and node.proc.poll() is None:
                node.proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    node.proc.wait(timeout=10)

    def log_tail(self, node: Node, lines: int = 30) -> str:
        if node.log_path is None or not node.log_path.exists():
            return ""
        return "\n".join(node.log_path.read_text(errors="replace").splitlines()[-lines:])

    # --- HTTP ------------------------------------------------------------------------
    async def status(self, node: Node) -> dict[str, Any] | None:
        try:
            async with self.session.get(
                node.url + "/v1/status", timeout=aiohttp.ClientTimeout(total=2)
            ) as r:
                if r.status != 200:
                    return None
                return await r.json()
        except (TimeoutError, aiohttp.ClientError):
            return None

    async def wait_leader(self, among: list[Node] | None = None, timeout: float = 20.0) -> Node:
        """All running nodes of `among` agree on one leader that is one of them."""
        candidates = [n for n in (among or list(self.nodes.values())) if n.running()]

        async def agreed() -> Node | None:
            statuses = [await self.status(n) for n in candidates]
            if not all(statuses):
                return None
            leaders = {(s["leader"] or {}).get("id") for s in statuses if s}
            if len(leaders) != 1:
                return None
            leader_id = leaders.pop()
            return next((n for n in candidates if n.id == leader_id), None)

        return await until(agreed, timeout, "an agreed leader")

    async def wait_caught_up(self, node: Node, leader: Node, timeout: float = 30.0) -> None:
        async def caught_up() -> bool:
            mine, theirs = await self.status(node), await self.status(leader)
            return bool(mine and theirs and mine["applied_index"] >= theirs["commit_index"])

        await until(caught_up, timeout, f"{node.name} to catch up with {leader.name}")

    async def put(self, node: Node, key: str, value: bytes, **params: str) -> tuple[int, Any]:
        async def once() -> tuple[int, Any]:
            async with self.session.put(
                f"{node.url}/v1/kv/{key}",
                data=value,
                params=params,
                timeout=aiohttp.ClientTimeout(total=15),
            ) as r:
                return r.status, _json_or_bytes(await r.read())

        return await _retrying(once)

    async def get(self, node: Node, key: str, **params: str) -> tuple[int, bytes]:
        async def once() -> tuple[int, bytes]:
            async with self.session.get(
                f"{node.url}/v1/kv/{key}", params=params, timeout=aiohttp.ClientTimeout(total=15)
            ) as r:
                return r.status, await r.read()

        return await _retrying(once)

    async def request(
        self, method: str, node: Node, path: str, json_body: Any = None, **params: str
    ) -> tuple[int, Any]:
        async def once() -> tuple[int, Any]:
            async with self.session.request(
                method,
                node.url + path,
                json=json_body,
                params=params,
                timeout=aiohttp.ClientTimeout(total=30),
            ) as r:
                return r.status, _json_or_bytes(await r.read())

        return await _retrying(once)


@contextlib.asynccontextmanager
async def running_cluster(
    base_dir: Path, nodes: int = 3, *, secure: bool = False, peer_tls: bool = False
) -> AsyncIterator[Cluster]:
    """`nodes` members started and a leader elected; every process killed and the
    session closed on the way out. A secure cluster's session trusts its CA and
    sends its admin token."""
    cluster = Cluster(base_dir, None, secure=secure, peer_tls=peer_tls)  # type: ignore[arg-type]
    cluster.session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=128, ssl=cluster.ssl_context() or True),
        headers=cluster.auth_headers(),
    )
    try:
        cluster.create(nodes)
        cluster.start_all()
        await cluster.wait_leader()
        yield cluster
    finally:
        cluster.close()
        await cluster.session.close()


async def _retrying(
    once: Callable[[], Awaitable[tuple[int, T]]], timeout: float = RETRY_503_SECONDS
) -> tuple[int, T]:
    """Like a well-behaved client: a 503 (no leader yet, leadership moving) is retried
    for a while; every other answer is returned as it is."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = await once()
        if status != 503 or time.monotonic() > deadline:
            return status, body
        await asyncio.sleep(0.05)


def _json_or_bytes(body: bytes) -> Any:
    import json

    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return body
