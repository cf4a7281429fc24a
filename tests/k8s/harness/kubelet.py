"""The emulated kubelet: every pod becomes real processes on the pod's loopback address.

For each pod it binds the pod to the one node, gives it its IP (network.py), prepares its
volumes (a PersistentVolumeClaim is a directory that outlives the pod, emptyDir/configMap/
secret/downwardAPI are per-pod directories), runs the init containers in order and then the
containers, each as a process started from command/args/env exactly as Kubernetes resolves
them (podenv.py), with mount paths rewritten to the host directories. It runs the startup,
readiness and liveness probes, keeps `status` (phase, conditions, containerStatuses with
restartCount) current, restarts exited containers per restartPolicy with back-off, and on
deletion sends SIGTERM, waits the grace period, sends SIGKILL and then removes the pod.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import os
import shutil
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp

from tests.k8s.harness.apitls import service_account_token
from tests.k8s.harness.podenv import (
    ContainerConfigError,
    command_line,
    field_ref,
    mount_rewriter,
    resolve_env,
)
from tests.k8s.harness.probes import probe_once
from tests.k8s.harness.runtime import (
    HARNESS_DIR,
    NODE_IP,
    NODE_NAME,
    VENV_BIN,
    Runtime,
    logger,
    set_condition,
)
from tests.k8s.harness.store import ApiError, Obj, rfc3339

LAUNCHER = HARNESS_DIR / "launcher.py"
SHIM_DIR = HARNESS_DIR / "podshim"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class VolumeNotReady(Exception):
    """The pod cannot start yet (e.g. its claim does not exist); it stays Pending."""


class Kubelet:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.workers: dict[str, PodWorker] = {}  # by pod uid
        self.latest: dict[tuple[str, str], PodWorker] = {}  # by (namespace, name)
        self.session: aiohttp.ClientSession | None = None
        self._stopping = False

    async def run(self) -> None:
        self.session = aiohttp.ClientSession()
        sub = self.rt.store.subscribe(["v1/pods"])
        try:
            for pod in self.rt.store.list("v1/pods"):
                self._observe(pod)
            while True:
                event = await sub.get()
                if event is None:
                    return
                if event.type == "DELETED":
                    worker = self.workers.get(event.object["metadata"]["uid"])
                    if worker is not None:
                        worker.api_deleted()
                else:
                    self._observe(event.object)
        finally:
            self.rt.store.unsubscribe(sub)

    def _observe(self, pod: Obj) -> None:
        if self._stopping:
            return
        uid = pod["metadata"]["uid"]
        worker = self.workers.get(uid)
        if worker is None:
            worker = PodWorker(self, pod)
            key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
            worker.previous = self.latest.get(key)
            self.workers[uid] = worker
            self.latest[key] = worker
            worker.task = asyncio.create_task(worker.run(), name=f"pod {key[0]}/{key[1]}")
        else:
            worker.observe(pod)

    def forget(self, worker: PodWorker) -> None:
        self.workers.pop(worker.uid, None)
        key = (worker.namespace, worker.name)
        if self.latest.get(key) is worker:
            del self.latest[key]

    def worker_for(self, namespace: str, name: str) -> PodWorker | None:
        return self.latest.get((namespace, name))

    async def stop(self) -> None:
        """Stop every pod's processes (SIGTERM, then SIGKILL after the shutdown grace)."""
        self._stopping = True
        workers = list(self.workers.values())
        for worker in workers:
            worker.shutdown = True
            worker.terminating.set()
        tasks = [w.task for w in workers if w.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self.session is not None:
            await self.session.close()


class PodWorker:
    def __init__(self, kubelet: Kubelet, pod: Obj) -> None:
        self.kubelet = kubelet
        self.rt = kubelet.rt
        self.pod = pod
        meta = pod["metadata"]
        self.uid: str = meta["uid"]
        self.namespace: str = meta["namespace"]
        self.name: str = meta["name"]
        self.previous: PodWorker | None = None
        self.task: asyncio.Task[None] | None = None
        self.terminating = asyncio.Event()
        self.done = asyncio.Event()
        self.deleted = False
        self.shutdown = False
        self.pod_ip = ""
        self.dir = self.rt.pod_dir(self.namespace, self.name, self.uid)
        self.volumes: dict[str, Path] = {}
        self.init_runners: list[ContainerRunner] = []
        self.runners: list[ContainerRunner] = []
        self.phase = "Pending"
        self.pending_reason: tuple[str, str] | None = None
        self.initialized = False
        self.start_time: str | None = None
        self.conditions: list[dict[str, Any]] = []
        self._last_status: Obj | None = None
        if meta.get("deletionTimestamp"):
            self.terminating.set()

    # ---- events from the API -----------------------------------------------------------------

    def observe(self, pod: Obj) -> None:
        self.pod = pod
        if pod["metadata"].get("deletionTimestamp"):
            self.terminating.set()

    def api_deleted(self) -> None:
        self.deleted = True
        self.terminating.set()

    # ---- lifecycle ---------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            if self.previous is not None:
                await self.previous.done.wait()  # the old pod of this name is fully gone
                self.previous = None
            if not self.terminating.is_set():
                # Containers watch `terminating` themselves: SIGTERM, grace, SIGKILL.
                await self._start()
                await self.terminating.wait()
        except Exception as e:
            self.rt.report_error(f"kubelet: pod {self.namespace}/{self.name}", e)
        finally:
            try:
                await self._finish()
            except Exception as e:
                self.rt.report_error(f"kubelet: removing pod {self.namespace}/{self.name}", e)
            self.done.set()
            self.kubelet.forget(self)

    async def _start(self) -> None:
        spec = self.pod.get("spec") or {}
        # As the scheduler does: a pod whose claims are missing, unbound or being deleted is
        # not scheduled (so PVC protection lets such a claim go, and the StatefulSet
        # controller can create it anew).
        while not spec.get("nodeName") and not self.terminating.is_set():
            try:
                self._check_claims()
                break
            except VolumeNotReady as e:
                set_condition(self.conditions, "PodScheduled", False, "Unschedulable", str(e))
                self.write_status()
                await self.wait_terminating(0.3)
        if self.terminating.is_set():
            return
        if self.rt.options.pod_ip_per_incarnation:
            self.pod_ip = self.rt.network.new_pod_ip(self.namespace, self.name, self.uid)
        else:
            self.pod_ip = self.rt.network.pod_ip(self.namespace, self.name)
        self.start_time = rfc3339()
        if not spec.get("nodeName"):

            def bind(obj: Obj) -> Obj:
                obj["spec"]["nodeName"] = NODE_NAME
                return obj

            try:
                self.pod = self.rt.store.update("v1/pods", self.namespace, self.name, bind)
            except ApiError:
                return  # deleted meanwhile; the DELETED event follows
        hostname, subdomain = spec.get("hostname"), spec.get("subdomain")
        if hostname and subdomain:
            self.rt.network.set_pod_record(self.namespace, hostname, subdomain, self.pod_ip)
        set_condition(self.conditions, "PodScheduled", True)
        set_condition(self.conditions, "Initialized", False)
        set_condition(self.conditions, "ContainersReady", False)
        set_condition(self.conditions, "Ready", False)
        self.write_status()
        while not self.terminating.is_set():
            try:
                self.volumes = self._prepare_volumes()
                break
            except VolumeNotReady as e:
                self.pending_reason = ("ContainerCreating", str(e))
                self.write_status()
                await self.wait_terminating(0.3)
        if self.terminating.is_set():
            return
        syncer = asyncio.create_task(self._sync_volumes(), name=f"volumes {self.name}")
        try:
            await self._run_containers()
        finally:
            syncer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await syncer

    async def _run_containers(self) -> None:
        self.pending_reason = None
        spec = self.pod.get("spec") or {}
        policy = spec.get("restartPolicy", "Always")
        self.init_runners = [
            ContainerRunner(self, c, init=True) for c in spec.get("initContainers") or []
        ]
        self.runners = [ContainerRunner(self, c, init=False) for c in spec["containers"]]
        self.write_status()
        for runner in self.init_runners:
            # Init containers retry until they succeed, unless the pod never restarts.
            ok = await runner.run_loop("Never" if policy == "Never" else "OnFailure")
            if not ok:
                if not self.terminating.is_set():
                    self.phase = "Failed"
                    self.write_status()
                return
        self.initialized = True
        set_condition(self.conditions, "Initialized", True)
        self.phase = "Running"
        self.write_status()
        results = await asyncio.gather(*(r.run_loop(policy) for r in self.runners))
        if self.terminating.is_set():
            return
        self.phase = "Succeeded" if all(results) else "Failed"
        self.write_status()

    async def wait_terminating(self, timeout: float) -> bool:
        # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.terminating.wait()
        return self.terminating.is_set()

    def stop_grace(self) -> float:
        """Seconds between SIGTERM and SIGKILL when the pod terminates."""
        meta = self.pod["metadata"]
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = (self.pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
        cap = (
            self.rt.options.shutdown_grace
            if self.shutdown
            else self.rt.options.termination_grace_cap
        )
        return min(float(grace), cap)

    async def _finish(self) -> None:
        runners = [*self.init_runners, *self.runners]
        await asyncio.gather(*(r.wait_finished() for r in runners))
        shutil.rmtree(self.dir, ignore_errors=True)
        if self.rt.options.pod_ip_per_incarnation and self.pod_ip:
            spec = self.pod.get("spec") or {}
            hostname, subdomain = spec.get("hostname"), spec.get("subdomain")
            if hostname and subdomain:
                self.rt.network.remove_pod_record(self.namespace, hostname, subdomain, self.pod_ip)
            self.rt.network.release_pod_ip(self.namespace, self.name, self.uid)
        if self.shutdown:
            return
        current = self.rt.store.get("v1/pods", self.namespace, self.name)
        if current is not None and current["metadata"]["uid"] == self.uid:
            with contextlib.suppress(ApiError):
                self.rt.store.delete("v1/pods", self.namespace, self.name, grace_period_seconds=0)

    # ---- volumes -----------------------------------------------------------------------------

    def _check_claims(self) -> None:
        for volume in (self.pod.get("spec") or {}).get("volumes") or []:
            if "persistentVolumeClaim" in volume:
                self._claim_path(volume["persistentVolumeClaim"].get("claimName", ""))

    def _claim_path(self, claim: str) -> Path:
        pvc = self.rt.store.get("v1/persistentvolumeclaims", self.namespace, claim)
        if pvc is None:
            raise VolumeNotReady(f'persistentvolumeclaim "{claim}" not found')
        if pvc["metadata"].get("deletionTimestamp"):
            raise VolumeNotReady(f'persistentvolumeclaim "{claim}" is being deleted')
        path = self.rt.claim_path(self.namespace, claim)
        if (pvc.get("status") or {}).get("phase") != "Bound" or not path.is_dir():
            raise VolumeNotReady(f'persistentvolumeclaim "{claim}" is not bound yet')
        return path

    def _prepare_volumes(self) -> dict[str, Path]:
        paths: dict[str, Path] = {}
        for volume in (self.pod.get("spec") or {}).get("volumes") or []:
            name = volume["name"]
            target = self.dir / "volumes" / name
            if "persistentVolumeClaim" in volume:
                paths[name] = self._claim_path(volume["persistentVolumeClaim"].get("claimName", ""))
            elif "emptyDir" in volume:
                target.mkdir(parents=True, exist_ok=True)
                paths[name] = target
            elif "hostPath" in volume:
                paths[name] = Path(volume["hostPath"]["path"])
            elif _is_projected(volume):
                shutil.rmtree(target, ignore_errors=True)
                target.mkdir(parents=True)
                _write_atomically(target, self._volume_files(volume))
                paths[name] = target
            else:
                kinds = sorted(k for k in volume if k != "name")
                raise VolumeNotReady(f"volume {name!r}: type {kinds} is not emulated")
        return paths

    def _project(self, source: Obj, target: Path) -> None:
        _write_atomically(target, self._projected_files(source))

    def _projected_files(self, source: Obj) -> dict[str, bytes]:
        store = self.rt.store
        files: dict[str, bytes] = {}
        if "configMap" in source:
            ref = source["configMap"]
            cm = store.get("v1/configmaps", self.namespace, ref.get("name", ""))
            if cm is None:
                if ref.get("optional"):
                    return {}
                raise VolumeNotReady(f'configmap "{ref.get("name")}" not found')
            data = {k: str(v).encode() for k, v in (cm.get("data") or {}).items()}
            data.update({k: base64.b64decode(v) for k, v in (cm.get("binaryData") or {}).items()})
            files = _select_items(data, ref.get("items"))
        elif "secret" in source:
            ref = source["secret"]
            secret_name = ref.get("secretName") or ref.get("name", "")
            secret = store.get("v1/secrets", self.namespace, secret_name)
            if secret is None:
                if ref.get("optional"):
                    return {}
                raise VolumeNotReady(f'secret "{secret_name}" not found')
            data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
            data.update({k: str(v).encode() for k, v in (secret.get("stringData") or {}).items()})
            files = _select_items(data, ref.get("items"))
        elif "downwardAPI" in source:
            for item in source["downwardAPI"].get("items") or []:
                if "fieldRef" in item:
                    files[item["path"]] = field_ref(
                        self.pod, item["fieldRef"]["fieldPath"]
                    ).encode()
        elif "serviceAccountToken" in source:
            files[source["serviceAccountToken"].get("path", "token")] = b"emulated-token"
        return files

    def _volume_files(self, volume: Obj) -> dict[str, bytes]:
        sources = volume["projected"].get("sources") or [] if "projected" in volume else [volume]
        files: dict[str, bytes] = {}
        for source in sources:
            files.update(self._projected_files(source))
        return files

    async def _sync_volumes(self) -> None:
        """As the kubelet does: configMap, secret and projected volumes follow their objects
        (the kubelet's period is about a minute; the harness's is `volume_sync_seconds`),
        swapped in at once. A source that disappeared keeps its last content."""
        period = self.rt.options.volume_sync_seconds
        synced = {
            v["name"]: self._safe_files(v)
            for v in (self.pod.get("spec") or {}).get("volumes") or []
            if _is_projected(v)
        }
        while not await self.wait_terminating(period):
            for volume in (self.pod.get("spec") or {}).get("volumes") or []:
                if not _is_projected(volume) or volume["name"] not in self.volumes:
                    continue
                files = self._safe_files(volume)
                if files is None or files == synced.get(volume["name"]):
                    continue
                _write_atomically(self.volumes[volume["name"]], files)
                synced[volume["name"]] = files

    def _safe_files(self, volume: Obj) -> dict[str, bytes] | None:
        try:
            return self._volume_files(volume)
        except VolumeNotReady:
            return None

    # ---- status ------------------------------------------------------------------------------

    def write_status(self) -> None:
        if self.deleted or self.shutdown:
            return
        ready = (
            self.phase == "Running" and bool(self.runners) and all(r.ready for r in self.runners)
        )
        set_condition(self.conditions, "ContainersReady", ready)
        set_condition(self.conditions, "Ready", ready)
        status: Obj = {
            "phase": self.phase,
            "conditions": self.conditions,
            "startTime": self.start_time,
            "qosClass": (self.pod.get("status") or {}).get("qosClass", "BestEffort"),
            "containerStatuses": [r.status() for r in self.runners]
            or [
                ContainerRunner.placeholder(c, self.pending_reason)
                for c in (self.pod.get("spec") or {}).get("containers") or []
            ],
        }
        if self.pod_ip:  # bound to the node
            status.update(
                hostIP=NODE_IP,
                hostIPs=[{"ip": NODE_IP}],
                podIP=self.pod_ip,
                podIPs=[{"ip": self.pod_ip}],
            )
        if self.start_time is None:
            del status["startTime"]
        if self.init_runners:
            status["initContainerStatuses"] = [r.status() for r in self.init_runners]
        if self.pending_reason is not None:
            status["message"] = self.pending_reason[1]
        if status == self._last_status:
            return

        def apply(obj: Obj) -> Obj:
            if obj["metadata"]["uid"] != self.uid:
                raise ApiError(409, "Conflict", "a new pod took this name")
            obj["status"] = status
            return obj

        try:
            self.pod = self.rt.store.update(
                "v1/pods", self.namespace, self.name, apply, subresource="status"
            )
            self._last_status = copy.deepcopy(status)
        except ApiError:
            pass  # the pod is gone; the worker is about to be told

    # ---- helpers for containers --------------------------------------------------------------

    def mounts_for(self, container: Obj) -> list[tuple[str, str]]:
        mounts = []
        for m in container.get("volumeMounts") or []:
            if m.get("name") not in self.volumes:
                raise ContainerConfigError(f"volume {m.get('name')!r} is not mounted")
            host = self.volumes[m["name"]]
            if m.get("subPath"):
                host = host / m["subPath"]
                host.mkdir(parents=True, exist_ok=True)
            mounts.append((m["mountPath"], str(host)))
        return mounts

    def service_account_dir(self) -> Path | None:
        """The service account token mount (automountServiceAccountToken): token, ca.crt,
        namespace, in the pod's directory; None when the pod or its account opts out."""
        spec = self.pod.get("spec") or {}
        account = spec.get("serviceAccountName") or "default"
        automount = spec.get("automountServiceAccountToken")
        if automount is None:
            sa = self.rt.store.get("v1/serviceaccounts", self.namespace, account) or {}
            automount = sa.get("automountServiceAccountToken", True)
        if not automount or self.rt.api_tls is None:
            return None
        directory = self.dir / "serviceaccount"
        _write_atomically(
            directory,
            {
                "token": service_account_token(self.namespace, account).encode(),
                "ca.crt": self.rt.api_tls.ca_file.read_bytes(),
                "namespace": self.namespace.encode(),
            },
        )
        return directory

    def lookup(self, resource: str) -> Any:
        def get(name: str) -> Obj | None:
            return self.rt.store.get(resource, self.namespace, name)

        return get


def _is_projected(volume: Obj) -> bool:
    return any(k in volume for k in ("configMap", "secret", "downwardAPI", "projected"))


def _write_atomically(target: Path, files: Mapping[str, bytes]) -> None:
    """The kubelet's AtomicWriter layout: the files live in a timestamped directory that the
    `..data` symlink names, and each visible path is a symlink through `..data`; an update
    writes a new directory and renames a new `..data` over the old one, so a reader sees
    all old files or all new ones (never a new certificate with an old key)."""
    target.mkdir(parents=True, exist_ok=True)
    stamp = f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{time.monotonic_ns()}"
    payload = target / stamp
    for rel, content in files.items():
        path = payload / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    data_link, tmp_link = target / "..data", target / "..data_tmp"
    old = os.readlink(data_link) if data_link.is_symlink() else None
    with contextlib.suppress(FileNotFoundError):
        tmp_link.unlink()
    tmp_link.symlink_to(stamp)
    os.replace(tmp_link, data_link)
    for rel in files:
        top = rel.split("/", 1)[0]
        link = target / top
        if not link.is_symlink():
            link.symlink_to(f"..data/{top}")
    for entry in target.iterdir():
        if (
            entry.is_symlink()
            and not entry.name.startswith("..")
            and entry.name not in {r.split("/", 1)[0] for r in files}
        ):
            entry.unlink()
    if old is not None:
        shutil.rmtree(target / old, ignore_errors=True)


def _select_items(data: Mapping[str, bytes], items: Any) -> dict[str, bytes]:
    if not items:
        return dict(data)
    out = {}
    for item in items:
        if item.get("key") not in data:
            raise VolumeNotReady(f"key {item.get('key')!r} not found for a volume item")
        out[item.get("path", item["key"])] = data[item["key"]]
    return out


class ContainerRunner:
    """One container: its process, probes, state and restarts."""

    def __init__(self, worker: PodWorker, spec: Obj, *, init: bool) -> None:
        self.worker = worker
        self.rt = worker.rt
        self.spec = spec
        self.init = init
        self.name: str = spec["name"]
        self.state: Obj = {
            "waiting": {"reason": "PodInitializing" if not init else "ContainerCreating"}
        }
        self.last_state: Obj = {}
        self.restart_count = 0
        self.ready = False
        self.started = False
        self.process: asyncio.subprocess.Process | None = None
        self._finished = asyncio.Event()
        self._finished.set()
        self.exec_env: dict[str, str] = {}
        self.cwd = ""

    @staticmethod
    def placeholder(spec: Obj, reason: tuple[str, str] | None) -> Obj:
        waiting: Obj = {"reason": reason[0] if reason else "ContainerCreating"}
        if reason:
            waiting["message"] = reason[1]
        return {
            "name": spec["name"],
            "image": spec.get("image", ""),
            "imageID": "",
            "ready": False,
            "started": False,
            "restartCount": 0,
            "state": {"waiting": waiting},
            "lastState": {},
        }

    def status(self) -> Obj:
        pid = self.process.pid if self.process is not None else None
        status: Obj = {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": f"emulated://{self.spec.get('image', '')}",
            "ready": self.ready,
            "restartCount": self.restart_count,
            "state": self.state,
            "lastState": self.last_state,
        }
        if not self.init:
            status["started"] = self.started
        if pid is not None and "running" in self.state:
            status["containerID"] = f"emulated://{pid}"
        return status

    def _changed(self) -> None:
        self.worker.write_status()

    # ---- run ---------------------------------------------------------------------------------

    async def run_loop(self, policy: str) -> bool:
        """Run until the container is done per `policy`; True if it finally exited 0."""
        delay_first, delay_max = self.rt.options.restart_backoff
        delay = delay_first
        while not self.worker.terminating.is_set():
            started_at = time.monotonic()
            try:
                code = await self.run_once()
            except ContainerConfigError as e:
                self.state = {
                    "waiting": {"reason": "CreateContainerConfigError", "message": str(e)}
                }
                self._changed()
                if await self._sleep(delay):
                    break
                delay = min(delay * 2, delay_max)
                continue
            if self.worker.terminating.is_set():
                return code == 0
            if policy == "Never" or (policy == "OnFailure" and code == 0):
                return code == 0
            if time.monotonic() - started_at > 10 * delay_max:
                delay = delay_first  # it ran well for a while: forget earlier crashes
            self.restart_count += 1
            self.state = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off {delay:.1f}s restarting failed "
                    f"container={self.name} pod={self.worker.name}",
                }
            }
            self._changed()
            if await self._sleep(delay):
                break
            delay = min(delay * 2, delay_max)
        return False

    async def _sleep(self, seconds: float) -> bool:
        """Sleep unless the pod terminates; True if it does."""
        return await self.worker.wait_terminating(seconds)

    def _environment(self) -> tuple[list[str], dict[str, str], str]:
        worker = self.worker
        pod, options = worker.pod, self.rt.options
        rewrite = mount_rewriter(worker.mounts_for(self.spec))
        own = resolve_env(
            self.spec, pod, worker.lookup("v1/configmaps"), worker.lookup("v1/secrets")
        )
        own = {k: rewrite(v) for k, v in own.items()}
        base = {
            "PATH": f"{VENV_BIN}:{SYSTEM_PATH}",
            "HOSTNAME": worker.name,
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "PYTHONUNBUFFERED": "1",
            "K8S_EMULATOR_POD_IP": worker.pod_ip,
            "K8S_EMULATOR_NAMESPACE": worker.namespace,
            "K8S_EMULATOR_HOSTS": str(self.rt.network.hosts_file),
        }
        if options.pod_shim:
            base["PYTHONPATH"] = str(SHIM_DIR)
        api = self.rt.api_tls
        if api is not None:
            # Every pod sees the API server's Service (enableServiceLinks does not matter).
            base["KUBERNETES_SERVICE_HOST"] = api.host
            base["KUBERNETES_SERVICE_PORT"] = str(api.port)
        if options.pod_ip_per_incarnation:
            base["K8S_EMULATOR_NO_UVLOOP"] = "1"  # resolve through the shim (cluster DNS)
        if options.raftkv_env:
            base["RAFTKV_LISTEN_HOST"] = worker.pod_ip
            if not options.pod_ip_per_incarnation:
                resolve = self.rt.network.resolve_map(worker.namespace)
                base["RAFTKV_RESOLVE"] = ",".join(f"{h}={ip}" for h, ip in resolve.items())
            account = worker.service_account_dir()
            if account is not None:
                # The token's standard path is not in the command line to rewrite: say where.
                base["RAFTKV_KUBE_TOKEN_FILE"] = str(account / "token")
                base["RAFTKV_KUBE_CA_FILE"] = str(account / "ca.crt")
        env = {**base, **own}
        argv = [rewrite(a) for a in command_line(self.spec, options.image_entrypoints, env)]
        if not argv:
            raise ContainerConfigError("the container has no command")
        executable = argv[0] if "/" in argv[0] else shutil.which(argv[0], path=env["PATH"])
        if executable is None or not os.access(executable, os.X_OK):
            raise ContainerConfigError(f"executable {argv[0]!r} not found in $PATH")
        cwd = worker.dir / "root"
        if self.spec.get("workingDir"):
            cwd = Path(rewrite(self.spec["workingDir"]))
        cwd.mkdir(parents=True, exist_ok=True)
        return [executable, *argv], env, str(cwd)

    async def run_once(self) -> int:
        if self.worker.terminating.is_set():
            return 0
        argv, env, cwd = self._environment()
        self.exec_env, self.cwd = env, cwd
        log_path = self.rt.log_path(self.worker.namespace, self.worker.name, self.name)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            log.write(
                f"--- {rfc3339()} emulated kubelet: start #{self.restart_count} of "
                f"{self.worker.name}/{self.name}: {argv[1:]}\n".encode()
            )
            log.flush()
            try:
                self.process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-S",
                    str(LAUNCHER),
                    str(os.getpid()),
                    *argv,
                    env=env,
                    cwd=cwd,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as e:
                raise ContainerConfigError(f"cannot start {argv[0]!r}: {e}") from e
            self._finished.clear()
        started_at = rfc3339()
        self.state = {"running": {"startedAt": started_at}}
        self.started = not self.spec.get("startupProbe")
        self.ready = False
        self._changed()
        proc = self.process
        probes = asyncio.create_task(self._probe(proc))
        exited = asyncio.create_task(proc.wait())
        terminating = asyncio.create_task(self.worker.terminating.wait())
        try:
            await asyncio.wait({exited, terminating}, return_when=asyncio.FIRST_COMPLETED)
            if not exited.done():
                self.signal(signal.SIGTERM)
                done, _ = await asyncio.wait({exited}, timeout=self.worker.stop_grace())
                if not done:
                    self.signal(signal.SIGKILL)
            code = await exited
        finally:
            for task in (probes, terminating):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self._finished.set()
        self.ready = False
        self.started = False
        reason = "Completed" if code == 0 else "Error"
        if code < 0:  # killed by a signal: the shell convention, as the kubelet reports it
            code = 128 - code
        terminated = {
            "exitCode": code,
            "reason": reason,
            "startedAt": started_at,
            "finishedAt": rfc3339(),
            "containerID": f"emulated://{self.process.pid}",
        }
        self.last_state = {"terminated": terminated}
        self.state = {"terminated": terminated}
        self._changed()
        return code

    async def wait_finished(self) -> None:
        await self._finished.wait()

    def signal(self, sig: int) -> int | None:
        """Send `sig` to the container's process group; its pid, or None if not running."""
        proc = self.process
        if proc is None or proc.returncode is not None:
            return None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        return proc.pid

    # ---- probes ------------------------------------------------------------------------------

    def _probe_timing(self, probe: Obj) -> tuple[float, float, float, int, int]:
        cap = self.rt.options.probe_period_cap
        period = min(float(probe.get("periodSeconds", 10)), cap)
        delay = min(float(probe.get("initialDelaySeconds", 0)), cap)
        timeout = min(float(probe.get("timeoutSeconds", 1)), self.rt.options.probe_timeout_cap)
        return (
            max(period, 0.05),
            delay,
            timeout,
            int(probe.get("successThreshold", 1)),
            int(probe.get("failureThreshold", 3)),
        )

    async def _attempt(self, probe: Obj, timeout: float) -> tuple[bool, str]:
        session = self.worker.kubelet.session
        assert session is not None
        exec_argv = None
        if "exec" in probe:
            exec_argv = [str(a) for a in probe["exec"].get("command") or []]
        return await probe_once(
            probe,
            self.spec,
            self.worker.pod_ip,
            timeout,
            session,
            self.exec_env,
            exec_argv,
            self.cwd,
        )

    async def _probe(self, proc: asyncio.subprocess.Process) -> None:
        try:
            startup = self.spec.get("startupProbe")
            if startup and not self.init:
                if not await self._until_success(startup, proc):
                    return
                self.started = True
                self._changed()
            else:
                self.started = True
            if self.init:
                return
            loops = [self._readiness(proc)]
            if self.spec.get("livenessProbe"):
                loops.append(self._liveness(proc))
            await asyncio.gather(*loops)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self.rt.report_error(f"kubelet: probing {self.worker.name}/{self.name}", e)

    async def _until_success(self, probe: Obj, proc: asyncio.subprocess.Process) -> bool:
        period, delay, timeout, _, failures = self._probe_timing(probe)
        await asyncio.sleep(delay)
        failed = 0
        while proc.returncode is None:
            ok, message = await self._attempt(probe, timeout)
            if ok:
                return True
            failed += 1
            if failed >= failures:
                logger.info(
                    "startup probe of %s/%s failed %d times: %s; killing",
                    self.worker.name,
                    self.name,
                    failed,
                    message,
                )
                await self._kill_for_restart()
                return False
            await asyncio.sleep(period)
        return False

    async def _readiness(self, proc: asyncio.subprocess.Process) -> None:
        probe = self.spec.get("readinessProbe")
        if not probe:
            self.ready = True
            self._changed()
            return
        period, delay, timeout, successes, failures = self._probe_timing(probe)
        await asyncio.sleep(delay)
        ok_run = fail_run = 0
        while proc.returncode is None:
            ok, _ = await self._attempt(probe, timeout)
            ok_run, fail_run = (ok_run + 1, 0) if ok else (0, fail_run + 1)
            if ok and not self.ready and ok_run >= successes:
                self.ready = True
                self._changed()
            elif not ok and self.ready and fail_run >= failures:
                self.ready = False
                self._changed()
            await asyncio.sleep(period)

    async def _liveness(self, proc: asyncio.subprocess.Process) -> None:
        probe = self.spec["livenessProbe"]
        period, delay, timeout, _, failures = self._probe_timing(probe)
        await asyncio.sleep(delay)
        failed = 0
        while proc.returncode is None:
            ok, message = await self._attempt(probe, timeout)
            failed = 0 if ok else failed + 1
            if failed >= failures:
                logger.info(
                    "liveness probe of %s/%s failed: %s; killing",
                    self.worker.name,
                    self.name,
                    message,
                )
                await self._kill_for_restart()
                return
            await asyncio.sleep(period)

    async def _kill_for_restart(self) -> None:
        grace = min(
            float((self.worker.pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)),
            self.rt.options.termination_grace_cap,
        )
        proc = self.process
        if proc is None:
            return
        self.signal(signal.SIGTERM)
        exited = asyncio.ensure_future(proc.wait())
        done, _ = await asyncio.wait({exited}, timeout=grace)
        if not done:
            self.signal(signal.SIGKILL)
