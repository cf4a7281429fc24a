"""`EmulatedCluster`: kmock API server + controllers + kubelet, in a thread of their own.

The emulator runs on its own event loop in a background thread, so tests may block (the sync
`kubernetes` client, `time.sleep` in a helper, KopfRunner's join on exit) without stalling the
API server, and an operator running in the test's loop or in KopfRunner's thread talks to it
over HTTP like to a real cluster. Every helper below is thread-safe.

    with EmulatedCluster(tmp_path) as cluster:            # or: async with EmulatedCluster(...)
        cluster.create("v1/namespaces", {"metadata": {"name": "demo"}})
        api = cluster.kubernetes_client()                 # kubernetes.client.ApiClient
        os.environ["KUBECONFIG"] = str(cluster.kubeconfig_path)   # for kopf / kubectl-likes
"""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import contextlib
import json
import os
import random
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import kmock

from tests.k8s.harness.apiserver import EmulatedApiServer
from tests.k8s.harness.apitls import ApiTlsFront
from tests.k8s.harness.defaults import builtin_admission
from tests.k8s.harness.endpoints import EndpointsController, KubeProxy, ready_endpoints
from tests.k8s.harness.garbage import GarbageCollector, VolumeController
from tests.k8s.harness.jobs import JobController
from tests.k8s.harness.kubelet import Kubelet
from tests.k8s.harness.network import AiohttpClusterDns, ClusterNetwork
from tests.k8s.harness.resources import ResourceSpec
from tests.k8s.harness.runtime import NODE_IP, NODE_NAME, ClusterOptions, Runtime, logger
from tests.k8s.harness.statefulsets import StatefulSetController
from tests.k8s.harness.store import ApiError, Obj, ObjectStore

T = TypeVar("T")
REPO_ROOT = Path(__file__).resolve().parents[3]
REPO_CRDS = REPO_ROOT / "crds"


def repo_crds() -> list[Path]:
    """The repository's generated CustomResourceDefinitions (crds/*.yaml), if any."""
    return sorted(REPO_CRDS.glob("*.yaml")) if REPO_CRDS.is_dir() else []


def load_manifests(
    source: str | Path | Mapping[str, Any] | Iterable[Mapping[str, Any]],
) -> list[Obj]:
    """Objects from a YAML/JSON file, YAML text (several documents allowed), a dict or a list."""
    if isinstance(source, Mapping):
        return [dict(source)]
    if isinstance(source, Path) or (
        isinstance(source, str) and "\n" not in source and Path(source).is_file()
    ):
        source = Path(source).read_text()
    if isinstance(source, str):
        import yaml

        docs = [d for d in yaml.safe_load_all(source) if d]
        out: list[Obj] = []
        for doc in docs:
            if not isinstance(doc, dict) or "apiVersion" not in doc or "kind" not in doc:
                raise ValueError(f"not a Kubernetes object (no apiVersion/kind): {doc!r:.200}")
            out.extend(
                doc["items"] if doc.get("kind", "").endswith("List") and "items" in doc else [doc]
            )
        return out
    return [dict(d) for d in source]


class EmulatedCluster:
    def __init__(
        self, workdir: str | Path, options: ClusterOptions | None = None, **overrides: Any
    ) -> None:
        self.workdir = Path(workdir)
        self.options = options or ClusterOptions()
        for key, value in overrides.items():
            if not hasattr(self.options, key):
                raise TypeError(f"unknown cluster option {key!r}")
            setattr(self.options, key, value)
        self.kubeconfig_path = self.workdir / "kubeconfig"
        self.api_url = ""
        self.api_tls_url = ""
        """The API server as pods reach it: HTTPS, cluster CA at `api_ca_file` (apitls.py)."""
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._startup_error: BaseException | None = None
        self._runtime: Runtime | None = None
        self._server: EmulatedApiServer | None = None
        self._kubelet: Kubelet | None = None

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> EmulatedCluster:
        if self._thread is not None:
            raise RuntimeError("the emulated cluster is already started")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._thread_main, name="emulated-k8s", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise TimeoutError("the emulated cluster did not start")
        if self._startup_error is not None:
            self._thread.join(timeout)
            raise RuntimeError("the emulated cluster failed to start") from self._startup_error
        self._write_kubeconfig()
        return self

    def stop(self, timeout: float = 60.0) -> None:
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None:
            return
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        thread.join(timeout)
        if thread.is_alive():
            raise TimeoutError(
                f"the emulated cluster did not stop; its tasks:\n{self._tasks_dump()}"
            )
        self._thread = None

    def _tasks_dump(self) -> str:
        """Where the emulator's tasks are stuck (for a stop that hangs)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return "(no loop)"
        lines: list[str] = []
        done = threading.Event()

        def dump() -> None:
            import io

            for task in asyncio.all_tasks(loop):
                out = io.StringIO()
                task.print_stack(limit=8, file=out)
                lines.append(f"{task.get_name()}: {out.getvalue()}")
            done.set()

        loop.call_soon_threadsafe(dump)
        done.wait(5)
        return "\n".join(lines)

    def __enter__(self) -> EmulatedCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> EmulatedCluster:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as e:  # noqa: BLE001 - reported to the starting thread
            if not self._started.is_set():
                self._startup_error = e
                self._started.set()
            else:
                logger.exception("the emulated cluster crashed")
                if self._runtime is not None:
                    self._runtime.report_error("emulated cluster loop", e)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        options = self.options
        store = ObjectStore()
        network = ClusterNetwork(self.workdir / "dns" / "hosts.json", options.network)
        runtime = Runtime(self.workdir, options, store, network)
        self._runtime = runtime
        store.admission.append(builtin_admission)
        store.admission.append(_service_addresses(network))
        server = EmulatedApiServer(store=store, log_path=runtime.log_path)
        self._server = server
        async with server, _Server(server, host="127.0.0.1") as http:
            dns: contextlib.AbstractAsyncContextManager[Any] = (
                AiohttpClusterDns(network)
                if options.aiohttp_cluster_dns
                else contextlib.nullcontext()
            )
            api_tls = ApiTlsFront(self.workdir / "apiserver", (http.url.host, http.url.port))
            async with dns, api_tls:
                self.api_url = str(http.url).rstrip("/")
                self.api_tls_url = api_tls.url
                runtime.api_tls = api_tls
                for path in options.crds:
                    for manifest in load_manifests(Path(path)):
                        self._apply_now(manifest)
                store.create("v1/nodes", _node())
                kubelet = Kubelet(runtime)
                self._kubelet = kubelet
                components: list[tuple[str, Any]] = [
                    ("kubelet", kubelet),
                    ("statefulset-controller", StatefulSetController(runtime)),
                    ("endpoint-controller", EndpointsController(runtime)),
                    ("kube-proxy", KubeProxy(runtime)),
                    ("garbage-collector", GarbageCollector(runtime)),
                    ("persistentvolume-controller", VolumeController(runtime)),
                    ("job-controller", JobController(runtime)),
                ]
                tasks = [
                    asyncio.create_task(self._guard(name, c.run()), name=name)
                    for name, c in components
                ]
                logger.info(
                    "emulated cluster in %s: API server %s, pods in %s, services in %s",
                    self.workdir,
                    self.api_url,
                    network.pod_network,
                    network.service_network,
                )
                self._started.set()
                await self._stop.wait()
                logger.info("emulated cluster in %s: stopping", self.workdir)
                await kubelet.stop()
                for task in tasks:
                    task.cancel()
                _, stuck = await asyncio.wait(tasks, timeout=10)
                for task in stuck:
                    runtime.report_error(f"{task.get_name()} did not stop when cancelled")
                store.close()  # ends the watch streams, so the HTTP server can stop

    async def _guard(self, name: str, work: Awaitable[None]) -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception as e:
            assert self._runtime is not None
            self._runtime.report_error(f"{name} stopped", e)

    def _write_kubeconfig(self) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "preferences": {},
            "clusters": [{"name": "emulated", "cluster": {"server": self.api_url}}],
            "users": [{"name": "emulated", "user": {"token": "emulated"}}],
            "contexts": [
                {
                    "name": "emulated",
                    "context": {"cluster": "emulated", "user": "emulated", "namespace": "default"},
                }
            ],
            "current-context": "emulated",
        }
        self.kubeconfig_path.write_text(json.dumps(config, indent=2))

    # ---- calling into the emulator -----------------------------------------------------------

    @property
    def api_ca_file(self) -> Path:
        return self.workdir / "apiserver" / "ca.crt"

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            raise RuntimeError("the emulated cluster is not started")
        return self._runtime

    @property
    def server(self) -> EmulatedApiServer:
        """The kmock handler (for kmock's DSL and request log); touch it only through call()."""
        if self._server is None:
            raise RuntimeError("the emulated cluster is not started")
        return self._server

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn(*args, **kwargs)` on the emulator's loop and return its result."""
        loop = self._loop
        if loop is None or self._thread is None:
            raise RuntimeError("the emulated cluster is not running")
        if threading.current_thread() is self._thread:
            return fn(*args, **kwargs)

        async def run() -> T:
            result = fn(*args, **kwargs)
            if asyncio.iscoroutine(result):
                awaited: T = await result
                return awaited
            return result

        future = asyncio.run_coroutine_threadsafe(run(), loop)
        try:
            return future.result(timeout=60)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise

    @property
    def errors(self) -> list[str]:
        """Harness failures so far (a crashed controller, a bug in the API server)."""
        if self._runtime is None:
            return []
        server_errors = self._server.internal_errors if self._server is not None else []
        return [*self._runtime.errors, *server_errors]

    @property
    def warnings(self) -> list[str]:
        return list(self._runtime.warnings) if self._runtime is not None else []

    def check(self) -> None:
        """Fail if the harness itself failed (not the system under test)."""
        if self.errors:
            raise AssertionError("the emulated cluster failed:\n" + "\n".join(self.errors))

    # ---- API objects (the same code paths as HTTP requests) ----------------------------------

    def get(self, resource: str, namespace: str | None, name: str) -> Obj | None:
        return self.call(self.runtime.store.get, resource, namespace, name)

    def list(
        self,
        resource: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[Obj]:
        return self.call(
            self.runtime.store.list, resource, namespace, label_selector, field_selector
        )

    def create(self, resource: str, body: Obj, namespace: str | None = None) -> Obj:
        return self.call(self.runtime.store.create, resource, body, namespace)

    def patch(
        self,
        resource: str,
        namespace: str | None,
        name: str,
        patch: Any,
        *,
        patch_type: str = "merge",
        subresource: str | None = None,
    ) -> Obj:
        return self.call(
            self.runtime.store.patch,
            resource,
            namespace,
            name,
            patch,
            patch_type=patch_type,
            subresource=subresource,
        )

    def replace(
        self,
        resource: str,
        namespace: str | None,
        name: str,
        body: Obj,
        *,
        subresource: str | None = None,
    ) -> Obj:
        return self.call(
            self.runtime.store.replace, resource, namespace, name, body, subresource=subresource
        )

    def delete(
        self,
        resource: str,
        namespace: str | None,
        name: str,
        *,
        grace_period_seconds: int | None = None,
        propagation_policy: str | None = None,
    ) -> Obj:
        return self.call(
            self.runtime.store.delete,
            resource,
            namespace,
            name,
            grace_period_seconds=grace_period_seconds,
            propagation_policy=propagation_policy,
        )

    def apply(
        self,
        source: str | Path | Mapping[str, Any] | Iterable[Mapping[str, Any]],
        namespace: str | None = None,
    ) -> builtins.list[Obj]:
        """Create the objects of a manifest, or merge-patch the ones that exist."""
        return [self.call(self._apply_now, m, namespace) for m in load_manifests(source)]

    def _apply_now(self, manifest: Obj, namespace: str | None = None) -> Obj:
        store = self.runtime.store
        spec: ResourceSpec = store.registry.by_kind(manifest["apiVersion"], manifest["kind"])
        meta = manifest.get("metadata") or {}
        ns = (meta.get("namespace") or namespace or "default") if spec.namespaced else None
        if store.get(spec, ns, meta.get("name", "")) is None:
            return store.create(spec, manifest, ns)
        return store.patch(spec, ns, meta["name"], manifest, patch_type="merge")

    def wait_for(
        self,
        predicate: Callable[[], T | None],
        timeout: float = 30.0,
        interval: float = 0.05,
        message: str = "",
    ) -> T:
        """Poll `predicate` until it returns something truthy (returned) or `timeout` passes
        (TimeoutError). Fails at once if the harness itself failed."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            self.check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"not true after {timeout}s: {message or predicate}")
            time.sleep(interval)

    async def await_for(
        self,
        predicate: Callable[[], T | None],
        timeout: float = 30.0,
        interval: float = 0.05,
        message: str = "",
    ) -> T:
        """wait_for for async tests (yields to the caller's event loop between polls)."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            self.check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"not true after {timeout}s: {message or predicate}")
            await asyncio.sleep(interval)

    # ---- pods, volumes, services -------------------------------------------------------------

    def pod_ip(self, namespace: str, name: str) -> str | None:
        pod = self.get("v1/pods", namespace, name)
        return (pod.get("status") or {}).get("podIP") if pod else None

    def _runner(self, namespace: str, name: str, container: str | None) -> Any:
        assert self._kubelet is not None
        worker = self._kubelet.worker_for(namespace, name)
        if worker is None:
            raise LookupError(f"pod {namespace}/{name} is not running on the emulated node")
        runners = [*worker.runners, *worker.init_runners]
        for runner in runners:
            if container is None or runner.name == container:
                if container is None and runner.init:
                    continue
                return runner
        raise LookupError(f"pod {namespace}/{name} has no container {container!r} (yet)")

    def pod_pid(self, namespace: str, name: str, container: str | None = None) -> int | None:
        """The pid of the container's running process, or None."""

        def find() -> int | None:
            try:
                runner = self._runner(namespace, name, container)
            except LookupError:
                return None
            proc = runner.process
            return proc.pid if proc is not None and proc.returncode is None else None

        return self.call(find)

    def kill_pod_process(
        self, namespace: str, name: str, container: str | None = None, sig: int = signal.SIGKILL
    ) -> int:
        """Signal a container's process group (kill -9 by default: a crash); returns its pid.
        The kubelet then restarts it per restartPolicy, counting restartCount."""

        def kill() -> int:
            pid = self._runner(namespace, name, container).signal(sig)
            if pid is None:
                raise LookupError(f"container of {namespace}/{name} is not running")
            return int(pid)

        return self.call(kill)

    def pvc_path(self, namespace: str, claim: str) -> Path:
        """The directory standing in for a claim's volume (exists while the claim is bound)."""
        return self.runtime.claim_path(namespace, claim)

    def wipe_pvc(self, namespace: str, claim: str) -> None:
        """Lose a volume's data (the claim and its directory stay)."""
        path = self.pvc_path(namespace, claim)
        if not path.is_dir():
            raise LookupError(f"claim {namespace}/{claim} has no volume directory")
        for child in path.iterdir():
            if child.is_dir() and not child.is_symlink():
                import shutil

                shutil.rmtree(child)
            else:
                child.unlink()

    def pod_logs(self, namespace: str, name: str, container: str | None = None) -> str:
        """Everything the pod's container printed, across restarts and pod incarnations."""
        if container is None:
            pod = self.get("v1/pods", namespace, name)
            containers = ((pod or {}).get("spec") or {}).get("containers") or []
            if not containers:
                logs = self.workdir / "logs" / namespace / name
                found = sorted(logs.glob("*.log")) if logs.is_dir() else []
                return "".join(p.read_text(errors="replace") for p in found)
            container = containers[0]["name"]
        path = self.runtime.log_path(namespace, name, container)
        return path.read_text(errors="replace") if path.exists() else ""

    def service_endpoints(
        self, namespace: str, name: str, port: str | int | None = None
    ) -> builtins.list[tuple[str, int]]:
        """(ip, port) of the Service's ready endpoints (what kube-proxy routes to)."""
        return self.call(ready_endpoints, self.runtime, namespace, name, port)

    def client_for_service(
        self, namespace: str, name: str, port: str | int | None = None, scheme: str = "http"
    ) -> str:
        """Base URL of one current ready endpoint of the Service (chosen at random, like
        kube-proxy); LookupError when it has none."""
        endpoints = self.service_endpoints(namespace, name, port)
        if not endpoints:
            raise LookupError(f"service {namespace}/{name} has no ready endpoints")
        ip, number = random.choice(endpoints)
        return f"{scheme}://{ip}:{number}"

    def service_url(
        self, namespace: str, name: str, port: str | int | None = None, scheme: str = "http"
    ) -> str:
        """`http://<cluster IP>:<port>`: kube-proxy forwards each connection to a ready
        endpoint (chosen when the connection opens)."""
        svc = self.get("v1/services", namespace, name)
        if svc is None:
            raise LookupError(f"service {namespace}/{name} not found")
        ip = (svc.get("spec") or {}).get("clusterIP")
        if not ip or ip == "None":
            raise LookupError(f"service {namespace}/{name} is headless: no cluster IP")
        for sp in svc["spec"].get("ports") or []:
            if port is None or sp.get("name") == port or sp.get("port") == port:
                return f"{scheme}://{ip}:{sp['port']}"
        raise LookupError(f"service {namespace}/{name} has no port {port!r}")

    def resolve(self, host: str) -> builtins.list[str]:
        """Cluster DNS: the addresses of `<pod>.<svc>.<ns>.svc` or `<svc>.<ns>.svc`."""
        return self.runtime.network.lookup(host)

    # ---- clients -----------------------------------------------------------------------------

    def kubernetes_client(self) -> Any:
        """A `kubernetes.client.ApiClient` for the emulated API server (close it when done)."""
        import kubernetes.client

        config = kubernetes.client.Configuration()
        config.host = self.api_url
        return kubernetes.client.ApiClient(config)

    def kopf_login(self, **_: Any) -> Any:
        """Usable as a kopf login handler: `kopf.on.login()(cluster.kopf_login)`."""
        import kopf

        return kopf.ConnectionInfo(server=self.api_url, insecure=True, default_namespace="default")

    @contextlib.contextmanager
    def as_default_kubeconfig(self) -> Iterator[None]:
        """Make this cluster the default for clients in this process (kopf's login via the
        `kubernetes` library, `kubernetes.config.load_kube_config()`): sets $KUBECONFIG and
        the kubernetes library's default path, which it reads from the environment only at
        import time. Restores both on exit."""
        import kubernetes.config.kube_config as kube_config

        old_env = os.environ.get("KUBECONFIG")
        old_default = kube_config.KUBE_CONFIG_DEFAULT_LOCATION
        os.environ["KUBECONFIG"] = str(self.kubeconfig_path)
        kube_config.KUBE_CONFIG_DEFAULT_LOCATION = str(self.kubeconfig_path)
        try:
            yield
        finally:
            kube_config.KUBE_CONFIG_DEFAULT_LOCATION = old_default
            if old_env is None:
                os.environ.pop("KUBECONFIG", None)
            else:
                os.environ["KUBECONFIG"] = old_env

    def env(self) -> dict[str, str]:
        """Environment for a kopf/kubectl-like subprocess to reach the emulated API server."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig_path)}


class _Server(kmock.Server):
    """kmock's HTTP server without its aiohttp DNS interceptor: clients reach the emulator by
    its address, and kmock's interceptors form a stack that breaks when two clusters in one
    process stop out of order."""

    async def __aenter__(self) -> _Server:
        if self._managed_server is not None:
            raise RuntimeError("The server can be started/entered only once.")
        self._managed_server = self._server_cls(self.handler, host=self._host, port=self._port)
        await self._managed_server.__aenter__()
        self._managed_client = self._client_fct(self._managed_server.make_url("/"))
        await self._managed_client.__aenter__()
        self.handler.servers.append(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.handler.servers.remove(self)
        assert self._managed_client is not None and self._managed_server is not None
        await self._managed_client.__aexit__(exc_type, exc, tb)
        await self._managed_server.__aexit__(exc_type, exc, tb)
        self._managed_client = None
        self._managed_server = None


def _node() -> Obj:
    return {
        "metadata": {
            "name": NODE_NAME,
            "labels": {
                "kubernetes.io/hostname": NODE_NAME,
                "kubernetes.io/os": "linux",
                "topology.kubernetes.io/zone": "emulated",
                "node-role.kubernetes.io/worker": "",
            },
        },
        "spec": {},
    }


def _service_addresses(network: ClusterNetwork) -> Any:
    def admit(
        operation: str, spec: ResourceSpec, new: Obj, old: Obj | None, store: ObjectStore
    ) -> None:
        if spec.key != "v1/services" or operation != "CREATE":
            return
        svc = new.setdefault("spec", {})
        if svc.get("type") == "ExternalName":
            return
        if svc.get("clusterIP") == "None":
            svc["clusterIPs"] = ["None"]
        elif not svc.get("clusterIP"):
            ip = network.service_ip(new["metadata"]["namespace"], new["metadata"]["name"])
            svc["clusterIP"], svc["clusterIPs"] = ip, [ip]
        svc.setdefault("ipFamilies", ["IPv4"])
        svc.setdefault("ipFamilyPolicy", "SingleStack")
        svc.setdefault("internalTrafficPolicy", "Cluster")

    return admit


__all__ = [
    "EmulatedCluster",
    "ClusterOptions",
    "ApiError",
    "repo_crds",
    "load_manifests",
    "NODE_IP",
]
