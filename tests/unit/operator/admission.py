"""A small stand-in for the API server's admission of our custom resources.

It does what kube-apiserver does with a CRD's structural schema, in the same order:
apply `default`s, reject unknown fields (kubectl's default strict field validation),
validate the OpenAPI constraints (here with jsonschema), then evaluate the CEL
`x-kubernetes-validations` rules (here with cel-python), transition rules (those using
`oldSelf`) only on updates where the old value exists. Known limits: no CEL cost
estimation, no Kubernetes CEL libraries (quantity, url, ...), which the schema does not use.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import celpy
import jsonschema


class Rejected(Exception):
    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors))
        self.errors = errors


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """`value` with the schema's defaults filled in, parents before children."""
    if isinstance(value, dict):
        result = dict(value)
        for name, child in schema.get("properties", {}).items():
            if name not in result and "default" in child:
                result[name] = copy.deepcopy(child["default"])
            if name in result:
                result[name] = apply_defaults(child, result[name])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            result = {k: apply_defaults(extra, v) for k, v in result.items()}
        return result
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(schema["items"], v) for v in value]
    return value


def unknown_fields(schema: dict[str, Any], value: Any, path: str = "") -> list[str]:
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    errors = []
    if isinstance(value, dict) and "properties" in schema:
        for name, child_value in value.items():
            child = schema["properties"].get(name)
            if child is None:
                errors.append(f'{path}: unknown field "{name}"')
            else:
                errors.extend(unknown_fields(child, child_value, f"{path}.{name}"))
    elif isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        for name, child_value in value.items():
            errors.extend(
                unknown_fields(schema["additionalProperties"], child_value, f"{path}[{name}]")
            )
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            errors.extend(unknown_fields(schema["items"], item, f"{path}[{i}]"))
    return errors


_CEL = celpy.Environment()


@dataclass
class CelRule:
    path: str
    rule: str
    message: str
    transition: bool = field(init=False)

    def __post_init__(self) -> None:
        self.transition = "oldSelf" in self.rule
        self.program = _CEL.program(_CEL.compile(self.rule))

    def holds(self, value: Any, old: Any = None) -> bool:
        """Whether the rule holds; an evaluation error (e.g. a missing field) raises."""
        activation = {"self": celpy.json_to_cel(value)}
        if self.transition:
            activation["oldSelf"] = celpy.json_to_cel(old)
        result = self.program.evaluate(activation)
        if not isinstance(result, celpy.celtypes.BoolType):
            raise TypeError(f"rule {self.rule!r} gave {result!r}, not a bool")
        return bool(result)


_MISSING = object()


def cel_rules(schema: dict[str, Any], path: str = "") -> list[CelRule]:
    """Every CEL rule in a schema, compiled (a rule that does not compile fails here)."""
    rules = [
        CelRule(path, r["rule"], r.get("message", r["rule"]))
        for r in schema.get("x-kubernetes-validations", [])
    ]
    for name, child in schema.get("properties", {}).items():
        rules.extend(cel_rules(child, f"{path}.{name}"))
    if isinstance(schema.get("items"), dict):
        rules.extend(cel_rules(schema["items"], f"{path}[]"))
    if isinstance(schema.get("additionalProperties"), dict):
        rules.extend(cel_rules(schema["additionalProperties"], f"{path}{{}}"))
    return rules


def cel_errors(
    schema: dict[str, Any], value: Any, old: Any = _MISSING, path: str = ""
) -> list[str]:
    errors = []
    for spec in schema.get("x-kubernetes-validations", []):
        rule = CelRule(path, spec["rule"], spec.get("message", spec["rule"]))
        if rule.transition and old is _MISSING:
            continue
        try:
            ok = rule.holds(value, None if old is _MISSING else old)
        except Exception as error:  # a rule that errors rejects, as in the API server
            errors.append(f"{path}: {rule.rule}: {error}")
            continue
        if not ok:
            errors.append(f"{path}: {rule.message}")
    if isinstance(value, dict):
        for name, child in schema.get("properties", {}).items():
            if name in value:
                child_old = old.get(name, _MISSING) if isinstance(old, dict) else _MISSING
                errors.extend(cel_errors(child, value[name], child_old, f"{path}.{name}"))
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for name, child_value in value.items():
                errors.extend(cel_errors(extra, child_value, _MISSING, f"{path}[{name}]"))
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        # Only list-type=map items correlate with old items; our rules never sit under lists.
        for i, item in enumerate(value):
            errors.extend(cel_errors(schema["items"], item, _MISSING, f"{path}[{i}]"))
    return errors


class Admission:
    """Admission of one kind, from its CRD."""

    def __init__(self, crd: dict[str, Any]):
        self.schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        # The API server handles metadata itself (and validates name separately).
        self._body_schema = {
            **self.schema,
            "properties": {k: v for k, v in self.schema["properties"].items() if k != "metadata"},
        }
        self._validator = jsonschema.Draft202012Validator(self._body_schema)

    def admit(self, obj: dict[str, Any], old: dict[str, Any] | None = None) -> dict[str, Any]:
        """The stored (defaulted) object, or Rejected with every error found."""
        name_schema = self.schema["properties"]["metadata"].get("properties", {}).get("name")
        body = {k: v for k, v in obj.items() if k != "metadata"}
        defaulted = apply_defaults(self._body_schema, body)
        errors = unknown_fields(self._body_schema, defaulted)
        errors += [
            f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in self._validator.iter_errors(defaulted)
        ]
        if name_schema is not None:
            name = obj.get("metadata", {}).get("name", "")
            errors += [
                f"metadata.name: {e.message}"
                for e in jsonschema.Draft202012Validator(name_schema).iter_errors(name)
            ]
        if not errors:
            old_body = _MISSING
            if old is not None:
                old_body = apply_defaults(
                    self._body_schema, {k: v for k, v in old.items() if k != "metadata"}
                )
            errors = cel_errors(self._body_schema, defaulted, old_body)
        if errors:
            raise Rejected(errors)
        return {"metadata": obj.get("metadata", {}), **defaulted}
