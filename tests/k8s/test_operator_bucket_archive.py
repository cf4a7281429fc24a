"""Emulated Kubernetes: checkpoints archived to an S3-compatible bucket (moto's server on
127.0.0.1 over TLS with a CA of security/pki.py, request authentication on), then a new
cluster in another namespace restored from the bucket copy, sha256 verified; refused
credentials show as an ArchiveFailed Warning and in the archive failure metric; and the
cluster restored in place (spec.restoreInPlace) from a bucket copy its members no longer
hold (their retention, checkpoints.retain 1, removed it)."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest

from raftkv_operator import desired, metrics
from tests.k8s.harness.cluster import EmulatedCluster
from tests.k8s.harness_ext import (
    CHECKPOINTS,
    CLUSTERS,
    NAMESPACE,
    Operator,
    cluster_manifest,
    emulated_fixture,  # noqa: F401 - the `emulated` fixture
    event_reasons,
    get_via_service,
    must_get,
    operator_fixture,  # noqa: F401 - the `operator` fixture
    put_retrying,
    request_restore_in_place,
    restore_outcome,
    retrying,
    wait_available,
    wait_for,
)
from tests.s3server import S3Server

NAME = "bkt"
RESTORED = "restored"
RESTORE_NAMESPACE = "elsewhere"
BUCKET = "raftkv-archive"
PREFIX = "prod"
DATA = {f"bucket-key-{i}": f"value-{i}" for i in range(20)}
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with S3Server(tmp_path_factory.mktemp("s3"), bucket=BUCKET, tls=True) as server:
        yield server


def _b64(value: bytes | str) -> str:
    raw = value.encode() if isinstance(value, str) else value
    return base64.b64encode(raw).decode()


def create_secrets(
    emulated: EmulatedCluster, s3: S3Server, namespace: str, secret_access_key: str | None = None
) -> None:
    assert s3.ca_file is not None
    for name, data in (
        (
            "s3-credentials",
            {
                "accessKeyId": s3.keys.access_key_id,
                "secretAccessKey": secret_access_key or s3.keys.secret_access_key,
            },
        ),
        ("s3-ca", {"ca.crt": s3.ca_file.read_text()}),
    ):
        emulated.create(
            "v1/secrets",
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name, "namespace": namespace},
                "data": {k: _b64(v) for k, v in data.items()},
            },
            namespace,
        )


def location(s3: S3Server) -> dict[str, Any]:
    return {
        "endpoint": s3.endpoint,
        "bucket": BUCKET,
        "prefix": PREFIX,
        "pathStyle": True,
        "credentialsSecret": "s3-credentials",
        "caBundle": {"name": "s3-ca"},
    }


def must_get_in(
    emulated: EmulatedCluster, resource: str, namespace: str, name: str
) -> dict[str, Any]:
    obj = emulated.get(resource, namespace, name)
    assert obj is not None, f"{resource} {namespace}/{name} is gone"
    return obj


def checkpoint_object(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "raftkv.dev/v1alpha1",
        "kind": "RaftCheckpoint",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"cluster": NAME, "id": name},
    }


def checkpoint_status(emulated: EmulatedCluster, name: str) -> dict[str, Any]:
    return dict((emulated.get(CHECKPOINTS, NAMESPACE, name) or {}).get("status") or {})


def take_archived(emulated: EmulatedCluster, name: str) -> dict[str, Any]:
    """Take checkpoint `name` of NAME; its status once archived to the bucket."""
    emulated.create(CHECKPOINTS, checkpoint_object(name), NAMESPACE)
    wait_for(
        emulated,
        lambda: checkpoint_status(emulated, name).get("archived"),
        180,
        f"{name} is archived to the bucket",
    )
    return checkpoint_status(emulated, name)


def failures(cluster: str) -> float:
    metric = "raftkv_operator_checkpoint_archives_total"
    want = f'cluster="{cluster}",namespace="{NAMESPACE}",result="failure"'
    for line in metrics.exposition().decode().splitlines():
        if line.startswith(metric + "{") and want in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture(scope="module")
def archived(emulated: EmulatedCluster, operator: Operator, s3: S3Server) -> dict[str, Any]:
    """The source cluster, a checkpoint of DATA, and its status once archived."""
    create_secrets(emulated, s3, NAMESPACE)
    archive = {"retain": 3, "bucket": {**location(s3), "maxAgeHours": 24 * 30}}
    # The members keep one checkpoint: older ones live on only in the bucket.
    checkpoints = {"retain": 1, "archive": archive}
    emulated.create(CLUSTERS, cluster_manifest(NAME, 1, checkpoints=checkpoints), NAMESPACE)
    wait_available(emulated, NAME, 1, timeout=90)
    for key, value in DATA.items():
        put_retrying(emulated, NAME, key, value, 10)
    return take_archived(emulated, "bkt-1")


def test_archive_uploads_the_checkpoint_with_its_sha256(
    emulated: EmulatedCluster, s3: S3Server, archived: dict[str, Any]
) -> None:
    assert archived["archivePath"] == f"{NAME}/bkt-1"
    member_data = (
        emulated.pvc_path(NAMESPACE, f"data-{desired.pod_name(NAME, 0)}")
        / "data"
        / "checkpoints"
        / "bkt-1"
        / "data"
    )
    local = hashlib.sha256(member_data.read_bytes()).hexdigest()
    assert archived["sha256"] == local
    client = s3.admin()
    head = client.head_object(Bucket=BUCKET, Key=f"{PREFIX}/{NAME}/bkt-1/data")
    assert head["Metadata"]["sha256"] == local
    body = client.get_object(Bucket=BUCKET, Key=f"{PREFIX}/{NAME}/bkt-1/data")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == local
    manifest = json.loads(
        client.get_object(Bucket=BUCKET, Key=f"{PREFIX}/{NAME}/bkt-1/manifest.json")["Body"].read()
    )
    assert manifest["sha256"] == local and manifest["index"] == archived["index"]
    assert "Archived" in event_reasons(emulated, "bkt-1")
    # The Job, not the operator, held the credentials: from the Secret, as environment.
    job = must_get(emulated, "batch/v1/jobs", "bkt-1-archive")
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in env if "valueFrom" in e}
    assert refs["RAFTKV_S3_SECRET_ACCESS_KEY"] == {
        "name": "s3-credentials",
        "key": "secretAccessKey",
    }


def test_restore_into_a_new_namespace_from_the_bucket(
    emulated: EmulatedCluster, s3: S3Server, archived: dict[str, Any]
) -> None:
    emulated.create("v1/namespaces", {"metadata": {"name": RESTORE_NAMESPACE}})
    create_secrets(emulated, s3, RESTORE_NAMESPACE)
    manifest = cluster_manifest(RESTORED, 3)
    manifest["metadata"]["namespace"] = RESTORE_NAMESPACE
    manifest["spec"]["restore"] = {"bucket": {**location(s3), "path": archived["archivePath"]}}
    emulated.create(CLUSTERS, manifest, RESTORE_NAMESPACE)

    def restored_status() -> dict[str, Any]:
        obj = emulated.get(CLUSTERS, RESTORE_NAMESPACE, RESTORED) or {}
        return dict(obj.get("status") or {})

    wait_for(
        emulated,
        lambda: restored_status().get("bootstrapped"),
        240,
        "the restored cluster bootstraps from the bucket copy",
    )
    # Every member restored from the same verified bytes.
    for i in range(3):
        volume = emulated.pvc_path(RESTORE_NAMESPACE, f"data-{desired.pod_name(RESTORED, i)}")
        staged = volume / "restore"
        assert json.loads((staged / "manifest.json").read_text())["sha256"] == archived["sha256"]
        assert hashlib.sha256((staged / "data").read_bytes()).hexdigest() == archived["sha256"]

    # The restored cluster serves the source's data.
    wait_available(emulated, RESTORED, 3, timeout=180, namespace=RESTORE_NAMESPACE)

    def read(key: str) -> str | None:
        try:  # a connection that fails (a loaded machine, a leader change) is retried
            return get_via_service(emulated, RESTORED, key, namespace=RESTORE_NAMESPACE) or ""
        except OSError:
            return None

    for key, value in DATA.items():
        assert retrying(emulated, lambda k=key: read(k), 60, f"read {key}") == value, key

    # Once bootstrapped no member keeps the bucket credentials (the init container goes).
    def template_has_credentials() -> bool:
        sts = emulated.get("apps/v1/statefulsets", RESTORE_NAMESPACE, RESTORED) or {}
        spec = (sts.get("spec") or {}).get("template", {}).get("spec", {})
        text = json.dumps(spec)
        return "s3-credentials" in text or not spec

    wait_for(
        emulated,
        lambda: not template_has_credentials(),
        60,
        "the members' template drops the bucket credentials",
    )

    def members_hold_credentials() -> bool:
        running = [
            p
            for p in emulated.list("v1/pods", RESTORE_NAMESPACE)
            if p["metadata"]["name"].startswith(f"{RESTORED}-")
        ]
        return len(running) != 3 or any("s3-credentials" in json.dumps(p["spec"]) for p in running)

    # The members restart one by one onto the new template; then none holds them.
    def hashes() -> str:
        sts = must_get_in(emulated, "apps/v1/statefulsets", RESTORE_NAMESPACE, RESTORED)
        want = sts["spec"]["template"]["metadata"]["annotations"]
        pods = {
            p["metadata"]["name"]: (p["metadata"].get("annotations") or {})
            for p in emulated.list("v1/pods", RESTORE_NAMESPACE)
        }
        key = desired.POD_TEMPLATE_HASH_ANNOTATION
        return f"template {want.get(key)}, pods { {n: a.get(key) for n, a in pods.items()} }"

    try:
        wait_for(
            emulated,
            lambda: not members_hold_credentials(),
            420,
            "every member restarted without the bucket credentials",
        )
    except TimeoutError as e:
        raise AssertionError(f"{e}: {hashes()}; {restored_status()}") from None


def test_refused_credentials_are_an_archive_failure(
    emulated: EmulatedCluster, s3: S3Server, archived: dict[str, Any]
) -> None:
    before = failures(NAME)
    secret = must_get(emulated, "v1/secrets", "s3-credentials")
    secret["data"]["secretAccessKey"] = _b64("not-the-secret")
    emulated.replace("v1/secrets", NAMESPACE, "s3-credentials", secret)
    emulated.create(CHECKPOINTS, checkpoint_object("bkt-2"), NAMESPACE)
    wait_for(
        emulated,
        lambda: "ArchiveFailed" in event_reasons(emulated, "bkt-2"),
        240,
        "the refused upload is reported",
    )
    status = checkpoint_status(emulated, "bkt-2")
    assert status.get("phase") == "Succeeded" and not status.get("archived"), status
    assert "bucket https://127.0.0.1" in status["message"], status
    assert failures(NAME) == before + 1
    assert "ArchiveFailed" in event_reasons(emulated, NAME)
    logs = "".join(
        emulated.pod_logs(NAMESPACE, p["metadata"]["name"])
        for p in emulated.list("v1/pods", NAMESPACE)
        if p["metadata"]["name"].startswith("bkt-2-archive-")
    )
    assert "refused the credentials" in logs, logs[-2000:]
    # Nothing half-written in the bucket under that id.
    listed = s3.admin().list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/{NAME}/bkt-2/")
    assert not listed.get("Contents")


def test_restore_in_place_from_a_bucket_copy_the_members_no_longer_hold(
    emulated: EmulatedCluster, s3: S3Server, archived: dict[str, Any]
) -> None:
    # Working credentials again (an earlier test may have broken them on purpose).
    secret = must_get(emulated, "v1/secrets", "s3-credentials")
    secret["data"]["secretAccessKey"] = _b64(s3.keys.secret_access_key)
    emulated.replace("v1/secrets", NAMESPACE, "s3-credentials", secret)
    put_retrying(emulated, NAME, "in-place", "at-bkt-3", 10)
    taken = take_archived(emulated, "bkt-3")
    put_retrying(emulated, NAME, "in-place", "after-bkt-3", 10)
    put_retrying(emulated, NAME, "late", "after-bkt-3", 10)
    # A newer checkpoint: the member's retention (retain 1) drops bkt-3 from its volume.
    take_archived(emulated, "bkt-4")
    wait_for(
        emulated,
        lambda: checkpoint_status(emulated, "bkt-3").get("phase") == "Expired",
        120,
        "bkt-3 expires on the members (only the bucket holds it)",
    )
    member = desired.pod_name(NAME, 0)
    volume = emulated.pvc_path(NAMESPACE, f"data-{member}")
    assert not (volume / "data" / "checkpoints" / "bkt-3").exists()

    request_restore_in_place(emulated, NAME, "b1", "bkt-3")
    record = wait_for(
        emulated, lambda: restore_outcome(emulated, NAME, "b1"), 300, "restore b1 finished"
    )
    assert record["phase"] == "Succeeded", record
    assert record["source"] == f"bucket:{NAME}/bkt-3", record
    assert record["sha256"] == taken["sha256"], record
    wait_available(emulated, NAME, 1, timeout=120)

    # The same verified bytes were staged, and the data is as at bkt-3.
    staged = volume / "restore"
    assert hashlib.sha256((staged / "data").read_bytes()).hexdigest() == taken["sha256"]

    def read(key: str) -> str | None:
        try:  # a connection that fails (a loaded machine, a leader change) is retried
            return get_via_service(emulated, NAME, key) or ""
        except OSError:
            return None

    assert retrying(emulated, lambda: read("in-place"), 60, "read in-place") == "at-bkt-3"
    assert read("late") == ""  # written after bkt-3: gone
    for key, value in DATA.items():
        assert read(key) == value, key
    # The old data is kept aside on the volume.
    assert (volume / "pre-restore-b1" / "wal").is_dir()

    # The credentials went to the staging Job only, from the Secret, as environment.
    job = must_get(
        emulated, "batch/v1/jobs", desired.restore_job_name(NAME, "b1", member, rollback=False)
    )
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in env if "valueFrom" in e}
    assert refs["RAFTKV_S3_SECRET_ACCESS_KEY"] == {
        "name": "s3-credentials",
        "key": "secretAccessKey",
    }
    sts = must_get(emulated, "apps/v1/statefulsets", NAME)
    assert "s3-credentials" not in json.dumps(sts["spec"]["template"])
    put_retrying(emulated, NAME, "after-bucket-restore", "writable", 10)
