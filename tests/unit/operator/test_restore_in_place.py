"""In-place restore (spec.restoreInPlace): the source choice, the RestoreInPlace operation
step by step, and the Jobs' shell scripts run for real on a directory standing in for a
member's volume."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Any

import pytest

from raftkv_operator import desired, planner, restoresource
from raftkv_operator.models import ClusterPhase, OperationKind, RaftCluster, RecoveryPhase
from raftkv_operator.restoresource import CheckpointSource
from tests.unit.operator.test_planner import HASH, NAME, NOW, member, node, pod, replace

SHA = "ab" * 32
REQUEST = {"requestId": "r1", "checkpoint": "demo-cp1", "confirm": "ReplaceAllData"}
MEMBERS = [f"{NAME}-{i}" for i in range(3)]
BUCKET_LOCATION = {
    "endpoint": "https://s3.example.test",
    "bucket": "raftkv-archive",
    "prefix": "prod",
    "credentialsSecret": "s3-credentials",
}


def checkpoint(**kw: Any) -> CheckpointSource:
    fields: dict[str, Any] = {
        "name": "demo-cp1",
        "cluster": NAME,
        "phase": "Succeeded",
        "checkpoint_id": "cp1",
        "sha256": SHA,
        "index": 42,
        "members": tuple(MEMBERS),
        "archive_path": None,
    }
    fields.update(kw)
    return CheckpointSource(**fields)


def raft_cluster(status: dict[str, Any] | None = None, **spec: Any) -> RaftCluster:
    return RaftCluster.model_validate(
        {
            "metadata": {"name": NAME, "namespace": "ns", "uid": "u", "generation": 1},
            "spec": {"replicas": 3, "restoreInPlace": REQUEST, **spec},
            "status": {"bootstrapped": True, "initialReplicas": 3, **(status or {})},
        }
    )


def running(**kw: Any) -> planner.Observed:
    members = [member(i) for i in range(3)]
    fields: dict[str, Any] = {
        "cluster": raft_cluster(),
        "statefulset_replicas": 3,
        "statefulset_hash": HASH,
        "pods": {f"{NAME}-{i}": pod(i) for i in range(3)},
        "nodes": {
            f"{NAME}-{i}": node(i, "leader" if i == 0 else "follower", members) for i in range(3)
        },
        "volumes": {f"{NAME}-{i}": f"pvc-{i}" for i in range(3)},
        "recorded_volumes": {f"{NAME}-{i}": f"pvc-{i}" for i in range(3)},
        "restore_checkpoint": checkpoint(),
    }
    fields.update(kw)
    return planner.Observed(**fields)


def persist(obs: planner.Observed, result: planner.Plan, **kw: Any) -> planner.Observed:
    status = obs.cluster.status.model_dump(mode="json", by_alias=True, exclude_none=True)
    status["operation"] = (
        result.operation.model_dump(mode="json", by_alias=True, exclude_none=True)
        if result.operation
        else None
    )
    if result.restore is not None:
        status["restore"] = result.restore.model_dump(mode="json", by_alias=True, exclude_none=True)
    status.update(kw.pop("status", {}))
    return replace(obs, cluster=raft_cluster(status=status), **kw)


def job(member: str, *, rollback: bool = False) -> str:
    return desired.restore_job_name(NAME, "r1", member, rollback=rollback)


# ---- the source ----------------------------------------------------------------------------------


def test_the_members_copies_when_all_hold_it_else_the_archive_else_refused() -> None:
    choose = restoresource.choose_source
    kw: dict[str, Any] = {
        "cluster": NAME,
        "requested": "demo-cp1",
        "members": MEMBERS,
        "archive_claim": "demo-archive",
    }
    assert choose(checkpoint(), **kw).source == "members"
    partial = checkpoint(members=tuple(MEMBERS[:2]), archive_path="demo/cp1")
    archived = choose(partial, **kw)
    assert archived.source == "archive:demo-archive/demo/cp1"
    assert restoresource.parse_source(archived.source) == ("demo-archive", "demo/cp1")
    refused = choose(checkpoint(members=tuple(MEMBERS[:2])), **kw)
    assert refused.source is None and f"{NAME}-2" in (refused.refused or "")
    assert choose(None, **kw).refused == "RaftCheckpoint demo-cp1 not found"
    assert choose(checkpoint(cluster="other"), **kw).source is None
    assert choose(checkpoint(sha256=None, phase="Running"), **kw).source is None


def test_a_bucket_copy_when_the_members_lack_it_and_the_cluster_archives_to_a_bucket() -> None:
    choose = restoresource.choose_source
    kw: dict[str, Any] = {"cluster": NAME, "requested": "demo-cp1", "members": MEMBERS}
    expired = checkpoint(phase="Expired", archive_path="demo/cp1")
    chosen = choose(expired, archive_claim=None, bucket_archive=True, **kw)
    assert chosen.source == "bucket:demo/cp1" and chosen.bucket_path == "demo/cp1"
    assert restoresource.parse_source(chosen.source) == (None, None)  # no claim to mount
    assert restoresource.bucket_path(chosen.source) == "demo/cp1"
    assert restoresource.bucket_path("archive:demo-archive/demo/cp1") is None
    assert restoresource.bucket_path("members") is None
    # The members' own copies still come first.
    assert choose(checkpoint(), archive_claim=None, bucket_archive=True, **kw).source == "members"


def test_a_refusal_says_what_is_really_missing() -> None:
    choose = restoresource.choose_source
    kw: dict[str, Any] = {"cluster": NAME, "requested": "demo-cp1", "members": MEMBERS}
    lacking = checkpoint(members=tuple(MEMBERS[:2]))
    to_bucket = choose(lacking, archive_claim=None, bucket_archive=True, **kw).refused or ""
    assert f"not held by {NAME}-2" in to_bucket
    assert "not archived to the bucket" in to_bucket and "volume" not in to_bucket, to_bucket
    to_claim = choose(lacking, archive_claim="demo-archive", bucket_archive=False, **kw).refused
    assert "not archived to the archive volume demo-archive" in (to_claim or ""), to_claim
    nowhere = choose(lacking, archive_claim=None, bucket_archive=False, **kw).refused or ""
    assert "has no checkpoints.archive" in nowhere, nowhere
    expired = choose(checkpoint(phase="Expired"), archive_claim=None, bucket_archive=True, **kw)
    assert "Expired" in (expired.refused or "") and "bucket" in (expired.refused or "")


def test_a_restore_from_the_bucket_copy_records_it_as_the_source() -> None:
    archive = {"archive": {"bucket": BUCKET_LOCATION}}
    obs = running(
        cluster=raft_cluster(checkpoints=archive),
        restore_checkpoint=checkpoint(phase="Expired", archive_path="demo/cp1"),
    )
    result = planner.plan(obs, NOW)
    assert result.restore is not None and result.restore.source == "bucket:demo/cp1"
    assert result.operation is not None
    assert result.operation.kind == OperationKind.RESTORE_IN_PLACE
    assert result.action is not None and result.action.kind == "set_replicas"


# ---- the operation ----------------------------------------------------------------------------------


def test_a_request_for_a_missing_checkpoint_is_refused_and_changes_nothing() -> None:
    result = planner.plan(running(restore_checkpoint=None), NOW)
    assert result.action is None and result.operation is None
    assert result.restore is not None and result.restore.phase == RecoveryPhase.REFUSED
    assert result.notice is not None and result.notice.reason == "RestoreRefused"


def test_restore_walks_every_step() -> None:
    obs = running()
    result = planner.plan(obs, NOW)
    assert result.operation is not None and result.operation.kind == OperationKind.RESTORE_IN_PLACE
    assert result.action is not None and result.action.kind == "set_replicas"
    assert result.action.replicas == 0 and result.phase == ClusterPhase.RESTORING
    assert result.restore is not None and result.restore.sha256 == SHA
    assert result.restore.kept_aside == "/var/lib/raftkv/pre-restore-r1"
    obs = persist(obs, result, statefulset_replicas=0, pods={}, nodes={})
    # Members stopped on purpose: no QuorumLost condition, no quorum-lost metric (though
    # none of the voters status.members recorded answers).
    recorded = {
        "members": [{"name": m, "id": 10 + i, "role": "Follower"} for i, m in enumerate(MEMBERS)]
    }
    quiet = persist(
        obs, planner.Plan(ClusterPhase.RESTORING, obs.cluster.status.operation), status=recorded
    )
    assert planner.quorum_view(quiet).lost  # what a real loss of all three would say
    stopped = planner.plan(quiet, NOW)
    assert not stopped.quorum_lost
    assert all(reason != "QuorumLost" for _, _, reason, _ in planner.conditions(quiet, stopped))
    # One member at a time: prepare, wait, next.
    jobs: dict[str, planner.JobState] = {}
    for name in MEMBERS:
        result = planner.plan(replace(obs, jobs=jobs), NOW)
        assert result.action is not None and result.action.kind == "run_restore_job"
        assert result.action.member == name
        jobs[job(name)] = "Running"
        assert planner.plan(replace(obs, jobs=jobs), NOW).action is None
        jobs[job(name)] = "Succeeded"
    obs = replace(obs, jobs=jobs)
    result = planner.plan(obs, NOW)
    assert result.action is not None and result.action.kind == "begin_rebootstrap"
    obs = persist(obs, result, status={"bootstrapped": False})
    # The ConfigMap offers the staged checkpoint only now.
    assert desired.config_map(obs.cluster)["data"]["restore-from"] == desired.RESTORE_DIR
    assert desired.config_map(obs.cluster)["data"]["initial-cluster-state"] == "new"
    result = planner.plan(obs, NOW)
    assert result.action is not None and result.action.kind == "set_replicas"
    assert result.action.replicas == 3
    obs = persist(
        obs, result, statefulset_replicas=3, pods={f"{NAME}-{i}": pod(i) for i in range(3)}
    )
    assert planner.plan(obs, NOW).action is None  # no leader yet
    members = [member(i) for i in range(3)]
    obs = replace(
        obs,
        nodes={
            f"{NAME}-{i}": node(i, "leader" if i == 1 else "follower", members) for i in range(3)
        },
    )
    result = planner.plan(obs, NOW)
    assert result.action is not None and result.action.kind == "mark_bootstrapped"
    obs = persist(obs, result, status={"bootstrapped": True})
    assert "restore-from" not in desired.config_map(obs.cluster)["data"]
    result = planner.plan(obs, NOW)
    assert result.operation is None
    assert result.restore is not None and result.restore.phase == RecoveryPhase.SUCCEEDED
    assert result.notice is not None and result.notice.reason == "RestoreSucceeded"
    # Acted on once.
    obs = persist(obs, result)
    assert planner.plan(obs, NOW).restore is None


def test_a_failed_preparation_rolls_every_volume_back_and_restarts() -> None:
    obs = running()
    result = planner.plan(obs, NOW)
    obs = persist(obs, result, statefulset_replicas=0, pods={}, nodes={})
    jobs: dict[str, planner.JobState] = {job(MEMBERS[0]): "Succeeded", job(MEMBERS[1]): "Failed"}
    result = planner.plan(replace(obs, jobs=jobs), NOW)
    assert result.operation is not None and result.operation.step == planner.STEP_ROLLBACK
    assert result.notice is not None and result.notice.reason == "RestoreFailed"
    obs = persist(replace(obs, jobs=jobs), result)
    for name in MEMBERS:  # every volume, also the ones never prepared (idempotent)
        result = planner.plan(replace(obs, jobs=jobs), NOW)
        assert result.action is not None and result.action.kind == "run_unrestore_job"
        assert result.action.member == name
        jobs[job(name, rollback=True)] = "Succeeded"
    result = planner.plan(replace(obs, jobs=jobs), NOW)
    assert result.action is not None and result.action.kind == "set_replicas"
    assert result.action.replicas == 3
    obs = persist(replace(obs, jobs=jobs), result, statefulset_replicas=3)
    result = planner.plan(obs, NOW)
    assert result.operation is None
    assert result.restore is not None and result.restore.phase == RecoveryPhase.FAILED
    assert f"{NAME}-1" in (result.restore.message or "")
    assert f"{NAME}-0 " not in (result.restore.message or "")


def test_the_request_needs_the_exact_confirmation() -> None:
    with pytest.raises(ValueError, match="confirm"):
        raft_cluster(restoreInPlace={**REQUEST, "confirm": "yes"})


# ---- the scripts, for real -----------------------------------------------------------------------


def _volume(tmp_path: Path, payload: bytes) -> Path:
    """A member volume: data/ with a WAL file and its own copy of checkpoint cp1."""
    volume = tmp_path / "vol"
    (volume / "data" / "wal").mkdir(parents=True)
    (volume / "data" / "wal" / "0.wal").write_bytes(b"old log")
    copy = volume / "data" / "checkpoints" / "cp1"
    copy.mkdir(parents=True)
    (copy / "data").write_bytes(payload)
    (copy / "manifest.json").write_text("{}")
    return volume


def _run(script: str, volume: Path) -> subprocess.CompletedProcess[str]:
    script = script.replace(desired.VOLUME_MOUNT, str(volume))
    return subprocess.run(
        ["/bin/sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )


def test_prepare_stages_checks_and_moves_the_old_data_aside(tmp_path: Path) -> None:
    payload = b"checkpoint bytes"
    volume = _volume(tmp_path, payload)
    script = desired.restore_prepare_script(
        "r1", "cp1", hashlib.sha256(payload).hexdigest(), archive_path=None
    )
    done = _run(script, volume)
    assert done.returncode == 0, done.stderr
    assert (volume / "restore" / "data").read_bytes() == payload
    assert (volume / "pre-restore-r1" / "wal" / "0.wal").read_bytes() == b"old log"
    assert not (volume / "data").exists()
    again = _run(script, volume)  # idempotent
    assert again.returncode == 0 and "prepared already" in again.stdout
    back = _run(desired.restore_rollback_script("r1"), volume)
    assert back.returncode == 0, back.stderr
    assert (volume / "data" / "wal" / "0.wal").read_bytes() == b"old log"
    assert not (volume / "restore").exists() and not (volume / "pre-restore-r1").exists()


def test_prepare_refuses_bytes_with_another_sha256_and_touches_nothing(tmp_path: Path) -> None:
    volume = _volume(tmp_path, b"rotten bytes")
    script = desired.restore_prepare_script(
        "r1", "cp1", hashlib.sha256(b"checkpoint bytes").hexdigest(), archive_path=None
    )
    done = _run(script, volume)
    assert done.returncode != 0
    assert (volume / "data" / "wal" / "0.wal").read_bytes() == b"old log"
    assert not (volume / "restore").exists() and not (volume / "pre-restore-r1").exists()


def test_prepare_copies_from_the_archive(tmp_path: Path) -> None:
    payload = b"archived bytes"
    volume = _volume(tmp_path, b"unused")
    archive = tmp_path / "archive" / "demo" / "cp1"
    archive.mkdir(parents=True)
    (archive / "data").write_bytes(payload)
    (archive / "manifest.json").write_text("{}")
    script = desired.restore_prepare_script(
        "r1", "cp1", hashlib.sha256(payload).hexdigest(), archive_path="demo/cp1"
    )
    script = script.replace(desired.ARCHIVE_MOUNT + "/", str(tmp_path / "archive") + "/")
    done = _run(script, volume)
    assert done.returncode == 0, done.stderr
    assert (volume / "restore" / "data").read_bytes() == payload


def _fake_raftkv(tmp_path: Path, payload: bytes) -> Path:
    """A `raftkv` on PATH that "downloads" `payload` as `raftkv archive download` does."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "raftkv"
    source = tmp_path / "bucket-copy"
    source.mkdir()
    (source / "data").write_bytes(payload)
    (source / "manifest.json").write_text("{}")
    tool.write_text(
        "#!/bin/sh\n"
        'echo "$@" > ' + str(tmp_path / "argv") + "\n"
        'while [ "$1" != "--out" ]; do shift; done\n'
        f'mkdir -p "$2" && cp {source}/data {source}/manifest.json "$2"/\n'
    )
    tool.chmod(0o755)
    return bin_dir


def test_prepare_downloads_the_bucket_copy_and_checks_its_sha256(tmp_path: Path) -> None:
    payload = b"bucket bytes"
    volume = _volume(tmp_path, b"old checkpoint")
    location = raft_cluster(checkpoints={"archive": {"bucket": BUCKET_LOCATION}})
    bucket_archive = location.spec.checkpoints.archive
    assert bucket_archive is not None and bucket_archive.bucket is not None
    bin_dir = _fake_raftkv(tmp_path, payload)

    def prepare(sha256: str) -> subprocess.CompletedProcess[str]:
        script = desired.restore_prepare_script(
            "r1", "cp1", sha256, archive_path="demo/cp1", from_bucket=bucket_archive.bucket
        )
        return _run(script.replace("raftkv archive", f"{bin_dir}/raftkv archive"), volume)

    # Bytes that are not the RaftCheckpoint's: refused, nothing moved.
    wrong = prepare(hashlib.sha256(b"other bytes").hexdigest())
    assert wrong.returncode != 0
    assert (volume / "data" / "wal" / "0.wal").read_bytes() == b"old log"
    assert not (volume / "restore").exists() and not (volume / "pre-restore-r1").exists()
    done = prepare(hashlib.sha256(payload).hexdigest())
    assert done.returncode == 0, done.stderr
    assert (volume / "restore" / "data").read_bytes() == payload
    assert (volume / "pre-restore-r1" / "wal" / "0.wal").read_bytes() == b"old log"
    argv = (tmp_path / "argv").read_text().split()
    assert argv[:3] == ["archive", "download", "demo/cp1"] and "raftkv-archive" in argv


def test_the_bucket_staging_job_alone_gets_the_credentials() -> None:
    cluster = raft_cluster(checkpoints={"archive": {"bucket": BUCKET_LOCATION}})
    archive = cluster.spec.checkpoints.archive
    assert archive is not None and archive.bucket is not None
    job = desired.restore_job(
        cluster, f"{NAME}-0", "r1", "true", rollback=False, from_bucket=archive.bucket
    )
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in env if "valueFrom" in e}
    assert refs.get("RAFTKV_S3_SECRET_ACCESS_KEY") == "s3-credentials"
    rollback = desired.restore_job(cluster, f"{NAME}-0", "r1", "true", rollback=True)
    assert "s3-credentials" not in str(rollback)
    assert "s3-credentials" not in str(desired.stateful_set(cluster))


def test_scripts_refuse_bad_arguments() -> None:
    with pytest.raises(ValueError):
        desired.restore_prepare_script("r1", "../x", SHA, archive_path=None)
    with pytest.raises(ValueError):
        desired.restore_prepare_script("r1", "cp1", "nothex", archive_path=None)
    with pytest.raises(ValueError):
        desired.restore_job(raft_cluster(), "other-0", "r1", "true", rollback=False)
