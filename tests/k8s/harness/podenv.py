"""How the kubelet turns a container spec into a process: environment, `$(VAR)` expansion,
downward API, and the rewriting of volume mount paths to the host directories behind them.

Pure functions; the kubelet supplies lookups for ConfigMaps and Secrets. A missing
non-optional reference raises `ContainerConfigError` (CreateContainerConfigError in
Kubernetes): the container is not started and the kubelet retries.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

Obj = dict[str, Any]
Lookup = Callable[[str], "Obj | None"]  # name -> ConfigMap/Secret object in the pod's namespace

_VAR_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")


class ContainerConfigError(Exception):
    """The container cannot be configured (CreateContainerConfigError)."""


def expand_vars(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: defined variables are substituted, undefined references
    stay as written, and `$$` escapes a `$`."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "$" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = text.find(")", i + 2)
                name = text[i + 2 : end] if end != -1 else ""
                if end != -1 and _VAR_NAME.fullmatch(name):
                    out.append(env[name] if name in env else text[i : end + 1])
                    i = end + 1
                    continue
        out.append(ch)
        i += 1
    return "".join(out)


def field_ref(pod: Obj, path: str) -> str:
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
        "status.hostIP": status.get("hostIP"),
        "status.podIP": status.get("podIP"),
        "status.hostIPs": ",".join(a.get("ip", "") for a in status.get("hostIPs") or []),
        "status.podIPs": ",".join(a.get("ip", "") for a in status.get("podIPs") or []),
    }
    if path in ("metadata.labels", "metadata.annotations"):
        values = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(values.items()))
    if path not in simple:
        raise ContainerConfigError(f"fieldRef {path!r} is not supported")
    return "" if simple[path] is None else str(simple[path])


_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eE][+-]?[0-9]+|[KMGTPE]i|[numkMGTPE])?$")
_SUFFIX: dict[str, Decimal | int] = {
    "": 1,
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}


def parse_quantity(value: Any) -> Decimal:
    m = _QUANTITY.match(str(value).strip())
    if not m:
        raise ContainerConfigError(f"invalid quantity {value!r}")
    number, suffix = Decimal(m.group(1)), m.group(2) or ""
    if suffix[:1] in ("e", "E"):
        return number * Decimal(10) ** int(suffix[1:])
    return number * Decimal(str(_SUFFIX[suffix]))


NODE_ALLOCATABLE = {"cpu": "2", "memory": "8Gi", "ephemeral-storage": "50Gi"}


def resource_field_ref(container: Obj, ref: Obj) -> str:
    resource = ref.get("resource", "")
    kind, _, name = resource.partition(".")
    if kind not in ("limits", "requests") or not name:
        raise ContainerConfigError(f"resourceFieldRef {resource!r} is not supported")
    resources = container.get("resources") or {}
    raw = (resources.get(kind) or {}).get(name)
    if raw is None and kind == "requests":
        raw = (resources.get("limits") or {}).get(name)
    if raw is None:
        raw = NODE_ALLOCATABLE.get(name, "0") if kind == "limits" else "0"
    divisor = parse_quantity(ref.get("divisor", "1"))
    return str(math.ceil(parse_quantity(raw) / divisor))


def _key_ref(kind: str, ref: Obj, lookup: Lookup, decode: bool) -> str | None:
    name, key, optional = ref.get("name", ""), ref.get("key", ""), bool(ref.get("optional"))
    obj = lookup(name)
    if obj is None:
        if optional:
            return None
        raise ContainerConfigError(f'{kind} "{name}" not found')
    data = obj.get("data") or {}
    if key not in data:
        if not decode and key in (obj.get("binaryData") or {}):
            return base64.b64decode(obj["binaryData"][key]).decode(errors="replace")
        if optional:
            return None
        raise ContainerConfigError(f"couldn't find key {key} in {kind} {name}")
    value = data[key]
    return base64.b64decode(value).decode(errors="replace") if decode else str(value)


def resolve_env(
    container: Obj,
    pod: Obj,
    configmaps: Lookup,
    secrets: Lookup,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The container's environment: `base`, then envFrom, then env (later wins); each env
    value may reference earlier variables with `$(NAME)`."""
    env: dict[str, str] = dict(base or {})
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            ref, lookup, decode, kind = source["configMapRef"], configmaps, False, "configmap"
        elif "secretRef" in source:
            ref, lookup, decode, kind = source["secretRef"], secrets, True, "secret"
        else:
            raise ContainerConfigError(f"unsupported envFrom source {source!r}")
        obj = lookup(ref.get("name", ""))
        if obj is None:
            if ref.get("optional"):
                continue
            raise ContainerConfigError(f'{kind} "{ref.get("name")}" not found')
        for key, raw in (obj.get("data") or {}).items():
            env[prefix + key] = (
                base64.b64decode(raw).decode(errors="replace") if decode else str(raw)
            )
    for var in container.get("env") or []:
        name = var.get("name")
        if not name:
            raise ContainerConfigError(f"env entry without a name: {var!r}")
        if "valueFrom" not in var:
            env[name] = expand_vars(str(var.get("value", "")), env)
            continue
        source = var["valueFrom"]
        value: str | None
        if "fieldRef" in source:
            value = field_ref(pod, source["fieldRef"].get("fieldPath", ""))
        elif "resourceFieldRef" in source:
            value = resource_field_ref(container, source["resourceFieldRef"])
        elif "configMapKeyRef" in source:
            value = _key_ref("configmap", source["configMapKeyRef"], configmaps, False)
        elif "secretKeyRef" in source:
            value = _key_ref("secret", source["secretKeyRef"], secrets, True)
        else:
            raise ContainerConfigError(f"unsupported valueFrom {source!r}")
        if value is not None:
            env[name] = value
    return env


def mount_rewriter(mounts: Sequence[tuple[str, str]]) -> Callable[[str], str]:
    """A function replacing each mountPath (as a whole path prefix) by its host directory.

    Processes share the host filesystem here, so `--data-dir=/var/lib/raftkv/data` must
    become `<pvc dir>/data`. A mountPath matches only as a path: not preceded by a path
    character and followed by `/`, the end, or a separator; one pass, longest path first, so
    replaced text is never rewritten again.
    """
    table = {mount.rstrip("/") or "/": host for mount, host in mounts if mount.startswith("/")}
    if not table:
        return lambda text: text
    alternatives = "|".join(re.escape(m) for m in sorted(table, key=len, reverse=True))
    pattern = re.compile(rf"(?<![\w./-])({alternatives})(?=$|[/\s'\"=:;,)])")
    return lambda text: pattern.sub(lambda m: table[m.group(1)], text)


def command_line(
    container: Obj, image_entrypoints: Mapping[str, Sequence[str]], env: Mapping[str, str]
) -> list[str]:
    """command + args with `$(VAR)` expanded; an image's entrypoint when command is unset."""
    command = container.get("command")
    if not command:
        image = str(container.get("image", ""))
        command = entrypoint_for_image(image, image_entrypoints)
    args = container.get("args") or []
    return [expand_vars(str(part), env) for part in [*command, *args]]


def entrypoint_for_image(image: str, image_entrypoints: Mapping[str, Sequence[str]]) -> list[str]:
    repository = image.split("@", 1)[0]
    last = repository.rsplit("/", 1)[-1]
    if ":" in last:
        repository = repository[: repository.rfind(":")]
    short = repository.rsplit("/", 1)[-1]
    for candidate in (image, repository, short):
        if candidate in image_entrypoints:
            return list(image_entrypoints[candidate])
    raise ContainerConfigError(
        f"image {image!r} has no command and no known entrypoint "
        f"(known: {sorted(image_entrypoints)})"
    )
