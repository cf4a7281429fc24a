"""The StatefulSet controller: pods `<sts>-<ordinal>`, claims `<template>-<sts>-<ordinal>`.

- podManagementPolicy Parallel creates and deletes all pods at once; OrderedReady creates
  ordinal N only when 0..N-1 are Running and Ready, and removes from the highest one at a time;
- updateStrategy OnDelete never replaces a running pod when the template changes: a deleted
  (or failed) pod is recreated from the current template; RollingUpdate replaces pods from the
  highest ordinal down to `partition`, one at a time, each after the previous is Ready;
- scale-down deletes the highest ordinals;
- persistentVolumeClaimRetentionPolicy: whenDeleted=Delete makes the StatefulSet own its claims
  and whenScaled=Delete makes a condemned pod own its claim, so the garbage collector deletes
  them; Retain keeps them;
- status: replicas, readyReplicas, availableReplicas, currentReplicas, updatedReplicas,
  currentRevision, updateRevision (`<sts>-<hash of the template>`), observedGeneration.
Pods get `statefulset.kubernetes.io/pod-name`, `controller-revision-hash` and
`apps.kubernetes.io/pod-index` labels, hostname `<pod>` and subdomain `<serviceName>`.
ControllerRevision objects are not created.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Iterable
from typing import Any

from tests.k8s.harness.controller import Controller, Key
from tests.k8s.harness.runtime import controlled_by, owner_reference, pod_ready
from tests.k8s.harness.selectors import LabelSelector
from tests.k8s.harness.store import ApiError, Obj, WatchEvent

STS = "apps/v1/statefulsets"
PODS = "v1/pods"
PVCS = "v1/persistentvolumeclaims"


def template_revision(sts: Obj) -> str:
    template = (sts.get("spec") or {}).get("template") or {}
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]
    return f"{sts['metadata']['name']}-{digest}"


def claim_name(template: Obj, sts_name: str, ordinal: int) -> str:
    return f"{template['metadata']['name']}-{sts_name}-{ordinal}"


def _ordinal(sts_name: str, pod_name: str) -> int | None:
    m = re.fullmatch(re.escape(sts_name) + r"-(\d+)", pod_name)
    return int(m.group(1)) if m else None


def _terminating(obj: Obj) -> bool:
    return bool(obj["metadata"].get("deletionTimestamp"))


class StatefulSetController(Controller):
    name = "statefulset-controller"
    watches = (STS, PODS, PVCS)

    def keys_for(self, event: WatchEvent) -> Iterable[Key]:
        if event.resource.key == STS:
            return [(event.namespace or "", event.name)]
        refs = event.object["metadata"].get("ownerReferences") or []
        return [
            (event.namespace or "", r["name"])
            for r in refs
            if r.get("kind") == "StatefulSet" and r.get("controller")
        ]

    def all_keys(self) -> Iterable[Key]:
        return [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in self.store.list(STS)]

    async def reconcile(self, key: Key) -> None:
        namespace, name = key
        sts = self.store.get(STS, namespace, name)
        if sts is None or _terminating(sts):
            return
        spec = sts["spec"]
        uid = sts["metadata"]["uid"]
        replicas = int(spec.get("replicas", 1))
        ordered = spec.get("podManagementPolicy", "OrderedReady") == "OrderedReady"
        strategy = (spec.get("updateStrategy") or {}).get("type", "RollingUpdate")
        revision = template_revision(sts)
        self._predict_addresses(sts, replicas)
        pods: dict[int, Obj] = {}
        for pod in self.store.list(PODS, namespace):
            ordinal = _ordinal(name, pod["metadata"]["name"])
            if ordinal is not None and controlled_by(pod, uid):
                pods[ordinal] = pod
        self._retain_claims(sts, pods, replicas)

        # Create missing pods, replace finished ones.
        for ordinal in range(replicas):
            existing = pods.get(ordinal)
            if existing is None:
                self._create_pod(sts, ordinal, revision)
                if ordered:
                    break
                continue
            if not (existing.get("spec") or {}).get("nodeName"):
                # Not scheduled (e.g. its claim was deleted): recreate missing claims.
                for claim in sts["spec"].get("volumeClaimTemplates") or []:
                    self._ensure_claim(sts, claim, ordinal)
            phase = (existing.get("status") or {}).get("phase")
            if phase in ("Succeeded", "Failed") and not _terminating(existing):
                self.store.delete(PODS, namespace, existing["metadata"]["name"])
                if ordered:
                    break
            elif ordered and (
                _terminating(existing) or phase != "Running" or not pod_ready(existing)
            ):
                break

        # Scale down from the highest ordinal.
        condemned = sorted((o for o in pods if o >= replicas), reverse=True)
        for ordinal in condemned:
            pod = pods[ordinal]
            if _terminating(pod):
                if ordered:
                    break
                continue
            self._release_claims_on_scale_down(sts, pod, ordinal)
            self.store.delete(PODS, namespace, pod["metadata"]["name"])
            if ordered:
                break

        # RollingUpdate: replace outdated pods, highest first, one at a time.
        if strategy == "RollingUpdate" and not condemned:
            partition = int(
                ((spec.get("updateStrategy") or {}).get("rollingUpdate") or {}).get("partition", 0)
            )
            current = [pods.get(o) for o in range(replicas)]
            settled = all(p is not None and not _terminating(p) and pod_ready(p) for p in current)
            if settled:
                for ordinal in range(replicas - 1, partition - 1, -1):
                    pod = pods[ordinal]
                    if (
                        pod["metadata"].get("labels", {}).get("controller-revision-hash")
                        != revision
                    ):
                        self.store.delete(PODS, namespace, pod["metadata"]["name"])
                        break

        self._write_status(sts, revision)

    # ---- pods and claims ---------------------------------------------------------------------

    def _predict_addresses(self, sts: Obj, replicas: int) -> None:
        namespace, name = sts["metadata"]["namespace"], sts["metadata"]["name"]
        service = sts["spec"].get("serviceName")
        network = self.rt.network
        if self.rt.options.pod_ip_per_incarnation:
            return  # a pod's address is known only once it runs
        for ordinal in range(max(replicas, self.rt.options.predicted_ordinals)):
            pod = f"{name}-{ordinal}"
            ip = network.pod_ip(namespace, pod)
            if service:
                network.set_pod_record(namespace, pod, service, ip)

    def _create_pod(self, sts: Obj, ordinal: int, revision: str) -> None:
        meta = sts["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        template = copy.deepcopy(sts["spec"].get("template") or {})
        tmeta = template.get("metadata") or {}
        pod_name = f"{name}-{ordinal}"
        labels = {
            **(tmeta.get("labels") or {}),
            "statefulset.kubernetes.io/pod-name": pod_name,
            "controller-revision-hash": revision,
            "apps.kubernetes.io/pod-index": str(ordinal),
        }
        pod_spec = template.get("spec") or {}
        pod_spec["hostname"] = pod_name
        if sts["spec"].get("serviceName"):
            pod_spec["subdomain"] = sts["spec"]["serviceName"]
        volumes = [v for v in pod_spec.get("volumes") or []]
        for claim in sts["spec"].get("volumeClaimTemplates") or []:
            self._ensure_claim(sts, claim, ordinal)
            cname = claim["metadata"]["name"]
            volumes = [v for v in volumes if v.get("name") != cname]
            volumes.append(
                {
                    "name": cname,
                    "persistentVolumeClaim": {"claimName": claim_name(claim, name, ordinal)},
                }
            )
        if volumes:
            pod_spec["volumes"] = volumes
        pod: Obj = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod_name,
                "namespace": namespace,
                "labels": labels,
                "ownerReferences": [owner_reference(sts)],
            },
            "spec": pod_spec,
        }
        if tmeta.get("annotations"):
            pod["metadata"]["annotations"] = dict(tmeta["annotations"])
        try:
            self.store.create(PODS, pod, namespace)
        except ApiError as e:
            if e.code == 409:
                return  # the previous pod of this name is still terminating
            self.rt.warn(
                sts,
                "FailedCreate",
                f"create Pod {pod_name} in StatefulSet {name} failed error: {e.message}",
                self.name,
            )

    def _ensure_claim(self, sts: Obj, template: Obj, ordinal: int) -> None:
        meta = sts["metadata"]
        namespace = meta["namespace"]
        cname = claim_name(template, meta["name"], ordinal)
        if self.store.get(PVCS, namespace, cname) is not None:
            return
        selector = (sts["spec"].get("selector") or {}).get("matchLabels") or {}
        tmeta = template.get("metadata") or {}
        claim: Obj = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {
                "name": cname,
                "namespace": namespace,
                "labels": {**(tmeta.get("labels") or {}), **selector},
            },
            "spec": copy.deepcopy(template.get("spec") or {}),
        }
        if tmeta.get("annotations"):
            claim["metadata"]["annotations"] = dict(tmeta["annotations"])
        policy = sts["spec"].get("persistentVolumeClaimRetentionPolicy") or {}
        if policy.get("whenDeleted") == "Delete":
            claim["metadata"]["ownerReferences"] = [owner_reference(sts, controller=False)]
        try:
            self.store.create(PVCS, claim, namespace)
        except ApiError as e:
            if e.code != 409:
                self.rt.warn(
                    sts,
                    "FailedCreate",
                    f"create Claim {cname} for StatefulSet "
                    f"{meta['name']} failed error: {e.message}",
                    self.name,
                )

    def _claims_of(self, sts: Obj, ordinal: int) -> list[Obj]:
        out = []
        for template in sts["spec"].get("volumeClaimTemplates") or []:
            claim = self.store.get(
                PVCS,
                sts["metadata"]["namespace"],
                claim_name(template, sts["metadata"]["name"], ordinal),
            )
            if claim is not None:
                out.append(claim)
        return out

    def _set_claim_owners(self, claim: Obj, refs: list[dict[str, Any]]) -> None:
        def apply(obj: Obj) -> Obj:
            obj["metadata"]["ownerReferences"] = refs
            return obj

        if (claim["metadata"].get("ownerReferences") or []) != refs:
            self.store.update(
                PVCS, claim["metadata"]["namespace"], claim["metadata"]["name"], apply
            )

    def _retain_claims(self, sts: Obj, pods: dict[int, Obj], replicas: int) -> None:
        """Keep the claims' owner references in line with the retention policy."""
        policy = sts["spec"].get("persistentVolumeClaimRetentionPolicy") or {}
        uid = sts["metadata"]["uid"]
        for ordinal in range(replicas):
            for claim in self._claims_of(sts, ordinal):
                refs = [
                    r
                    for r in claim["metadata"].get("ownerReferences") or []
                    if r.get("kind") != "Pod"
                ]
                has_sts = any(r.get("uid") == uid for r in refs)
                if policy.get("whenDeleted") == "Delete" and not has_sts:
                    refs.append(owner_reference(sts, controller=False))
                elif policy.get("whenDeleted") != "Delete" and has_sts:
                    refs = [r for r in refs if r.get("uid") != uid]
                self._set_claim_owners(claim, refs)

    def _release_claims_on_scale_down(self, sts: Obj, pod: Obj, ordinal: int) -> None:
        policy = sts["spec"].get("persistentVolumeClaimRetentionPolicy") or {}
        if policy.get("whenScaled") != "Delete":
            return
        # As in Kubernetes: a condemned pod's claim is owned by the pod alone, not the set.
        gone = {pod["metadata"]["uid"], sts["metadata"]["uid"]}
        for claim in self._claims_of(sts, ordinal):
            refs = [
                r
                for r in claim["metadata"].get("ownerReferences") or []
                if r.get("uid") not in gone
            ]
            refs.append(owner_reference(pod, controller=False))
            self._set_claim_owners(claim, refs)

    # ---- status ------------------------------------------------------------------------------

    def _write_status(self, sts: Obj, revision: str) -> None:
        meta = sts["metadata"]
        namespace, uid = meta["namespace"], meta["uid"]
        selector = LabelSelector.from_api(sts["spec"].get("selector"))
        pods = [
            p
            for p in self.store.list(PODS, namespace, selector)
            if controlled_by(p, uid) and not _terminating(p)
        ]
        old = sts.get("status") or {}
        current_revision = old.get("currentRevision") or revision
        updated = sum(
            1 for p in pods if p["metadata"]["labels"].get("controller-revision-hash") == revision
        )
        replicas = int(sts["spec"].get("replicas", 1))
        if updated == len(pods) == replicas:
            current_revision = revision
        ready = sum(1 for p in pods if pod_ready(p))
        status = {
            "observedGeneration": meta.get("generation", 1),
            "replicas": len(pods),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "currentReplicas": sum(
                1
                for p in pods
                if p["metadata"]["labels"].get("controller-revision-hash") == current_revision
            ),
            "updatedReplicas": updated,
            "currentRevision": current_revision,
            "updateRevision": revision,
            "collisionCount": 0,
        }
        if status != old:

            def apply(obj: Obj) -> Obj:
                obj["status"] = status
                return obj

            self.store.update(STS, namespace, meta["name"], apply, subresource="status")
