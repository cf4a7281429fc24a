"""Static analysis: which Kubernetes API permissions does the operator's code use?

It reads operator/raftkv_operator/*.py (never imports it) and finds:
- kubernetes client calls (`api.patch_namespaced_pod(...)`, or the method handed to a runner
  with its arguments, `run(api.patch_namespaced_pod, name, ns, body)`): its HTTP verb and path
  are read from the kubernetes package's own generated code, so every client method maps to
  (apiGroup, resource[/subresource], verb) without a hand-kept table; a `list_*` method
  passed to `Watch().stream(...)` is a `watch`;
- CustomObjectsApi calls, whose group and plural are arguments: resolved from literals and
  module-level string constants of the package;
- kopf handlers (`@kopf.on.create(...)`, `@kopf.timer`, `@kopf.daemon`, `@kopf.index`, ...):
  list + watch on the resource, and patch (progress, finalizers, status) for handlers that
  keep state;
- kopf event posting (`kopf.event/info/warn/exception`): create on core/v1 events.
What it cannot resolve it reports, so that a test can fail instead of guessing.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

OPERATOR_DIR = Path(__file__).resolve().parents[3] / "operator" / "raftkv_operator"


@dataclass(frozen=True, order=True)
class Use:
    """One permission the code needs, and where it was found."""

    api_group: str
    resource: str
    verb: str
    where: str  # "file.py:line"


@dataclass(frozen=True)
class Endpoint:
    api_group: str  # "" for core; "{group}" when it is an argument (custom objects)
    resource: str  # may contain "{plural}"
    verb: str


_HTTP_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch"}
_SERIALIZE = re.compile(
    r"^    def _(\w+)_serialize\(|^\s+method='([A-Z]+)',|^\s+resource_path='([^']+)',", re.M
)


def _endpoint(http: str, path: str) -> Endpoint | None:
    """(group, resource, verb) of one REST path, e.g. PATCH /api/v1/namespaces/{ns}/pods/{name}."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"]:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, rest = parts[1], parts[3:]
    else:
        return None
    if rest[:1] == ["watch"]:  # deprecated watch paths
        rest = rest[1:]
    if len(rest) >= 2 and rest[0] == "namespaces" and rest[1] == "{namespace}":
        rest = rest[2:]
    if not rest:
        return None
    resource, named, sub = rest[0], len(rest) >= 2, rest[2:]
    if sub:
        resource = f"{resource}/{sub[0]}"
    if http == "GET":
        verb = "get" if named else "list"
    elif http == "DELETE":
        verb = "delete" if named else "deletecollection"
    elif http in _HTTP_VERBS:
        verb = _HTTP_VERBS[http]
    else:
        return None
    return Endpoint(group, resource, verb)


@functools.cache
def client_methods() -> dict[str, frozenset[Endpoint]]:
    """Every kubernetes client API method name -> the endpoints it may call."""
    import kubernetes.client.api as api_package

    table: dict[str, set[Endpoint]] = {}
    for module_path in sorted(Path(api_package.__path__[0]).glob("*_api.py")):
        method = http = None
        for found in _SERIALIZE.finditer(module_path.read_text()):
            if found[1]:
                method, http = found[1], None
            elif found[2] and method:
                http = found[2]
            elif found[3] and method and http:
                endpoint = _endpoint(http, found[3])
                if endpoint is not None:
                    for name in (method, f"{method}_with_http_info"):
                        table.setdefault(name, set()).add(endpoint)
                method = http = None
    return {name: frozenset(endpoints) for name, endpoints in table.items()}


# ---- the operator's code ---------------------------------------------------------------------


def operator_sources() -> list[Path]:
    return sorted(OPERATOR_DIR.glob("*.py"))


def _string_constants(trees: Iterable[ast.Module]) -> dict[str, str]:
    """Module-level `NAME = "literal"` (and f-strings of such names) across the package."""
    constants: dict[str, str] = {}
    pending: list[tuple[str, ast.expr]] = []
    for tree in trees:
        for node in tree.body:
            targets: list[ast.expr] = []
            value: ast.expr | None = None
            if isinstance(node, ast.Assign):
                targets, value = list(node.targets), node.value
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                targets, value = [node.target], node.value
            for target in targets:
                if isinstance(target, ast.Name) and value is not None:
                    pending.append((target.id, value))
    for _ in range(3):  # constants defined from other constants
        for name, value in pending:
            resolved = _resolve(value, constants)
            if resolved is not None:
                constants.setdefault(name, resolved)
    return constants


def _resolve(node: ast.expr | None, constants: dict[str, str]) -> str | None:
    if node is None:
        return None
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    if isinstance(node, ast.Attribute):  # models.API_GROUP
        return constants.get(node.attr)
    if isinstance(node, ast.JoinedStr):
        pieces = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                pieces.append(str(value.value))
            elif isinstance(value, ast.FormattedValue):
                piece = _resolve(value.value, constants)
                if piece is None:
                    return None
                pieces.append(piece)
        return "".join(pieces)
    return None


_CUSTOM_OBJECT_ARGS = {
    # method-name prefix -> positional names
    "namespaced": ("group", "version", "namespace", "plural"),
    "cluster": ("group", "version", "plural"),
}

# kopf decorators: which verbs a handler of that kind makes kopf use on its resource.
_KOPF_STATEFUL = ("list", "watch", "patch")
_KOPF_WATCH_ONLY = ("list", "watch")
_KOPF_DECORATORS = {
    "create": _KOPF_STATEFUL,
    "update": _KOPF_STATEFUL,
    "delete": _KOPF_STATEFUL,
    "resume": _KOPF_STATEFUL,
    "field": _KOPF_STATEFUL,
    "timer": _KOPF_STATEFUL,
    "daemon": _KOPF_STATEFUL,
    "event": _KOPF_WATCH_ONLY,
    "index": _KOPF_WATCH_ONLY,
}
_KOPF_STATUS_WRITERS = {"create", "update", "delete", "resume", "field", "timer", "daemon"}
_KOPF_EVENT_POSTERS = {"event", "info", "warn", "exception"}
_KOPF_OPERATOR_WIDE = {"startup", "cleanup", "login", "probe", "validate", "mutate"}


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    if isinstance(node, ast.Call):
        return _dotted(node.func)
    return ""


@dataclass
class Scan:
    uses: list[Use]
    unresolved: list[str]  # "file:line: what could not be resolved"


def _kind_to_plural(kind: str, crd_kinds: dict[str, tuple[str, str]]) -> tuple[str, str] | None:
    return crd_kinds.get(kind.lower())


def _kopf_resource(
    call: ast.Call, constants: dict[str, str], crd_kinds: dict[str, tuple[str, str]]
) -> tuple[str, str] | None:
    """(group, plural) of a kopf resource spec: ('g', 'v', 'p'), ('g', 'p'), ('p.g'), ('p')."""
    args = [_resolve(a, constants) for a in call.args]
    keywords = {k.arg: _resolve(k.value, constants) for k in call.keywords if k.arg}
    if any(a is None for a in args):
        return None
    strings = [a for a in args if a is not None]
    group = keywords.get("group")
    plural = keywords.get("plural") or keywords.get("kind")
    if plural is None:
        if len(strings) == 3:
            group, plural = strings[0], strings[2]
        elif len(strings) == 2:
            group, plural = (strings[0].split("/")[0], strings[1])
        elif len(strings) == 1:
            name = strings[0]
            if "." in name:
                plural, group = name.split(".", 1)
            else:
                plural = name
        else:
            return None
    if plural is None:
        return None
    known = _kind_to_plural(plural, crd_kinds)
    if known is not None:
        return known
    if group in (None, "v1"):
        group = ""
    return group, plural.lower()


def scan(
    sources: Iterable[Path] | None = None, crd_kinds: dict[str, tuple[str, str]] | None = None
) -> Scan:
    """Every permission the given sources (default: the operator package) use."""
    paths = list(sources if sources is not None else operator_sources())
    trees = {path: ast.parse(path.read_text(), filename=str(path)) for path in paths}
    constants = _string_constants(trees.values())
    methods = client_methods()
    kinds = crd_kinds or {}
    uses: list[Use] = []
    unresolved: list[str] = []
    for path, tree in trees.items():
        for node in ast.walk(tree):
            where = f"{path.name}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Call):
                uses.extend(_call_uses(node, where, constants, methods, unresolved, kinds))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for decorator in node.decorator_list:
                    if isinstance(decorator, ast.Call):
                        uses.extend(_decorator_uses(decorator, where, constants, unresolved, kinds))
    return Scan(sorted(set(uses)), unresolved)


def _call_uses(
    call: ast.Call,
    where: str,
    constants: dict[str, str],
    methods: dict[str, frozenset[Endpoint]],
    unresolved: list[str],
    kinds: dict[str, tuple[str, str]],
) -> Iterator[Use]:
    name = _dotted(call.func)
    method = name.rsplit(".", 1)[-1]
    # kopf.event(...) / kopf.info(...)
    if name in {f"kopf.{poster}" for poster in _KOPF_EVENT_POSTERS}:
        yield Use("", "events", "create", where)
        return
    # Watch().stream(api.list_namespaced_pod, ...) -> watch
    if method == "stream" and call.args:
        listed = _dotted(call.args[0]).rsplit(".", 1)[-1]
        for endpoint in methods.get(listed, ()):
            if endpoint.verb == "list":
                yield from _endpoint_uses(endpoint, "watch", call, where, constants, unresolved)
        return
    # A client method passed to a runner with its arguments: run(api.patch_namespaced_pod, ...)
    for index, argument in enumerate(call.args):
        if isinstance(argument, ast.Attribute) and argument.attr in methods:
            deferred = ast.Call(func=argument, args=call.args[index + 1 :], keywords=call.keywords)
            yield from _call_uses(deferred, where, constants, methods, unresolved, kinds)
            return
    if not isinstance(call.func, ast.Attribute) or method not in methods:
        return
    for endpoint in methods[method]:
        verb = endpoint.verb
        if verb == "list" and any(
            k.arg == "watch" and isinstance(k.value, ast.Constant) and k.value.value is True
            for k in call.keywords
        ):
            verb = "watch"
        yield from _endpoint_uses(endpoint, verb, call, where, constants, unresolved)


def _endpoint_uses(
    endpoint: Endpoint,
    verb: str,
    call: ast.Call,
    where: str,
    constants: dict[str, str],
    unresolved: list[str],
) -> Iterator[Use]:
    if "{" not in endpoint.api_group and "{" not in endpoint.resource:
        yield Use(endpoint.api_group, endpoint.resource, verb, where)
        return
    method = _dotted(call.func).rsplit(".", 1)[-1]
    positional = _CUSTOM_OBJECT_ARGS["namespaced" if "namespaced" in method else "cluster"]
    values: dict[str, str | None] = {}
    for index, arg_name in enumerate(positional):
        if index < len(call.args):
            values[arg_name] = _resolve(call.args[index], constants)
    for keyword in call.keywords:
        if keyword.arg:
            values[keyword.arg] = _resolve(keyword.value, constants)
    group, plural = values.get("group"), values.get("plural")
    if group is None or plural is None:
        unresolved.append(f"{where}: {method}(...): group/plural not a literal or constant")
        return
    resource = endpoint.resource.replace("{plural}", plural)
    yield Use(endpoint.api_group.replace("{group}", group), resource, verb, where)


def _decorator_uses(
    decorator: ast.Call,
    where: str,
    constants: dict[str, str],
    unresolved: list[str],
    kinds: dict[str, tuple[str, str]],
) -> Iterator[Use]:
    name = _dotted(decorator.func)
    if not name.startswith("kopf."):
        return
    handler = name.rsplit(".", 1)[-1]
    if handler in _KOPF_OPERATOR_WIDE or handler == "subhandler" or handler not in _KOPF_DECORATORS:
        return
    resource = _kopf_resource(decorator, constants, kinds)
    if resource is None:
        unresolved.append(f"{where}: @{name}(...): resource not a literal or constant")
        return
    group, plural = resource
    # kopf posts its handlers' log messages as Events on the object.
    yield Use("", "events", "create", where)
    for verb in _KOPF_DECORATORS[handler]:
        yield Use(group, plural, verb, where)
    if handler in _KOPF_STATUS_WRITERS and group not in ("",):
        yield Use(group, f"{plural}/status", "patch", where)
