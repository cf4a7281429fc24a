"""RaftCheckpoint work: take a checkpoint through the leader, record its manifest, apply
retention to scheduled ones, and copy it to the archive volume with a Job."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import kopf
from pydantic import ValidationError

from raftkv_operator import desired, kube, metrics, planner
from raftkv_operator.connections import RUNTIME, fetch_statuses, node_url
from raftkv_operator.events import info, warn
from raftkv_operator.members import NodeError, NodeUnreachable
from raftkv_operator.models import CheckpointPhase, RaftCheckpoint, RaftCluster
from raftkv_operator.observe import SCHEDULED_LABEL, pod_state
from raftkv_operator.settings import SETTINGS

TAKE_DEADLINE_SECONDS = 600.0
"""A checkpoint not taken this long after its RaftCheckpoint was created is marked Failed
(time, not a number of tries: it holds across operator restarts and retry back-offs)."""
ARCHIVE_GRACE_SECONDS = 120.0
"""How much longer than the archive Job's own deadline (activeDeadlineSeconds) the operator
waits for the Job to report an outcome before it says the archive failed."""
ARCHIVE_POLL_SECONDS = 5.0
RETENTION_SWEEP_SECONDS = 300.0
"""How often the schedule timer also reconciles the RaftCheckpoints with the files the
members hold (checkpoints taken outside the operator trigger node retention too)."""
_swept: dict[tuple[str, str], float] = {}
LOG = logging.getLogger(__name__)


async def _checkpoint_status(namespace: str, name: str) -> dict[str, Any]:
    obj = await kube.get_checkpoint_object(namespace, name)
    return dict((obj or {}).get("status") or {})


async def _patch_checkpoint_status(namespace: str, name: str, status: dict[str, Any]) -> None:
    await kube.patch_checkpoint_status(namespace, name, status)


async def _fail_checkpoint(
    body: Mapping[str, Any], namespace: str, name: str, message: str
) -> None:
    await _patch_checkpoint_status(
        namespace, name, {"phase": CheckpointPhase.FAILED.value, "message": message[:4000]}
    )
    metrics.CHECKPOINTS.labels("failure").inc()
    warn(body, reason="CheckpointFailed", message=message)


async def _leader_url(cluster: RaftCluster) -> str | None:
    objects = await kube.list_pods(cluster.namespace, desired.label_selector(cluster.name))
    pods = {s.name: s for s in (pod_state(cluster.name, o) for o in objects) if s is not None}
    port = cluster.spec.service.ports.client
    nodes = await RUNTIME.cluster_nodes(cluster.namespace, cluster.name)
    leader = planner.find_leader((await fetch_statuses(nodes, pods, port)).values())
    if leader is None:
        return None
    pod = pods.get(leader.name)
    secure = nodes.auth is not None
    return node_url(pod.ip, port, secure=secure) if pod is not None and pod.ip else None


async def _take_checkpoint(
    checkpoint: RaftCheckpoint,
    cluster: RaftCluster,
    body: Mapping[str, Any],
    cluster_body: Mapping[str, Any],
    retry: int,
) -> None:
    namespace, name = checkpoint.namespace, checkpoint.name
    ident = checkpoint.spec.id or planner.checkpoint_id(name)
    if checkpoint.status.phase != CheckpointPhase.RUNNING:
        await _patch_checkpoint_status(
            namespace, name, {"phase": CheckpointPhase.RUNNING.value, "id": ident}
        )
    url = await _leader_url(cluster)
    if url is None:
        raise kopf.TemporaryError(f"RaftCluster {cluster.name} has no leader", delay=2)
    try:
        nodes = await RUNTIME.cluster_nodes(cluster.namespace, cluster.name)
        manifest = await nodes.create_checkpoint(url, ident)
    except NodeUnreachable as e:
        raise kopf.TemporaryError(str(e), delay=2) from e
    except NodeError as e:
        if e.status >= 500 or e.status == 409:
            raise kopf.TemporaryError(str(e), delay=2) from e
        await _fail_checkpoint(body, namespace, name, str(e))
        raise kopf.PermanentError(str(e)) from e
    await _patch_checkpoint_status(
        namespace,
        name,
        {
            "phase": CheckpointPhase.SUCCEEDED.value,
            "id": manifest.get("id", ident),
            "index": manifest.get("index"),
            "term": manifest.get("term"),
            "sha256": manifest.get("sha256"),
            "size": manifest.get("size"),
            "members": list(manifest.get("members") or []),
            "time": _rfc3339(manifest.get("time")),
            "message": None,
        },
    )
    metrics.CHECKPOINTS.labels("success").inc()
    info(
        body,
        reason="CheckpointTaken",
        message=f"checkpoint {ident} at index {manifest.get('index')} "
        f"(sha256 {str(manifest.get('sha256'))[:12]})",
    )
    info(
        cluster_body,
        reason="CheckpointTaken",
        message=f"checkpoint {ident} ({name}) at index {manifest.get('index')}",
    )
    await kube.patch_cluster_status(
        cluster.namespace,
        cluster.name,
        {
            "lastCheckpoint": {
                "name": name,
                "id": manifest.get("id", ident),
                "index": manifest.get("index"),
                "time": _rfc3339(manifest.get("time")),
            }
        },
    )
    await apply_retention(cluster)


def _rfc3339(value: Any) -> str | None:
    """The manifest's time (epoch seconds or a string) as RFC 3339."""
    if value is None:
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


async def apply_retention(cluster: RaftCluster) -> None:
    """Make the RaftCheckpoints of `cluster` follow what exists.

    The members own checkpoint retention (`--checkpoint-retain`, spec.checkpoints.retain):
    a Succeeded RaftCheckpoint whose id the leader no longer holds is marked Expired. The
    operator owns archive retention: archived copies beyond the newest `archive retain` (by
    index), and a bucket's copies older than its maxAgeHours (never the newest), are marked
    unarchived first, then deleted by a Job (so no object ever claims a copy
    that is gone). A scheduled RaftCheckpoint left with neither is deleted.
    """
    # Without an answer from the leader nothing expires now, but archive retention (which
    # needs no member) still runs.
    held: dict[str, int] | None = None
    url = await _leader_url(cluster)
    if url is not None:
        try:
            nodes = await RUNTIME.cluster_nodes(cluster.namespace, cluster.name)
            held = await nodes.checkpoint_indexes(url)
        except (NodeError, NodeUnreachable):
            held = None
    namespace = cluster.namespace
    objects = [
        o
        for o in await kube.list_checkpoint_objects(namespace, "")
        if (o.get("spec") or {}).get("cluster") == cluster.name
    ]
    records = [planner.CheckpointRecord.from_object(o) for o in objects]
    verdict = planner.checkpoint_retention(
        records,
        held,
        retain=cluster.spec.checkpoints.retain,
        archive_retain=desired.archive_retain(cluster)
        if cluster.spec.checkpoints.archive is not None
        else None,
        archive_max_age=_bucket_max_age(cluster),
        now=datetime.now(UTC),
    )
    LOG.debug("retention of %s: the leader holds %s; %s", cluster.name, held, verdict)
    for name in verdict.expire:
        await _patch_checkpoint_status(
            namespace,
            name,
            {
                "phase": CheckpointPhase.EXPIRED.value,
                "message": "the members no longer hold this checkpoint (their retention, "
                f"checkpoints.retain {cluster.spec.checkpoints.retain}, removed it)",
            },
        )
        info(
            cluster.to_k8s(),
            reason="CheckpointExpired",
            message=f"RaftCheckpoint {name}: the members no longer hold it",
        )
    if verdict.unarchive:
        paths = [r.archive_path for r in records if r.name in verdict.unarchive and r.archive_path]
        for name in verdict.unarchive:
            await _patch_checkpoint_status(
                namespace,
                name,
                {
                    "archived": False,
                    "archivePath": None,
                    "message": "archived copy pruned (archive retention "
                    f"{desired.archive_retain(cluster)})",
                },
            )
        # A bucket's copies are pruned by the archive Job itself (`raftkv archive prune`,
        # the same count rule plus age); a volume's by a prune Job.
        valid = [p for p in paths if desired.is_archive_path(cluster.name, p)]
        if valid and desired.archive_claim_in_use(cluster) is not None:
            job = desired.archive_prune_job(
                cluster, valid, default_image_repository=SETTINGS.image_repository
            )
            if await kube.create_job(namespace, desired.with_owner(job, cluster)):
                info(
                    cluster.to_k8s(),
                    reason="ArchivePruned",
                    message=f"Job {job['metadata']['name']} deletes {len(valid)} archived "
                    "copies beyond retention",
                )
    for name in verdict.delete:
        if await kube.delete_checkpoint_object(namespace, name):
            info(
                cluster.to_k8s(),
                reason="CheckpointExpired",
                message=f"deleted RaftCheckpoint {name}: neither the members nor the archive "
                "hold it",
            )


def _bucket_max_age(cluster: RaftCluster) -> timedelta | None:
    archive = cluster.spec.checkpoints.archive
    if archive is None or archive.bucket is None or archive.bucket.max_age_hours is None:
        return None
    return timedelta(hours=archive.bucket.max_age_hours)


async def sweep(cluster: RaftCluster) -> None:
    """apply_retention, at most every RETENTION_SWEEP_SECONDS per cluster."""
    key = (cluster.namespace, cluster.name)
    now = time.monotonic()
    if now - _swept.get(key, float("-inf")) < RETENTION_SWEEP_SECONDS:
        return
    _swept[key] = now
    await apply_retention(cluster)


def _created(obj: Mapping[str, Any]) -> datetime | None:
    stamp = obj.get("metadata", {}).get("creationTimestamp")
    if not stamp:
        return None
    return datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))


async def _archive_checkpoint(
    checkpoint: RaftCheckpoint, cluster: RaftCluster, body: Mapping[str, Any]
) -> None:
    namespace = checkpoint.namespace
    ident = checkpoint.status.id or checkpoint.spec.id or planner.checkpoint_id(checkpoint.name)
    job = desired.checkpoint_archive_job(
        cluster,
        checkpoint,
        checkpoint_id=ident,
        default_image_repository=SETTINGS.image_repository,
    )
    job_name = job["metadata"]["name"]
    if await kube.create_job(namespace, desired.with_owner(job, checkpoint)):
        info(body, reason="ArchiveStarted", message=f"Job {job_name} copies {ident}")
    live = await kube.get_job(namespace, job_name)
    job_status = (live or {}).get("status") or {}
    if job_status.get("succeeded"):
        path = desired.archive_path(cluster.name, ident)
        await _patch_checkpoint_status(
            namespace, checkpoint.name, {"archived": True, "archivePath": path}
        )
        metrics.ARCHIVES.labels(cluster.name, namespace, "success").inc()
        info(body, reason="Archived", message=f"copied to {_target_description(cluster)}{path}")
        await apply_retention(cluster)
        return
    failed = any(
        c.get("type") == "Failed" and c.get("status") == "True"
        for c in job_status.get("conditions") or ()
    )
    created = _created(live or {})
    overdue = planner.overdue(
        created,
        desired.archive_timeout_seconds(cluster) + ARCHIVE_GRACE_SECONDS,
        datetime.now(UTC),
    )
    if failed or overdue:
        why = "failed" if failed else "reported no outcome within its deadline"
        message = (
            f"archive Job {job_name} {why} (target: {_target_description(cluster)}); "
            f"its pod's log says why: kubectl -n {namespace} logs job/{job_name}"
        )
        if checkpoint.status.message == message:
            return  # reported already (a later event on the same object)
        await _patch_checkpoint_status(namespace, checkpoint.name, {"message": message})
        metrics.ARCHIVES.labels(cluster.name, namespace, "failure").inc()
        warn(body, reason="ArchiveFailed", message=message)
        warn(
            cluster.to_k8s(),
            reason="ArchiveFailed",
            message=f"RaftCheckpoint {checkpoint.name}: {message}",
        )
        return
    raise kopf.TemporaryError(f"waiting for Job {job_name}", delay=ARCHIVE_POLL_SECONDS)


def _target_description(cluster: RaftCluster) -> str:
    """Where copies go, for Events: `bucket <endpoint>/<bucket>/<prefix>/` or `claim X/`."""
    archive = cluster.spec.checkpoints.archive
    if archive is not None and archive.bucket is not None:
        location = archive.bucket
        prefix = f"{location.prefix}/" if location.prefix else ""
        return f"bucket {location.endpoint.rstrip('/')}/{location.bucket}/{prefix}"
    return f"claim {desired.archive_claim_in_use(cluster)}/"


async def schedule(body: Mapping[str, Any], name: str, namespace: str) -> None:
    """Create the RaftCheckpoint of the newest due schedule time, if any (idempotent: the
    name is the schedule time)."""
    try:
        cluster = RaftCluster.model_validate(body)
    except ValidationError:
        return  # the reconcile daemon reports it
    schedule = cluster.spec.checkpoints.schedule
    if cluster.spec.paused or not cluster.status.bootstrapped:
        return
    if not schedule:
        await sweep(cluster)  # checkpoints taken by hand expire too
        return
    born = cluster.metadata.creation_timestamp or datetime.now(UTC)
    due = planner.schedule_due(schedule, cluster.status.last_schedule_time, born, datetime.now(UTC))
    if due is None:
        await sweep(cluster)
        return
    checkpoint_name = planner.scheduled_checkpoint_name(name, due)
    obj = RaftCheckpoint.model_validate(
        {
            "metadata": {
                "name": checkpoint_name,
                "namespace": namespace,
                "labels": {
                    **desired.labels(name, "checkpoint"),
                    SCHEDULED_LABEL: "true",
                },
            },
            "spec": {"cluster": name},
        }
    )
    created = await kube.create_checkpoint_object(
        namespace, desired.with_owner(obj.to_k8s(), cluster)
    )
    await kube.patch_cluster_status(
        namespace, name, {"lastScheduleTime": due.strftime("%Y-%m-%dT%H:%M:%SZ")}
    )
    if created:
        info(
            body,
            reason="CheckpointScheduled",
            message=f"created RaftCheckpoint {checkpoint_name} for {due:%Y-%m-%d %H:%M} UTC",
        )


async def process(body: Mapping[str, Any], name: str, namespace: str, retry: int) -> None:
    """Take the checkpoint (once), then archive it when the cluster has an archive.

    Retried (kopf TemporaryError) until done; it gives up by time, not by a number of tries:
    taking it by TAKE_DEADLINE_SECONDS after the object was created, archiving by the
    archive Job's own deadline (a slow image pull is not a failure)."""
    checkpoint = RaftCheckpoint.model_validate(body)
    status = checkpoint.status
    if status.phase in (CheckpointPhase.FAILED, CheckpointPhase.EXPIRED):
        return
    cluster_body = await kube.get_cluster(namespace, checkpoint.spec.cluster)
    if cluster_body is None:
        await _fail_checkpoint(
            body, namespace, name, f"RaftCluster {checkpoint.spec.cluster!r} does not exist"
        )
        return
    cluster = RaftCluster.model_validate(cluster_body)
    try:
        if status.phase != CheckpointPhase.SUCCEEDED:
            if cluster.spec.paused:
                raise kopf.TemporaryError("the cluster is paused", delay=10)
            await _take_checkpoint(checkpoint, cluster, body, cluster_body, retry)
            checkpoint = RaftCheckpoint.model_validate(
                {**dict(body), "status": (await _checkpoint_status(namespace, name))}
            )
        if (
            cluster.spec.checkpoints.archive is not None
            and checkpoint.status.phase == CheckpointPhase.SUCCEEDED
            and not checkpoint.status.archived
        ):
            await _archive_checkpoint(checkpoint, cluster, body)
    except kopf.TemporaryError as e:
        taken = checkpoint.status.phase == CheckpointPhase.SUCCEEDED
        born = checkpoint.metadata.creation_timestamp
        if taken or not planner.overdue(born, TAKE_DEADLINE_SECONDS, datetime.now(UTC)):
            raise
        await _fail_checkpoint(
            body, namespace, name, f"not taken within {TAKE_DEADLINE_SECONDS:.0f} s: {e}"
        )
        raise kopf.PermanentError(str(e)) from e
