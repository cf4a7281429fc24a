"""Garbage collection, namespace deletion, PVC protection and volume provisioning.

- GarbageCollector: an object whose every owner (by `ownerReferences[].uid`) is gone is
  deleted (background propagation); dangling references next to a live owner are dropped. An
  owner deleted with propagationPolicy=Foreground keeps its `foregroundDeletion` finalizer
  until its dependents are gone (they are deleted first); with Orphan, its dependents lose the
  reference and the `orphan` finalizer is then removed.
- Namespace deletion: a terminating namespace's objects are deleted, then the namespace.
- PVC protection: a claim being deleted keeps `kubernetes.io/pvc-protection` while a pod
  that is not finished uses it.
- VolumeController: binds every claim at once (like a dynamic provisioner with
  volumeBindingMode Immediate and reclaimPolicy Delete) to a directory
  `<workdir>/pvcs/<namespace>/<claim>`, which survives pods and is deleted with the claim.
  No PersistentVolume objects are created.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import Iterable
from typing import Any

from tests.k8s.harness.controller import Controller, Key
from tests.k8s.harness.defaults import PVC_PROTECTION
from tests.k8s.harness.resources import ResourceSpec
from tests.k8s.harness.runtime import Runtime
from tests.k8s.harness.store import ApiError, Obj, WatchEvent

PVCS = "v1/persistentvolumeclaims"
PODS = "v1/pods"


class GarbageCollector:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.store = runtime.store
        self._dirty = asyncio.Event()

    async def run(self) -> None:
        sub = self.store.subscribe(None)

        async def feed() -> None:
            while True:
                event = await sub.get()
                if event is None:
                    return
                if event.type == "DELETED" or event.object["metadata"].get("deletionTimestamp"):
                    self._dirty.set()

        feeder = asyncio.create_task(feed())
        try:
            while True:
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.rt.options.resync_seconds):
                        await self._dirty.wait()
                self._dirty.clear()
                try:
                    self.sweep()
                except Exception as e:
                    self.rt.report_error("garbage collector", e)
                await asyncio.sleep(0.02)  # let a burst of deletions settle into one sweep
        finally:
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeder
            self.store.unsubscribe(sub)

    def _delete(self, spec: ResourceSpec, obj: Obj, **kwargs: Any) -> None:
        meta = obj["metadata"]
        with contextlib.suppress(ApiError):
            self.store.delete(spec, meta.get("namespace"), meta["name"], **kwargs)

    def _set(self, spec: ResourceSpec, obj: Obj, path: str, value: Any) -> None:
        def apply(o: Obj) -> Obj:
            o["metadata"][path] = value
            return o

        meta = obj["metadata"]
        with contextlib.suppress(ApiError):
            self.store.update(spec, meta.get("namespace"), meta["name"], apply)

    def sweep(self) -> None:
        objects = [(spec, obj) for spec, obj in self.store.all_objects()]
        by_uid = {obj["metadata"]["uid"]: obj for _, obj in objects}
        referenced: dict[str, list[tuple[ResourceSpec, Obj, dict[str, Any]]]] = {}
        for spec, obj in objects:
            meta = obj["metadata"]
            refs = meta.get("ownerReferences") or []
            if not refs:
                continue
            alive = [r for r in refs if r.get("uid") in by_uid]
            for ref in alive:
                referenced.setdefault(ref["uid"], []).append((spec, obj, ref))
            if not alive:
                if not meta.get("deletionTimestamp"):
                    self._delete(spec, obj)
                continue
            keep = []
            for ref in alive:
                owner_meta = by_uid[ref["uid"]]["metadata"]
                finalizers = owner_meta.get("finalizers") or []
                if owner_meta.get("deletionTimestamp") and "orphan" in finalizers:
                    continue  # orphaned: the reference goes
                keep.append(ref)
            if keep != refs:
                self._set(spec, obj, "ownerReferences", keep)
            owners_in_foreground = [
                r
                for r in keep
                if by_uid[r["uid"]]["metadata"].get("deletionTimestamp")
                and "foregroundDeletion" in (by_uid[r["uid"]]["metadata"].get("finalizers") or [])
            ]
            if (
                owners_in_foreground
                and len(owners_in_foreground) == len(keep)
                and not meta.get("deletionTimestamp")
            ):
                self._delete(spec, obj, propagation_policy="Foreground")
        for spec, obj in objects:
            meta = obj["metadata"]
            finalizers = meta.get("finalizers") or []
            if not meta.get("deletionTimestamp"):
                continue
            uid = meta["uid"]
            dependents = referenced.get(uid, [])
            if "foregroundDeletion" in finalizers and not any(
                ref.get("blockOwnerDeletion") for _, _, ref in dependents
            ):
                self._set(
                    spec, obj, "finalizers", [f for f in finalizers if f != "foregroundDeletion"]
                )
            elif "orphan" in finalizers and not dependents:
                self._set(spec, obj, "finalizers", [f for f in finalizers if f != "orphan"])
        self._namespaces(objects)
        self._pvc_protection(objects)

    def _namespaces(self, objects: list[tuple[ResourceSpec, Obj]]) -> None:
        terminating = {
            obj["metadata"]["name"]
            for spec, obj in objects
            if spec.key == "v1/namespaces" and obj["metadata"].get("deletionTimestamp")
        }
        if not terminating:
            return
        remaining = {ns: 0 for ns in terminating}
        for spec, obj in objects:
            ns = obj["metadata"].get("namespace")
            if spec.namespaced and ns in terminating:
                remaining[ns] += 1
                if not obj["metadata"].get("deletionTimestamp"):
                    self._delete(spec, obj)
        for ns, count in remaining.items():
            if count == 0:
                self.store.finalize_namespace(ns)

    def _pvc_protection(self, objects: list[tuple[ResourceSpec, Obj]]) -> None:
        in_use: set[tuple[str, str]] = set()
        for spec, obj in objects:
            phase = (obj.get("status") or {}).get("phase")
            # Only scheduled, unfinished pods hold a claim (as Kubernetes' PVC protection).
            if (
                spec.key != PODS
                or phase in ("Succeeded", "Failed")
                or not (obj.get("spec") or {}).get("nodeName")
            ):
                continue
            for volume in (obj.get("spec") or {}).get("volumes") or []:
                claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
                if claim:
                    in_use.add((obj["metadata"]["namespace"], claim))
        for spec, obj in objects:
            meta = obj["metadata"]
            if (
                spec.key == PVCS
                and meta.get("deletionTimestamp")
                and PVC_PROTECTION in (meta.get("finalizers") or [])
                and (meta["namespace"], meta["name"]) not in in_use
            ):
                self._set(
                    spec, obj, "finalizers", [f for f in meta["finalizers"] if f != PVC_PROTECTION]
                )


class VolumeController(Controller):
    name = "persistentvolume-controller"
    watches = (PVCS,)

    def keys_for(self, event: WatchEvent) -> Iterable[Key]:
        return [(event.namespace or "", event.name)]

    def all_keys(self) -> Iterable[Key]:
        return [(c["metadata"]["namespace"], c["metadata"]["name"]) for c in self.store.list(PVCS)]

    async def reconcile(self, key: Key) -> None:
        namespace, name = key
        claim = self.store.get(PVCS, namespace, name)
        path = self.rt.claim_path(namespace, name)
        marker = path.parent / f".{name}.uid"
        if claim is None:
            shutil.rmtree(path, ignore_errors=True)
            marker.unlink(missing_ok=True)
            return
        uid = claim["metadata"]["uid"]
        if marker.exists() and marker.read_text() != uid:
            shutil.rmtree(path, ignore_errors=True)  # an earlier claim of the same name
        if not path.is_dir():
            path.mkdir(parents=True, exist_ok=True)
        marker.write_text(uid)
        if (claim.get("status") or {}).get("phase") == "Bound" or claim["metadata"].get(
            "deletionTimestamp"
        ):
            return
        volume_name = f"pvc-{uid}"

        def bind_spec(obj: Obj) -> Obj:
            obj["spec"]["volumeName"] = volume_name
            return obj

        def bind_status(obj: Obj) -> Obj:
            obj["status"] = {
                "phase": "Bound",
                "accessModes": obj["spec"].get("accessModes", []),
                "capacity": {"storage": obj["spec"]["resources"]["requests"]["storage"]},
            }
            return obj

        self.store.update(PVCS, namespace, name, bind_spec)
        self.store.update(PVCS, namespace, name, bind_status, subresource="status")
