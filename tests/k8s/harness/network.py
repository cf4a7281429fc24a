"""Pod and Service addresses on the loopback network, and the cluster DNS records.

Every emulated cluster takes a random /23 inside 127.0.0.0/8 (never 127.0.0.x, which the
integration tests use): pod IPs from the first /24 (from .10 up), Service cluster IPs from the
second. A pod keeps its address for the cluster's lifetime (it is allocated per namespace and
pod name), so the addresses of StatefulSet pods can be predicted before the pods exist: that
is what lets every member start with the full `--resolve` map (see kubelet.py).

DNS records (`<pod>.<service>.<ns>.svc`, `<service>.<ns>.svc`, with or without
`.cluster.local`) are served three ways: the `RAFTKV_RESOLVE` map given to `raftkv serve`, a
JSON hosts file read by the pod shim (podshim/sitecustomize.py) in every Python pod process,
and `AiohttpClusterDns`, which teaches aiohttp clients in the test process (the operator under
KopfRunner) the same names.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import re
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp.connector

CLUSTER_DOMAIN = "cluster.local"
_SVC_NAME = re.compile(r"^[a-z0-9.-]+\.svc$")


def normalize_host(host: str) -> str:
    host = host.rstrip(".").lower()
    suffix = "." + CLUSTER_DOMAIN
    return host[: -len(suffix)] if host.endswith(suffix) else host


class ClusterNetwork:
    _taken: set[str] = set()
    _taken_lock = threading.Lock()

    def __init__(
        self, hosts_file: Path, base: str | None = None, rng: random.Random | None = None
    ) -> None:
        if base is None:
            rng = rng or random.Random()
            with ClusterNetwork._taken_lock:  # distinct networks for clusters of one process
                while base is None or base in ClusterNetwork._taken:
                    base = f"127.{rng.randint(64, 254)}.{rng.randrange(0, 254, 2)}.0/23"
                ClusterNetwork._taken.add(base)
        network = ipaddress.IPv4Network(base)
        if network.prefixlen > 23 or not network.subnet_of(ipaddress.IPv4Network("127.0.0.0/8")):
            raise ValueError(
                f"the cluster network must be a /23 or larger in 127.0.0.0/8, got {base}"
            )
        first, second = list(network.subnets(new_prefix=24))[:2]
        self.pod_network = first
        self.service_network = second
        self._pod_ips: dict[tuple[str, str], str] = {}
        self._service_ips: dict[tuple[str, str], str] = {}
        self._pod_records: dict[str, str] = {}
        self._incarnations: dict[tuple[str, str, str], str] = {}
        self._last_ip: dict[tuple[str, str], str] = {}
        self._next = 0
        self._service_records: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self.hosts_file = hosts_file
        hosts_file.parent.mkdir(parents=True, exist_ok=True)
        self._write_hosts()

    # ---- addresses ---------------------------------------------------------------------------

    def _allocate(
        self,
        table: dict[tuple[str, str], str],
        network: ipaddress.IPv4Network | ipaddress.IPv6Network,
        key: tuple[str, str],
    ) -> str:
        with self._lock:
            if key not in table:
                index = 10 + len(table)
                if index > 254:
                    raise RuntimeError(f"address pool {network} exhausted")
                table[key] = str(network.network_address + index)
            return table[key]

    def pod_ip(self, namespace: str, name: str) -> str:
        """The address of pod `name` (allocated on first use, then stable)."""
        return self._allocate(self._pod_ips, self.pod_network, (namespace, name))

    def new_pod_ip(self, namespace: str, name: str, uid: str) -> str:
        """A fresh address for one incarnation of pod `name` (as a real cluster gives a
        recreated pod): never the address of another live incarnation, nor (while the pool
        allows) the previous one of this name. `release_pod_ip` when the pod is gone."""
        with self._lock:
            if (namespace, name, uid) in self._incarnations:
                return self._incarnations[(namespace, name, uid)]
            taken = set(self._pod_ips.values()) | set(self._incarnations.values())
            previous = self._last_ip.get((namespace, name))
            for step in range(245):  # round robin over .10-.254: addresses are not reused soon
                ip = str(self.pod_network.network_address + 10 + (self._next + step) % 245)
                if ip not in taken and ip != previous:
                    self._next = (self._next + step + 1) % 245
                    break
            else:
                raise RuntimeError(f"address pool {self.pod_network} exhausted")
            self._incarnations[(namespace, name, uid)] = ip
            self._last_ip[(namespace, name)] = ip
            return ip

    def release_pod_ip(self, namespace: str, name: str, uid: str) -> None:
        with self._lock:
            self._incarnations.pop((namespace, name, uid), None)

    def remove_pod_record(self, namespace: str, hostname: str, subdomain: str, ip: str) -> None:
        """Drop `<hostname>.<subdomain>.<ns>.svc` if it still names `ip` (a pod gone)."""
        fqdn = f"{hostname}.{subdomain}.{namespace}.svc"
        with self._lock:
            changed = self._pod_records.get(fqdn) == ip
            if changed:
                del self._pod_records[fqdn]
        if changed:
            self._write_hosts()

    def service_ip(self, namespace: str, name: str) -> str:
        return self._allocate(self._service_ips, self.service_network, (namespace, name))

    # ---- records -----------------------------------------------------------------------------

    def set_pod_record(self, namespace: str, hostname: str, subdomain: str, ip: str) -> None:
        fqdn = f"{hostname}.{subdomain}.{namespace}.svc"
        with self._lock:
            changed = self._pod_records.get(fqdn) != ip
            self._pod_records[fqdn] = ip
        if changed:
            self._write_hosts()

    def set_service_record(self, namespace: str, name: str, ips: list[str] | None) -> None:
        fqdn = f"{name}.{namespace}.svc"
        with self._lock:
            old = self._service_records.get(fqdn)
            if ips is None:
                self._service_records.pop(fqdn, None)
            else:
                self._service_records[fqdn] = sorted(ips)
            changed = old != self._service_records.get(fqdn)
        if changed:
            self._write_hosts()

    def lookup(self, host: str) -> list[str]:
        name = normalize_host(host)
        with self._lock:
            if name in self._pod_records:
                return [self._pod_records[name]]
            return list(self._service_records.get(name, []))

    def resolve_map(self, namespace: str) -> dict[str, str]:
        """`host -> ip` for `--resolve`: pod names and single-address Service names of the
        namespace, each with and without the cluster domain."""
        out: dict[str, str] = {}
        with self._lock:
            items = [(k, v) for k, v in self._pod_records.items()]
            items += [(k, v[0]) for k, v in self._service_records.items() if len(v) == 1]
        for fqdn, ip in sorted(items):
            if fqdn.endswith(f".{namespace}.svc"):
                out[fqdn] = ip
                out[f"{fqdn}.{CLUSTER_DOMAIN}"] = ip
        return out

    def _write_hosts(self) -> None:
        with self._lock:
            records: dict[str, list[str]] = {k: [v] for k, v in self._pod_records.items()}
            records.update({k: list(v) for k, v in self._service_records.items() if v})
        tmp = self.hosts_file.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(records, sort_keys=True))
        os.replace(tmp, self.hosts_file)


class AiohttpClusterDns:
    """Resolves cluster names (`*.svc[.cluster.local]`) for every aiohttp client in this
    process (the operator under test), from the networks of the running clusters.

    aiohttp has no resolver hook; like kmock's own interceptor, this replaces the private
    `TCPConnector._resolve_host`, once per process, and never puts it back: a stack of such
    replacements breaks when two owners leave out of order. Clusters register and unregister
    their networks; names no cluster knows go to aiohttp's resolver as before.
    """

    _networks: list[ClusterNetwork] = []
    _installed = False
    _lock = threading.Lock()

    def __init__(self, network: ClusterNetwork) -> None:
        self.network = network

    @classmethod
    def _install(cls) -> None:
        with cls._lock:
            if cls._installed:
                return
            cls._installed = True
            previous = getattr(aiohttp.connector.TCPConnector, "_resolve_host")  # noqa: B009
            networks = cls._networks

            async def _resolve_host(
                connector: aiohttp.connector.TCPConnector,
                host: str,
                port: int,
                traces: Any = None,
            ) -> list[dict[str, Any]]:
                name = normalize_host(host)
                if _SVC_NAME.match(name):
                    for network in reversed(list(networks)):
                        ips = network.lookup(name)
                        if ips:
                            family = connector._family
                            return [
                                {
                                    "hostname": host,
                                    "host": ip,
                                    "port": port,
                                    "family": family,
                                    "proto": 0,
                                    "flags": 0,
                                }
                                for ip in ips
                            ]
                    if networks:
                        raise OSError(f"cluster DNS: no record for {host}")
                resolved: list[dict[str, Any]] = await previous(
                    connector, host, port, traces=traces
                )
                return resolved

            setattr(aiohttp.connector.TCPConnector, "_resolve_host", _resolve_host)  # noqa: B010

    async def __aenter__(self) -> AiohttpClusterDns:
        self._install()
        with self._lock:
            self._networks.append(self.network)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with self._lock:
            if self.network in self._networks:
                self._networks.remove(self.network)
