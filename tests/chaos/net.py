"""Where the nodes live and how their links are cut: two modes.

`netns` (root, with `ip` and nft or iptables): every node runs in its own
network namespace, on a veth attached to a bridge that lives in a control
namespace (which the harness process itself enters, so nothing of this network
exists in the host's namespace). Addresses are 10.77.0.0/24, inside those
namespaces only. A cut link is a DROP rule in the receiving node's namespace:
`block(a, b)` drops everything from a arriving at b; a partition blocks both
ways. Clients (in the control namespace) always reach every node, as in Jepsen.

`loopback` (anywhere): nodes listen on 127.B.0.x; every directed link a -> b
goes through a userspace proxy (tests.chaos.proxy) on its own address
127.B.a.b, which the node a reaches through `--resolve`. A cut link blackholes
its proxy; a slow link delays it. Peer traffic and forwarded client requests
go through the proxies; clients talk to nodes directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import re
import shutil
import subprocess
from abc import ABC, abstractmethod
from dataclasses import dataclass

from raftkv.tools.ports import free_port
from tests.chaos.proxy import LinkProxy

NETNS_SUBNET = "10.77.0"
CLIENT_PORT, PEER_PORT = 7379, 7380
_CLONE_NEWNET = 0x40000000
_NETNS_PREFIX = "rkc"
_NETNS_NAME = re.compile(rf"^{_NETNS_PREFIX}(\d+)-")


class NetError(RuntimeError):
    pass


@dataclass(frozen=True)
class Endpoint:
    """How the harness and the node's flags refer to a node."""

    listen_host: str
    client_port: int
    peer_port: int
    client_url: str  # advertised (what other nodes and /v1/status say)
    peer_url: str  # advertised host:port
    direct_client_url: str  # what the harness connects to


class Network(ABC):
    mode: str

    def __init__(self, names: list[str]) -> None:
        self.names = list(names)  # every node that may ever exist in this run
        self.index = {name: i for i, name in enumerate(self.names)}

    def setup(self) -> None:  # noqa: B027 - optional hook
        """Synchronous setup, before the event loop exists (namespaces are per thread)."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Asynchronous setup, inside the event loop."""

    def teardown(self) -> None:  # noqa: B027 - optional hook
        """Synchronous cleanup, after the event loop ended (idempotent)."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    def endpoint(self, name: str) -> Endpoint: ...

    @abstractmethod
    def command_prefix(self, name: str) -> list[str]:
        """What to put before a node's command line (enter its namespace)."""

    @abstractmethod
    def node_args(self, name: str) -> list[str]:
        """Extra `raftkv serve` flags (e.g. --resolve)."""

    @abstractmethod
    async def block(self, src: str, dst: str) -> None:
        """Drop traffic from src to dst (one direction)."""

    @abstractmethod
    async def heal(self) -> None:
        """Undo every block and slowdown."""

    @property
    def can_slow(self) -> bool:
        return False

    async def slow(self, delay: float) -> None:
        raise NetError(f"slow links are not available in {self.mode} mode")


# --- loopback ------------------------------------------------------------------------


class LoopbackNetwork(Network):
    mode = "loopback"

    def __init__(self, names: list[str]) -> None:
        super().__init__(names)
        self.octet = 100 + os.getpid() % 150  # 127.<octet>.x.y: apart from other tests
        self.client_port = free_port(self._host(0, 0))
        self.peer_port = free_port(self._host(0, 0))
        self.proxies: dict[tuple[str, str], LinkProxy] = {}

    def _host(self, a: int, b: int) -> str:
        return f"127.{self.octet}.{a}.{b}"

    def _node_host(self, name: str) -> str:
        return self._host(0, 10 + self.index[name])

    def _link_host(self, src: str, dst: str) -> str:
        return self._host(10 + self.index[src], 10 + self.index[dst])

    @staticmethod
    def _dns(name: str) -> str:
        return f"{name}.chaos"

    async def start(self) -> None:
        for src in self.names:
            for dst in self.names:
                if src != dst:
                    proxy = LinkProxy(
                        f"{src}->{dst}",
                        self._link_host(src, dst),
                        self._node_host(dst),
                        [self.client_port, self.peer_port],
                    )
                    await proxy.start()
                    self.proxies[(src, dst)] = proxy

    async def close(self) -> None:
        for proxy in self.proxies.values():
            await proxy.close()

    def endpoint(self, name: str) -> Endpoint:
        dns = self._dns(name)
        return Endpoint(
            self._node_host(name),
            self.client_port,
            self.peer_port,
            f"http://{dns}:{self.client_port}",
            f"{dns}:{self.peer_port}",
            f"http://{self._node_host(name)}:{self.client_port}",
        )

    def command_prefix(self, name: str) -> list[str]:
        return []

    def node_args(self, name: str) -> list[str]:
        resolve = [f"{self._dns(name)}={self._node_host(name)}"]
        resolve += [
            f"{self._dns(dst)}={self._link_host(name, dst)}" for dst in self.names if dst != name
        ]
        return ["--resolve", ",".join(resolve)]

    async def block(self, src: str, dst: str) -> None:
        self.proxies[(src, dst)].set_blocked(True)

    async def heal(self) -> None:
        for proxy in self.proxies.values():
            proxy.set_blocked(False)
            proxy.delay = 0.0

    @property
    def can_slow(self) -> bool:
        return True

    async def slow(self, delay: float) -> None:
        for proxy in self.proxies.values():
            proxy.delay = delay


# --- network namespaces --------------------------------------------------------------


class NamespaceNetwork(Network):
    mode = "netns"

    def __init__(self, names: list[str]) -> None:
        super().__init__(names)
        if len(names) > 200:
            raise NetError("at most 200 nodes")
        self.prefix = f"{_NETNS_PREFIX}{os.getpid()}"
        self.control = f"{self.prefix}-ctl"
        self.firewall = "nft" if shutil.which("nft") else "iptables"
        self.created: list[str] = []

    def ns(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def _address(self, name: str) -> str:
        return f"{NETNS_SUBNET}.{10 + self.index[name]}"

    def setup(self) -> None:
        remove_stale_namespaces()
        ctl = self.control
        _ip("netns", "add", ctl)
        self.created.append(ctl)
        _ip("-n", ctl, "link", "set", "lo", "up")
        _ip("-n", ctl, "link", "add", "br0", "type", "bridge")
        _ip("-n", ctl, "addr", "add", f"{NETNS_SUBNET}.1/24", "dev", "br0")
        _ip("-n", ctl, "link", "set", "br0", "up")
        for i, name in enumerate(self.names):
            ns = self.ns(name)
            _ip("netns", "add", ns)
            self.created.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip(
                "link",
                "add",
                "eth0",
                "netns",
                ns,
                "type",
                "veth",
                "peer",
                "name",
                f"v{i}",
                "netns",
                ctl,
            )
            _ip("-n", ctl, "link", "set", f"v{i}", "master", "br0", "up")
            _ip("-n", ns, "addr", "add", f"{self._address(name)}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            if self.firewall == "nft":
                _netns_exec(
                    ns,
                    ["nft", "-f", "-"],
                    stdin=(
                        "table inet chaos {\n"
                        "  chain input { type filter hook input priority 0; policy accept; }\n"
                        "}\n"
                    ),
                )
        enter_namespace(ctl)

    async def close(self) -> None:
        self.teardown()

    def teardown(self) -> None:
        for ns in reversed(self.created):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        self.created.clear()

    def endpoint(self, name: str) -> Endpoint:
        addr = self._address(name)
        url = f"http://{addr}:{CLIENT_PORT}"
        return Endpoint("0.0.0.0", CLIENT_PORT, PEER_PORT, url, f"{addr}:{PEER_PORT}", url)

    def command_prefix(self, name: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns(name)]

    def node_args(self, name: str) -> list[str]:
        return []

    async def block(self, src: str, dst: str) -> None:
        source = self._address(src)
        if self.firewall == "nft":
            cmd = ["nft", "add", "rule", "inet", "chaos", "input", "ip", "saddr", source, "drop"]
        else:
            cmd = ["iptables", "-A", "INPUT", "-s", source, "-j", "DROP"]
        await asyncio.to_thread(_netns_exec, self.ns(dst), cmd)

    async def heal(self) -> None:
        for name in self.names:
            if self.firewall == "nft":
                cmd = ["nft", "flush", "chain", "inet", "chaos", "input"]
            else:
                cmd = ["iptables", "-F", "INPUT"]
            await asyncio.to_thread(_netns_exec, self.ns(name), cmd)


def _ip(*args: str) -> None:
    run = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise NetError(f"ip {' '.join(args)}: {run.stderr.strip()}")


def _netns_exec(ns: str, cmd: list[str], stdin: str | None = None) -> None:
    run = subprocess.run(
        ["ip", "netns", "exec", ns, *cmd], input=stdin, capture_output=True, text=True, check=False
    )
    if run.returncode != 0:
        raise NetError(f"in {ns}: {' '.join(cmd)}: {run.stderr.strip()}")


def enter_namespace(ns: str) -> None:
    """Move this (single-threaded) process into the named network namespace."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/var/run/netns/{ns}", os.O_RDONLY)
    try:
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise NetError(f"setns({ns}): {os.strerror(err)}")
    finally:
        os.close(fd)


def remove_stale_namespaces() -> list[str]:
    """Namespaces of earlier runs whose process is gone (a run killed mid-way)."""
    listing = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=False
    ).stdout
    removed = []
    for line in listing.splitlines():
        name = line.split()[0] if line.split() else ""
        match = _NETNS_NAME.match(name)
        if match and not _pid_alive(int(match.group(1))):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
            removed.append(name)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def netns_unavailable_reason() -> str | None:
    """None if the netns mode can run here, else why not."""
    if os.geteuid() != 0:
        return "not root"
    for tool in ("ip",):
        if shutil.which(tool) is None:
            return f"`{tool}` is missing"
    if shutil.which("nft") is None and shutil.which("iptables") is None:
        return "neither nft nor iptables is installed"
    probe = f"{_NETNS_PREFIX}{os.getpid()}-probe"
    run = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, check=False)
    if run.returncode != 0:
        return f"cannot create a network namespace: {run.stderr.strip()}"
    with contextlib.suppress(Exception):
        subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


def install_system_tools() -> str:
    """apt-get install the netns mode's tools when root and missing; returns a note."""
    missing = [
        pkg
        for tool, pkg in (("ip", "iproute2"), ("nft", "nftables"), ("iptables", "iptables"))
        if shutil.which(tool) is None
    ]
    if not missing:
        return ""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return f"missing {missing} and cannot apt-get install them"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, check=False)
    run = subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return f"apt-get install {' '.join(missing)}: rc={run.returncode}"


def make_network(mode: str, names: list[str]) -> Network:
    if mode == "netns":
        return NamespaceNetwork(names)
    if mode == "loopback":
        return LoopbackNetwork(names)
    raise NetError(f"unknown network mode {mode!r}")
