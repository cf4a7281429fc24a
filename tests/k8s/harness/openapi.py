"""The OpenAPI documents kubectl reads before it writes (`kubectl apply`, `create`, `edit`,
`explain`), generated from the served kinds (the registry: built-in kinds and the CRDs).

- `/openapi/v3`: the index of group-versions; `/openapi/v3/api/v1`,
  `/openapi/v3/apis/<group>/<version>`: each one's paths (every operation with its
  `x-kubernetes-group-version-kind`) and, for custom resources, the CRD's schema as a
  component. kubectl (1.27+) looks for the `fieldValidation` parameter on a kind's PATCH
  operation; finding it, it leaves validation to the server and sends
  `fieldValidation=Strict` (harness/fieldvalidation.py checks it for custom resources).
  Built-in kinds get no schema (the harness has none) and their PATCH operations list no
  request body, so kubectl computes strategic merge patches from its compiled-in types, as
  it does for any kind the document does not describe.
- `/openapi/v2`: clients ask for protobuf only (gnostic's `openapi.v2.Document`); served as
  a document with no definitions, so an older kubectl's client-side validation (the only
  kind it has) finds no schema and checks nothing - the same as for a CRD without a schema.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from tests.k8s.harness.resources import ResourceSpec

TITLE = "Kubernetes (emulated by tests/k8s/harness)"
VERSION = "v1.26.4"
# Clients ask for `application/com.github.proto-openapi.spec.v2@v1.0+protobuf`; that is
# not a media type Go's mime parser accepts in a Content-Type (kubectl 1.20 then fails the
# request), so the answer says only what it is: bytes.
V2_CONTENT_TYPE = "application/octet-stream"
PATCH_SCHEMA = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch"

_QUERY = {
    "fieldValidation": "Ignore, Warn or Strict: what the server does with unknown or "
    "duplicate fields in the body",
    "fieldManager": "the name of the actor making the change",
    "dryRun": "All: validate and answer, change nothing",
}


def group_version_path(spec: ResourceSpec) -> str:
    """The index key of a kind's group-version: `api/v1`, `apis/apps/v1`."""
    return f"apis/{spec.group}/{spec.version}" if spec.group else f"api/{spec.version}"


def schema_name(spec: ResourceSpec) -> str:
    """Kubernetes' component name: the group reversed (`dev.raftkv.v1alpha1.RaftCluster`)."""
    group = ".".join(reversed(spec.group.split("."))) if spec.group else "io.k8s.api.core"
    return f"{group}.{spec.version}.{spec.kind}"


def _gvk(spec: ResourceSpec) -> dict[str, str]:
    return {"group": spec.group, "version": spec.version, "kind": spec.kind}


def _params(*names: str) -> list[dict[str, Any]]:
    return [
        {"name": n, "in": "query", "description": _QUERY[n], "schema": {"type": "string"}}
        for n in names
    ]


def _operation(
    spec: ResourceSpec, action: str, op_id: str, *, body: list[str] | None = None
) -> dict[str, Any]:
    content: dict[str, Any] = {}
    if spec.schema is not None:
        content = {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{schema_name(spec)}"}}
        }
    operation: dict[str, Any] = {
        "operationId": f"{op_id}{spec.kind}",
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": _gvk(spec),
        "responses": {"200": {"description": "OK", "content": content}},
    }
    if action in ("post", "put", "patch"):
        operation["parameters"] = _params("dryRun", "fieldManager", "fieldValidation")
    if body:
        ref = PATCH_SCHEMA if action == "patch" else schema_name(spec)
        operation["requestBody"] = {
            "required": True,
            "content": {t: {"schema": {"$ref": f"#/components/schemas/{ref}"}} for t in body},
        }
    return operation


def _paths(spec: ResourceSpec) -> dict[str, Any]:
    prefix = f"/{group_version_path(spec)}"
    collection = (
        f"{prefix}/namespaces/{{namespace}}/{spec.plural}"
        if spec.namespaced
        else f"{prefix}/{spec.plural}"
    )
    custom = spec.schema is not None
    # A custom resource takes merge, JSON and apply patches; a built-in kind's patch body
    # is left undescribed (see the module's docstring).
    patch_types = (
        [
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/apply-patch+yaml",
        ]
        if custom
        else None
    )
    write_body = ["application/json"] if custom else None
    item: dict[str, Any] = {
        "get": _operation(spec, "get", "read"),
        "put": _operation(spec, "put", "replace", body=write_body),
        "patch": _operation(spec, "patch", "patch", body=patch_types),
        "delete": _operation(spec, "delete", "delete"),
    }
    paths = {
        collection: {
            "get": _operation(spec, "list", "list"),
            "post": _operation(spec, "post", "create", body=write_body),
        },
        f"{collection}/{{name}}": item,
    }
    for sub in sorted(spec.subresources):
        operations = {"get": _operation(spec, "get", f"read{sub.capitalize()}")}
        if sub != "log":  # a pod's log is read only
            operations["patch"] = _operation(spec, "patch", f"patch{sub.capitalize()}")
        paths[f"{collection}/{{name}}/{sub}"] = operations
    return paths


def group_version_document(specs: Iterable[ResourceSpec], key: str) -> dict[str, Any] | None:
    """The document of group-version `key` (`api/v1`, `apis/raftkv.dev/v1alpha1`); None
    when nothing is served there."""
    chosen = sorted((s for s in specs if group_version_path(s) == key), key=lambda s: s.plural)
    if not chosen:
        return None
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {
        PATCH_SCHEMA: {
            "type": "object",
            "description": "The body of a PATCH request: its format is its Content-Type.",
        }
    }
    for spec in chosen:
        paths.update(_paths(spec))
        if spec.schema is not None:
            schema = json.loads(json.dumps(spec.schema))
            schema["x-kubernetes-group-version-kind"] = [_gvk(spec)]
            schemas[schema_name(spec)] = schema
    return {
        "openapi": "3.0.0",
        "info": {"title": TITLE, "version": VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def _digest(document: dict[str, Any]) -> str:
    return hashlib.sha512(json.dumps(document, sort_keys=True).encode()).hexdigest().upper()


def index_document(specs: Iterable[ResourceSpec]) -> dict[str, Any]:
    """`/openapi/v3`: every served group-version with the URL (and content hash, which
    clients use to cache) of its document."""
    all_specs = list(specs)
    entries: dict[str, Any] = {}
    for key in sorted({group_version_path(s) for s in all_specs}):
        document = group_version_document(all_specs, key)
        assert document is not None
        entries[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={_digest(document)}"}
    return {"paths": entries}


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (strings and messages)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def v2_document() -> bytes:
    """gnostic `openapi.v2.Document{swagger: "2.0", info: {title, version}, paths: {}}` in
    protobuf: Document.swagger = 1, .info = 2, .paths = 8; Info.title = 1, .version = 2."""
    info = _field(1, TITLE.encode()) + _field(2, VERSION.encode())
    return _field(1, b"2.0") + _field(2, info) + _field(8, b"")
