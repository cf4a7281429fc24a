"""Emulated Kubernetes: bad RaftClusters and RaftCheckpoints are rejected at the API by the
generated CRD schemas (OpenAPI + CEL); deletion cleans up per reclaimPolicy."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from raftkv.tools.ports import free_port
from tests.k8s.harness.cluster import EmulatedCluster
from tests.k8s.harness_ext import (
    CHECKPOINTS,
    CLUSTERS,
    NAMESPACE,
    OPERATOR_ENV,
    Operator,
    cluster_manifest,
    emulated_fixture,  # noqa: F401 - the `emulated` fixture
    event_reasons,
    http,
    must_get,
    operator_fixture,  # noqa: F401 - the `operator` fixture
    pods,
    wait_available,
    wait_for,
)

pytestmark = pytest.mark.timeout(240)
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def api_create(emulated: EmulatedCluster, body: dict[str, Any]) -> None:
    """Create through the HTTP API with the kubernetes client, as kubectl would."""
    plural = "raftclusters" if body["kind"] == "RaftCluster" else "raftcheckpoints"
    with emulated.kubernetes_client() as api_client:
        client.CustomObjectsApi(api_client).create_namespaced_custom_object(
            "raftkv.dev", "v1alpha1", NAMESPACE, plural, body
        )


def rejected(emulated: EmulatedCluster, body: dict[str, Any]) -> str:
    with pytest.raises(ApiException) as caught:
        api_create(emulated, body)
    assert caught.value.status == 422, caught.value.body
    return str(caught.value.body)


BAD_SPECS = [
    ({"replicas": 4}, "odd"),
    ({"replicas": 11}, "replicas"),
    ({"storage": {"size": "0"}}, "size"),
    ({"raft": {"tickMs": 50, "heartbeatTicks": 10, "electionTicks": 10}}, "heartbeatTicks"),
    ({"checkpoints": {"schedule": "every minute"}}, "schedule"),
    ({"podLabels": {"raftkv.dev/role": "leader"}}, "podLabels"),
    (
        {
            "restore": {
                "fromCheckpoint": {"cluster": "a", "id": "x"},
                "archive": {"claimName": "c", "path": "p"},
            }
        },
        "exactly one",
    ),
    ({"service": {"ports": {"client": 7379, "peer": 7379}}}, "differ"),
    ({"replicaz": 3}, "replicaz"),
]


@pytest.mark.parametrize(("spec", "why"), BAD_SPECS, ids=[w for _, w in BAD_SPECS])
def test_bad_raftclusters_are_rejected_by_the_schema(
    emulated: EmulatedCluster, spec: dict[str, Any], why: str
) -> None:
    body = cluster_manifest("bad", 3)
    body["spec"].update(spec)
    message = rejected(emulated, body)
    assert why in message, message
    assert emulated.get(CLUSTERS, NAMESPACE, "bad") is None


def test_bad_raftcheckpoints_are_rejected_by_the_schema(emulated: EmulatedCluster) -> None:
    base = {
        "apiVersion": "raftkv.dev/v1alpha1",
        "kind": "RaftCheckpoint",
        "metadata": {"name": "bad", "namespace": NAMESPACE},
    }
    assert "id" in rejected(emulated, {**base, "spec": {"cluster": "a", "id": "../etc"}})
    assert "cluster" in rejected(emulated, {**base, "spec": {"id": "x"}})
    assert emulated.get(CHECKPOINTS, NAMESPACE, "bad") is None


def test_examples_are_accepted(emulated: EmulatedCluster) -> None:
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("apiVersion") != "raftkv.dev/v1alpha1":
                continue
            body = copy.deepcopy(doc)
            # Accepted, then paused so no operator in this module acts on it.
            body["metadata"] = {
                "name": f"example-{body['metadata']['name']}"[:52],
                "namespace": NAMESPACE,
            }
            if body["kind"] == "RaftCluster":
                body["spec"]["paused"] = True
            else:
                body["spec"]["cluster"] = "no-such-cluster"
            api_create(emulated, body)


def test_immutable_fields_cannot_change(emulated: EmulatedCluster) -> None:
    body = cluster_manifest("frozen", 3, paused=True)
    api_create(emulated, body)
    patches: list[tuple[dict[str, Any], str]] = [
        ({"spec": {"storage": {"size": "2Gi"}}}, "immutable"),
        ({"spec": {"restore": {"fromCheckpoint": {"cluster": "a", "id": "x"}}}}, "restore"),
    ]
    for patch, why in patches:
        with emulated.kubernetes_client() as api_client, pytest.raises(ApiException) as caught:
            client.CustomObjectsApi(api_client).patch_namespaced_custom_object(
                "raftkv.dev",
                "v1alpha1",
                NAMESPACE,
                "raftclusters",
                "frozen",
                patch,
                _content_type="application/merge-patch+json",
            )
        assert caught.value.status == 422 and why in str(caught.value.body)


def test_the_raftkv_operator_command_runs_and_serves_metrics(emulated: EmulatedCluster) -> None:
    """The installed entry point (not KopfRunner): it reconciles (the paused example clusters
    get a status) and serves /metrics. Runs before this module's in-process operator starts:
    two standalone operators must not share a cluster."""
    port = free_port()
    env = {**emulated.env(), **OPERATOR_ENV}
    command = [
        str(Path(sys.executable).parent / "raftkv-operator"),
        "--all-namespaces",
        "--metrics-port",
        str(port),
        "--metrics-address",
        "127.0.0.1",
    ]
    with subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    ) as proc:
        try:

            def scraped() -> str | None:
                try:
                    code, body = http("GET", f"http://127.0.0.1:{port}/metrics", timeout=1)
                except OSError:
                    return None
                text = body.decode()
                # Every (paused) cluster of the namespace reconciled and counted.
                return text if code == 200 and f'phase="Paused"}} {paused:.1f}' in text else None

            paused = sum(
                1
                for c in emulated.list(CLUSTERS, NAMESPACE)
                if c["spec"].get("paused") and not c["metadata"].get("deletionTimestamp")
            )
            assert paused >= 1
            text = wait_for(emulated, scraped, 60, "the operator reconciles and serves metrics")
            assert "raftkv_operator_reconciles_total" in text
            demo = must_get(emulated, CLUSTERS, "example-demo")
            assert (demo.get("status") or {}).get("phase") == "Paused"
        finally:
            proc.terminate()
            output, _ = proc.communicate(timeout=30)
    lines = [line for line in output.decode().splitlines() if line.startswith("{")]
    assert lines and all("message" in json.loads(line) for line in lines), "JSON logs"


@pytest.mark.parametrize("policy", ["Delete", "Retain"])
def test_deleting_a_cluster_removes_owned_objects_and_volumes_per_policy(
    emulated: EmulatedCluster, operator: Operator, policy: str
) -> None:
    name = f"gone-{policy.lower()}"
    manifest = cluster_manifest(name, 1)
    manifest["spec"]["storage"]["reclaimPolicy"] = policy
    emulated.create(CLUSTERS, manifest, NAMESPACE)
    wait_available(emulated, name, 1, timeout=60)
    cluster = emulated.get(CLUSTERS, NAMESPACE, name)
    assert cluster is not None
    assert "raftkv.dev/finalizer" in cluster["metadata"].get("finalizers", [])
    claims = {f"data-{name}-0"}
    emulated.delete(CLUSTERS, NAMESPACE, name)
    wait_for(
        emulated,
        lambda: emulated.get(CLUSTERS, NAMESPACE, name) is None,
        60,
        "the finalizer is released",
    )
    owned = [
        ("apps/v1/statefulsets", name),
        ("v1/services", name),
        ("v1/services", f"{name}-peers"),
        ("v1/services", f"{name}-read"),
        ("v1/configmaps", f"{name}-config"),
        ("policy/v1/poddisruptionbudgets", name),
    ]
    wait_for(
        emulated,
        lambda: (
            all(emulated.get(r, NAMESPACE, n) is None for r, n in owned)
            and not pods(emulated, name)
        ),
        60,
        "owned objects and pods are gone",
    )

    def volumes() -> set[str]:
        return {
            c["metadata"]["name"] for c in emulated.list("v1/persistentvolumeclaims", NAMESPACE)
        } & claims

    if policy == "Delete":
        wait_for(emulated, lambda: not volumes(), 60, "the volumes are deleted")
    else:
        assert volumes() == claims
    reason = "VolumesDeleted" if policy == "Delete" else "VolumesRetained"
    wait_for(
        emulated, lambda: reason in event_reasons(emulated, name), 30, "an Event about the volumes"
    )


def test_checkpoint_of_a_missing_cluster_fails(
    emulated: EmulatedCluster, operator: Operator
) -> None:
    emulated.create(
        CHECKPOINTS,
        {
            "apiVersion": "raftkv.dev/v1alpha1",
            "kind": "RaftCheckpoint",
            "metadata": {"name": "orphan", "namespace": NAMESPACE},
            "spec": {"cluster": "no-such-cluster"},
        },
        NAMESPACE,
    )

    def failed() -> dict[str, Any] | None:
        status = must_get(emulated, CHECKPOINTS, "orphan").get("status") or {}
        return status if status.get("phase") == "Failed" else None

    status = wait_for(emulated, failed, 30, "the checkpoint fails")
    assert "no-such-cluster" in status["message"]
    wait_for(
        emulated,
        lambda: "CheckpointFailed" in event_reasons(emulated, "orphan"),
        30,
        "a warning Event",
    )
