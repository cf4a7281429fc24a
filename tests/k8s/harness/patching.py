"""The three PATCH flavours of the Kubernetes API, on plain JSON values.

kmock 0.8 merges every PATCH body into the object as a dict, whatever its content type; kopf
sends JSON patches (a list of operations with a `test` on `metadata.resourceVersion`), which
kmock cannot apply. The emulated API server uses these instead:

- `merge_patch`: RFC 7386 (`application/merge-patch+json`), what kopf and the custom-objects
  client use;
- `json_patch`: RFC 6902 (`application/json-patch+json`);
- `strategic_merge_patch`: an approximation of Kubernetes' strategic merge patch (the Python
  client's default for built-in kinds): merge-keyed lists for the common fields (containers,
  env, volumes, ports, conditions, ownerReferences, ...), `finalizers` merged as a set, and the
  `$patch: delete|replace` and `$deleteFromPrimitiveList/` directives. Every other list is
  replaced, as for merge patches.
"""

from __future__ import annotations

import copy
from typing import Any


class PatchError(ValueError):
    """A patch that cannot be applied. `test_failed` marks a failed JSON-patch `test`."""

    def __init__(self, message: str, *, test_failed: bool = False) -> None:
        super().__init__(message)
        self.test_failed = test_failed


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# ---- RFC 6902 --------------------------------------------------------------------------------


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"JSON pointer must start with '/': {path!r}")
    return [_unescape(t) for t in path[1:].split("/")]


def _index(container: list[Any], token: str, *, for_add: bool) -> int:
    if for_add and token == "-":
        return len(container)
    if not token.isdigit() or (token != "0" and token.startswith("0")):
        raise PatchError(f"invalid array index {token!r}")
    idx = int(token)
    limit = len(container) if for_add else len(container) - 1
    if idx > limit:
        raise PatchError(f"array index {idx} out of range")
    return idx


def _parent(doc: Any, tokens: list[str]) -> Any:
    current = doc
    for token in tokens[:-1]:
        if isinstance(current, dict):
            if token not in current:
                raise PatchError(f"path segment {token!r} does not exist")
            current = current[token]
        elif isinstance(current, list):
            current = current[_index(current, token, for_add=False)]
        else:
            raise PatchError(f"path segment {token!r} is not inside an object or array")
    return current


def _get(doc: Any, path: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return doc
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"path {path!r} does not exist")
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, for_add=False)]
    raise PatchError(f"path {path!r} does not exist")


def _add(doc: Any, path: str, value: Any) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return value
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, for_add=True), value)
    else:
        raise PatchError(f"cannot add at {path!r}")
    return doc


def _remove(doc: Any, path: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"path {path!r} does not exist")
        del parent[last]
    elif isinstance(parent, list):
        del parent[_index(parent, last, for_add=False)]
    else:
        raise PatchError(f"cannot remove {path!r}")
    return doc


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902 on a deep copy of `target`; the original is never modified."""
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations")
    doc = copy.deepcopy(target)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError(f"malformed JSON patch operation: {op!r}")
        kind, path = op["op"], op["path"]
        if kind in ("add", "replace", "test") and "value" not in op:
            raise PatchError(f"JSON patch {kind!r} needs a value: {op!r}")
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind == "remove":
            doc = _remove(doc, path)
        elif kind == "replace":
            _get(doc, path)  # must exist
            doc = (
                _add(_remove(doc, path), path, copy.deepcopy(op["value"]))
                if _pointer(path)
                else copy.deepcopy(op["value"])
            )
        elif kind == "move":
            value = _get(doc, op["from"])
            doc = _add(_remove(doc, op["from"]), path, value)
        elif kind == "copy":
            doc = _add(doc, path, copy.deepcopy(_get(doc, op["from"])))
        elif kind == "test":
            try:
                actual = _get(doc, path)
            except PatchError:
                raise PatchError(
                    f"test failed: {path!r} does not exist", test_failed=True
                ) from None
            if actual != op["value"]:
                raise PatchError(
                    f"test failed: {path!r} is {actual!r}, not {op['value']!r}", test_failed=True
                )
        else:
            raise PatchError(f"unknown JSON patch operation {kind!r}")
    return doc


# ---- strategic merge patch (approximation) ---------------------------------------------------

_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "conditions": "type",
    "ownerReferences": "uid",
    "hostAliases": "ip",
    "ports": "",  # containerPort for container ports, port for Service ports (decided per item)
}
_SET_LISTS = {"finalizers"}


def _merge_key(field: str, items: list[Any]) -> str:
    key = _MERGE_KEYS[field]
    if key:
        return key
    return (
        "containerPort"
        if any(isinstance(i, dict) and "containerPort" in i for i in items)
        else "port"
    )


def _merge_list(field: str, old: list[Any], patch: list[Any]) -> list[Any]:
    key = _merge_key(field, [*old, *patch])
    result = copy.deepcopy(old)
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            result.append(copy.deepcopy(item))
            continue
        directive = item.get("$patch")
        pos = next(
            (i for i, o in enumerate(result) if isinstance(o, dict) and o.get(key) == item[key]),
            None,
        )
        if directive == "delete":
            if pos is not None:
                del result[pos]
        elif pos is None:
            result.append({k: copy.deepcopy(v) for k, v in item.items() if k != "$patch"})
        elif directive == "replace":
            result[pos] = {k: copy.deepcopy(v) for k, v in item.items() if k != "$patch"}
        else:
            result[pos] = strategic_merge_patch(result[pos], item)
    return result


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            drop = set(map(str, value or []))
            result[field] = [v for v in result.get(field) or [] if str(v) not in drop]
            continue
        old = result.get(key)
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list) and key in _MERGE_KEYS and isinstance(old, list):
            result[key] = _merge_list(key, old, value)
        elif isinstance(value, list) and key in _SET_LISTS and isinstance(old, list):
            result[key] = [*old, *(v for v in value if v not in old)]
        elif isinstance(value, dict):
            merged = strategic_merge_patch(old, value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = copy.deepcopy(value)
    return result
