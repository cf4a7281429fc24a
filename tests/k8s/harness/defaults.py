"""Defaulting and validation of the built-in kinds (the API server's admission), trimmed to
what the operator and the harness controllers rely on.

A real API server rejects what these reject; the emulator does too, so a bug that would fail
on a real cluster (a pod spec change, a StatefulSet selector change, a Job without a proper
restartPolicy, ...) fails here as well instead of passing silently.
"""

from __future__ import annotations

import copy
from typing import Any

from tests.k8s.harness.resources import ResourceSpec
from tests.k8s.harness.selectors import LabelSelector, SelectorError
from tests.k8s.harness.store import Obj, ObjectStore, invalid

STATEFULSET_MUTABLE_SPEC = {
    "replicas",
    "template",
    "updateStrategy",
    "minReadySeconds",
    "persistentVolumeClaimRetentionPolicy",
    "ordinals",
    "revisionHistoryLimit",
}
PVC_PROTECTION = "kubernetes.io/pvc-protection"


def builtin_admission(
    operation: str, spec: ResourceSpec, new: Obj, old: Obj | None, store: ObjectStore
) -> None:
    key = spec.key
    if key == "v1/pods":
        _pod(operation, spec, new, old)
    elif key == "v1/services":
        _service(operation, spec, new, old)
    elif key == "apps/v1/statefulsets":
        _statefulset(operation, spec, new, old)
    elif key == "batch/v1/jobs":
        _job(operation, spec, new, old)
    elif key == "v1/persistentvolumeclaims":
        _pvc(operation, spec, new, old)
    elif key == "v1/namespaces":
        _namespace(operation, new)
    elif key == "apiextensions.k8s.io/v1/customresourcedefinitions":
        _crd(spec, new)
    elif key == "v1/configmaps" and old is not None and old.get("immutable"):
        _immutable_configmap(spec, new, old)


def _immutable_configmap(spec: ResourceSpec, new: Obj, old: Obj) -> None:
    if new.get("data") != old.get("data") or new.get("binaryData") != old.get("binaryData"):
        raise invalid(
            spec,
            new["metadata"]["name"],
            "data: Forbidden: field is immutable when `immutable` is set",
        )


def _name(obj: Obj) -> str:
    return str(obj["metadata"]["name"])


def _containers_valid(
    spec: ResourceSpec,
    name: str,
    pod_spec: Any,
    where: str,
    extra_volumes: frozenset[str] = frozenset(),
) -> None:
    if not isinstance(pod_spec, dict):
        raise invalid(spec, name, f"{where}: Required value")
    containers = pod_spec.get("containers")
    if not isinstance(containers, list) or not containers:
        raise invalid(spec, name, f"{where}.containers: Required value")
    seen: set[str] = set()
    for i, c in enumerate([*containers, *(pod_spec.get("initContainers") or [])]):
        if not isinstance(c, dict) or not c.get("name") or not c.get("image"):
            raise invalid(spec, name, f"{where}.containers[{i}]: name and image are required")
        if c["name"] in seen:
            raise invalid(
                spec, name, f"{where}.containers[{i}].name: Duplicate value {c['name']!r}"
            )
        seen.add(c["name"])
    volumes = {v.get("name") for v in pod_spec.get("volumes") or []} | extra_volumes
    for c in [*containers, *(pod_spec.get("initContainers") or [])]:
        for m in c.get("volumeMounts") or []:
            if m.get("name") not in volumes:
                raise invalid(
                    spec,
                    name,
                    f"{where}.containers[{c['name']}].volumeMounts."
                    f"name: Not found: {m.get('name')!r}",
                )


def _pod_spec_for_compare(pod_spec: Obj) -> Obj:
    # The fields a pod update may change (plus the kubelet's binding): left out of the compare.
    s = copy.deepcopy(pod_spec)
    for field in ("activeDeadlineSeconds", "tolerations", "nodeName", "schedulingGates"):
        s.pop(field, None)
    for group in ("containers", "initContainers"):
        for c in s.get(group) or []:
            c.pop("image", None)
    return s


def _pod(operation: str, spec: ResourceSpec, new: Obj, old: Obj | None) -> None:
    name = _name(new)
    pod_spec = new.get("spec")
    _containers_valid(spec, name, pod_spec, "spec")
    assert isinstance(pod_spec, dict)
    pod_spec.setdefault("restartPolicy", "Always")
    if pod_spec["restartPolicy"] not in ("Always", "OnFailure", "Never"):
        raise invalid(spec, name, "spec.restartPolicy: Unsupported value")
    pod_spec.setdefault("terminationGracePeriodSeconds", 30)
    pod_spec.setdefault("dnsPolicy", "ClusterFirst")
    pod_spec.setdefault("schedulerName", "default-scheduler")
    for c in [*pod_spec["containers"], *(pod_spec.get("initContainers") or [])]:
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("imagePullPolicy", "IfNotPresent")
    if operation == "CREATE":
        new["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
        return
    assert old is not None
    if _pod_spec_for_compare(new.get("spec") or {}) != _pod_spec_for_compare(old.get("spec") or {}):
        raise invalid(
            spec,
            name,
            "spec: Forbidden: pod updates may not change fields other "
            "than `spec.containers[*].image`, `spec.initContainers[*].image`, "
            "`spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to "
            "existing tolerations)",
        )
    old_node = (old.get("spec") or {}).get("nodeName")
    if old_node and (new.get("spec") or {}).get("nodeName") != old_node:
        raise invalid(spec, name, "spec.nodeName: Forbidden: a bound pod cannot move")


def _service(operation: str, spec: ResourceSpec, new: Obj, old: Obj | None) -> None:
    name = _name(new)
    svc = new.setdefault("spec", {})
    svc.setdefault("type", "ClusterIP")
    svc.setdefault("sessionAffinity", "None")
    ports = svc.get("ports") or []
    for i, port in enumerate(ports):
        if not isinstance(port, dict) or not isinstance(port.get("port"), int):
            raise invalid(spec, name, f"spec.ports[{i}].port: Required value")
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port["port"])
    if len(ports) > 1 and any(not p.get("name") for p in ports):
        raise invalid(spec, name, "spec.ports: every port needs a name when there are several")
    if old is not None:
        old_ip = (old.get("spec") or {}).get("clusterIP")
        if not svc.get("clusterIP"):
            svc["clusterIP"] = old_ip
            if "clusterIPs" in (old.get("spec") or {}):
                svc["clusterIPs"] = old["spec"]["clusterIPs"]
        elif svc["clusterIP"] != old_ip:
            raise invalid(spec, name, "spec.clusterIP: Invalid value: field is immutable")


def _statefulset(operation: str, spec: ResourceSpec, new: Obj, old: Obj | None) -> None:
    name = _name(new)
    sts = new.setdefault("spec", {})
    sts.setdefault("replicas", 1)
    sts.setdefault("podManagementPolicy", "OrderedReady")
    sts.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
    sts.setdefault("revisionHistoryLimit", 10)
    sts.setdefault(
        "persistentVolumeClaimRetentionPolicy", {"whenDeleted": "Retain", "whenScaled": "Retain"}
    )
    if not isinstance(sts.get("replicas"), int) or sts["replicas"] < 0:
        raise invalid(spec, name, "spec.replicas: must be a non-negative integer")
    if sts["podManagementPolicy"] not in ("OrderedReady", "Parallel"):
        raise invalid(spec, name, "spec.podManagementPolicy: Unsupported value")
    if sts["updateStrategy"].get("type") not in ("RollingUpdate", "OnDelete"):
        raise invalid(spec, name, "spec.updateStrategy.type: Unsupported value")
    template = sts.get("template") or {}
    claims = frozenset(
        str((c.get("metadata") or {}).get("name")) for c in sts.get("volumeClaimTemplates") or []
    )
    _containers_valid(spec, name, template.get("spec"), "spec.template.spec", claims)
    restart = (template.get("spec") or {}).get("restartPolicy", "Always")
    if restart != "Always":
        raise invalid(
            spec,
            name,
            "spec.template.spec.restartPolicy: Unsupported value: "
            f'{restart!r}: supported values: "Always"',
        )
    try:
        selector = LabelSelector.from_api(sts.get("selector"))
    except SelectorError as e:
        raise invalid(spec, name, f"spec.selector: {e}") from None
    if sts.get("selector") is None or selector.empty:
        raise invalid(spec, name, "spec.selector: Required value")
    if not selector.matches((template.get("metadata") or {}).get("labels")):
        raise invalid(
            spec,
            name,
            "spec.template.metadata.labels: Invalid value: `selector` "
            "does not match template `labels`",
        )
    for i, claim in enumerate(sts.get("volumeClaimTemplates") or []):
        if not (claim.get("metadata") or {}).get("name"):
            raise invalid(spec, name, f"spec.volumeClaimTemplates[{i}].metadata.name: Required")
    if old is not None:
        old_spec = old.get("spec") or {}
        changed = {
            k
            for k in set(sts) | set(old_spec)
            if k not in STATEFULSET_MUTABLE_SPEC and sts.get(k) != old_spec.get(k)
        }
        if changed:
            raise invalid(
                spec,
                name,
                "spec: Forbidden: updates to statefulset spec for fields "
                "other than 'replicas', 'ordinals', 'template', 'updateStrategy', "
                "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are "
                f"forbidden (changed: {sorted(changed)})",
            )


def _job(operation: str, spec: ResourceSpec, new: Obj, old: Obj | None) -> None:
    name = _name(new)
    job = new.setdefault("spec", {})
    template = job.setdefault("template", {})
    job.setdefault("backoffLimit", 6)
    job.setdefault("completions", 1)
    job.setdefault("parallelism", 1)
    job.setdefault("completionMode", "NonIndexed")
    job.setdefault("suspend", False)
    if operation == "CREATE":
        uid = new["metadata"]["uid"]
        if not job.get("manualSelector"):
            labels = template.setdefault("metadata", {}).setdefault("labels", {})
            labels.update(
                {
                    "batch.kubernetes.io/controller-uid": uid,
                    "controller-uid": uid,
                    "batch.kubernetes.io/job-name": name,
                    "job-name": name,
                }
            )
            job["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    _containers_valid(spec, name, template.get("spec"), "spec.template.spec")
    restart = (template.get("spec") or {}).get("restartPolicy")
    if restart not in ("Never", "OnFailure"):
        raise invalid(
            spec,
            name,
            'spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"',
        )
    if old is not None:
        old_job = old.get("spec") or {}
        if job.get("template") != old_job.get("template") and not old_job.get("suspend"):
            raise invalid(spec, name, "spec.template: Invalid value: field is immutable")
        if job.get("selector") != old_job.get("selector"):
            raise invalid(spec, name, "spec.selector: Invalid value: field is immutable")


def _pvc(operation: str, spec: ResourceSpec, new: Obj, old: Obj | None) -> None:
    name = _name(new)
    claim = new.get("spec")
    if not isinstance(claim, dict) or not claim.get("accessModes"):
        raise invalid(spec, name, "spec.accessModes: Required value")
    if not ((claim.get("resources") or {}).get("requests") or {}).get("storage"):
        raise invalid(spec, name, "spec.resources[storage]: Required value")
    claim.setdefault("volumeMode", "Filesystem")
    if operation == "CREATE":
        finalizers = new["metadata"].setdefault("finalizers", [])
        if PVC_PROTECTION not in finalizers:
            finalizers.append(PVC_PROTECTION)
        new["status"] = {"phase": "Pending"}
        return
    assert old is not None
    strip = {k: v for k, v in claim.items() if k not in ("resources", "volumeName")}
    old_strip = {
        k: v for k, v in (old.get("spec") or {}).items() if k not in ("resources", "volumeName")
    }
    if strip != old_strip:
        raise invalid(
            spec,
            name,
            "spec: Forbidden: spec is immutable after creation except "
            "resources.requests for bound claims",
        )


def _namespace(operation: str, new: Obj) -> None:
    if operation == "CREATE":
        new.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        new["status"] = {"phase": "Active"}
        labels = new["metadata"].setdefault("labels", {})
        labels["kubernetes.io/metadata.name"] = new["metadata"]["name"]


def _crd(spec: ResourceSpec, new: Obj) -> None:
    crd = new.get("spec") or {}
    expected = f"{(crd.get('names') or {}).get('plural')}.{crd.get('group')}"
    if new["metadata"]["name"] != expected:
        raise invalid(
            spec,
            _name(new),
            f"metadata.name: Invalid value: must be spec.names."
            f'plural+"."+spec.group ({expected!r})',
        )
    if not crd.get("versions"):
        raise invalid(spec, _name(new), "spec.versions: Required value")
    if crd.get("scope") not in ("Namespaced", "Cluster"):
        raise invalid(spec, _name(new), "spec.scope: Unsupported value")
