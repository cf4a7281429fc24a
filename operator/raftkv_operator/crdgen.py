"""Generate the CustomResourceDefinitions from the pydantic models.

    python -m raftkv_operator.crdgen crds/            # write crds/*.yaml (`make crds`)
    python -m raftkv_operator.crdgen crds/ --check    # exit 1 if the files are stale

Pydantic's JSON Schema is turned into a Kubernetes *structural* schema: `$ref`s inlined,
`null` alternatives dropped (an unset field is omitted, never null), titles dropped,
`additionalProperties: false` dropped (the API server prunes and, with kubectl's default
strict field validation, rejects unknown fields), free-form dicts turned into
`x-kubernetes-preserve-unknown-fields` subtrees. Anything the conversion does not know is
an error, and the result is checked against the structural-schema rules before it is written.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue, NoDefault
from pydantic_core import core_schema

from raftkv_operator.models import (
    DNS1035_LABEL_PATTERN,
    MAX_CLUSTER_NAME_LENGTH,
    TOP_LEVEL_MODELS,
    RaftCheckpoint,
    RaftCluster,
    ResourceInfo,
)

HEADER = "# Generated from operator/raftkv_operator/models.py by `make crds`. Do not edit.\n"

# Keywords a CRD's openAPIV3Schema may use (apiextensions.k8s.io/v1 JSONSchemaProps) that the
# generator emits. Anything else coming out of pydantic is a generator bug and fails loudly.
_KEY_ORDER = (
    "description",
    "type",
    "format",
    "enum",
    "default",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "pattern",
    "anyOf",
    "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "items",
    "additionalProperties",
    "properties",
    "required",
    "x-kubernetes-validations",
)
_ALLOWED_KEYS = frozenset(_KEY_ORDER)


class _KubeSchemaGenerator(GenerateJsonSchema):
    """Pydantic's generator, adjusted for Kubernetes: no nulls, no titles, factory defaults."""

    def nullable_schema(self, schema: core_schema.NullableSchema) -> JsonSchemaValue:
        # `X | None` means "may be omitted"; Kubernetes omits unset fields rather than nulls.
        return self.generate_inner(schema["schema"])

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def get_default_value(self, schema: core_schema.WithDefaultSchema) -> Any:
        factory = schema.get("default_factory")
        if factory is not None and not schema.get("default_factory_takes_data"):
            value = factory()  # type: ignore[call-arg]
        else:
            value = schema.get("default", NoDefault)
        return NoDefault if value is None else value


def _strip_empty(value: Any) -> Any:
    """A default as the API server should store it: no nulls, no empty lists/maps inside."""
    if isinstance(value, dict):
        items = {k: _strip_empty(v) for k, v in value.items()}
        return {k: v for k, v in items.items() if v is not None and v != [] and v != {}}
    if isinstance(value, list):
        return [_strip_empty(v) for v in value]
    return value


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Inline a `$ref` (siblings such as a field's description or default win)."""
    if "$ref" not in node:
        return dict(node)
    name = node["$ref"].rsplit("/", 1)[-1]
    merged = copy.deepcopy(defs[name])
    merged.update({k: v for k, v in node.items() if k != "$ref"})
    return _resolve(merged, defs)


def _ordered(node: dict[str, Any]) -> dict[str, Any]:
    return {k: node[k] for k in _KEY_ORDER if k in node}


def to_structural(
    node: dict[str, Any], defs: dict[str, Any], *, path: str = "", defaults: bool = True
) -> dict[str, Any]:
    """Convert one pydantic JSON-Schema node (and its children) to a structural schema node."""
    node = _resolve(node, defs)
    node.pop("title", None)
    if "description" in node:
        # Docstrings wrap; kubectl explain reflows anyway.
        node["description"] = " ".join(node["description"].split())
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if "default" in node:
        stripped = _strip_empty(node.pop("default"))
        if defaults and stripped is not None and stripped != []:
            node["default"] = stripped
    if node.get("additionalProperties") is False:
        del node["additionalProperties"]
    free_form = node.get("additionalProperties") in (True, {})
    if node == {} or (node.get("type") == "object" and free_form and "properties" not in node):
        node.pop("additionalProperties", None)
        node["type"] = "object"
        node["x-kubernetes-preserve-unknown-fields"] = True
    if "anyOf" in node and not node.get("x-kubernetes-int-or-string"):
        raise ValueError(f"{path or '<root>'}: unions are not structural: {node['anyOf']}")

    unknown = set(node) - _ALLOWED_KEYS
    if unknown:
        raise ValueError(f"{path or '<root>'}: keywords not supported in CRDs: {sorted(unknown)}")

    if "properties" in node:
        node["properties"] = {
            name: to_structural(child, defs, path=f"{path}.{name}", defaults=defaults)
            for name, child in node["properties"].items()
        }
    if "items" in node:
        node["items"] = to_structural(node["items"], defs, path=f"{path}[]", defaults=defaults)
    if isinstance(node.get("additionalProperties"), dict):
        node["additionalProperties"] = to_structural(
            node["additionalProperties"], defs, path=f"{path}{{}}", defaults=defaults
        )
    return _ordered(node)


def model_schema(model: type[BaseModel], *, defaults: bool = True) -> dict[str, Any]:
    """The structural schema of one pydantic model."""
    raw = model.model_json_schema(
        by_alias=True, mode="validation", schema_generator=_KubeSchemaGenerator
    )
    defs = raw.pop("$defs", {})
    return to_structural(raw, defs, path=model.__name__, defaults=defaults)


def structural_errors(schema: dict[str, Any], path: str = "") -> list[str]:
    """Violations of the Kubernetes structural-schema rules (empty when the schema is fine)."""
    errors: list[str] = []
    here = path or "<root>"
    preserve = schema.get("x-kubernetes-preserve-unknown-fields") is True
    int_or_string = schema.get("x-kubernetes-int-or-string") is True
    if "$ref" in schema:
        errors.append(f"{here}: $ref is not allowed")
    if "type" not in schema and not (preserve or int_or_string):
        errors.append(f"{here}: every node needs a type")
    if schema.get("additionalProperties") is False:
        errors.append(f"{here}: additionalProperties: false is not allowed")
    if "properties" in schema and "additionalProperties" in schema:
        errors.append(f"{here}: properties and additionalProperties are mutually exclusive")
    if "nullable" in schema:
        errors.append(f"{here}: nullable is not used by this API (omit unset fields)")
    for junctor in ("allOf", "oneOf", "not"):
        if junctor in schema:
            errors.append(f"{here}: {junctor} is not generated by this API")
    if "anyOf" in schema and not (
        int_or_string and schema["anyOf"] == [{"type": "integer"}, {"type": "string"}]
    ):
        errors.append(f"{here}: anyOf only in the int-or-string form")
    if schema.get("x-kubernetes-list-type") == "map":
        keys = schema.get("x-kubernetes-list-map-keys") or []
        item = schema.get("items", {})
        for key in keys:
            if key not in item.get("required", []) and "default" not in item.get(
                "properties", {}
            ).get(key, {}):
                errors.append(f"{here}: list map key {key!r} must be required or defaulted")
    for name in schema.get("required", []):
        if name not in schema.get("properties", {}):
            errors.append(f"{here}: required field {name!r} is not a property")
    for name, child in schema.get("properties", {}).items():
        errors.extend(structural_errors(child, f"{path}.{name}"))
    if isinstance(schema.get("items"), dict):
        errors.extend(structural_errors(schema["items"], f"{path}[]"))
    if isinstance(schema.get("additionalProperties"), dict):
        errors.extend(structural_errors(schema["additionalProperties"], f"{path}{{}}"))
    return errors


def _metadata_schema(model: type[RaftCluster] | type[RaftCheckpoint]) -> dict[str, Any]:
    # Only metadata.name (and generateName) may be restricted in a CRD.
    if model is RaftCluster:
        return {
            "type": "object",
            "properties": {
                "name": {
                    "type": "string",
                    "maxLength": MAX_CLUSTER_NAME_LENGTH,
                    "pattern": DNS1035_LABEL_PATTERN,
                }
            },
        }
    return {"type": "object"}


def openapi_schema(model: type[RaftCluster] | type[RaftCheckpoint]) -> dict[str, Any]:
    """The openAPIV3Schema of a top-level kind."""
    fields = model.model_fields
    spec_model = fields["spec"].annotation
    status_model = fields["status"].annotation
    assert isinstance(spec_model, type) and issubclass(spec_model, BaseModel)
    assert isinstance(status_model, type) and issubclass(status_model, BaseModel)
    return {
        "description": (model.__doc__ or "").strip(),
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": _metadata_schema(model),
            "spec": model_schema(spec_model),
            # The operator owns status: no server-side defaults that could fake a state.
            "status": model_schema(status_model, defaults=False),
        },
        "required": ["spec"],
    }


def crd(model: type[RaftCluster] | type[RaftCheckpoint]) -> dict[str, Any]:
    """The CustomResourceDefinition of a top-level kind."""
    info: ResourceInfo = model.resource
    schema = openapi_schema(model)
    errors = structural_errors(schema)
    if errors:
        raise ValueError(f"{info.kind} schema is not structural:\n" + "\n".join(errors))
    subresources: dict[str, Any] = {"status": {}}
    if info.scale:
        subresources["scale"] = {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        }
    columns = []
    for column in info.printer_columns:
        entry: dict[str, Any] = {"name": column.name, "type": column.type}
        if column.description:
            entry["description"] = column.description
        entry["jsonPath"] = column.json_path
        if column.priority:
            entry["priority"] = column.priority
        columns.append(entry)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": info.crd_name,
            "labels": {
                "app.kubernetes.io/name": "raftkv",
                "app.kubernetes.io/part-of": "raftkv",
            },
        },
        "spec": {
            "group": info.group,
            "scope": "Namespaced",
            "names": {
                "kind": info.kind,
                "listKind": f"{info.kind}List",
                "plural": info.plural,
                "singular": info.singular,
                "shortNames": list(info.short_names),
                "categories": list(info.categories),
            },
            "versions": [
                {
                    "name": info.version,
                    "served": True,
                    "storage": True,
                    "subresources": subresources,
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def render(obj: dict[str, Any]) -> str:
    """Deterministic YAML (long patterns and CEL rules stay on one line)."""
    return HEADER + yaml.safe_dump(obj, sort_keys=False, width=4096, allow_unicode=True)


def file_name(info: ResourceInfo) -> str:
    return f"{info.group}_{info.plural}.yaml"


def generate() -> dict[str, str]:
    """File name -> content of every CRD."""
    return {file_name(model.resource): render(crd(model)) for model in TOP_LEVEL_MODELS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path, help="directory of the CRD files (crds/)")
    parser.add_argument(
        "--check", action="store_true", help="do not write; exit 1 if any file differs"
    )
    args = parser.parse_args(argv)
    stale = []
    for name, content in generate().items():
        target = args.out_dir / name
        current = target.read_text() if target.exists() else None
        if current == content:
            continue
        stale.append(str(target))
        if not args.check:
            args.out_dir.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
    if args.check and stale:
        print("stale CRDs (run `make crds`): " + ", ".join(stale), file=sys.stderr)
        return 1
    for path in stale:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
