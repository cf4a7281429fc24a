"""Strict validation of every object the chart renders.

- Built-in kinds: kubernetes-validate, strict (unknown fields are errors), for each Kubernetes
  version the project supports.
- Kinds of CRDs the chart ships (kopf.dev peering, raftkv.dev): the CRD's own openAPIV3Schema.
- prometheus-operator kinds (ServiceMonitor, PodMonitor, PrometheusRule): their CRDs are not
  available offline, so a schema of the subset of monitoring.coreos.com/v1 fields the chart
  uses, with unknown fields rejected; field names follow prometheus-operator's API reference.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import kubernetes_validate

_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_METADATA = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", "maxLength": 253},
        "namespace": {"type": "string"},
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
    },
    "additionalProperties": False,
}
_LABEL_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"matchLabels": _STRING_MAP, "matchExpressions": {"type": "array"}},
}
_NAMESPACE_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "any": {"type": "boolean"},
        "matchNames": {"type": "array", "items": {"type": "string"}},
    },
}
_DURATION = {
    "type": "string",
    "pattern": "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
}
_RELABEL = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "sourceLabels": {"type": "array", "items": {"type": "string"}},
        "separator": {"type": "string"},
        "targetLabel": {"type": "string"},
        "regex": {"type": "string"},
        "modulus": {"type": "integer"},
        "replacement": {"type": "string"},
        "action": {
            "enum": [
                "replace",
                "keep",
                "drop",
                "hashmod",
                "labelmap",
                "labeldrop",
                "labelkeep",
                "lowercase",
                "uppercase",
                "keepequal",
                "dropequal",
            ]
        },
    },
}
_ENDPOINT_PROPERTIES = {
    "port": {"type": "string"},
    "path": {"type": "string"},
    "interval": _DURATION,
    "scrapeTimeout": _DURATION,
    "honorLabels": {"type": "boolean"},
    "relabelings": {"type": "array", "items": _RELABEL},
    "metricRelabelings": {"type": "array", "items": _RELABEL},
    "scheme": {"enum": ["http", "https"]},
    # prometheus-operator's SafeTLSConfig (monitoring.coreos.com/v1).
    "tlsConfig": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "ca": {"type": "object"},
            "cert": {"type": "object"},
            "keySecret": {"type": "object"},
            "serverName": {"type": "string"},
            "insecureSkipVerify": {"type": "boolean"},
        },
    },
}


def _custom(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": kind},
            "metadata": _METADATA,
            "spec": spec,
        },
    }


MONITORING_SCHEMAS: dict[str, dict[str, Any]] = {
    "ServiceMonitor": _custom(
        "ServiceMonitor",
        {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": _LABEL_SELECTOR,
                "namespaceSelector": _NAMESPACE_SELECTOR,
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": _ENDPOINT_PROPERTIES,
                    },
                },
            },
        },
    ),
    "PodMonitor": _custom(
        "PodMonitor",
        {
            "type": "object",
            "required": ["selector", "podMetricsEndpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": _LABEL_SELECTOR,
                "namespaceSelector": _NAMESPACE_SELECTOR,
                "podMetricsEndpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": _ENDPOINT_PROPERTIES,
                    },
                },
            },
        },
    ),
    "PrometheusRule": _custom(
        "PrometheusRule",
        {
            "type": "object",
            "required": ["groups"],
            "additionalProperties": False,
            "properties": {
                "groups": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "rules"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string"},
                            "interval": _DURATION,
                            "rules": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["expr"],
                                    "additionalProperties": False,
                                    "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
                                    "properties": {
                                        "alert": {"type": "string"},
                                        "record": {"type": "string"},
                                        "expr": {"type": "string", "minLength": 1},
                                        "for": _DURATION,
                                        "labels": _STRING_MAP,
                                        "annotations": _STRING_MAP,
                                    },
                                },
                            },
                        },
                    },
                }
            },
        },
    ),
}


def _crd_schema(crd: dict[str, Any], version: str) -> dict[str, Any]:
    for served in crd["spec"]["versions"]:
        if served["name"] == version:
            schema = dict(served["schema"]["openAPIV3Schema"])
            properties = dict(schema.get("properties", {}))
            properties.setdefault("apiVersion", {"type": "string"})
            properties.setdefault("kind", {"type": "string"})
            properties.setdefault("metadata", {"type": "object"})
            schema["properties"] = properties
            # CRDs prune unknown fields: a field the schema does not know would be dropped
            # silently by the API server, so treat it as an error here.
            return _no_unknown_fields(schema)
    raise AssertionError(f"{crd['metadata']['name']} serves no version {version}")


def _no_unknown_fields(schema: dict[str, Any]) -> dict[str, Any]:
    out = dict(schema)
    if out.get("type") == "object" and "properties" in out:
        if not out.get("x-kubernetes-preserve-unknown-fields"):
            out.setdefault("additionalProperties", False)
        out["properties"] = {k: _no_unknown_fields(v) for k, v in out["properties"].items()}
    if isinstance(out.get("items"), dict):
        out["items"] = _no_unknown_fields(out["items"])
    return out


def validate(obj: dict[str, Any], kubernetes_version: str, crds: list[dict[str, Any]]) -> None:
    """Raise if `obj` is not a valid object of its kind (see the module docstring)."""
    group, _, version = obj["apiVersion"].rpartition("/")
    kind = obj["kind"]
    if group == "monitoring.coreos.com":
        jsonschema.validate(obj, MONITORING_SCHEMAS[kind])
        return
    for crd in crds:
        if crd["spec"]["group"] == group and crd["spec"]["names"]["kind"] == kind:
            jsonschema.validate(obj, _crd_schema(crd, version))
            return
    kubernetes_validate.validate(obj, kubernetes_version, strict=True)
