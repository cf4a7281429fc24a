"""The docs describe what the node serves: docs/openapi.yaml its routes,
docs/metrics.md its metrics."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import yaml

from raftkv.runtime.config import NodeConfig
from raftkv.runtime.http import ClientApi
from raftkv.runtime.metrics import NodeMetrics
from raftkv.runtime.podlabel import PodLabelMetrics

SPEC = Path(__file__).parents[3] / "docs" / "openapi.yaml"


def test_openapi_matches_the_served_routes() -> None:
    spec = yaml.safe_load(SPEC.read_text())
    assert spec["openapi"].startswith("3.")
    documented = {
        (m.upper(), p)
        for p, item in spec["paths"].items()
        for m in item
        if m in ("get", "put", "post", "delete")
    }
    node = SimpleNamespace(cfg=NodeConfig("x", Path("/nonexistent")), metrics=NodeMetrics("x"))
    app = ClientApi(node).app()  # type: ignore[arg-type]
    served = set()
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        assert route.resource is not None
        path = re.sub(r"\{(\w+)(:[^}]*)?\}", r"{\1}", route.resource.canonical)
        served.add((route.method, path))
    assert served == documented


def test_metrics_doc_lists_exactly_the_exported_metrics() -> None:
    doc = (Path(__file__).parents[3] / "docs" / "metrics.md").read_text()
    documented = set(re.findall(r"^\| `(raftkv_\w+)`", doc, re.MULTILINE))
    metrics = NodeMetrics("x")
    PodLabelMetrics(metrics.registry)  # registered with --pod-role-label
    exported = {m.name for m in metrics.registry.collect()}
    # prometheus_client reports counters without their `_total` suffix.
    exported = {n + "_total" if n + "_total" in documented else n for n in exported}
    assert exported == documented


def test_openapi_names_the_role_each_route_needs() -> None:
    """`x-raftkv-role` in docs/openapi.yaml is the access each route declares
    (runtime/http/*.py), so the documented permissions cannot drift."""
    spec = yaml.safe_load(SPEC.read_text())
    documented = {
        (m.upper(), p): op["x-raftkv-role"]
        for p, item in spec["paths"].items()
        for m, op in item.items()
        if m in ("get", "put", "post", "delete")
    }
    node = SimpleNamespace(cfg=NodeConfig("x", Path("/nonexistent")), metrics=NodeMetrics("x"))
    declared = {
        (r.method, re.sub(r"\{(\w+)(:[^}]*)?\}", r"{\1}", r.path)): r.access
        for r in ClientApi(node).routes
    }  # type: ignore[arg-type]
    assert declared == documented
