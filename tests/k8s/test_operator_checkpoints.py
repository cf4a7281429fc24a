"""Emulated Kubernetes: scheduled and on-demand checkpoints (recorded as RaftCheckpoint objects
whose sha256 matches the files on every member's volume), retention, the archive Job, and
a new cluster restored from a checkpoint with the same data."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from raftkv_operator import desired, planner
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
    status,
    wait_available,
    wait_for,
)

NAME = "ckpt"
pytestmark = pytest.mark.timeout(300)
OLDER_SCHEDULED = f"{NAME}-202001010000"
DATA = {f"ckpt-key-{i}": f"value-{i}" for i in range(25)}


@pytest.fixture(scope="module")
def source(emulated: EmulatedCluster, operator: Operator) -> str:
    manifest = cluster_manifest(NAME, 3)
    manifest["spec"]["checkpoints"] = {
        "schedule": "* * * * *",
        "retain": 1,
        "archive": {"volumeClaimTemplate": {"size": "64Mi"}},
    }
    emulated.create(CLUSTERS, manifest, NAMESPACE)
    wait_available(emulated, NAME, 3, timeout=90)
    for key, value in DATA.items():
        put_retrying(emulated, NAME, key, value, 10)
    return NAME


def checkpoint(emulated: EmulatedCluster, name: str) -> dict[str, Any] | None:
    return emulated.get(CHECKPOINTS, NAMESPACE, name)


def succeeded(emulated: EmulatedCluster, name: str) -> dict[str, Any] | None:
    obj = checkpoint(emulated, name)
    if obj and (obj.get("status") or {}).get("phase") == "Failed":
        raise AssertionError(f"checkpoint {name} failed: {obj['status']}")
    if obj and (obj.get("status") or {}).get("phase") == "Succeeded":
        return obj
    return None


def member_files(
    emulated: EmulatedCluster, cluster: str, checkpoint_id: str, members: int = 3
) -> dict[str, Path]:
    out = {}
    for i in range(members):
        pod = desired.pod_name(cluster, i)
        volume = emulated.pvc_path(NAMESPACE, f"data-{pod}")
        out[pod] = volume / "data" / "checkpoints" / checkpoint_id / "data"
    return out


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def take(
    emulated: EmulatedCluster, cluster: str, name: str, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    """An on-demand RaftCheckpoint (created unless it exists), once it succeeded."""
    if checkpoint(emulated, name) is None:
        emulated.create(
            CHECKPOINTS,
            {
                "apiVersion": "raftkv.dev/v1alpha1",
                "kind": "RaftCheckpoint",
                "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels or {}},
                "spec": {"cluster": cluster, "id": name},
            },
            NAMESPACE,
        )
    return wait_for(emulated, lambda: succeeded(emulated, name), 60, f"checkpoint {name}")


def test_on_demand_checkpoint_is_recorded_and_on_every_member(
    emulated: EmulatedCluster, source: str
) -> None:
    obj = take(emulated, source, "manual-1")
    st = obj["status"]
    assert st["id"] == "manual-1" and st["index"] > 0 and st["size"] > 0
    assert sorted(st["members"]) == [desired.pod_name(source, i) for i in range(3)]
    files = member_files(emulated, source, "manual-1")
    wait_for(
        emulated,
        lambda: all(p.is_file() for p in files.values()),
        20,
        "every member wrote the checkpoint",
    )
    assert {pod: sha256(p) for pod, p in files.items()} == dict.fromkeys(files, st["sha256"])
    wait_for(
        emulated,
        lambda: (status(emulated, source).get("lastCheckpoint") or {}).get("id") == "manual-1",
        30,
        "status.lastCheckpoint",
    )


def test_scheduled_checkpoint_appears_with_retention_and_archive(
    emulated: EmulatedCluster, source: str
) -> None:
    # An older scheduled checkpoint, which retention (retain 1) must delete once the new
    # one succeeded.
    take(
        emulated,
        source,
        OLDER_SCHEDULED,
        {"raftkv.dev/scheduled": "true", "app.kubernetes.io/instance": source},
    )
    # A schedule that last fired two minutes ago is due now (cron has minute resolution;
    # waiting for the next minute would cost up to 60 s).
    past = datetime.now(UTC) - timedelta(minutes=2)
    emulated.patch(
        CLUSTERS,
        NAMESPACE,
        source,
        {"status": {"lastScheduleTime": past.strftime("%Y-%m-%dT%H:%M:%SZ")}},
        subresource="status",
    )

    def scheduled() -> list[dict[str, Any]]:
        return [
            o
            for o in emulated.list(CHECKPOINTS, NAMESPACE)
            if (o["metadata"].get("labels") or {}).get("raftkv.dev/scheduled") == "true"
        ]

    def fresh() -> list[dict[str, Any]]:
        return [o for o in scheduled() if o["metadata"]["name"] != OLDER_SCHEDULED]

    found = wait_for(emulated, fresh, 30, "a scheduled RaftCheckpoint")
    # One scheduled run is enough: with members keeping one checkpoint, the next minute's
    # run would expire (and, once archived past retention, delete) this one under the test.
    emulated.patch(CLUSTERS, NAMESPACE, source, {"spec": {"checkpoints": {"schedule": None}}})
    assert len(found) == 1
    name = found[0]["metadata"]["name"]
    assert name.startswith(f"{source}-") and len(name) == len(source) + 13  # -yyyymmddhhmm
    assert found[0]["metadata"]["ownerReferences"][0]["name"] == source
    obj = wait_for(emulated, lambda: succeeded(emulated, name), 60, "scheduled checkpoint taken")
    ident = obj["status"]["id"]
    assert ident == planner.checkpoint_id(name)
    files = member_files(emulated, source, ident)
    wait_for(
        emulated,
        lambda: all(p.is_file() for p in files.values()),
        20,
        "every member wrote the checkpoint",
    )
    assert {sha256(p) for p in files.values()} == {obj["status"]["sha256"]}
    # The same schedule time again creates nothing new (idempotent names).
    st = status(emulated, source)
    assert st["lastScheduleTime"] >= past.strftime("%Y-%m-%dT%H:%M:%SZ")
    # Archive: a Job copied it to the archive claim.
    archived = wait_for(
        emulated,
        lambda: (checkpoint(emulated, name) or {}).get("status", {}).get("archived"),
        60,
        "the archive Job copied the checkpoint",
    )
    assert archived is True
    path = must_get(emulated, CHECKPOINTS, name)["status"]["archivePath"]
    copy = emulated.pvc_path(NAMESPACE, f"{source}-checkpoints") / path
    assert sha256(copy / "data") == obj["status"]["sha256"]
    assert json.loads((copy / "manifest.json").read_text())["sha256"] == obj["status"]["sha256"]
    wait_for(
        emulated,
        lambda: checkpoint(emulated, OLDER_SCHEDULED) is None,
        30,
        "retention deleted the older scheduled checkpoint",
    )
    # The members keep one checkpoint (retain 1): the on-demand one is kept as a record,
    # marked Expired, never left claiming files that are gone.
    wait_for(
        emulated,
        lambda: (
            (checkpoint(emulated, "manual-1") or {}).get("status", {}).get("phase") == "Expired"
        ),
        30,
        "the on-demand checkpoint whose files the members dropped is Expired",
    )
    assert not member_files(emulated, source, "manual-1")[f"{source}-0"].exists()
    # Archive retention (checkpoints.retain, 1): one archived copy is kept, the newest; the
    # copies retention pruned are deleted by a Job. (An older checkpoint may also expire on
    # the members before its own archive Job ran: then it is never archived at all.)
    archive = emulated.pvc_path(NAMESPACE, f"{source}-checkpoints") / source

    def archive_settled() -> bool:
        objects = mine(emulated, source)
        kept = [o for o in objects if (o.get("status") or {}).get("archived")]
        pruned = [
            o["status"]["id"]
            for o in objects
            if "pruned" in str((o.get("status") or {}).get("message"))
        ]
        return [o["metadata"]["name"] for o in kept] == [name] and not any(
            (archive / ident).exists() for ident in pruned
        )

    wait_for(emulated, archive_settled, 90, "one archived copy kept, the pruned ones deleted")
    assert not (checkpoint(emulated, "manual-1") or {}).get("status", {}).get("archived")
    wait_for(
        emulated,
        lambda: (
            {"CheckpointScheduled", "CheckpointTaken", "CheckpointExpired"}
            <= event_reasons(emulated, source)
        ),
        30,
        "Events for each step",
    )


def mine(emulated: EmulatedCluster, source: str) -> list[dict[str, Any]]:
    return [
        o
        for o in emulated.list(CHECKPOINTS, NAMESPACE)
        if (o.get("spec") or {}).get("cluster") == source
    ]


def quiesce(emulated: EmulatedCluster, source: str) -> None:
    """Stop the every-minute schedule and wait for the checkpoints in flight: a newer
    checkpoint (members keep one) would delete the one a restore is fetching."""
    emulated.patch(CLUSTERS, NAMESPACE, source, {"spec": {"checkpoints": {"schedule": None}}})

    def settled(o: dict[str, Any]) -> bool:
        st = o.get("status") or {}
        return st.get("phase") in ("Expired", "Failed") or (
            st.get("phase") == "Succeeded"
            and (st.get("archived") or "pruned" in str(st.get("message")))
        )

    wait_for(
        emulated, lambda: all(settled(o) for o in mine(emulated, source)), 60, "checkpoints settle"
    )


def test_restore_into_a_new_cluster_gives_the_same_data(
    emulated: EmulatedCluster, source: str
) -> None:
    quiesce(emulated, source)
    if not status(emulated, source).get("lastCheckpoint"):
        take(emulated, source, "manual-1")
    # The newest one: members keep only `retain` checkpoints on disk (1 here).
    newest = status(emulated, source)["lastCheckpoint"]
    assert newest["index"] > 0
    manifest = cluster_manifest("restored", 3)
    manifest["spec"]["restore"] = {"fromCheckpoint": {"cluster": source, "id": newest["id"]}}
    emulated.create(CLUSTERS, manifest, NAMESPACE)
    wait_available(emulated, "restored", 3, timeout=120)
    for key, value in DATA.items():
        assert get_via_service(emulated, "restored", key) == value, key

    def bootstrapped_config() -> bool:
        config = emulated.get("v1/configmaps", NAMESPACE, "restored-config") or {}
        data = config.get("data") or {}
        return data.get("initial-cluster-state") == "existing" and "restore-from" not in data

    wait_for(emulated, bootstrapped_config, 30, "the ConfigMap says existing, no restore-from")
    # The restored cluster is its own: writes there do not reach the source.
    put_retrying(emulated, "restored", "only-here", "1")
    assert get_via_service(emulated, source, "only-here") is None


def test_restore_from_the_archive_volume_gives_the_same_data(
    emulated: EmulatedCluster, source: str
) -> None:
    quiesce(emulated, source)
    archived = sorted(
        (o for o in mine(emulated, source) if (o.get("status") or {}).get("archived")),
        key=lambda o: o["status"].get("index") or 0,
    )
    if not archived:
        pytest.skip("needs the archived checkpoint of the scheduled-checkpoint scenario")
    path = archived[-1]["status"]["archivePath"]
    manifest = cluster_manifest("from-archive", 1)
    manifest["spec"]["restore"] = {"archive": {"claimName": f"{source}-checkpoints", "path": path}}
    emulated.create(CLUSTERS, manifest, NAMESPACE)
    wait_for(
        emulated,
        lambda: status(emulated, "from-archive").get("bootstrapped"),
        120,
        "from-archive bootstraps from the archived checkpoint",
    )

    # Restored: the members stop mounting the archive claim (the template drops it and the
    # member restarts), so the claim is free for anything else that mounts it.
    def mounts_archive() -> bool:
        sts = must_get(emulated, "apps/v1/statefulsets", "from-archive")
        running = [
            p["spec"]
            for p in emulated.list("v1/pods", NAMESPACE)
            if p["metadata"]["name"].startswith("from-archive-")
        ]
        specs = [sts["spec"]["template"]["spec"], *running]
        return any(
            (v.get("persistentVolumeClaim") or {}).get("claimName") == f"{source}-checkpoints"
            for spec in specs
            for v in spec.get("volumes") or []
        )

    wait_for(emulated, lambda: not mounts_archive(), 90, "no member mounts the archive claim")
    wait_available(emulated, "from-archive", 1, timeout=60)
    for key, value in DATA.items():
        assert get_via_service(emulated, "from-archive", key) == value, key
