"""Server-side printing (`kubectl get` asks for a `meta.k8s.io/v1` Table): the columns of a
custom resource's `additionalPrinterColumns`, as kube-apiserver renders them for a CRD.

Only kinds with printer columns get a Table; for the others the server answers the plain
object or list, and kubectl prints NAME and AGE itself. Column paths are the simple
`.a.b.c` form the repository's CRDs use; any other JSONPath prints as empty.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from typing import Any

from tests.k8s.harness.resources import ResourceSpec
from tests.k8s.harness.scale import read_path
from tests.k8s.harness.store import Obj, parse_rfc3339

_SIMPLE_PATH = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def wants_table(accept: str) -> bool:
    """True when the Accept header asks for a Table (`application/json;as=Table;...`)."""
    return any(
        "as=Table" in part.replace(" ", "") and "g=meta.k8s.io" in part.replace(" ", "")
        for part in accept.split(",")
    )


def human_duration(seconds: float) -> str:
    """kubectl's AGE format (k8s.io/apimachinery/pkg/util/duration.HumanDuration)."""
    s = int(seconds)
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    hours = minutes // 60
    if hours < 3:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    days = hours // 24
    if hours < 48:
        return f"{hours}h"
    if days < 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    return f"{days // 365}y"


def _cell(column: Mapping[str, Any], obj: Obj, now: datetime.datetime) -> Any:
    path = str(column.get("jsonPath", ""))
    if not path.startswith(".") or not set(path) <= _SIMPLE_PATH:
        return None
    value = read_path(obj, path)
    if value is None:
        return None
    if column.get("type") == "date" and isinstance(value, str):
        try:
            return human_duration((now - parse_rfc3339(value)).total_seconds())
        except ValueError:
            return value
    return value


def has_table(spec: ResourceSpec) -> bool:
    return bool(spec.printer_columns)


def as_table(
    spec: ResourceSpec, objects: Iterable[Obj], resource_version: str, include_object: str
) -> Obj:
    """A Table of `objects`; `include_object` is the request's includeObject (None,
    Metadata - the default - or Object)."""
    now = datetime.datetime.now(datetime.UTC)
    columns = [
        {
            "name": "Name",
            "type": "string",
            "format": "name",
            "description": "Name must be unique within a namespace.",
            "priority": 0,
        },
        *(
            {
                "name": c.get("name", ""),
                "type": c.get("type", "string"),
                "format": c.get("format", ""),
                "description": c.get("description", ""),
                "priority": int(c.get("priority", 0)),
            }
            for c in spec.printer_columns
        ),
    ]
    rows = []
    for obj in objects:
        row: dict[str, Any] = {
            "cells": [obj["metadata"]["name"], *(_cell(c, obj, now) for c in spec.printer_columns)]
        }
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = {
                "apiVersion": "meta.k8s.io/v1",
                "kind": "PartialObjectMetadata",
                "metadata": obj["metadata"],
            }
        rows.append(row)
    return {
        "apiVersion": "meta.k8s.io/v1",
        "kind": "Table",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": columns,
        "rows": rows,
    }
