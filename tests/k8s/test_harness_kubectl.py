"""What the emulated API server serves for the real kubectl (harness/openapi.py, scale.py,
tables.py, fieldvalidation.py, discovery): the pure parts, then kubectl itself against a
cluster without the operator (skipped without a kubectl on PATH)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s.harness import fieldvalidation, openapi, podlogs, scale, tables
from tests.k8s.harness.cluster import EmulatedCluster, repo_crds
from tests.k8s.harness.manifests import standin_statefulset
from tests.k8s.harness.resources import DEFAULT_RESOURCES, ResourceRegistry, specs_from_crd
from tests.k8s.harness.store import ApiError

KUBECTL = shutil.which("kubectl")


def kubectl_minor() -> int:
    """The client's minor version (1.32 -> 32); kubectl sends `fieldValidation` since 1.25."""
    assert KUBECTL is not None
    out = subprocess.run(
        [KUBECTL, "version", "--client", "-o", "json"], capture_output=True, text=True, timeout=30
    ).stdout
    return int("".join(c for c in json.loads(out)["clientVersion"]["minor"] if c.isdigit()))


CLUSTERS_CRD = yaml.safe_load(
    next(p for p in repo_crds() if p.name == "raftkv.dev_raftclusters.yaml").read_text()
)
[RAFT_CLUSTER] = specs_from_crd(CLUSTERS_CRD)
STATEFULSET = ResourceRegistry().resolve("apps/v1/statefulsets")


# ---- OpenAPI ---------------------------------------------------------------------------------


def test_openapi_v3_names_every_group_version_and_the_crd_schema() -> None:
    specs = [*DEFAULT_RESOURCES, RAFT_CLUSTER]
    index = openapi.index_document(specs)["paths"]
    assert {"api/v1", "apis/apps/v1", "apis/raftkv.dev/v1alpha1"} <= set(index)
    assert index["apis/apps/v1"]["serverRelativeURL"].startswith("/openapi/v3/apis/apps/v1?hash=")
    document = openapi.group_version_document(specs, "apis/raftkv.dev/v1alpha1")
    assert document is not None and document["openapi"] == "3.0.0"
    item = document["paths"]["/apis/raftkv.dev/v1alpha1/namespaces/{namespace}/raftclusters/{name}"]
    patch = item["patch"]
    # What kubectl's field-validation check looks for (resource.supportsQueryParamV3).
    assert patch["x-kubernetes-group-version-kind"] == {
        "group": "raftkv.dev",
        "version": "v1alpha1",
        "kind": "RaftCluster",
    }
    assert {"name": "fieldValidation", "in": "query"}.items() <= patch["parameters"][-1].items()
    schema = document["components"]["schemas"]["dev.raftkv.v1alpha1.RaftCluster"]
    assert schema["properties"]["spec"]["properties"]["replicas"]["type"] == "integer"
    assert (
        "/apis/raftkv.dev/v1alpha1/namespaces/{namespace}/raftclusters/{name}/scale"
        in (document["paths"])
    )
    assert openapi.group_version_document(specs, "apis/nothing.example/v1") is None


def test_openapi_v3_describes_no_patch_body_for_built_in_kinds() -> None:
    """Without a schema, kubectl must fall back to its compiled-in strategic merge keys: a
    described patch body would make it build patches from an empty schema."""
    document = openapi.group_version_document(DEFAULT_RESOURCES, "apis/apps/v1")
    assert document is not None
    item = document["paths"]["/apis/apps/v1/namespaces/{namespace}/statefulsets/{name}"]
    assert "requestBody" not in item["patch"]
    assert any(p["name"] == "fieldValidation" for p in item["patch"]["parameters"])


def _protobuf_fields(data: bytes) -> dict[int, bytes]:
    """Top-level length-delimited fields of a protobuf message (what v2_document writes)."""
    fields: dict[int, bytes] = {}
    i = 0
    while i < len(data):
        tag, i = _read_varint(data, i)
        assert tag & 7 == 2, f"field {tag >> 3}: wire type {tag & 7}, expected 2"
        size, i = _read_varint(data, i)
        fields[tag >> 3] = data[i : i + size]
        i += size
    assert i == len(data), "a field runs past the end"
    return fields


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i


def test_openapi_v2_is_a_protobuf_document_without_definitions() -> None:
    document = _protobuf_fields(openapi.v2_document())
    assert document[1] == b"2.0"
    info = _protobuf_fields(document[2])
    assert info[1] == openapi.TITLE.encode() and info[2] == openapi.VERSION.encode()
    assert document[8] == b"" and 9 not in document  # paths, and no definitions
    with pytest.raises(AssertionError, match="runs past the end"):
        _protobuf_fields(openapi.v2_document()[:20])  # the reader catches a cut document


# ---- scale -----------------------------------------------------------------------------------


def _sts(replicas: int, ready: int) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "namespace": "ns", "resourceVersion": "7", "uid": "u"},
        "spec": {
            "replicas": replicas,
            "selector": {
                "matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}],
            },
        },
        "status": {"replicas": ready},
    }


def test_scale_views_of_a_statefulset_and_a_raft_cluster() -> None:
    view = scale.scale_of(STATEFULSET, _sts(3, 2))
    assert view["apiVersion"] == "autoscaling/v1" and view["kind"] == "Scale"
    assert view["spec"] == {"replicas": 3}
    assert view["status"] == {"replicas": 2, "selector": "app=web,tier in (a,b)"}
    assert view["metadata"]["resourceVersion"] == "7"
    cluster: dict[str, Any] = {
        "metadata": {"name": "demo", "resourceVersion": "3"},
        "spec": {"replicas": 5},
        "status": {"replicas": 3, "selector": "app.kubernetes.io/instance=demo"},
    }
    assert scale.scale_of(RAFT_CLUSTER, cluster)["status"] == {
        "replicas": 3,
        "selector": "app.kubernetes.io/instance=demo",
    }
    assert scale.with_replicas(RAFT_CLUSTER, cluster, 7)["spec"]["replicas"] == 7
    assert cluster["spec"]["replicas"] == 5  # a copy


@pytest.mark.parametrize("bad", [-1, "3", True, None, 2.5])
def test_a_scale_write_needs_a_whole_number(bad: Any) -> None:
    with pytest.raises(ApiError) as caught:
        scale.replicas_of({"kind": "Scale", "spec": {"replicas": bad}})
    assert caught.value.code == 422
    assert scale.replicas_of({"kind": "Scale", "spec": {"replicas": 0}}) == 0


def test_a_kind_without_scale_has_no_scale_view() -> None:
    pods = ResourceRegistry().resolve("v1/pods")
    with pytest.raises(ApiError) as caught:
        scale.scale_of(pods, {"metadata": {"name": "p"}})
    assert caught.value.code == 404


# ---- tables and field validation -------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(5, "5s"), (119, "119s"), (125, "2m5s"), (600, "10m"), (3 * 3600 + 60, "3h1m"),
     (30 * 3600, "30h"), (3 * 86400 + 3600, "3d1h"), (40 * 86400, "40d"), (800 * 86400, "2y")],
)  # fmt: skip
def test_ages_read_like_kubectl(seconds: int, shown: str) -> None:
    assert tables.human_duration(seconds) == shown


def test_a_table_has_the_printer_columns() -> None:
    obj = {
        "metadata": {"name": "demo", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"replicas": 3},
        "status": {"readyReplicas": 2, "leader": "demo-1", "phase": "Available"},
    }
    table = tables.as_table(RAFT_CLUSTER, [obj], "9", "Metadata")
    names = [c["name"] for c in table["columnDefinitions"]]
    assert names[:5] == ["Name", "Replicas", "Ready", "Leader", "Phase"]
    [row] = table["rows"]
    assert row["cells"][:5] == ["demo", 3, 2, "demo-1", "Available"]
    assert row["object"]["kind"] == "PartialObjectMetadata"
    assert tables.wants_table("application/json;as=Table;v=v1;g=meta.k8s.io,application/json")
    assert not tables.wants_table("application/json")


def test_strict_field_validation_names_unknown_fields() -> None:
    body = {
        "apiVersion": "raftkv.dev/v1alpha1",
        "kind": "RaftCluster",
        "metadata": {"name": "demo", "labels": {"a": "b"}},
        "spec": {"replicas": 3, "replica": 4, "raft": {"tickMs": 50, "tick": 1}},
    }
    assert fieldvalidation.unknown_fields(RAFT_CLUSTER.schema or {}, body) == [
        "spec.replica",
        "spec.raft.tick",
    ]
    with pytest.raises(ApiError, match='unknown field "spec.replica"'):
        fieldvalidation.check(RAFT_CLUSTER, body, "Strict")
    fieldvalidation.check(RAFT_CLUSTER, body, "Ignore")
    fieldvalidation.check(RAFT_CLUSTER, body, None)
    assert (
        fieldvalidation.unknown_fields({"x-kubernetes-preserve-unknown-fields": True}, body) == []
    )


def test_a_log_is_split_at_each_start() -> None:
    log = (
        b"--- 2026-01-01T00:00:00Z emulated kubelet: start #0 of p/c: ['x']\n"
        b"first\n"
        b"--- 2026-01-01T00:00:01Z emulated kubelet: start #1 of p/c: ['x']\n"
        b"second\nmore\n"
    )
    assert podlogs.starts_of(log) == [b"first\n", b"second\nmore\n"]
    assert podlogs.starts_of(b"") == []


# ---- the real kubectl ------------------------------------------------------------------------

needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="no kubectl on PATH")


def kubectl(
    cluster: EmulatedCluster, *args: str, check: bool = True, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    assert KUBECTL is not None
    result = subprocess.run(
        [KUBECTL, "--kubeconfig", str(cluster.kubeconfig_path), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check:
        assert result.returncode == 0, f"kubectl {' '.join(args)}:\n{result.stderr}"
    return result


CLUSTER_YAML = """apiVersion: raftkv.dev/v1alpha1
kind: RaftCluster
metadata: {name: demo}
spec: {replicas: 3, paused: true}
"""


def _kubectl_watches(cluster: EmulatedCluster, plural: str) -> bool:
    return any(
        request.params.get("watch") in ("true", "1")
        and plural in request.url.path
        and "kubectl" in str(request.headers.get("User-Agent", ""))
        for request in list(cluster.server)  # kmock: iterating the server gives its requests
    )


@needs_kubectl
def test_kubectl_apply_get_scale_and_wait_on_a_custom_resource(
    k8s_cluster: EmulatedCluster, k8s_namespace: str, tmp_path: Path
) -> None:
    ns = k8s_namespace
    manifest = tmp_path / "demo.yaml"
    manifest.write_text(CLUSTER_YAML)
    # apply reads /openapi/v3, finds fieldValidation and sends Strict.
    created = kubectl(k8s_cluster, "-n", ns, "apply", "-f", str(manifest))
    assert "raftcluster.raftkv.dev/demo created" in created.stdout
    assert "Warning" not in created.stderr, created.stderr  # discovery: no ambiguous names
    unchanged = kubectl(k8s_cluster, "-n", ns, "apply", "-f", str(manifest))
    assert "unchanged" in unchanged.stdout
    if kubectl_minor() >= 25:
        # An older kubectl validates only client-side, against /openapi/v2, which the
        # harness serves without definitions (openapi.py): it checks nothing there.
        manifest.write_text(CLUSTER_YAML.replace("replicas: 3", "replicas: 3, replica: 4"))
        refused = kubectl(k8s_cluster, "-n", ns, "apply", "-f", str(manifest), check=False)
        assert refused.returncode != 0 and 'unknown field "spec.replica"' in refused.stderr
    # A server-side table: the CRD's printer columns, through the short name.
    table = kubectl(k8s_cluster, "-n", ns, "get", "rkc").stdout.splitlines()
    assert table[0].split() == ["NAME", "REPLICAS", "READY", "LEADER", "PHASE", "AGE"]
    assert table[1].split()[:2] == ["demo", "3"]
    scaled = kubectl(k8s_cluster, "-n", ns, "scale", "rkc/demo", "--replicas=5")
    assert "scaled" in scaled.stdout
    obj = k8s_cluster.get("raftkv.dev/v1alpha1/raftclusters", ns, "demo")
    assert obj is not None and obj["spec"]["replicas"] == 5 and obj["metadata"]["generation"] == 2
    refused = kubectl(k8s_cluster, "-n", ns, "scale", "rkc/demo", "--replicas=-1", check=False)
    assert refused.returncode != 0
    # kubectl wait watches (a JSON stream): met when the status changes, after it watches.
    assert KUBECTL is not None
    waiting = subprocess.Popen(
        [KUBECTL, "--kubeconfig", str(k8s_cluster.kubeconfig_path), "-n", ns, "wait",
         "rkc/demo", "--for=condition=Paused", "--timeout=30s"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        k8s_cluster.wait_for(
            lambda: k8s_cluster.call(lambda: _kubectl_watches(k8s_cluster, "raftclusters")),
            timeout=20,
            message="kubectl wait watches the RaftCluster",
        )
        condition = {"type": "Paused", "status": "True", "reason": "Test", "message": "paused"}
        k8s_cluster.patch(
            "raftkv.dev/v1alpha1/raftclusters", ns, "demo",
            {"status": {"conditions": [condition]}}, subresource="status",
        )  # fmt: skip
        out, err = waiting.communicate(timeout=30)
    finally:
        waiting.kill()
    assert waiting.returncode == 0 and "condition met" in out, err
    assert "stream" not in err, err
    as_json = json.loads(kubectl(k8s_cluster, "-n", ns, "get", "rkc", "demo", "-o", "json").stdout)
    assert as_json["kind"] == "RaftCluster"  # -o json is the object, not the table


@needs_kubectl
def test_kubectl_scales_a_statefulset(k8s_cluster: EmulatedCluster, k8s_namespace: str) -> None:
    ns = k8s_namespace
    k8s_cluster.create("apps/v1/statefulsets", standin_statefulset("web", ns, 1))
    kubectl(k8s_cluster, "-n", ns, "scale", "statefulset/web", "--replicas=2")
    k8s_cluster.wait_for(
        lambda: len(k8s_cluster.list("v1/pods", ns)) == 2, timeout=20, message="two pods"
    )
    current = kubectl(k8s_cluster, "-n", ns, "get", "sts", "web", "-o", "json").stdout
    assert json.loads(current)["spec"]["replicas"] == 2
    # Client-side apply of a built-in kind: a strategic merge patch from kubectl's own types.
    applied = kubectl(k8s_cluster, "-n", ns, "label", "sts/web", "tier=front").stdout
    assert "labeled" in applied


@needs_kubectl
def test_kubectl_logs_of_a_job(k8s_cluster: EmulatedCluster, k8s_namespace: str) -> None:
    ns = k8s_namespace
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "hello", "namespace": ns},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "main",
                            "image": "busybox",
                            "command": ["sh", "-c", "echo one; echo two; echo three"],
                        }
                    ],
                }
            },
        },
    }
    k8s_cluster.create("batch/v1/jobs", job)
    k8s_cluster.wait_for(
        lambda: (
            (k8s_cluster.get("batch/v1/jobs", ns, "hello") or {}).get("status", {}).get("succeeded")
        ),
        timeout=30,
        message="the Job succeeds",
    )
    logs = kubectl(k8s_cluster, "-n", ns, "logs", "job/hello")
    assert logs.stdout.split() == ["one", "two", "three"]
    tail = kubectl(k8s_cluster, "-n", ns, "logs", "job/hello", "--tail=1")
    assert tail.stdout.split() == ["three"]
    previous = kubectl(k8s_cluster, "-n", ns, "logs", "job/hello", "--previous", check=False)
    assert previous.returncode != 0 and "previous terminated container" in previous.stderr
    missing = kubectl(k8s_cluster, "-n", ns, "logs", "pod/nothing", check=False)
    assert missing.returncode != 0 and "not found" in missing.stderr
