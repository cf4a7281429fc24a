"""Fixtures of the emulated-Kubernetes tier: see tests/k8s/harness/fixtures.py and README.md."""

from tests.k8s.harness.fixtures import (  # noqa: F401 - pytest finds fixtures by name
    k8s_api,
    k8s_cluster,
    k8s_cluster_options,
    k8s_namespace,
)
