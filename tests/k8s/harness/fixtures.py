"""pytest fixtures for the emulated Kubernetes tier (imported by tests/k8s/conftest.py).

- `k8s_cluster_options`: dict of ClusterOptions overrides; override the fixture in a module
  or test to change them (e.g. `{"probe_period_cap": 0.5}`).
- `k8s_cluster`: a started EmulatedCluster (function scope) with the repository's CRDs applied
  and made the process's default kubeconfig ($KUBECONFIG and the kubernetes library's default
  path), so `KopfRunner(["run", ...])` and `kubernetes.config.load_kube_config()` find it.
  The test fails at teardown if the harness itself failed (cluster.errors).
- `k8s_namespace`: a fresh namespace in it (its name).
- `k8s_api`: a `kubernetes.client.ApiClient` for it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.k8s.harness.cluster import EmulatedCluster, repo_crds
from tests.k8s.harness.manifests import namespace


@pytest.fixture
def k8s_cluster_options() -> dict[str, Any]:
    return {}


@pytest.fixture
def k8s_cluster(tmp_path: Path, k8s_cluster_options: dict[str, Any]) -> Iterator[EmulatedCluster]:
    options = {"crds": repo_crds(), **k8s_cluster_options}
    cluster = EmulatedCluster(tmp_path / "k8s", **options)
    cluster.start()
    try:
        with cluster.as_default_kubeconfig():
            yield cluster
    finally:
        cluster.stop()
    cluster.check()


@pytest.fixture
def k8s_namespace(k8s_cluster: EmulatedCluster) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    k8s_cluster.create("v1/namespaces", namespace(name))
    return name


@pytest.fixture
def k8s_api(k8s_cluster: EmulatedCluster) -> Iterator[Any]:
    client = k8s_cluster.kubernetes_client()
    try:
        yield client
    finally:
        client.close()
