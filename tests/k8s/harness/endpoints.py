"""The endpoints controller and kube-proxy.

EndpointsController keeps, for every Service with a selector, an Endpoints object (and one
EndpointSlice `<service>-emulated`) listing the pods the selector matches that have an IP and
are not finished: Ready pods under `addresses`, the others under `notReadyAddresses`, or all
under `addresses` with `publishNotReadyAddresses`; terminating pods are left out unless
`publishNotReadyAddresses` is set. Named targetPorts resolve per pod. It also keeps the
Service's DNS record: its cluster IP, or for a headless Service the listed addresses.

KubeProxy listens on every Service's cluster IP and port and forwards each new TCP connection
to a random ready endpoint, as kube-proxy does; a connection to a Service without endpoints is
closed at once (real clusters refuse it).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Iterable

from tests.k8s.harness.controller import Controller, Key
from tests.k8s.harness.probes import resolve_port
from tests.k8s.harness.runtime import NODE_NAME, Runtime, owner_reference, pod_ready
from tests.k8s.harness.selectors import LabelSelector
from tests.k8s.harness.store import ApiError, Obj, WatchEvent

SERVICES = "v1/services"
ENDPOINTS = "v1/endpoints"
SLICES = "discovery.k8s.io/v1/endpointslices"
PODS = "v1/pods"
MANAGED_BY = "endpointslice-controller.k8s.io"


def _port_for(pod: Obj, service_port: Obj) -> int | None:
    target = service_port.get("targetPort", service_port.get("port"))
    for container in (pod.get("spec") or {}).get("containers") or []:
        try:
            return resolve_port(target, container)
        except ValueError:
            continue
    return None


class EndpointsController(Controller):
    name = "endpoint-controller"
    watches = (SERVICES, PODS)

    def keys_for(self, event: WatchEvent) -> Iterable[Key]:
        if event.resource.key == SERVICES:
            return [(event.namespace or "", event.name)]
        return [
            (event.namespace or "", s["metadata"]["name"])
            for s in self.store.list(SERVICES, event.namespace)
        ]

    def all_keys(self) -> Iterable[Key]:
        return [
            (s["metadata"]["namespace"], s["metadata"]["name"]) for s in self.store.list(SERVICES)
        ]

    async def reconcile(self, key: Key) -> None:
        namespace, name = key
        svc = self.store.get(SERVICES, namespace, name)
        network = self.rt.network
        if svc is None:
            network.set_service_record(namespace, name, None)
            existing = self.store.get(ENDPOINTS, namespace, name)
            if (
                existing is not None
                and (existing["metadata"].get("labels") or {}).get(
                    "endpoints.kubernetes.io/managed-by"
                )
                == "endpoint-controller"
            ):
                with contextlib.suppress(ApiError):
                    self.store.delete(ENDPOINTS, namespace, name)
            return
        spec = svc.get("spec") or {}
        cluster_ip = spec.get("clusterIP")
        if not spec.get("selector"):
            network.set_service_record(
                namespace, name, [cluster_ip] if cluster_ip and cluster_ip != "None" else None
            )
            return
        publish = bool(spec.get("publishNotReadyAddresses"))
        selector = LabelSelector.from_labels(spec["selector"])
        subsets: dict[tuple[tuple[str, int, str], ...], dict[str, list[Obj]]] = {}
        slice_endpoints: list[Obj] = []
        slice_ports: list[Obj] | None = None
        for pod in self.store.list(PODS, namespace, selector):
            status = pod.get("status") or {}
            ip = status.get("podIP")
            terminating = bool(pod["metadata"].get("deletionTimestamp"))
            if not ip or status.get("phase") in ("Succeeded", "Failed"):
                continue
            if terminating and not publish:
                continue
            ports = []
            for sp in spec.get("ports") or []:
                number = _port_for(pod, sp)
                if number is not None:
                    ports.append((sp.get("name", ""), number, sp.get("protocol", "TCP")))
            ready = pod_ready(pod) and not terminating
            address: Obj = {
                "ip": ip,
                "nodeName": NODE_NAME,
                "targetRef": {
                    "kind": "Pod",
                    "name": pod["metadata"]["name"],
                    "namespace": namespace,
                    "uid": pod["metadata"]["uid"],
                },
            }
            pspec = pod.get("spec") or {}
            if pspec.get("hostname") and pspec.get("subdomain") == name:
                address["hostname"] = pspec["hostname"]
            group = subsets.setdefault(tuple(ports), {"addresses": [], "notReadyAddresses": []})
            group["addresses" if ready or publish else "notReadyAddresses"].append(address)
            endpoint: Obj = {
                "addresses": [ip],
                "conditions": {
                    "ready": ready,
                    "serving": pod_ready(pod),
                    "terminating": terminating,
                },
                "nodeName": NODE_NAME,
                "targetRef": address["targetRef"],
            }
            if "hostname" in address:
                endpoint["hostname"] = address["hostname"]
            slice_endpoints.append(endpoint)
            if slice_ports is None:
                slice_ports = [{"name": n, "port": p, "protocol": proto} for n, p, proto in ports]
        subset_list = []
        for ports_key, group in sorted(subsets.items()):
            entry: Obj = {
                "ports": [{"name": n, "port": p, "protocol": proto} for n, p, proto in ports_key]
            }
            for field in ("addresses", "notReadyAddresses"):
                if group[field]:
                    entry[field] = sorted(group[field], key=lambda a: a["ip"])
            subset_list.append(entry)
        labels = {
            **(svc["metadata"].get("labels") or {}),
            "endpoints.kubernetes.io/managed-by": "endpoint-controller",
        }
        self._apply(
            ENDPOINTS, namespace, name, {"metadata": {"labels": labels}, "subsets": subset_list}
        )
        slice_labels = {
            **(svc["metadata"].get("labels") or {}),
            "kubernetes.io/service-name": name,
            "endpointslice.kubernetes.io/managed-by": MANAGED_BY,
        }
        self._apply(
            SLICES,
            namespace,
            f"{name}-emulated",
            {
                "metadata": {"labels": slice_labels, "ownerReferences": [owner_reference(svc)]},
                "addressType": "IPv4",
                "endpoints": sorted(slice_endpoints, key=lambda e: e["addresses"][0]),
                "ports": slice_ports or [],
            },
        )
        if cluster_ip and cluster_ip != "None":
            network.set_service_record(namespace, name, [cluster_ip])
        else:
            ips = [a["ip"] for s in subset_list for a in s.get("addresses", [])]
            network.set_service_record(namespace, name, sorted(set(ips)) or None)

    def _apply(self, resource: str, namespace: str, name: str, desired: Obj) -> None:
        current = self.store.get(resource, namespace, name)
        if current is None:
            body = {
                "metadata": {"name": name, "namespace": namespace, **desired["metadata"]},
                **{k: v for k, v in desired.items() if k != "metadata"},
            }
            self.store.create(resource, body, namespace)
            return

        def apply(obj: Obj) -> Obj:
            obj["metadata"].update(desired["metadata"])
            for k, v in desired.items():
                if k != "metadata":
                    obj[k] = v
            if resource == ENDPOINTS and not desired.get("subsets"):
                obj.pop("subsets", None)
            return obj

        self.store.update(resource, namespace, name, apply)


def ready_endpoints(
    runtime: Runtime, namespace: str, service: str, port: str | int | None = None
) -> list[tuple[str, int]]:
    """(ip, port) of the ready addresses in a Service's Endpoints, for the given Service port
    (its name or number; the only or first port when None)."""
    svc = runtime.store.get(SERVICES, namespace, service)
    eps = runtime.store.get(ENDPOINTS, namespace, service)
    if svc is None or eps is None:
        return []
    service_ports = (svc.get("spec") or {}).get("ports") or []
    wanted: Obj | None = None
    for sp in service_ports:
        if port is None or sp.get("name") == port or sp.get("port") == port:
            wanted = sp
            break
    if wanted is None:
        raise KeyError(f"service {namespace}/{service} has no port {port!r}")
    out = []
    for subset in eps.get("subsets") or []:
        for p in subset.get("ports") or []:
            if p.get("name", "") == wanted.get("name", ""):
                out += [(a["ip"], int(p["port"])) for a in subset.get("addresses") or []]
    return sorted(out)


class KubeProxy:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.servers: dict[tuple[str, str, int], asyncio.Server] = {}

    async def run(self) -> None:
        sub = self.rt.store.subscribe([SERVICES])
        try:
            for svc in self.rt.store.list(SERVICES):
                await self._sync(svc["metadata"]["namespace"], svc["metadata"]["name"])
            while True:
                event = await sub.get()
                if event is None:
                    return
                await self._sync(event.namespace or "", event.name)
        finally:
            self.rt.store.unsubscribe(sub)
            for server in self.servers.values():
                server.close()
            self.servers.clear()

    async def _sync(self, namespace: str, name: str) -> None:
        svc = self.rt.store.get(SERVICES, namespace, name)
        wanted: dict[tuple[str, str, int], tuple[str, Obj]] = {}
        if svc is not None:
            ip = (svc.get("spec") or {}).get("clusterIP")
            if ip and ip != "None":
                for sp in svc["spec"].get("ports") or []:
                    if sp.get("protocol", "TCP") == "TCP":
                        wanted[(namespace, name, int(sp["port"]))] = (ip, sp)
        for key in [k for k in self.servers if k[:2] == (namespace, name) and k not in wanted]:
            self.servers.pop(key).close()
        for key, (ip, sp) in wanted.items():
            if key in self.servers:
                continue
            try:
                self.servers[key] = await asyncio.start_server(
                    self._forwarder(namespace, name, sp), ip, key[2]
                )
            except OSError as e:
                self.rt.warn(
                    svc, "ProxyFailed", f"cannot listen on {ip}:{key[2]}: {e}", "kube-proxy"
                )

    def _forwarder(
        self, namespace: str, name: str, service_port: Obj
    ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._forward(reader, writer, namespace, name, service_port)

        return forward

    async def _forward(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        namespace: str,
        name: str,
        service_port: Obj,
    ) -> None:
        try:
            targets = ready_endpoints(
                self.rt, namespace, name, service_port.get("name") or service_port["port"]
            )
        except KeyError:
            targets = []
        if not targets:
            writer.close()
            return
        ip, port = random.choice(targets)
        await relay(reader, writer, ip, port)


async def relay(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, port: int
) -> None:
    """Forward an accepted connection to host:port, both ways, until both sides end."""
    try:
        up_reader, up_writer = await asyncio.open_connection(host, port)
    except OSError:
        writer.close()
        return
    try:
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
    finally:
        for w in (writer, up_writer):
            w.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (OSError, asyncio.CancelledError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()
            else:
                writer.close()
