"""Server-side field validation (`?fieldValidation=Strict`, what kubectl sends by default
once the OpenAPI document says the server supports it) for custom resources: a field their
CRD schema does not declare is an error, 400 `strict decoding error: unknown field "..."`,
as kube-apiserver answers. `Ignore` and `Warn` accept the body (a real server drops the
field, and with Warn says so in a Warning header; the harness keeps it, see README.md).

Checked: the body of a create or replace, and the body of a merge patch (its keys are the
fields it sets). Built-in kinds are not checked: the harness has no schemas for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tests.k8s.harness.resources import ResourceSpec
from tests.k8s.harness.store import ApiError

_ALWAYS_KNOWN = frozenset({"apiVersion", "kind", "metadata"})


def unknown_fields(schema: Mapping[str, Any], value: Any, path: str = "") -> list[str]:
    """The paths (`spec.foo`, `spec.items[0].bar`) of fields `schema` does not declare."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    found: list[str] = []
    properties = schema.get("properties")
    extra = schema.get("additionalProperties")
    if isinstance(value, dict) and isinstance(properties, dict):
        for name, child in value.items():
            where = f"{path}.{name}" if path else str(name)
            if not path and name in _ALWAYS_KNOWN:
                continue
            if name not in properties:
                found.append(where)
            else:
                found += unknown_fields(properties[name], child, where)
    elif isinstance(value, dict) and isinstance(extra, dict):
        for name, child in value.items():
            found += unknown_fields(extra, child, f"{path}[{name}]")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            found += unknown_fields(schema["items"], item, f"{path}[{i}]")
    return found


def check(spec: ResourceSpec, body: Any, directive: str | None) -> None:
    """400 when `directive` is Strict and `body` has fields `spec`'s schema lacks."""
    if directive != "Strict" or spec.schema is None or not isinstance(body, dict):
        return
    unknown = unknown_fields(spec.schema, body)
    if unknown:
        raise ApiError(
            400,
            "BadRequest",
            "strict decoding error: " + ", ".join(f'unknown field "{u}"' for u in unknown),
        )
