"""The emulated-Kubernetes harness (tier 4): kmock API server + controllers + kubelet.

See tests/k8s/README.md. Entry points: `EmulatedCluster` (sync and async context manager),
the pytest fixtures in `tests.k8s.harness.fixtures`, and the builders in `manifests`.
"""

from tests.k8s.harness.cluster import EmulatedCluster, load_manifests, repo_crds
from tests.k8s.harness.runtime import ClusterOptions
from tests.k8s.harness.store import ApiError

__all__ = ["ApiError", "ClusterOptions", "EmulatedCluster", "load_manifests", "repo_crds"]
