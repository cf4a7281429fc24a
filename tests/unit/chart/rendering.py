"""Render the Helm chart offline with Helm's own engine (helm-python-sdk binds libhelm), and
parse what it renders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
CHART_DIR = REPO / "charts" / "raftkv-operator"
RELEASE = "rk"
NAMESPACE = "raftkv-system"


def helm() -> Any:
    """The helm_python module, or skip: it ships libhelm for linux/macOS/windows wheels only."""
    return pytest.importorskip(
        "helm_python",
        reason="helm-python-sdk (Helm's engine for Python) is not installed: pip install '.[test]'",
    )


def render_files(
    values: dict[str, Any] | None = None, *, namespace: str = NAMESPACE
) -> dict[str, str]:
    """Template path -> rendered text (NOTES.txt included), as `helm template` would."""
    with helm().Chart.load(str(CHART_DIR)) as chart:
        return dict(chart.render(values or {}, name=RELEASE, namespace=namespace, is_install=True))


def render(
    values: dict[str, Any] | None = None, *, namespace: str = NAMESPACE
) -> list[dict[str, Any]]:
    """Every object the chart's templates render (CRDs in crds/ are separate: `crds()`)."""
    objects: list[dict[str, Any]] = []
    for path, text in sorted(render_files(values, namespace=namespace).items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        objects.extend(d for d in yaml.safe_load_all(text) if d is not None)
    return objects


def crds() -> list[dict[str, Any]]:
    """The CRDs the chart installs from its crds/ directory."""
    found: list[dict[str, Any]] = []
    for path in sorted((CHART_DIR / "crds").glob("*.yaml")):
        found.extend(d for d in yaml.safe_load_all(path.read_text()) if d is not None)
    return found


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o.get("kind") == kind]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {[o['metadata']['name'] for o in found]}"
    return found[0]


ALL_FEATURES: dict[str, Any] = {
    "replicaCount": 2,
    # Offline rendering has no cluster to ask: render the monitoring objects regardless.
    "monitoringApiCheck": False,
    "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
    "podMonitor": {"enabled": True, "labels": {"release": "prom"}},
    "prometheusRule": {"enabled": True, "labels": {"release": "prom"}},
    "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "raftkv"}},
    "tests": {"raftCluster": {"name": "demo", "namespace": "apps"}},
    "imagePullSecrets": [{"name": "regcred"}],
    "podAnnotations": {"example.com/team": "storage"},
    "extraEnv": [{"name": "EXTRA", "value": "1"}],
    "tolerations": [
        {"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}
    ],
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "priorityClassName": "system-cluster-critical",
}
"""Every optional feature on, with values of the right Kubernetes shapes."""

NAMESPACED: dict[str, Any] = {
    "replicaCount": 3,
    "watch": {"namespaces": ["team-a", "team-b"]},
    "podMonitor": {"enabled": True},
    "monitoringApiCheck": False,
}
"""Watching a list of namespaces, with leader election."""

RELEASE_NAMESPACE_ONLY: dict[str, Any] = {"watch": {"releaseNamespaceOnly": True}}
"""Only the release namespace: a Role, no ClusterRole."""
