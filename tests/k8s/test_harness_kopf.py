"""kopf runs against the emulated API server: discovery, watches, finalizers, JSON patches
with a resourceVersion test, the status subresource, events, adoption and garbage
collection."""

from __future__ import annotations

from pathlib import Path

import kopf
from kopf._core.intents import registries  # kopf has no public getter/setter pair for it
from kopf.testing import KopfRunner

from tests.k8s.harness import EmulatedCluster

RC = "raftkv.dev/v1alpha1/raftclusters"
OPERATOR = str(Path(__file__).parent / "operators" / "tiny.py")


def _phase(cluster: EmulatedCluster, ns: str) -> str | None:
    obj = cluster.get(RC, ns, "demo") or {}
    return (obj.get("status") or {}).get("phase")


def test_kopf_operator_lifecycle(k8s_cluster: EmulatedCluster, k8s_namespace: str) -> None:
    crds = "apiextensions.k8s.io/v1/customresourcedefinitions"
    assert k8s_cluster.get(crds, None, "raftclusters.raftkv.dev") is not None, "crds/ applied"
    args = ["run", "--standalone", "--all-namespaces", "--verbose", OPERATOR]
    # A registry of its own: kopf's decorators register into a process-wide default registry,
    # and the tiny operator's handlers must not run inside later operators of the session.
    # A bare registry has no login handlers: use the harness's one.
    registry = kopf.OperatorRegistry()
    kopf.on.login(registry=registry)(k8s_cluster.kopf_login)
    default = registries.get_default_registry()
    try:
        with KopfRunner(args, timeout=30, registry=registry) as runner:
            _exercise(k8s_cluster, k8s_namespace)
    finally:
        registries.set_default_registry(default)
    assert runner.exit_code == 0
    assert runner.exception is None
    assert "Handler 'created' succeeded" in runner.output
    assert "Merge-patching finished with inconsistencies" not in runner.output
    assert "Patching failed" not in runner.output


def _exercise(cluster: EmulatedCluster, ns: str) -> None:
    body = {
        "apiVersion": "raftkv.dev/v1alpha1",
        "kind": "RaftCluster",
        "metadata": {"name": "demo"},
        "spec": {"replicas": 3},
    }
    cluster.create(RC, body, ns)
    cluster.wait_for(lambda: _phase(cluster, ns) == "Created", timeout=20)
    rc = cluster.get(RC, ns, "demo")
    assert rc is not None and rc["metadata"]["finalizers"]
    assert rc["status"]["created"] == {"config": "demo-config"}
    config = cluster.get("v1/configmaps", ns, "demo-config")
    assert config is not None
    assert config["metadata"]["ownerReferences"][0]["uid"] == rc["metadata"]["uid"]
    events = "involvedObject.name=demo,reason=ConfigCreated"
    cluster.wait_for(
        lambda: cluster.list("v1/events", ns, field_selector=events), message="kopf posted an event"
    )

    cluster.patch(RC, ns, "demo", {"spec": {"replicas": 5}})
    cluster.wait_for(lambda: _phase(cluster, ns) == "Scaled to 5", timeout=20)
    assert (cluster.get("v1/configmaps", ns, "demo-config") or {})["data"] == {"replicas": "5"}

    cluster.delete(RC, ns, "demo")
    cluster.wait_for(
        lambda: cluster.get(RC, ns, "demo") is None,
        timeout=20,
        message="kopf removed its finalizer",
    )
    cluster.wait_for(
        lambda: cluster.get("v1/configmaps", ns, "demo-config") is None,
        message="the adopted ConfigMap was collected",
    )
