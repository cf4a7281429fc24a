"""The `scale` subresource (`kubectl scale`, autoscalers): an `autoscaling/v1` Scale view of
an object whose kind declares one (a CRD's `subresources.scale`, StatefulSets).

Reading gives `spec.replicas` from the kind's specReplicasPath, `status.replicas` from its
statusReplicasPath and `status.selector` from its labelSelectorPath (a LabelSelector object
is rendered as a selector string, as the API server does for StatefulSets). Writing a Scale
changes only the object's specReplicasPath, like the API server; the object's
`resourceVersion` in the Scale's metadata is a precondition.
"""

from __future__ import annotations

import copy
from typing import Any

from tests.k8s.harness.resources import ResourceSpec, ScalePaths
from tests.k8s.harness.store import ApiError, Obj

SCALE_API_VERSION = "autoscaling/v1"


def _path(dotted: str) -> list[str]:
    # A CRD's scale paths are JSON paths restricted to `.a.b.c` (apiextensions validation).
    return [part for part in dotted.split(".") if part]


def read_path(obj: Any, dotted: str) -> Any:
    for part in _path(dotted):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def _write_path(obj: Obj, dotted: str, value: Any) -> None:
    parts = _path(dotted)
    for part in parts[:-1]:
        child = obj.get(part)
        if not isinstance(child, dict):
            child = obj[part] = {}
        obj = child
    obj[parts[-1]] = value


def selector_string(selector: Any) -> str:
    """A LabelSelector object as a selector string (`a=b,c in (d,e),!f`); a string as is."""
    if isinstance(selector, str) or selector is None:
        return selector or ""
    terms = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In":
            terms.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            terms.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            terms.append(str(key))
        elif op == "DoesNotExist":
            terms.append(f"!{key}")
    return ",".join(terms)


def paths_of(spec: ResourceSpec) -> ScalePaths:
    if spec.scale is None:
        raise ApiError(
            404, "NotFound", f"{spec.plural}/scale: {spec.kind} has no scale subresource"
        )
    return spec.scale


def scale_of(spec: ResourceSpec, obj: Obj) -> Obj:
    paths = paths_of(spec)
    meta = obj["metadata"]
    status: dict[str, Any] = {"replicas": int(read_path(obj, paths.status_replicas) or 0)}
    if paths.label_selector:
        selector = selector_string(read_path(obj, paths.label_selector))
        if selector:
            status["selector"] = selector
    return {
        "apiVersion": SCALE_API_VERSION,
        "kind": "Scale",
        "metadata": {
            key: meta[key]
            for key in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if key in meta
        },
        "spec": {"replicas": int(read_path(obj, paths.spec_replicas) or 0)},
        "status": status,
    }


def replicas_of(scale: Any) -> int:
    """The replica count a written Scale asks for; 422 unless a whole number >= 0."""
    if not isinstance(scale, dict) or scale.get("kind", "Scale") != "Scale":
        raise ApiError(400, "BadRequest", "the body of a scale write must be a Scale object")
    replicas = (scale.get("spec") or {}).get("replicas")
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
        raise ApiError(
            422,
            "Invalid",
            f'Scale.autoscaling "{(scale.get("metadata") or {}).get("name", "")}" is invalid: '
            f"spec.replicas: Invalid value: {replicas!r}: must be greater than or equal to 0",
        )
    return replicas


def with_replicas(spec: ResourceSpec, obj: Obj, replicas: int) -> Obj:
    new = copy.deepcopy(obj)
    _write_path(new, paths_of(spec).spec_replicas, replicas)
    return new
