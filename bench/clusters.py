"""The clusters `make bench` drives: a 3-member etcd and a 3-node raftkv on 127.0.0.1,
with the helpers to reach them (used by bench/run.py and bench/failover.py)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from raftkv.client.credentials import Credentials
from raftkv.runtime.credentials import ClientCredentials
from raftkv.tools.ports import free_ports


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


# --- processes ------------------------------------------------------------------------
def http_json(
    method: str, url: str, body: Any = None, timeout: float = 2.0, access: Access | None = None
) -> Any:
    access = access or Access()
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", **access.headers()},
    )
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
        self.members = [
            {"name": f"e{i}", "client": ports[2 * i], "peer": ports[2 * i + 1]} for i in range(3)
        ]
        self.procs: list[subprocess.Popen[bytes]] = []
        self.commands: list[list[str]] = []
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
        return [
            "--cert-file",
            str(cert),
            "--key-file",
            str(key),
            "--auth-token",
            "simple",
            "--auth-token-ttl",
            "3600",
        ]

    def _enable_auth(self) -> None:
        """etcd's token auth: a root user, `auth enable`, then a token to send."""
        url, gw, plain = self.urls[0], self.gateway, Access(self.access.context)
        http_json(
            "POST", url + gw + "/auth/user/add", {"name": "root", "password": "bench"}, access=plain
        )
        http_json(
            "POST", url + gw + "/auth/user/grant", {"user": "root", "role": "root"}, access=plain
        )
        http_json("POST", url + gw + "/auth/enable", {}, access=plain)
        answer = http_json(
            "POST",
            url + gw + "/auth/authenticate",
            {"name": "root", "password": "bench"},
            access=plain,
        )
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
        issue_cert(self._ca, name, dns_names=[name, "localhost"], ip_addresses=["127.0.0.1"]).write(
            cert, key
        )
        return [
            "--peer-cert-file",
            str(cert),
            "--peer-key-file",
            str(key),
            "--peer-trusted-ca-file",
            str(ca_path),
            "--peer-client-cert-auth",
        ]

    def start(self) -> None:
        scheme = "https" if self.peer_tls else "http"
        initial = ",".join(f"{m['name']}={scheme}://127.0.0.1:{m['peer']}" for m in self.members)
        for m, url in zip(self.members, self.urls, strict=True):
            tls = (
                [*self._peer_tls_args(str(m["name"])), *self._client_tls_args(str(m["name"]))]
                if self.peer_tls
                else []
            )
            self.commands.append(
                [
                    "etcd",
                    "--name",
                    str(m["name"]),
                    "--data-dir",
                    str(self.base / str(m["name"])),
                    "--listen-client-urls",
                    url,
                    "--advertise-client-urls",
                    url,
                    "--listen-peer-urls",
                    f"{scheme}://127.0.0.1:{m['peer']}",
                    "--initial-advertise-peer-urls",
                    f"{scheme}://127.0.0.1:{m['peer']}",
                    "--initial-cluster",
                    initial,
                    "--initial-cluster-token",
                    "raftkv-bench",
                    "--initial-cluster-state",
                    "new",
                    "--logger",
                    "zap",
                    "--log-level",
                    "error",
                    *tls,
                ]
            )
            self.procs.append(self._spawn(len(self.commands) - 1))
        for url in self.urls:
            wait_until(
                f"etcd {url} healthy",
                lambda u=url: (
                    http_json("GET", u + "/health", access=self.access).get("health") == "true"
                ),
            )
        self.gateway = self._gateway()
        if self.peer_tls:
            self._enable_auth()

    def _spawn(self, i: int) -> subprocess.Popen[bytes]:
        log = open(self.base / f"{self.members[i]['name']}.log", "ab")  # noqa: SIM115
        return subprocess.Popen(
            self.commands[i],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def kill_leader(self) -> tuple[str, float]:
        """kill -9 of the leader: its name and the time.monotonic() of the kill
        (`restart` starts it again)."""
        leader = self.leader_url()
        i = self.urls.index(leader)
        self.procs[i].send_signal(signal.SIGKILL)
        killed = time.monotonic()  # after the signal: nothing it does later counts
        self.procs[i].wait(timeout=10)
        return str(self.members[i]["name"]), killed

    def restart(self) -> None:
        """Start every member that is not running (same data directory, same flags)."""
        for i, proc in enumerate(self.procs):
            if proc.poll() is not None:
                self.procs[i] = self._spawn(i)

    def leader_changes(self) -> float:
        """Leader changes seen so far: the most any member counted."""
        return max(
            metric_total(url + "/metrics", "etcd_server_leader_changes_seen", self.access)
            for url in self.urls
        )

    def _gateway(self) -> str:
        """3.4+ serves /v3; 3.3 and older only /v3beta (/v3alpha before that)."""
        for prefix in ("/v3", "/v3beta", "/v3alpha"):
            with contextlib.suppress(Exception):
                http_json(
                    "POST", self.urls[0] + prefix + "/maintenance/status", {}, access=self.access
                )
                return prefix
        raise RuntimeError("etcd answers none of /v3, /v3beta, /v3alpha")

    def leader_url(self) -> str:
        def find() -> str | None:
            for url in self.urls:
                st = http_json(
                    "POST", url + self.gateway + "/maintenance/status", {}, access=self.access
                )
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

    def __init__(
        self,
        base: Path,
        peer_tls: bool = True,
        *,
        name: str = "raftkv",
        source: Path | None = None,
        consensus: str = "raft",
    ) -> None:
        """`source`: run the nodes from another checkout's `node/` (a baseline build);
        `consensus`: the engine (`raftkv local up --consensus`)."""
        self.name = name
        self.consensus = consensus
        self.dir = base / (name + ("-peer-tls" if peer_tls else ""))
        self.peer_tls = peer_tls
        self.env = dict(os.environ)
        if source is not None:
            self.env["PYTHONPATH"] = str(source)
        self.urls: list[str] = []
        self.access = Access()

    def _cli(self, *args: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "raftkv.cli", "local", *args, "--dir", str(self.dir)],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
            env=self.env,
        ).stdout

    def start(self) -> None:
        # Secure is `local up`'s default: peer mTLS, and client TLS + an admin token.
        self.urls = self._cli(
            "up",
            "--nodes",
            "3",
            *([] if self.consensus == "raft" else ["--consensus", self.consensus]),
            *([] if self.peer_tls else ["--insecure"]),
        ).split()
        if self.peer_tls:
            creds = ClientCredentials(self.dir / "credentials")
            self.access = Access(
                ssl.create_default_context(cafile=str(creds.ca_file)), creds.admin_token()
            )

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

    def client_credentials(self) -> Credentials:
        """What a raftkv client needs to reach this cluster (empty when insecure)."""
        if not self.peer_tls:
            return Credentials()
        creds = ClientCredentials(self.dir / "credentials")
        return Credentials(cacert=str(creds.ca_file), token=creds.admin_token())

    def kill_leader(self) -> tuple[str, float]:
        """kill -9 of the leader: its name and the time.monotonic() of the kill
        (`restart` starts it again)."""
        url, pid = self.leader()
        name = str(http_json("GET", url + "/v1/status", access=self.access)["name"])
        os.kill(pid, signal.SIGKILL)
        return name, time.monotonic()  # after the signal: nothing it does later counts

    def restart(self) -> None:
        """`local up` again: starts the members that are not running."""
        self._cli("up", "--nodes", "3", *([] if self.peer_tls else ["--insecure"]))

    def leader_changes(self) -> float:
        """Leader changes seen so far: the most any member counted."""
        return max(
            metric_total(url + "/metrics", "raftkv_leader_changes", self.access)
            for url in self.urls
        )

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, FileNotFoundError):
            self._cli("down")


def metric_total(url: str, family: str, access: Access) -> float:
    """The sum of a counter family's `_total` samples on a Prometheus endpoint."""
    req = urllib.request.Request(url, headers=access.headers())
    with urllib.request.urlopen(req, timeout=5, context=access.context) as resp:
        text = resp.read().decode()
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        if f.name == family
        for s in f.samples
        if s.name == family + "_total"
    )
