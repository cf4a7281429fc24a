"""One cluster's reconcile round: observe -> planner.plan() -> persist status.operation ->
one action -> status. The decisions are planner.py's; this module does the I/O."""

from __future__ import annotations

import asyncio
import json
import shlex
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from raftkv.security import pki
from raftkv_operator import (
    carotation,
    credentials,
    desired,
    kube,
    metrics,
    nodeaccess,
    planner,
    restoresource,
    tlsmigration,
)
from raftkv_operator.connections import (
    RUNTIME,
    fetch_statuses,
    node_auth,
    node_url,
    read_credentials,
)
from raftkv_operator.events import KopfLogger, info, warn
from raftkv_operator.members import NodeError, NodeUnreachable
from raftkv_operator.models import (
    CARotationPhase,
    CARotationStatus,
    ClusterPhase,
    Condition,
    OperationKind,
    RaftCluster,
    TLSMode,
    set_condition,
)
from raftkv_operator.observe import (
    DATA_CLAIM_PREFIX,
    MEMBER_VOLUMES_ANNOTATION,
    pod_state,
    template_hash,
)
from raftkv_operator.settings import SETTINGS, operator_namespace


class RemovedIdentity(Exception):
    """The leader refuses a joiner's id: that incarnation was removed from the cluster."""

    def __init__(self, member: str, member_id: int) -> None:
        super().__init__(f"{member}: member id {member_id} was removed from the cluster")
        self.member = member
        self.member_id = member_id


def job_state(job: Mapping[str, Any] | None) -> planner.JobState | None:
    """Running, Succeeded or Failed from a Job's status conditions (None: no Job)."""
    if job is None:
        return None
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") == "Complete":
            return "Succeeded"
        if cond.get("type") == "Failed":
            return "Failed"
    return "Running"


def recorded_volumes(body: Mapping[str, Any]) -> dict[str, str]:
    raw = (body.get("metadata", {}).get("annotations") or {}).get(MEMBER_VOLUMES_ANNOTATION)
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


class Reconciler:
    """One cluster's reconcile round: observe, plan, persist, act, report."""

    def __init__(self, namespace: str, name: str, logger: KopfLogger) -> None:
        self.namespace = namespace
        self.name = name
        self.logger = logger
        self.synced_generation: int | None = None
        self.synced_at = 0.0
        self.last_refusal: str | None = None
        self.last_notice: planner.Notice | None = None
        self.tls_switch_warned = False
        self.budget_voters: int | None = None
        self.budget_synced_at = 0.0
        self.access_members: int | None = None
        self.access_synced_at = 0.0
        self.ca_rotating = False
        """A CA rotation is in flight (as the CA Secret said when last read)."""
        self.ca_request_seen: str | None = None
        """The rotate-ca annotation value the CA Secret records as acted on."""
        self.ca_status: CARotationStatus | None = None
        """status.caRotation as this process last wrote it."""

    async def once(self) -> bool:
        """One round; True while something is in flight (come back soon)."""
        body = await kube.get_cluster(self.namespace, self.name)
        if body is None or body.get("metadata", {}).get("deletionTimestamp"):
            return False
        try:
            cluster = RaftCluster.model_validate(body)
        except ValidationError as e:
            await self._invalid(body, e)
            return False
        status = cluster.status
        if status.initial_replicas is None:
            # Fixed before any pod exists: the founders are these, whatever replicas becomes.
            body = await kube.patch_cluster_status(
                self.namespace,
                self.name,
                {"initialReplicas": cluster.spec.replicas, "phase": ClusterPhase.PENDING.value},
            )
            cluster = RaftCluster.model_validate(body)
            info(
                body,
                reason="Creating",
                message=f"creating a cluster of {cluster.spec.replicas} members",
            )
        if not cluster.spec.paused:
            await self.sync_node_access(cluster)
            await self.sync_objects(cluster)
        observed = await self.observe(cluster, body)
        await self.sync_node_access(cluster, observed.statefulset_replicas, observed.pods)
        cluster = await self.sync_tls_migration(cluster, observed)
        if self.ca_rotation_due(cluster):
            # Every round while one is in flight: each step waits on what members report.
            await self.sync_credentials(cluster, member_tls(observed))
        now = datetime.now(UTC)
        result = planner.plan(observed, now)
        await self.write_status(cluster, body, observed, result)
        if result.record_volumes:
            await self.record_volumes(observed, result.record_volumes)
        if result.refused and result.refused != self.last_refusal:
            warn(body, reason="QuorumAtRisk", message=f"refused: {result.refused}")
        self.last_refusal = result.refused
        self.post_notice(body, result.notice)
        metrics.set_quorum(
            self.namespace,
            self.name,
            lost=result.quorum_lost,
            recovering=result.operation is not None
            and result.operation.kind == OperationKind.RECOVER_QUORUM,
            restoring=result.operation is not None
            and result.operation.kind == OperationKind.RESTORE_IN_PLACE,
        )
        await self.sync_disruption_budget(cluster, planner.budget_voters(observed, result))
        if result.action is not None:
            await self.perform(cluster, body, observed, result)
        metrics.set_phase(self.namespace, self.name, result.phase)
        return (
            result.operation is not None
            or result.action is not None
            or self.ca_rotating
            or tlsmigration.in_flight(cluster)
            or result.phase not in (ClusterPhase.AVAILABLE, ClusterPhase.PAUSED)
        )

    def post_notice(self, body: Mapping[str, Any], notice: planner.Notice | None) -> None:
        """Post the plan's Event once: not again while the plan keeps repeating it."""
        if notice is not None and notice != self.last_notice:
            (warn if notice.warning else info)(body, reason=notice.reason, message=notice.message)
            self.logger.info("%s: %s", notice.reason, notice.message)
        self.last_notice = notice

    async def _invalid(self, body: Mapping[str, Any], error: ValidationError) -> None:
        message = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        )[:1000]
        if (body.get("status") or {}).get("phase") != ClusterPhase.FAILED.value:
            warn(body, reason="InvalidSpec", message=message)
        await kube.patch_cluster_status(
            self.namespace, self.name, {"phase": ClusterPhase.FAILED.value}
        )
        metrics.set_phase(self.namespace, self.name, ClusterPhase.FAILED)

    # ---- objects ---------------------------------------------------------------------------

    async def sync_objects(self, cluster: RaftCluster, *, force: bool = False) -> None:
        """Create missing owned objects and correct drifted ones (not too often)."""
        generation = cluster.metadata.generation
        stale = time.monotonic() - self.synced_at > SETTINGS.resync_seconds
        if not force and not stale and generation == self.synced_generation:
            return
        await self.sync_credentials(cluster)
        repository = SETTINGS.image_repository
        policy = desired.network_policy(cluster, operator_namespace=operator_namespace())
        if policy is not None:
            outcome = await kube.ensure(self.namespace, desired.with_owner(policy, cluster))
            if outcome != "unchanged":
                self.logger.info("%s NetworkPolicy %s", outcome, policy["metadata"]["name"])
        for obj in desired.desired_objects(cluster, default_image_repository=repository):
            if obj["kind"] == "StatefulSet":
                await self.sync_statefulset(cluster)
                continue
            if obj["kind"] == "PodDisruptionBudget":
                continue  # sized from the observed voters: sync_disruption_budget
            outcome = await kube.ensure(self.namespace, desired.with_owner(obj, cluster))
            if outcome != "unchanged":
                self.logger.info("%s %s %s", outcome, obj["kind"], obj["metadata"]["name"])
        claim = desired.archive_claim(cluster)
        if claim is not None and await kube.create_volume(self.namespace, claim):
            info(
                cluster.to_k8s(),
                reason="ArchiveClaimCreated",
                message=f"created {claim['metadata']['name']} for archived checkpoints",
            )
        self.synced_generation = generation
        self.synced_at = time.monotonic()

    async def sync_node_access(
        self,
        cluster: RaftCluster,
        statefulset_replicas: int | None = None,
        pods: Iterable[str] = (),
    ) -> None:
        """The members' ServiceAccount, and their Role naming every member pod that may run
        (nodeaccess.py): widened before a scale-up creates a pod (spec.replicas counts),
        narrowed once a scale-down's pods are gone. Written when that count changes, and
        checked for drift every resync."""
        if cluster.spec.paused:
            return
        members = nodeaccess.member_count(
            cluster, statefulset_replicas, [*pods, *(m.name for m in cluster.status.members)]
        )
        stale = time.monotonic() - self.access_synced_at > SETTINGS.resync_seconds
        if members == self.access_members and not stale:
            return
        for obj in (
            nodeaccess.service_account(cluster),
            nodeaccess.role(cluster, members),
            nodeaccess.role_binding(cluster),
        ):
            outcome = await kube.ensure(self.namespace, desired.with_owner(obj, cluster))
            if outcome != "unchanged":
                self.logger.info("%s %s %s", outcome, obj["kind"], obj["metadata"]["name"])
        self.access_members = members
        self.access_synced_at = time.monotonic()

    def ca_rotation_due(self, cluster: RaftCluster) -> bool:
        """A CA rotation is in flight or newly asked for (the expiry check runs with every
        resync of the objects)."""
        if cluster.spec.paused or cluster.spec.tls.mode != TLSMode.OPERATOR:
            return False
        request = carotation.requested(cluster)
        return self.ca_rotating or (bool(request) and request != self.ca_request_seen)

    async def sync_credentials(
        self,
        cluster: RaftCluster,
        members: Mapping[str, carotation.MemberTLS | None] | None = None,
    ) -> None:
        """Create missing credential Secrets and renew expiring certificates
        (credentials.plan decides); cert-manager Certificates in that mode. Members re-read
        the mounted files, so a renewal restarts nothing. With `members` (what each loaded,
        observed this round) a CA rotation in flight may take its next step."""
        key = (self.namespace, self.name)
        if not cluster.spec.secure:
            RUNTIME.node_auth[key] = None
            return
        for certificate in credentials.certificates(cluster):
            outcome = await kube.ensure(self.namespace, desired.with_owner(certificate, cluster))
            if outcome != "unchanged":
                self.logger.info("%s Certificate %s", outcome, certificate["metadata"]["name"])
        live = await read_credentials(cluster)
        now = datetime.now(UTC)
        plan = credentials.plan(cluster, live, now, members)
        # In order: the CA Secret (a rotation's step) first, so what follows is recorded.
        for manifest, why in plan.writes:
            name = manifest["metadata"]["name"]
            await kube.write_secret(
                self.namespace, desired.with_owner(manifest, cluster), live.get(name)
            )
            live[name] = manifest
            info(cluster.to_k8s(), reason="CredentialsWritten", message=f"{name}: {why}")
        RUNTIME.node_auth[key] = node_auth(cluster, live)
        if cluster.spec.tls.mode == TLSMode.OPERATOR:
            await self.report_ca_rotation(cluster, plan, now, observed=members is not None)

    async def report_ca_rotation(
        self, cluster: RaftCluster, plan: credentials.Plan, now: datetime, *, observed: bool
    ) -> None:
        """The rotation's event, status.caRotation and metrics, from the CA Secret's data
        (`observed`: the members' reports were part of the plan, so its waiting list is
        news; otherwise the last one stands)."""
        ca_data = plan.ca_data
        phase = carotation.phase_of(ca_data)
        self.ca_rotating = phase is not None
        self.ca_request_seen = ca_data.get(carotation.REQUEST_KEY, b"").decode(errors="replace")
        if plan.rotation.event is not None:
            reason, message = plan.rotation.event
            self.logger.info("%s: %s", reason, message)
            info(cluster.to_k8s(), reason=reason, message=message)
        expires = pki.expires_at(ca_data[credentials.CA_CERT_KEY])
        step = 0 if phase is None else carotation.STEPS.index(phase) + 1
        metrics.set_ca(self.namespace, self.name, step, expires.timestamp())
        # What this process last wrote, else what the round read: a round may report twice.
        previous = self.ca_status or cluster.status.ca_rotation
        if phase is not None:
            wanted = CARotationStatus(
                phase=phase,
                reason=ca_data.get(carotation.REASON_KEY, b"").decode(errors="replace") or None,
                request_id=self.ca_request_seen or None,
                started_at=carotation.started_at(ca_data),
                waiting_for=(
                    plan.rotation.waiting[:16]
                    if observed or previous is None or previous.phase != phase
                    else previous.waiting_for
                ),
                ca_not_after=expires,
            )
        elif previous is not None and previous.phase != CARotationPhase.SUCCEEDED:
            wanted = previous.model_copy(
                update={
                    "phase": CARotationPhase.SUCCEEDED,
                    "finished_at": now,
                    "waiting_for": [],
                    "ca_not_after": expires,
                }
            )
        else:
            return
        # With its nulls: a merge patch keeps what it does not name (a finishedAt of the
        # previous rotation would stay on the next).
        dumped = wanted.model_dump(mode="json", by_alias=True)
        live = previous.model_dump(mode="json", by_alias=True) if previous is not None else None
        if dumped != live:
            await kube.patch_cluster_status(self.namespace, self.name, {"caRotation": dumped})
        self.ca_status = wanted

    async def sync_disruption_budget(self, cluster: RaftCluster, voters: int | None) -> None:
        """The PodDisruptionBudget sized from the voters now (status's record without a
        leader); written when that size changes, and checked for drift every resync."""
        if cluster.spec.paused:
            return
        count = desired.budget_voters(cluster) if voters is None else voters
        stale = time.monotonic() - self.budget_synced_at > SETTINGS.resync_seconds
        if count == self.budget_voters and not stale:
            return
        pdb = desired.pod_disruption_budget(cluster, voters=count)
        outcome = await kube.ensure(self.namespace, desired.with_owner(pdb, cluster))
        if outcome != "unchanged":
            self.logger.info(
                "%s PodDisruptionBudget %s: maxUnavailable %s for %d voters",
                outcome,
                cluster.name,
                pdb["spec"]["maxUnavailable"],
                count,
            )
        self.budget_voters = count
        self.budget_synced_at = time.monotonic()

    async def sync_statefulset(self, cluster: RaftCluster) -> None:
        live = await kube.get_statefulset(self.namespace, cluster.name)
        repository = SETTINGS.image_repository
        if live is None:
            if cluster.status.bootstrapped:
                replicas = len(cluster.status.members) or cluster.spec.replicas
            else:
                replicas = cluster.status.initial_replicas or cluster.spec.replicas
            wanted = desired.stateful_set(
                cluster, replicas=replicas, default_image_repository=repository
            )
            await kube.create_statefulset(self.namespace, desired.with_owner(wanted, cluster))
            info(
                cluster.to_k8s(),
                reason="StatefulSetCreated",
                message=f"created StatefulSet {cluster.name} with {replicas} replicas",
            )
            return
        replicas = int(live.get("spec", {}).get("replicas") or 0)
        wanted = desired.with_owner(
            desired.stateful_set(cluster, replicas=replicas, default_image_repository=repository),
            cluster,
        )
        live_template = live.get("spec", {}).get("template", {})
        live_peer_tls = desired.peer_tls_of(live_template)
        started = tlsmigration.decide(cluster, live_peer_tls, None, datetime.now(UTC))
        if started.record is not None:
            # Plain-text members, a spec that asks for TLS: stage P1 is recorded first, so
            # a restarted operator writes the same template (tlsmigration.py).
            cluster = await self.record_tls_migration(cluster, started)
            wanted = desired.with_owner(
                desired.stateful_set(
                    cluster, replicas=replicas, default_image_repository=repository
                ),
                cluster,
            )
        wanted_template = wanted["spec"]["template"]
        if live_peer_tls is True and desired.peer_tls_of(wanted_template) is False:
            # TLS members told to drop it (CEL rejects that change; an object written
            # around it): a rolling restart would split TLS from plain-text members. Refuse.
            if not self.tls_switch_warned:
                warn(
                    cluster.to_k8s(),
                    reason="TLSSwitchRefused",
                    message="the members run peer TLS and spec.tls asks for none; "
                    "switching a running cluster off TLS is not supported",
                )
            self.tls_switch_warned = True
            return
        if template_hash(live_template) != template_hash(wanted_template):
            # The whole template, replaced: a merge would keep fields the spec dropped.
            await kube.patch_statefulset(
                self.namespace,
                cluster.name,
                [{"op": "replace", "path": "/spec/template", "value": wanted_template}],
                json_patch=True,
            )
            info(
                cluster.to_k8s(),
                reason="PodTemplateChanged",
                message="the member pod template changed; members restart one by one",
            )
        mutable = {
            "metadata": {"labels": wanted["metadata"]["labels"]},
            "spec": {
                "persistentVolumeClaimRetentionPolicy": wanted["spec"][
                    "persistentVolumeClaimRetentionPolicy"
                ],
            },
        }
        if not kube.is_subset(mutable, live):
            await kube.patch_statefulset(self.namespace, cluster.name, mutable)

    async def record_tls_migration(
        self, cluster: RaftCluster, decision: tlsmigration.Decision
    ) -> RaftCluster:
        """Persist status.tlsMigration (before anything acts on it), post its Event, and
        return the cluster as it now reads."""
        assert decision.record is not None
        dumped = decision.record.model_dump(mode="json", by_alias=True, exclude_none=True)
        await kube.patch_cluster_status(self.namespace, self.name, {"tlsMigration": dumped})
        status = cluster.status.model_copy(update={"tls_migration": decision.record})
        cluster = cluster.model_copy(update={"status": status})
        if not desired.client_tls(cluster):
            # The client port stays plain HTTP: the operator calls it so, with no token.
            RUNTIME.node_auth[(self.namespace, self.name)] = None
        if decision.event is not None:
            reason, message = decision.event
            (warn if decision.warning else info)(cluster.to_k8s(), reason=reason, message=message)
            self.logger.info("%s: %s", reason, message)
        return cluster

    async def sync_tls_migration(
        self, cluster: RaftCluster, observed: planner.Observed
    ) -> RaftCluster:
        """A migration in flight: its next stage once every member reports the current one
        (tlsmigration.decide), written to status first and then to the StatefulSet's
        template, whose rolling update the planner drives."""
        if not tlsmigration.in_flight(cluster):
            return cluster
        leader = planner.find_leader(observed.nodes.values())
        expected = tlsmigration.expected_members(
            {name: pod.terminating for name, pod in observed.pods.items()},
            [m.name for m in leader.members] if leader is not None else None,
        )
        members = {name: observed.nodes.get(name) for name in expected}
        decision = tlsmigration.decide(cluster, None, members, datetime.now(UTC))
        if decision.record is None:
            return cluster
        before = cluster.status.tls_migration
        cluster = await self.record_tls_migration(cluster, decision)
        if before is not None and before.stage != decision.record.stage:
            await self.sync_statefulset(cluster)
        return cluster

    # ---- observation ---------------------------------------------------------------------

    async def observe(self, cluster: RaftCluster, body: Mapping[str, Any]) -> planner.Observed:
        selector = desired.label_selector(cluster.name)
        sts, pod_objects, claims = await asyncio.gather(
            kube.get_statefulset(self.namespace, cluster.name),
            kube.list_pods(self.namespace, selector),
            kube.list_volumes(self.namespace, selector),
        )
        pods = {}
        for obj in pod_objects:
            state = pod_state(cluster.name, obj)
            if state is not None:
                pods[state.name] = state
        port = cluster.spec.service.ports.client
        nodes = await fetch_statuses(
            await RUNTIME.cluster_nodes(self.namespace, self.name), pods, port
        )
        volumes = {}
        for claim in claims:
            claim_name = claim["metadata"]["name"]
            if claim_name.startswith(DATA_CLAIM_PREFIX) and not claim["metadata"].get(
                "deletionTimestamp"
            ):
                volumes[claim_name[len(DATA_CLAIM_PREFIX) :]] = claim["metadata"]["uid"]
        recovery_job = None
        op = cluster.status.operation
        if op is not None and op.kind == OperationKind.RECOVER_QUORUM:
            job = await kube.get_job(
                self.namespace, desired.recover_job_name(cluster.name, op.request_id or "")
            )
            recovery_job = job_state(job)
        restore_checkpoint, jobs = await self.observe_restore(cluster)
        sts_replicas = sts_hash = None
        if sts is not None:
            sts_replicas = int(sts.get("spec", {}).get("replicas") or 0)
            sts_hash = template_hash(sts.get("spec", {}).get("template", {}))
        return planner.Observed(
            cluster=cluster,
            statefulset_replicas=sts_replicas,
            statefulset_hash=sts_hash,
            pods=pods,
            nodes=nodes,
            volumes=volumes,
            recorded_volumes=recorded_volumes(body),
            recovery_job=recovery_job,
            restore_checkpoint=restore_checkpoint,
            jobs=jobs,
        )

    async def observe_restore(
        self, cluster: RaftCluster
    ) -> tuple[restoresource.CheckpointSource | None, dict[str, planner.JobState]]:
        """The RaftCheckpoint a pending restore request names; the restore Jobs in flight."""
        checkpoint = None
        request = planner.pending_restore(cluster)
        if request is not None:
            obj = await kube.get_checkpoint_object(self.namespace, request.checkpoint)
            if obj is not None:
                checkpoint = restoresource.CheckpointSource.from_object(obj)
        jobs: dict[str, planner.JobState] = {}
        op = cluster.status.operation
        if op is not None and op.kind == OperationKind.RESTORE_IN_PLACE and op.request_id:
            target = op.target_replicas or cluster.spec.replicas
            for ordinal in range(target):
                member = desired.pod_name(cluster.name, ordinal)
                for rollback in (False, True):
                    name = desired.restore_job_name(
                        cluster.name, op.request_id, member, rollback=rollback
                    )
                    state = job_state(await kube.get_job(self.namespace, name))
                    if state is not None:
                        jobs[name] = state
        return checkpoint, jobs

    # ---- status --------------------------------------------------------------------------

    async def write_status(
        self,
        cluster: RaftCluster,
        body: Mapping[str, Any],
        observed: planner.Observed,
        result: planner.Plan,
    ) -> None:
        now = datetime.now(UTC)
        current = cluster.status
        conds: list[Condition] = list(current.conditions)
        for type_, value, reason, message in planner.conditions(observed, result):
            conds = set_condition(
                conds,
                type_.value,
                value,
                reason,
                message[:32000],
                now=now,
                observed_generation=cluster.metadata.generation,
            )
        leader = planner.find_leader(observed.nodes.values())
        patch: dict[str, Any] = {
            "phase": result.phase.value,
            "observedGeneration": cluster.metadata.generation,
            "replicas": len(observed.pods),
            "readyReplicas": sum(1 for p in observed.pods.values() if p.ready),
            "selector": desired.label_selector(cluster.name),
            "members": [
                m.model_dump(mode="json", by_alias=True, exclude_none=True)
                for m in planner.member_statuses(observed)
            ],
            "conditions": [
                c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in conds
            ],
            "operation": (
                result.operation.model_dump(mode="json", by_alias=True, exclude_none=True)
                if result.operation is not None
                else None
            ),
        }
        if result.recovery is not None:
            patch["recovery"] = result.recovery.model_dump(
                mode="json", by_alias=True, exclude_none=True
            )
        if result.restore is not None:
            patch["restore"] = result.restore.model_dump(
                mode="json", by_alias=True, exclude_none=True
            )
        if leader is not None:
            # No counters (commit index, lag): they move with every write, and status is
            # written only when the cluster's state changes. They are metrics.
            patch.update(leader=leader.name, term=leader.term)
        metrics.set_progress(
            self.namespace,
            self.name,
            leader.commit_index if leader is not None else None,
            planner.member_lags(observed),
        )
        live = dict(body.get("status") or {})
        changed = {
            k: v
            for k, v in patch.items()
            if not (v is None and live.get(k) is None) and not _same(v, live.get(k))
        }
        if changed:
            await kube.patch_cluster_status(self.namespace, self.name, changed)

    async def record_volumes(
        self, observed: planner.Observed, updates: Mapping[str, str | None]
    ) -> None:
        volumes = dict(observed.recorded_volumes)
        for member, uid in updates.items():
            if uid is None:
                volumes.pop(member, None)
            else:
                volumes[member] = uid
        await kube.patch_cluster_metadata(
            self.namespace,
            self.name,
            {"annotations": {MEMBER_VOLUMES_ANNOTATION: json.dumps(volumes, sort_keys=True)}},
        )

    # ---- actions -------------------------------------------------------------------------

    async def perform(
        self,
        cluster: RaftCluster,
        body: Mapping[str, Any],
        observed: planner.Observed,
        result: planner.Plan,
    ) -> None:
        action = result.action
        assert action is not None
        try:
            done = await self._do(cluster, observed, action)
        except RemovedIdentity as e:
            await self._retire(body, result, e)
            return
        except (NodeError, NodeUnreachable) as e:
            self.logger.warning("%s of %s failed: %s", action.kind, action.member, e)
            if result.operation is not None:
                op = result.operation.model_copy(
                    update={"attempts": result.operation.attempts + 1, "message": str(e)[:4000]}
                )
                await kube.patch_cluster_status(
                    self.namespace,
                    self.name,
                    {"operation": op.model_dump(mode="json", by_alias=True, exclude_none=True)},
                )
            return
        if done:
            self.logger.info("%s: %s", action.reason, action.message)
            info(body, reason=action.reason, message=action.message)
            RUNTIME.wake(self.namespace, self.name)  # the router re-reads roles

    async def run_restore_job(self, cluster: RaftCluster, member: str, *, rollback: bool) -> None:
        op, record = cluster.status.operation, cluster.status.restore
        if op is None or not op.request_id or record is None or record.request_id != op.request_id:
            raise AssertionError("a restore Job outside a RestoreInPlace operation")
        claim, path = restoresource.parse_source(record.source)
        in_bucket = restoresource.bucket_path(record.source)
        # The bucket named by the spec now (the operator never holds its credentials): when
        # it is gone the Job fails with the reason, and the round rolls every volume back.
        from_bucket = desired.archive_bucket(cluster) if in_bucket and not rollback else None
        if rollback:
            script = desired.restore_rollback_script(op.request_id)
        elif in_bucket and from_bucket is None:
            why = f"restore: {record.source}, but spec.checkpoints.archive.bucket is unset"
            script = f"echo {shlex.quote(why)} >&2; exit 1"
        else:
            if not record.checkpoint_id or not record.sha256:
                raise AssertionError("status.restore lacks the checkpoint id or sha256")
            script = desired.restore_prepare_script(
                op.request_id,
                record.checkpoint_id,
                record.sha256,
                archive_path=in_bucket or path,
                from_bucket=from_bucket,
            )
        job = desired.restore_job(
            cluster,
            member,
            op.request_id,
            script,
            rollback=rollback,
            archive_claim=None if rollback else claim,
            from_bucket=from_bucket,
            default_image_repository=SETTINGS.image_repository,
        )
        await kube.create_job(self.namespace, desired.with_owner(job, cluster))

    async def begin_rebootstrap(self, cluster: RaftCluster) -> None:
        """Every volume is prepared: the ConfigMap says `new` (with restore-from) before
        status.bootstrapped is unset, so no member starts before it does."""
        op = cluster.status.operation
        target = (op.target_replicas if op is not None else None) or cluster.spec.replicas
        staged = cluster.model_copy(
            update={
                "status": cluster.status.model_copy(
                    update={"bootstrapped": False, "initial_replicas": target}
                )
            }
        )
        await kube.ensure(self.namespace, desired.with_owner(desired.config_map(staged), cluster))
        await kube.patch_cluster_status(
            self.namespace, self.name, {"bootstrapped": False, "initialReplicas": target}
        )

    async def _retire(
        self, body: Mapping[str, Any], result: planner.Plan, removed: RemovedIdentity
    ) -> None:
        """The leader refuses the member's id for good: record it in the operation (the plan
        then replaces the member's volume) and say why, once, as a Warning."""
        message = (
            f"{removed.member} came back with member id {removed.member_id}, which was removed "
            "from the cluster (its volume was kept, e.g. by reclaimPolicy Retain); the volume "
            "is replaced so that it joins again under a fresh id"
        )
        self.logger.warning("%s", message)
        warn(body, reason="MemberIdentityRemoved", message=message)
        if result.operation is None:
            return
        op = result.operation.model_copy(
            update={"retired_id": removed.member_id, "message": message[:4000]}
        )
        await kube.patch_cluster_status(
            self.namespace,
            self.name,
            {"operation": op.model_dump(mode="json", by_alias=True, exclude_none=True)},
        )

    async def _do(
        self, cluster: RaftCluster, observed: planner.Observed, action: planner.Action
    ) -> bool:
        nodes = await RUNTIME.cluster_nodes(self.namespace, self.name)
        secure = nodes.auth is not None
        port = cluster.spec.service.ports.client
        leader = planner.find_leader(observed.nodes.values())
        leader_pod = observed.pods.get(leader.name) if leader is not None else None
        leader_url = (
            node_url(leader_pod.ip, port, secure=secure) if leader_pod and leader_pod.ip else None
        )
        member = action.member or ""
        if action.kind == "mark_bootstrapped":
            initial = cluster.status.initial_replicas or cluster.spec.replicas
            body = await kube.patch_cluster_status(
                self.namespace, self.name, {"bootstrapped": True, "initialReplicas": initial}
            )
            # The ConfigMap flips to `existing` now: a member that loses its volume from
            # here on waits to be re-added instead of founding a second cluster.
            await self.sync_objects(RaftCluster.model_validate(body), force=True)
            return True
        if action.kind == "set_replicas":
            await kube.patch_statefulset(
                self.namespace, cluster.name, {"spec": {"replicas": action.replicas}}
            )
            return True
        if action.kind == "delete_pod":
            pod = observed.pods.get(member)
            return await kube.delete_pod(self.namespace, member, pod.uid if pod else None)
        if action.kind == "delete_volume":
            return await kube.delete_volume(self.namespace, f"{DATA_CLAIM_PREFIX}{member}")
        if action.kind == "delete_volumes":
            for name in action.members:
                await kube.delete_volume(self.namespace, f"{DATA_CLAIM_PREFIX}{name}")
            return True
        if action.kind in ("run_restore_job", "run_unrestore_job"):
            await self.run_restore_job(cluster, member, rollback=action.kind == "run_unrestore_job")
            return True
        if action.kind == "begin_rebootstrap":
            await self.begin_rebootstrap(cluster)
            return True
        if action.kind == "run_recover_job":
            op = cluster.status.operation
            request = op.request_id if op is not None else None
            if not request:
                raise AssertionError("run_recover_job outside a RecoverQuorum operation")
            job = desired.recover_job(
                cluster, member, request, default_image_repository=SETTINGS.image_repository
            )
            await kube.create_job(self.namespace, desired.with_owner(job, cluster))
            return True
        if action.kind == "replace_volume":
            # The claim first (it stays, protected, until its pod is gone), then the pod: the
            # StatefulSet recreates the pod and, once the old claim is gone, a new empty claim.
            # Both only in the incarnation observed, never a replacement.
            pod = observed.pods.get(member)
            await kube.delete_volume(
                self.namespace, f"{DATA_CLAIM_PREFIX}{member}", observed.volumes.get(member)
            )
            await kube.delete_pod(self.namespace, member, pod.uid if pod else None)
            return True
        if leader_url is None:
            raise NodeUnreachable("the leader's pod has no address")
        assert leader is not None
        if action.kind == "add_learner":
            # The pod's own id: a joiner draws a fresh one per incarnation (a wiped volume
            # must not come back under its old id), so it cannot be derived from the name.
            pod = observed.pods.get(member)
            if pod is None or not pod.ip:
                raise NodeUnreachable(f"pod {member} has no address")
            joiner = await nodes.status(node_url(pod.ip, port, secure=secure))
            if joiner.name != member:
                raise NodeError(
                    node_url(pod.ip, port, secure=secure),
                    200,
                    "wrong_node",
                    f"expected {member}, the node says it is {joiner.name}",
                )
            try:
                await nodes.add_learner(
                    leader_url,
                    member,
                    desired.member_peer_url(cluster, member),
                    desired.member_client_url(cluster, member),
                    joiner.id,
                )
            except NodeError as e:
                if e.status == 409 and e.code == "member_id_removed":
                    raise RemovedIdentity(member, joiner.id) from e
                raise
            return True
        if action.kind == "promote":
            learner = leader.member(member)
            if learner is None:
                return False  # not in the leader's configuration (yet): the next round sees
            try:
                await nodes.promote(leader_url, learner.id)
            except NodeError as e:
                if e.status == 409 and e.code == "not_caught_up":
                    return False  # not yet: the next round asks again
                raise
            return True
        if action.kind == "remove_member":
            gone = leader.member(member)
            if gone is not None:  # absent from the leader's list: already removed
                await nodes.remove(leader_url, gone.id)
            return True
        if action.kind == "transfer_leader":
            target = None
            if action.target:
                successor = leader.member(action.target)
                if successor is None:
                    raise NodeError(
                        leader_url,
                        404,
                        "member_not_found",
                        f"{action.target} is not in the leader's member list",
                    )
                target = successor.id
            await nodes.transfer_leader(leader_url, target)
            return True
        raise AssertionError(f"unknown action {action.kind}")


def member_tls(observed: planner.Observed) -> dict[str, carotation.MemberTLS | None]:
    """What every member loaded, by name: each pod that is not going away and each member
    of the leader's configuration (None: it did not answer this round)."""
    names = {p.name for p in observed.pods.values() if not p.terminating}
    leader = planner.find_leader(observed.nodes.values())
    if leader is not None:
        names |= {m.name for m in leader.members}
    out: dict[str, carotation.MemberTLS | None] = {}
    for name in names:
        node = observed.nodes.get(name)
        out[name] = carotation.MemberTLS(node.peer_tls, node.client_tls) if node else None
    return out


def _same(wanted: Any, live: Any) -> bool:
    return kube.is_subset(wanted, live) and kube.is_subset(live, wanted)
