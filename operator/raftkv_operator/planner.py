"""Pure decisions: observed state -> the next step. No I/O, no clock (time is an argument).

The reconcile round (reconciler.py, run by the daemon in handlers.py) observes a
cluster — its RaftCluster object, StatefulSet, pods, volumes and every reachable member's
`/v1/status` — into an `Observed`, asks `plan()` what to do, persists the returned
`status.operation` first and only then performs the one returned `Action`. Every action
is idempotent and every step is re-derived from observed state, so a restarted operator
(or a repeated action after a lost answer) converges.

Multi-step work is an `Operation` in `status.operation`:
- ScaleUp, one member at a time: StatefulSet +1 -> pod up -> add as learner -> promote
  once caught up.
- ScaleDown, the highest member: transfer leadership away if it leads -> remove it through
  the leader -> StatefulSet -1 -> pod gone -> delete its volume when reclaimPolicy=Delete.
- RollingUpdate, to the StatefulSet's pod-template hash: followers first, the leader last
  after a transfer; a pod is deleted only when all others are healthy and caught up.
- Recover, a member whose data is gone (its volume was replaced, or it reports itself
  outside the configuration the leader has it in): remove it -> add it back as a learner ->
  promote. Its steps only go forward, so a re-added member is never removed again.
- RecoverQuorum, only on request (spec.recovery) after a quorum loss: stop every member ->
  `raftkv recover` on the best survivor's volume (a Job) -> drop the others' volumes ->
  start the survivor alone -> re-add the others as learners and promote them.
- RestoreInPlace, only on request (spec.restoreInPlace): stop every member -> a Job per
  volume stages the checkpoint (sha256 checked) and moves the old data aside -> the members
  bootstrap anew from it; a failed preparation puts the old data back.
Any step that would leave the voters without a healthy quorum is refused (no change).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from croniter import croniter

from raftkv_operator import desired, quorumloss, restoresource
from raftkv_operator.models import (
    ClusterPhase,
    ConditionStatus,
    ConditionType,
    MemberRole,
    MemberStatus,
    Operation,
    OperationKind,
    QuorumRecoveryRequest,
    RaftCluster,
    ReclaimPolicy,
    RecoveryPhase,
    RecoveryStatus,
    RestoreInPlaceRequest,
    RestoreStatus,
    quorum,
)
from raftkv_operator.nodestatus import Member, NodeStatus

PROMOTE_MAX_LAG = 64
"""A learner this close to the leader's commit index is promoted (the node has the last word:
it answers 409 not_caught_up when its own threshold is not met)."""
CAUGHT_UP_MAX_LAG = 64
"""A restarted member this close to the leader's last index counts as caught up."""

# Step names (status.operation.step).
STEP_CREATE_POD = "CreatePod"
STEP_WAIT_POD = "WaitPod"
STEP_ADD_LEARNER = "AddLearner"
STEP_CATCH_UP = "CatchUp"
STEP_PROMOTE = "Promote"
STEP_TRANSFER = "TransferLeader"
STEP_REMOVE = "RemoveMember"
STEP_DELETE_POD = "DeletePod"
STEP_WAIT_POD_GONE = "WaitPodGone"
STEP_DELETE_VOLUME = "DeleteVolume"
STEP_REFUSED = "Refused"
STEP_REPLACE_VOLUME = "ReplaceVolume"
# RecoverQuorum (quorum-loss recovery, spec.recovery):
STEP_STOP_MEMBERS = "StopMembers"
STEP_RUN_RECOVER = "RunRecover"
STEP_DROP_VOLUMES = "DropLostVolumes"
STEP_START_MEMBERS = "StartMembers"
STEP_REJOIN = "Rejoin"
STEP_ABORT = "Abort"
# RestoreInPlace (spec.restoreInPlace), also StopMembers and StartMembers:
STEP_PREPARE = "PrepareVolumes"
STEP_ROLLBACK = "RollBack"
STEP_REBOOTSTRAP = "Rebootstrap"
STEP_FINISH = "Finish"

JobState = Literal["Running", "Succeeded", "Failed"]


# ---- observed state ------------------------------------------------------------------------


@dataclass(frozen=True)
class PodState:
    """What the reconciler needs of a member pod."""

    name: str
    ordinal: int
    ip: str | None = None
    ready: bool = False
    """The pod's Ready condition."""
    terminating: bool = False
    template_hash: str | None = None
    role_label: str | None = None
    uid: str | None = None
    role_term: int | None = None
    """The term the member wrote its own role label at (ROLE_TERM_ANNOTATION, raftkv.protocol.kubernetes)."""
    resource_version: str | None = None
    """metadata.resourceVersion: the version of the pod these fields were read from."""


@dataclass(frozen=True)
class Observed:
    cluster: RaftCluster
    statefulset_replicas: int | None
    """spec.replicas of the StatefulSet; None when there is no StatefulSet."""
    statefulset_hash: str | None
    """The pod-template hash of the StatefulSet (what restarted pods will run)."""
    pods: Mapping[str, PodState] = field(default_factory=dict)
    nodes: Mapping[str, NodeStatus] = field(default_factory=dict)
    """`/v1/status` of every member pod that answered, by pod name."""
    volumes: Mapping[str, str] = field(default_factory=dict)
    """Pod name -> uid of its data PersistentVolumeClaim."""
    recorded_volumes: Mapping[str, str] = field(default_factory=dict)
    """Pod name -> the volume uid the member's data was on when it last was a healthy voter."""
    recovery_job: JobState | None = None
    """RecoverQuorum in flight: the state of its `raftkv recover` Job (None: no such Job)."""
    restore_checkpoint: restoresource.CheckpointSource | None = None
    """The RaftCheckpoint a pending spec.restoreInPlace names (None: absent or no request)."""
    jobs: Mapping[str, JobState] = field(default_factory=dict)
    """RestoreInPlace in flight: the state of each of its Jobs that exists, by name."""

    @property
    def name(self) -> str:
        return self.cluster.name


def ordinal_of(cluster_name: str, pod: str) -> int | None:
    return desired.ordinal_suffix(cluster_name, pod)


def find_leader(nodes: Iterable[NodeStatus]) -> NodeStatus | None:
    """The node that reports itself leader at the highest term (a deposed, partitioned
    leader may still believe it leads at an older one)."""
    leaders = [n for n in nodes if n.is_leader]
    return max(leaders, key=lambda n: n.term) if leaders else None


def lag(leader: NodeStatus, member: Member) -> int | None:
    if member.id == leader.id:
        return 0
    if member.match_index is None:
        return None
    return max(0, leader.last_index - member.match_index)


def healthy(obs: Observed, name: str) -> bool:
    """The member answers, is in the configuration, follows a leader, is caught up, and its
    pod is Ready (so Services route to it)."""
    node = obs.nodes.get(name)
    pod = obs.pods.get(name)
    return node is not None and node.ready and pod is not None and pod.ready and not pod.terminating


def caught_up(obs: Observed, leader: NodeStatus, name: str, max_lag: int) -> bool:
    member = leader.member(name)
    if member is None:
        return False
    behind = lag(leader, member)
    return behind is not None and behind <= max_lag and healthy(obs, name)


def voters(leader: NodeStatus) -> list[Member]:
    return [m for m in leader.members if m.voter]


def healthy_voters(obs: Observed, leader: NodeStatus, excluding: str | None = None) -> int:
    return sum(1 for m in voters(leader) if m.name != excluding and healthy(obs, m.name))


def data_lost(obs: Observed, leader: NodeStatus, name: str) -> str | None:
    """Why the voter `name` has lost its data, or None if it has not."""
    member = leader.member(name)
    if member is None or not member.voter or member.id == leader.id:
        return None
    recorded, current = obs.recorded_volumes.get(name), obs.volumes.get(name)
    if recorded and current and recorded != current:
        return f"the volume of {name} was replaced (claim uid {recorded} -> {current})"
    node = obs.nodes.get(name)
    if node is not None and not node.is_member and node.term == 0:
        return f"{name} reports no Raft state though the leader has it as a voter"
    return None


# ---- actions and plans -----------------------------------------------------------------------

ActionKind = Literal[
    "mark_bootstrapped",
    "set_replicas",
    "add_learner",
    "promote",
    "remove_member",
    "transfer_leader",
    "delete_pod",
    "delete_volume",
    "replace_volume",
    "run_recover_job",
    "delete_volumes",
    "run_restore_job",
    "run_unrestore_job",
    "begin_rebootstrap",
]


@dataclass(frozen=True)
class Action:
    """One idempotent step for the handlers to perform."""

    kind: ActionKind
    member: str | None = None
    target: str | None = None
    """transfer_leader: the member to hand leadership to."""
    replicas: int | None = None
    members: tuple[str, ...] = ()
    """delete_volumes: the members whose data volumes go."""
    reason: str = ""
    """Event reason (CamelCase) posted once the action succeeded."""
    message: str = ""


@dataclass(frozen=True)
class Plan:
    phase: ClusterPhase
    operation: Operation | None
    """status.operation to persist before the action (None: nothing in flight)."""
    action: Action | None = None
    waiting: str | None = None
    """What the operation waits for (no action this round)."""
    refused: str | None = None
    """A step refused because it would lose quorum (posted as a warning, no change)."""
    record_volumes: Mapping[str, str | None] = field(default_factory=dict)
    """Updates of the recorded member volumes (None removes an entry)."""
    recovery: RecoveryStatus | None = None
    """status.recovery to persist (with the operation, before the action)."""
    restore: RestoreStatus | None = None
    """status.restore to persist (with the operation, before the action)."""
    notice: Notice | None = None
    """An Event to post once (the reconciler skips a repeat of the last one)."""
    quorum_lost: bool = False
    """No leader, and fewer voters answer with their data than a quorum."""


@dataclass(frozen=True)
class Notice:
    reason: str
    message: str
    warning: bool = False


def _op(kind: OperationKind, step: str, now: datetime, **fields: Any) -> Operation:
    return Operation(kind=kind, step=step, started_at=now, **fields)


def _step(op: Operation, step: str, message: str | None = None) -> Operation:
    return op.model_copy(update={"step": step, "message": message})


def plan(obs: Observed, now: datetime) -> Plan:
    """The next step for a cluster whose objects exist (handlers create them first)."""
    cluster = obs.cluster
    spec, status = cluster.spec, cluster.status
    leader = find_leader(obs.nodes.values())
    if spec.paused:
        return Plan(ClusterPhase.PAUSED, status.operation, waiting="spec.paused is set")
    if obs.statefulset_replicas is None:
        return Plan(ClusterPhase.PENDING, status.operation, waiting="the StatefulSet is created")
    op = status.operation
    if op is not None and op.kind == OperationKind.RESTORE_IN_PLACE:
        return _restore_in_place(obs, leader, op, now)
    if not status.bootstrapped:
        return _bootstrap(obs, leader)
    if op is not None and op.kind == OperationKind.RECOVER_QUORUM:
        return _recover_quorum(obs, leader, op, now)
    restore = pending_restore(cluster)
    if restore is not None:
        return _start_restore(obs, restore, now)
    request = pending_recovery(cluster)
    if leader is None:
        return _leaderless(obs, request, now)
    result = _plan_with_leader(obs, leader, now)
    if request is not None:
        return _refuse_recovery(
            result, request, f"{leader.name} leads: the cluster has its quorum", now
        )
    return result


def _plan_with_leader(obs: Observed, leader: NodeStatus, now: datetime) -> Plan:
    status = obs.cluster.status
    record = _volumes_to_record(obs, leader)
    op = status.operation
    for _ in range(4):  # a finished operation may hand over to the next one at once
        if op is None:
            op = _next_operation(obs, leader, now)
            if op is None:
                return Plan(_steady_phase(obs, leader), None, record_volumes=record)
        result = _STEPPERS[op.kind](obs, leader, op, now)
        if result is not None:
            if result.record_volumes or record:
                result = replace(result, record_volumes={**record, **result.record_volumes})
            return result
        op = None
    return Plan(_steady_phase(obs, leader), None, record_volumes=record)


def _bootstrap(obs: Observed, leader: NodeStatus | None) -> Plan:
    cluster = obs.cluster
    initial = cluster.status.initial_replicas or cluster.spec.replicas
    founders = {desired.pod_name(cluster.name, i) for i in range(initial)}
    # Every founder up, not just a quorum: a founder that starts after the ConfigMap says
    # `existing` would start blank and look like a member that lost its data.
    ready = sum(1 for name in founders if healthy(obs, name))
    if (
        leader is not None
        and {m.name for m in voters(leader)} == founders
        and ready == len(founders)
    ):
        record = {name: obs.volumes[name] for name in founders if name in obs.volumes}
        return Plan(
            ClusterPhase.BOOTSTRAPPING,
            None,
            Action(
                "mark_bootstrapped",
                reason="Bootstrapped",
                message=f"{initial} members formed the cluster; {leader.name} leads",
            ),
            record_volumes=record,
        )
    return Plan(
        ClusterPhase.BOOTSTRAPPING,
        None,
        waiting=f"{initial} members to start and elect a leader ({ready} ready)",
    )


def _steady_phase(obs: Observed, leader: NodeStatus) -> ClusterPhase:
    unhealthy = [m.name for m in voters(leader) if not healthy(obs, m.name)]
    return ClusterPhase.DEGRADED if unhealthy else ClusterPhase.AVAILABLE


def _volumes_to_record(obs: Observed, leader: NodeStatus) -> dict[str, str | None]:
    """Remember the volume of every healthy voter not recorded yet (the data-loss witness)."""
    record: dict[str, str | None] = {}
    for member in voters(leader):
        uid = obs.volumes.get(member.name)
        if uid and member.name not in obs.recorded_volumes and healthy(obs, member.name):
            record[member.name] = uid
    return record


def _next_operation(obs: Observed, leader: NodeStatus, now: datetime) -> Operation | None:
    cluster = obs.cluster
    current = obs.statefulset_replicas or 0
    wanted = cluster.spec.replicas
    # Data loss first: a member without its data weakens the quorum until it is re-added.
    for member in sorted(voters(leader), key=lambda m: m.name):
        why = data_lost(obs, leader, member.name)
        if why is not None:
            return _op(OperationKind.RECOVER, STEP_REMOVE, now, member=member.name, message=why)
    # A pod the StatefulSet runs that is not a member (e.g. its member was removed by hand).
    for ordinal in range(min(current, wanted)):
        name = desired.pod_name(cluster.name, ordinal)
        node = obs.nodes.get(name)
        if leader.member(name) is None and node is not None:
            return _op(
                OperationKind.RECOVER,
                STEP_ADD_LEARNER,
                now,
                member=name,
                message=f"{name} runs but is not a member",
            )
    if wanted > current:
        return _op(
            OperationKind.SCALE_UP,
            STEP_CREATE_POD,
            now,
            member=desired.pod_name(cluster.name, current),
            target_replicas=wanted,
        )
    if wanted < current:
        return _op(
            OperationKind.SCALE_DOWN,
            STEP_REMOVE,
            now,
            member=desired.pod_name(cluster.name, current - 1),
            target_replicas=wanted,
        )
    if obs.statefulset_hash and _outdated(obs, obs.statefulset_hash):
        return _op(
            OperationKind.ROLLING_UPDATE, STEP_DELETE_POD, now, target_revision=obs.statefulset_hash
        )
    return None


def _outdated(obs: Observed, target: str) -> list[PodState]:
    current = obs.statefulset_replicas or 0
    return [
        p
        for p in obs.pods.values()
        if p.ordinal < current and p.template_hash is not None and p.template_hash != target
    ]


# ---- steps -----------------------------------------------------------------------------------


def _refuse(obs: Observed, op: Operation, phase: ClusterPhase, why: str) -> Plan:
    return Plan(phase, _step(op, op.step, why), refused=why)


def _wait(op: Operation, phase: ClusterPhase, step: str, why: str) -> Plan:
    return Plan(phase, _step(op, step, why), waiting=why)


def _act(op: Operation, phase: ClusterPhase, step: str, action: Action) -> Plan:
    return Plan(phase, _step(op, step, action.message), action)


def _transfer_away(
    obs: Observed, leader: NodeStatus, op: Operation, phase: ClusterPhase, member: str
) -> Plan:
    """Hand leadership to the most caught-up healthy other voter."""
    others = [m for m in voters(leader) if m.name != member and healthy(obs, m.name)]
    if not others:
        return _refuse(obs, op, phase, f"{member} leads and no other voter is healthy to lead")
    target = max(others, key=lambda m: (m.match_index or 0, m.name))
    return _act(
        op,
        phase,
        STEP_TRANSFER,
        Action(
            "transfer_leader",
            member=member,
            target=target.name,
            reason="LeaderTransfer",
            message=f"moving leadership from {member} to {target.name}",
        ),
    )


def _promote_when_caught_up(
    obs: Observed, leader: NodeStatus, op: Operation, phase: ClusterPhase, member: Member
) -> Plan:
    behind = lag(leader, member)
    if behind is None or behind > PROMOTE_MAX_LAG or obs.nodes.get(member.name) is None:
        where = "unknown" if behind is None else str(behind)
        return _wait(op, phase, STEP_CATCH_UP, f"{member.name} is catching up (lag {where})")
    # The new voter counts against the quorum at once: the others must make it alone.
    after = len(voters(leader)) + 1
    if healthy_voters(obs, leader) + 1 < quorum(after):
        return _refuse(
            obs,
            op,
            phase,
            f"promoting {member.name} would leave {after} voters with fewer than "
            f"{quorum(after)} healthy",
        )
    return _act(
        op,
        phase,
        STEP_PROMOTE,
        Action(
            "promote",
            member=member.name,
            reason="MemberPromoted",
            message=f"{member.name} caught up; promoting it to voter",
        ),
    )


def _add_learner(obs: Observed, op: Operation, phase: ClusterPhase, name: str) -> Plan:
    pod = obs.pods.get(name)
    if pod is None or pod.ip is None or pod.terminating or name not in obs.nodes:
        return _wait(op, phase, STEP_WAIT_POD, f"pod {name} to start")
    if op.retired_id is not None:
        if obs.nodes[name].id == op.retired_id:
            # Its volume holds an incarnation the cluster removed (a volume kept by
            # reclaimPolicy Retain): that id is refused for good, so the member can only come
            # back empty, under a fresh id. Every entry it held is on the current members.
            return _act(
                op,
                phase,
                STEP_REPLACE_VOLUME,
                Action(
                    "replace_volume",
                    member=name,
                    reason="VolumeReplaced",
                    message=f"replacing the volume of {name}: it holds member id "
                    f"{op.retired_id}, which was removed from the cluster",
                ),
            )
        op = op.model_copy(update={"retired_id": None})  # a fresh incarnation now
    return _act(
        op,
        phase,
        STEP_ADD_LEARNER,
        Action(
            "add_learner", member=name, reason="MemberAdded", message=f"adding {name} as a learner"
        ),
    )


def _scale_up(obs: Observed, leader: NodeStatus, op: Operation, now: datetime) -> Plan | None:
    phase = ClusterPhase.SCALING
    name = op.member or ""
    ordinal = ordinal_of(obs.name, name)
    if ordinal is None:
        return None
    member = leader.member(name)
    if member is not None and member.voter:
        return None  # this member is done; the next plan picks the next one
    if (obs.statefulset_replicas or 0) < ordinal + 1:
        return _act(
            op,
            phase,
            STEP_CREATE_POD,
            Action(
                "set_replicas",
                replicas=ordinal + 1,
                reason="ScalingUp",
                message=f"starting pod {name}",
            ),
        )
    if member is None:
        return _add_learner(obs, op, phase, name)
    return _promote_when_caught_up(obs, leader, op, phase, member)


def _scale_down(obs: Observed, leader: NodeStatus, op: Operation, now: datetime) -> Plan | None:
    phase = ClusterPhase.SCALING
    name = op.member or ""
    ordinal = ordinal_of(obs.name, name)
    if ordinal is None:
        return None
    member = leader.member(name)
    if member is not None:
        if member.voter:
            count = len(voters(leader))
            others = healthy_voters(obs, leader, excluding=name)
            if others < quorum(count - 1) or others + healthy(obs, name) < quorum(count):
                return _refuse(
                    obs,
                    op,
                    phase,
                    f"removing {name} needs {quorum(count - 1)} healthy other voters "
                    f"({others} are)",
                )
        if leader.name == name:
            return _transfer_away(obs, leader, op, phase, name)
        return _act(
            op,
            phase,
            STEP_REMOVE,
            Action(
                "remove_member",
                member=name,
                reason="MemberRemoved",
                message=f"removing {name} from the cluster",
            ),
        )
    if (obs.statefulset_replicas or 0) > ordinal:
        return _act(
            op,
            phase,
            STEP_DELETE_POD,
            Action(
                "set_replicas",
                replicas=ordinal,
                reason="ScalingDown",
                message=f"stopping pod {name}",
            ),
        )
    if name in obs.pods:
        return _wait(op, phase, STEP_WAIT_POD_GONE, f"pod {name} to stop")
    if obs.cluster.spec.storage.reclaim_policy == ReclaimPolicy.DELETE and name in obs.volumes:
        return _act(
            op,
            phase,
            STEP_DELETE_VOLUME,
            Action(
                "delete_volume",
                member=name,
                reason="VolumeDeleted",
                message=f"deleting the volume of {name} (reclaimPolicy Delete)",
            ),
        )
    if name in obs.recorded_volumes:
        return Plan(phase, _step(op, STEP_DELETE_VOLUME), record_volumes={name: None})
    return None


def _restart_order(obs: Observed, leader: NodeStatus, pods: list[PodState]) -> list[PodState]:
    """Followers and learners first (highest ordinal first), the leader last."""
    return sorted(pods, key=lambda p: (p.name == leader.name, -p.ordinal))


def _rolling_update(obs: Observed, leader: NodeStatus, op: Operation, now: datetime) -> Plan | None:
    phase = ClusterPhase.UPGRADING
    target = obs.statefulset_hash
    if not target:
        return _wait(op, phase, STEP_WAIT_POD, "the StatefulSet's pod template")
    if op.target_revision != target:
        op = op.model_copy(update={"target_revision": target, "member": None})
    name = op.member
    if name is not None:
        pod = obs.pods.get(name)
        if pod is None or pod.terminating:
            return _wait(op, phase, STEP_WAIT_POD, f"pod {name} to restart")
        if pod.template_hash == target:
            if not caught_up(obs, leader, name, CAUGHT_UP_MAX_LAG):
                return _wait(op, phase, STEP_CATCH_UP, f"{name} to be ready and caught up")
            op = op.model_copy(update={"member": None})
            name = None
    pending = _outdated(obs, target)
    if not pending:
        return None
    if name is None:
        name = _restart_order(obs, leader, pending)[0].name
        op = op.model_copy(update={"member": name})
    # Everyone else must be healthy and caught up before one more member goes down.
    laggards = [
        m.name
        for m in leader.members
        if m.name != name and not caught_up(obs, leader, m.name, CAUGHT_UP_MAX_LAG)
    ]
    if laggards:
        return _wait(
            op,
            phase,
            STEP_CATCH_UP,
            f"{', '.join(sorted(laggards))} to be ready and caught up before {name}",
        )
    member = leader.member(name)
    # A single voter has no quorum to keep: its restart is the unavoidable downtime of a
    # 1-member cluster (refusing it would leave the cluster on its old template for ever).
    alone = member is not None and member.voter and len(voters(leader)) == 1
    if member is not None and member.voter and not alone:
        count = len(voters(leader))
        others = healthy_voters(obs, leader, excluding=name)
        if others < quorum(count):
            return _refuse(
                obs,
                op,
                phase,
                f"restarting {name} would leave {others} of {count} voters healthy "
                f"(quorum {quorum(count)})",
            )
    if leader.name == name and not alone:
        return _transfer_away(obs, leader, op, phase, name)
    return _act(
        op,
        phase,
        STEP_DELETE_POD,
        Action(
            "delete_pod",
            member=name,
            reason="MemberRestart",
            message=f"restarting {name} with the new pod template",
        ),
    )


def _recover(obs: Observed, leader: NodeStatus, op: Operation, now: datetime) -> Plan | None:
    phase = ClusterPhase.DEGRADED
    name = op.member or ""
    member = leader.member(name)
    if op.step == STEP_REMOVE and member is not None:
        if leader.name == name:
            return _transfer_away(obs, leader, op, phase, name)
        count = len(voters(leader))
        others = healthy_voters(obs, leader, excluding=name)
        if member.voter and others < quorum(count):
            return _refuse(
                obs,
                op,
                phase,
                f"removing {name} (data lost) needs {quorum(count)} healthy other voters "
                f"({others} are)",
            )
        return _act(
            op,
            phase,
            STEP_REMOVE,
            Action(
                "remove_member",
                member=name,
                reason="MemberRecovering",
                message=f"removing {name}, which lost its data, to add it back empty",
            ),
        )
    if member is None:
        if (obs.statefulset_replicas or 0) <= (ordinal_of(obs.name, name) or 0):
            return None  # scaled away meanwhile: nothing to recover
        return _add_learner(obs, _step(op, STEP_ADD_LEARNER), phase, name)
    if not member.voter:
        return _promote_when_caught_up(obs, leader, op, phase, member)
    uid = obs.volumes.get(name)
    if uid and obs.recorded_volumes.get(name) != uid:
        # The member is whole again, on this volume.
        return Plan(phase, _step(op, STEP_PROMOTE), record_volumes={name: uid})
    return None


# ---- quorum-loss recovery (spec.recovery) ------------------------------------------------------


def quorum_view(obs: Observed) -> quorumloss.QuorumView:
    recorded = [m.name for m in obs.cluster.status.members if m.role != MemberRole.LEARNER]
    return quorumloss.assess(obs.nodes, obs.pods.keys(), recorded)


def pending_recovery(cluster: RaftCluster) -> QuorumRecoveryRequest | None:
    """spec.recovery when it has not been acted on yet (each requestId is acted on once)."""
    request = cluster.spec.recovery
    done = cluster.status.recovery
    if request is None or (done is not None and done.request_id == request.request_id):
        return None
    return request


def _refuse_recovery(result: Plan, request: QuorumRecoveryRequest, why: str, now: datetime) -> Plan:
    message = f"recovery request {request.request_id} refused, nothing changed: {why}"
    record = RecoveryStatus(
        request_id=request.request_id,
        phase=RecoveryPhase.REFUSED,
        started_at=now,
        finished_at=now,
        message=message[:4096],
    )
    return replace(result, recovery=record, notice=Notice("RecoveryRefused", message, warning=True))


def _leaderless(obs: Observed, request: QuorumRecoveryRequest | None, now: datetime) -> Plan:
    status = obs.cluster.status
    view = quorum_view(obs)
    if not view.lost:
        waiting = Plan(ClusterPhase.DEGRADED, status.operation, waiting="no member leads")
        if request is None:
            return waiting
        return _refuse_recovery(
            waiting,
            request,
            f"{view.describe()}: a quorum answers and elects a leader without help",
            now,
        )
    lost = f"quorum lost: {view.describe()}"
    survivor = view.survivor
    if request is None:
        return Plan(
            ClusterPhase.DEGRADED,
            status.operation,
            waiting=lost,
            quorum_lost=True,
            notice=Notice(
                "QuorumLost",
                f"{lost}. Members that come back with their data restore the quorum; if they "
                "will not, set spec.recovery to recover from the best survivor (docs/recovery.md)",
                warning=True,
            ),
        )
    if survivor is None:
        return _refuse_recovery(
            Plan(ClusterPhase.DEGRADED, status.operation, waiting=lost, quorum_lost=True),
            request,
            f"{lost}: no member has data to recover from; restore from a checkpoint",
            now,
        )
    term, index = quorumloss.log_position(survivor)
    target = obs.statefulset_replicas or obs.cluster.spec.replicas
    why = (
        f"request {request.request_id}: recovering from {survivor.name} (last term {term}, "
        f"last index {index}); candidates: {view.candidates()}"
    )
    op = _op(
        OperationKind.RECOVER_QUORUM,
        STEP_STOP_MEMBERS,
        now,
        member=survivor.name,
        target_replicas=target,
        request_id=request.request_id,
        message=why,
    )
    record = RecoveryStatus(
        request_id=request.request_id,
        phase=RecoveryPhase.RUNNING,
        survivor=survivor.name,
        last_term=term,
        last_index=index,
        started_at=now,
        message=why[:4096],
    )
    return Plan(
        ClusterPhase.RECOVERING,
        op,
        Action(
            "set_replicas",
            replicas=0,
            reason="QuorumRecoveryStarted",
            message=f"{why}: stopping every member",
        ),
        recovery=record,
        quorum_lost=True,
    )


def _stop_every_member(obs: Observed, op: Operation, phase: ClusterPhase, why: str) -> Plan | None:
    """The StatefulSet at 0 and no member pod left (None: done)."""
    if (obs.statefulset_replicas or 0) > 0:
        return _act(
            op,
            phase,
            STEP_STOP_MEMBERS,
            Action(
                "set_replicas",
                replicas=0,
                reason="MembersStopped",
                message=f"stopping every member {why}",
            ),
        )
    if obs.pods:
        return _wait(
            op, phase, STEP_STOP_MEMBERS, f"members to stop: {', '.join(sorted(obs.pods))}"
        )
    return None


def _recovery_record(obs: Observed, op: Operation, **update: Any) -> RecoveryStatus:
    current = obs.cluster.status.recovery
    if current is None or current.request_id != op.request_id:
        current = RecoveryStatus(
            request_id=op.request_id or "unknown",
            phase=RecoveryPhase.RUNNING,
            survivor=op.member,
            started_at=op.started_at,
        )
    return current.model_copy(update=update)


def _recover_quorum(obs: Observed, leader: NodeStatus | None, op: Operation, now: datetime) -> Plan:
    """StopMembers -> RunRecover (a Job runs `raftkv recover` on the survivor's volume) ->
    DropLostVolumes (every other member's) -> StartMembers (the survivor leads alone) ->
    Rejoin (the others added as learners on their empty volumes, promoted once caught up).
    A failed recover Job restarts the members as they were (Abort)."""
    phase = ClusterPhase.RECOVERING
    survivor = op.member or ""
    target = op.target_replicas or obs.cluster.spec.replicas
    replicas = obs.statefulset_replicas or 0
    others = [
        desired.pod_name(obs.name, i)
        for i in range(target)
        if desired.pod_name(obs.name, i) != survivor
    ]
    step = op.step
    if step == STEP_STOP_MEMBERS:
        stopping = _stop_every_member(obs, op, phase, "for the recovery")
        if stopping is not None:
            return stopping
        step = STEP_RUN_RECOVER
    if step == STEP_RUN_RECOVER:
        if obs.recovery_job is None:
            return _act(
                op,
                phase,
                STEP_RUN_RECOVER,
                Action(
                    "run_recover_job",
                    member=survivor,
                    reason="RecoverJobCreated",
                    message=f"running raftkv recover on the volume of {survivor}",
                ),
            )
        if obs.recovery_job == "Running":
            return _wait(op, phase, STEP_RUN_RECOVER, f"raftkv recover on {survivor}")
        if obs.recovery_job == "Failed":
            job = desired.recover_job_name(obs.name, op.request_id or "")
            why = (
                f"raftkv recover on {survivor} failed (kubectl logs job/{job}); restarting "
                "the members as they were, nothing else changed"
            )
            return Plan(
                phase,
                _step(op, STEP_ABORT, why),
                waiting=why,
                notice=Notice("RecoveryFailed", why, warning=True),
            )
        step = STEP_DROP_VOLUMES
    if step == STEP_ABORT:
        if replicas != target:
            return _act(
                op,
                phase,
                STEP_ABORT,
                Action(
                    "set_replicas",
                    replicas=target,
                    reason="MembersRestarted",
                    message="restarting the members after the failed recovery",
                ),
            )
        why = op.message or "raftkv recover failed"
        return Plan(
            ClusterPhase.DEGRADED,
            None,
            quorum_lost=True,
            recovery=_recovery_record(
                obs, op, phase=RecoveryPhase.FAILED, finished_at=now, message=why[:4096]
            ),
        )
    if step == STEP_DROP_VOLUMES:
        # Only now, after recover succeeded: until then another survivor's data may matter.
        drop = tuple(name for name in others if name in obs.volumes)
        if drop:
            listed = ", ".join(drop)
            return Plan(
                phase,
                _step(op, STEP_DROP_VOLUMES, f"deleting the volumes of {listed}"),
                Action(
                    "delete_volumes",
                    members=drop,
                    reason="LostVolumesDeleted",
                    message=f"deleting the volumes of {listed}: they rejoin empty",
                ),
                record_volumes={name: None for name in drop},
            )
        step = STEP_START_MEMBERS
    if step == STEP_START_MEMBERS:
        if replicas < target:
            return _act(
                op,
                phase,
                STEP_START_MEMBERS,
                Action(
                    "set_replicas",
                    replicas=target,
                    reason="MembersStarted",
                    message=f"starting {survivor} as the only voter, the others empty",
                ),
            )
        if leader is None or leader.name != survivor:
            return _wait(op, phase, STEP_START_MEMBERS, f"{survivor} to start and lead")
        writable = _step(op, STEP_REJOIN, f"{survivor} leads alone; re-adding the others")
        return Plan(
            phase,
            writable,
            recovery=_recovery_record(obs, op, writable_at=now),
            notice=Notice(
                "QuorumRestored", f"{survivor} leads the recovered cluster and takes writes"
            ),
        )
    if leader is None:
        return _wait(op, phase, op.step, f"{survivor} to lead again")
    for name in others:
        member = leader.member(name)
        if member is None:
            return _add_learner(obs, op, phase, name)
        if not member.voter:
            return _promote_when_caught_up(obs, leader, op, phase, member)
    unhealthy = [m.name for m in voters(leader) if not healthy(obs, m.name)]
    if unhealthy:
        return _wait(op, phase, STEP_REJOIN, f"{', '.join(sorted(unhealthy))} to be healthy")
    done = f"recovered from {survivor}: {len(voters(leader))} healthy voters"
    return Plan(
        _steady_phase(obs, leader),
        None,
        recovery=_recovery_record(
            obs, op, phase=RecoveryPhase.SUCCEEDED, finished_at=now, message=done
        ),
        notice=Notice("QuorumRecovered", done),
    )


# ---- in-place restore (spec.restoreInPlace) ------------------------------------------------------


def pending_restore(cluster: RaftCluster) -> RestoreInPlaceRequest | None:
    """spec.restoreInPlace when it has not been acted on yet (once per requestId)."""
    request = cluster.spec.restore_in_place
    done = cluster.status.restore
    if request is None or (done is not None and done.request_id == request.request_id):
        return None
    return request


def _members(obs: Observed, count: int) -> list[str]:
    return [desired.pod_name(obs.name, i) for i in range(count)]


def _start_restore(obs: Observed, request: RestoreInPlaceRequest, now: datetime) -> Plan:
    cluster = obs.cluster
    target = obs.statefulset_replicas or cluster.spec.replicas
    checkpoint = obs.restore_checkpoint
    choice = restoresource.choose_source(
        checkpoint,
        cluster=cluster.name,
        requested=request.checkpoint,
        members=_members(obs, target),
        archive_claim=desired.archive_claim_in_use(cluster),
        bucket_archive=desired.archive_bucket(cluster) is not None,
    )
    if choice.source is None or checkpoint is None:
        why = f"restore request {request.request_id} refused, nothing changed: {choice.refused}"
        record = RestoreStatus(
            request_id=request.request_id,
            phase=RecoveryPhase.REFUSED,
            checkpoint=request.checkpoint,
            started_at=now,
            finished_at=now,
            message=why[:4096],
        )
        return Plan(
            ClusterPhase.DEGRADED
            if find_leader(obs.nodes.values()) is None
            else ClusterPhase.AVAILABLE,
            cluster.status.operation,
            restore=record,
            notice=Notice("RestoreRefused", why, warning=True),
        )
    aside = desired.restore_aside_dir(request.request_id)
    why = (
        f"request {request.request_id}: restoring every member from {checkpoint.name} "
        f"(id {checkpoint.checkpoint_id}, index {checkpoint.index}, sha256 "
        f"{checkpoint.sha256}) from {choice.source}"
    )
    record = RestoreStatus(
        request_id=request.request_id,
        phase=RecoveryPhase.RUNNING,
        checkpoint=checkpoint.name,
        checkpoint_id=checkpoint.checkpoint_id,
        index=checkpoint.index,
        sha256=checkpoint.sha256,
        source=choice.source,
        kept_aside=aside,
        started_at=now,
        message=why[:4096],
    )
    op = _op(
        OperationKind.RESTORE_IN_PLACE,
        STEP_STOP_MEMBERS,
        now,
        target_replicas=target,
        request_id=request.request_id,
        message=why,
    )
    return Plan(
        ClusterPhase.RESTORING,
        op,
        Action(
            "set_replicas",
            replicas=0,
            reason="RestoreStarted",
            message=f"{why}: stopping every member (writes stop)",
        ),
        restore=record,
    )


def _restore_record(obs: Observed, op: Operation, **update: Any) -> RestoreStatus:
    current = obs.cluster.status.restore
    if current is None or current.request_id != op.request_id:
        current = RestoreStatus(
            request_id=op.request_id or "unknown",
            phase=RecoveryPhase.RUNNING,
            started_at=op.started_at,
        )
    return current.model_copy(update=update)


def _job_round(
    obs: Observed, op: Operation, step: str, members: list[str], *, rollback: bool
) -> Plan | list[str] | None:
    """Run the step's Job on each member in turn: a Plan while one is to start or runs,
    else the members whose Job failed (None: all succeeded)."""
    request = op.request_id or ""
    failed: list[str] = []
    for name in members:
        state = obs.jobs.get(desired.restore_job_name(obs.name, request, name, rollback=rollback))
        if state is None:
            kind: ActionKind = "run_unrestore_job" if rollback else "run_restore_job"
            what = "putting the old data back on" if rollback else "preparing"
            return _act(
                op.model_copy(update={"member": name}),
                ClusterPhase.RESTORING,
                step,
                Action(
                    kind,
                    member=name,
                    reason="RestoreRolledBack" if rollback else "RestorePrepared",
                    message=f"{what} the volume of {name}",
                ),
            )
        if state == "Running":
            return _wait(
                op.model_copy(update={"member": name}),
                ClusterPhase.RESTORING,
                step,
                f"the restore Job on {name}",
            )
        if state == "Failed":
            if not rollback:
                return [name]  # stop at the first failure: the rest need not be touched
            failed.append(name)
    return failed or None


def _restore_in_place(
    obs: Observed, leader: NodeStatus | None, op: Operation, now: datetime
) -> Plan:
    """StopMembers -> PrepareVolumes (a Job per member: stage the checkpoint, check its
    sha256, move the old data aside) -> Rebootstrap (status.bootstrapped unset: the
    ConfigMap says `new` with restore-from) -> StartMembers (every member bootstraps from
    the staged checkpoint) -> Finish (bootstrapped again). A failed preparation rolls
    every volume back (RollBack) and restarts the members on their old data."""
    phase = ClusterPhase.RESTORING
    status = obs.cluster.status
    target = op.target_replicas or obs.cluster.spec.replicas
    replicas = obs.statefulset_replicas or 0
    members = _members(obs, target)
    step = op.step
    if step == STEP_STOP_MEMBERS:
        stopping = _stop_every_member(obs, op, phase, "for the restore (writes stop)")
        if stopping is not None:
            return stopping
        step = STEP_PREPARE
    if step == STEP_PREPARE:
        outcome = _job_round(obs, op, STEP_PREPARE, members, rollback=False)
        if isinstance(outcome, Plan):
            return outcome
        if outcome:
            job = desired.restore_job_name(
                obs.name, op.request_id or "", outcome[0], rollback=False
            )
            why = (
                f"preparing the volume of {outcome[0]} failed (kubectl logs job/{job}); "
                "putting every member's old data back"
            )
            return Plan(
                phase,
                _step(op, STEP_ROLLBACK, why),
                waiting=why,
                notice=Notice("RestoreFailed", why, warning=True),
            )
        return _act(
            op,
            phase,
            STEP_REBOOTSTRAP,
            Action(
                "begin_rebootstrap",
                reason="RestoreStaged",
                message=f"every volume holds the checkpoint (sha256 checked); {target} members "
                "bootstrap from it",
            ),
        )
    if step == STEP_ROLLBACK:
        outcome = _job_round(obs, op, STEP_ROLLBACK, members, rollback=True)
        if isinstance(outcome, Plan):
            return outcome
        if replicas != target:
            return _act(
                op,
                phase,
                STEP_ROLLBACK,
                Action(
                    "set_replicas",
                    replicas=target,
                    reason="MembersRestarted",
                    message="restarting the members on their old data",
                ),
            )
        request = op.request_id or ""
        broken = [
            f"{name} (kubectl logs job/"
            f"{desired.restore_job_name(obs.name, request, name, rollback=False)})"
            for name in members
            if obs.jobs.get(desired.restore_job_name(obs.name, request, name, rollback=False))
            == "Failed"
        ]
        why = (
            f"preparing the volume failed on {', '.join(broken) or 'a member'}; "
            "every member runs on its old data again"
        )
        if outcome:
            why += f"; putting the old data back failed on {', '.join(outcome)} (docs/recovery.md)"
        return Plan(
            ClusterPhase.DEGRADED,
            None,
            restore=_restore_record(
                obs, op, phase=RecoveryPhase.FAILED, finished_at=now, message=why[:4096]
            ),
        )
    if step == STEP_REBOOTSTRAP:
        if status.bootstrapped:
            return _act(
                op,
                phase,
                STEP_REBOOTSTRAP,
                Action(
                    "begin_rebootstrap",
                    reason="RestoreStaged",
                    message=f"{target} members bootstrap from the checkpoint",
                ),
            )
        step = STEP_START_MEMBERS
    if step == STEP_START_MEMBERS:
        if replicas < target:
            return _act(
                op,
                phase,
                STEP_START_MEMBERS,
                Action(
                    "set_replicas",
                    replicas=target,
                    reason="MembersStarted",
                    message=f"starting {target} members from the restored checkpoint",
                ),
            )
        founders = set(members)
        ready = sum(1 for name in founders if healthy(obs, name))
        if leader is None or {m.name for m in voters(leader)} != founders or ready < len(founders):
            return _wait(
                op,
                phase,
                STEP_START_MEMBERS,
                f"{len(founders)} members to bootstrap from the checkpoint ({ready} ready)",
            )
        return _act(
            op,
            phase,
            STEP_FINISH,
            Action(
                "mark_bootstrapped",
                reason="Restored",
                message=f"{target} members run from the restored checkpoint; {leader.name} leads",
            ),
        )
    if not status.bootstrapped:  # STEP_FINISH, the mark not persisted yet
        return _act(
            op,
            phase,
            STEP_FINISH,
            Action(
                "mark_bootstrapped",
                reason="Restored",
                message=f"{target} members run from the restored checkpoint",
            ),
        )
    record = _restore_record(obs, op, phase=RecoveryPhase.SUCCEEDED, finished_at=now)
    done = (
        f"restored {record.checkpoint} into every member; the old data is kept in "
        f"{record.kept_aside} on each volume"
    )
    return Plan(
        ClusterPhase.AVAILABLE,
        None,
        restore=record.model_copy(update={"message": done}),
        notice=Notice("RestoreSucceeded", done),
        record_volumes={name: obs.volumes[name] for name in members if name in obs.volumes},
    )


_STEPPERS = {
    OperationKind.SCALE_UP: _scale_up,
    OperationKind.SCALE_DOWN: _scale_down,
    OperationKind.ROLLING_UPDATE: _rolling_update,
    OperationKind.RECOVER: _recover,
}


# ---- disruption budget ---------------------------------------------------------------------


def budget_voters(obs: Observed, result: Plan) -> int | None:
    """The voter count the PodDisruptionBudget must protect, None when no leader says.

    The leader's voters now, one fewer when the next action removes a voter: the budget
    shrinks before the removal, never after it.
    """
    leader = find_leader(obs.nodes.values())
    if leader is None:
        return None
    count = len(voters(leader))
    action = result.action
    if action is not None and action.kind == "remove_member" and action.member:
        member = leader.member(action.member)
        if member is not None and member.voter:
            count -= 1
    return count


# ---- status --------------------------------------------------------------------------------


def member_statuses(obs: Observed) -> list[MemberStatus]:
    """status.members: the leader's view of the configuration, with health (lag is a metric:
    member_lags)."""
    leader = find_leader(obs.nodes.values())
    if leader is None:
        return [
            MemberStatus(name=n.name, id=n.id, role=MemberRole.from_node(n.role), healthy=False)
            for n in sorted(obs.nodes.values(), key=lambda n: n.name)
        ]
    out = []
    for member in sorted(leader.members, key=lambda m: m.name):
        node = obs.nodes.get(member.name)
        if member.id == leader.id:
            role = MemberRole.LEADER
        elif not member.voter:
            role = MemberRole.LEARNER
        else:
            role = MemberRole.from_node(node.role) if node is not None else MemberRole.UNKNOWN
        out.append(
            MemberStatus(
                name=member.name or str(member.id),
                id=member.id,
                role=role,
                healthy=healthy(obs, member.name),
            )
        )
    return out


def member_lags(obs: Observed) -> dict[str, int]:
    """Entries each member is behind the leader's last index (the ones the leader knows)."""
    leader = find_leader(obs.nodes.values())
    if leader is None:
        return {}
    lags = {m.name or str(m.id): lag(leader, m) for m in leader.members}
    return {name: value for name, value in lags.items() if value is not None}


def conditions(
    obs: Observed, result: Plan
) -> list[tuple[ConditionType, ConditionStatus, str, str]]:
    """(type, status, reason, message) of Available, Progressing and Degraded."""
    leader = find_leader(obs.nodes.values())
    out: list[tuple[ConditionType, ConditionStatus, str, str]] = []
    # A recovery or restore stops the members on purpose: that is not a quorum loss.
    planned = result.operation is not None and result.operation.kind in (
        OperationKind.RECOVER_QUORUM,
        OperationKind.RESTORE_IN_PLACE,
    )
    lost = quorum_view(obs) if leader is None and not planned else None
    if lost is not None and lost.lost:
        out.append((ConditionType.AVAILABLE, ConditionStatus.FALSE, "QuorumLost", lost.describe()))
    elif leader is None:
        out.append(
            (
                ConditionType.AVAILABLE,
                ConditionStatus.FALSE,
                "NoLeader",
                "no member reports itself leader",
            )
        )
    else:
        count, fine = len(voters(leader)), healthy_voters(obs, leader)
        if fine >= quorum(count):
            out.append(
                (
                    ConditionType.AVAILABLE,
                    ConditionStatus.TRUE,
                    "QuorumHealthy",
                    f"{leader.name} leads; {fine} of {count} voters healthy",
                )
            )
        else:
            out.append(
                (
                    ConditionType.AVAILABLE,
                    ConditionStatus.FALSE,
                    "QuorumLost",
                    f"{fine} of {count} voters healthy",
                )
            )
    op = result.operation
    if result.refused:
        out.append(
            (ConditionType.PROGRESSING, ConditionStatus.FALSE, "QuorumAtRisk", result.refused)
        )
    elif result.phase == ClusterPhase.PAUSED:
        out.append(
            (
                ConditionType.PROGRESSING,
                ConditionStatus.FALSE,
                "Paused",
                "spec.paused is set: no changes are made",
            )
        )
    elif op is not None:
        note = op.message or op.step
        out.append(
            (
                ConditionType.PROGRESSING,
                ConditionStatus.TRUE,
                op.kind.value,
                f"{op.member or ''}: {note}".lstrip(": "),
            )
        )
    elif result.phase == ClusterPhase.BOOTSTRAPPING:
        out.append(
            (
                ConditionType.PROGRESSING,
                ConditionStatus.TRUE,
                "Bootstrapping",
                result.waiting or "bootstrapping",
            )
        )
    else:
        out.append(
            (
                ConditionType.PROGRESSING,
                ConditionStatus.FALSE,
                "Reconciled",
                "the cluster matches its spec",
            )
        )
    unhealthy = sorted(name for name in _expected_members(obs) if not healthy(obs, name))
    if lost is not None and lost.lost:
        out.append(
            (
                ConditionType.DEGRADED,
                ConditionStatus.TRUE,
                "QuorumLost",
                f"quorum lost: {lost.describe()}",
            )
        )
    elif unhealthy:
        out.append(
            (
                ConditionType.DEGRADED,
                ConditionStatus.TRUE,
                "MembersUnhealthy",
                f"not ready or not answering: {', '.join(unhealthy)}",
            )
        )
    else:
        out.append(
            (
                ConditionType.DEGRADED,
                ConditionStatus.FALSE,
                "AllMembersHealthy",
                "every member is ready",
            )
        )
    return out


def _expected_members(obs: Observed) -> list[str]:
    leader = find_leader(obs.nodes.values())
    if leader is not None:
        return [m.name for m in leader.members]
    count = obs.statefulset_replicas or 0
    return [desired.pod_name(obs.name, i) for i in range(count)]


# ---- leader routing ------------------------------------------------------------------------


def role_labels(
    pods: Iterable[str], statuses: Mapping[str, NodeStatus | None]
) -> dict[str, str | None]:
    """The `raftkv.dev/role` label each pod should carry (None: no label).

    With a known leader its members are leader/follower/learner and other pods get no
    label. Without one, nobody is `leader` (the client Service then has no endpoint, as no
    member could take a write anyway) and the rest keep what the last leader said.
    """
    leader = find_leader(s for s in statuses.values() if s is not None)
    labels: dict[str, str | None] = {}
    for pod in pods:
        if leader is None:
            labels[pod] = desired.ROLE_FOLLOWER if statuses.get(pod) is not None else None
            continue
        member = leader.member(pod)
        if member is None:
            labels[pod] = None
        elif member.id == leader.id:
            labels[pod] = desired.ROLE_LEADER
        elif member.voter:
            labels[pod] = desired.ROLE_FOLLOWER
        else:
            labels[pod] = desired.ROLE_LEARNER
    return labels


def label_changes(
    statuses: Mapping[str, NodeStatus | None],
    labels: Mapping[str, str | None],
    role_terms: Mapping[str, int | None],
) -> dict[str, str | None]:
    """The role labels to write, new leader first: role_labels() where it differs from the
    pods' `labels`, except on pods whose own member wrote its label at the newest term seen
    here or later (`role_terms`, the pods' ROLE_TERM_ANNOTATION). The members label
    themselves and know their own role at their term; this view may lag (a new leader that
    labelled itself is not demoted because the operator has not heard of it yet, even when
    another member already reports the new term). A label from an older term (the member
    died, or cannot write) is corrected."""
    wanted = role_labels(labels.keys(), statuses)
    view_term = max((s.term for s in statuses.values() if s is not None), default=0)

    def member_knows_better(pod: str) -> bool:
        term = role_terms.get(pod)
        return term is not None and term >= view_term

    changes = {
        pod: value
        for pod, value in wanted.items()
        if labels.get(pod) != value and not member_knows_better(pod)
    }
    return dict(sorted(changes.items(), key=lambda item: item[1] != desired.ROLE_LEADER))


# ---- checkpoint schedule ---------------------------------------------------------------------


def schedule_due(
    schedule: str, last: datetime | None, created: datetime, now: datetime
) -> datetime | None:
    """The latest scheduled time in (last or created, now], or None if none is due.

    Like a CronJob that missed runs while the operator was down: one checkpoint for the
    newest missed time, not one per missed time.
    """
    base = last or created
    it = croniter(schedule, base.astimezone(UTC))
    due: datetime | None = None
    while True:
        nxt = it.get_next(datetime)
        if nxt > now:
            return due
        due = nxt


def scheduled_checkpoint_name(cluster_name: str, when: datetime) -> str:
    """`<cluster>-<yyyymmddhhmm>` of the scheduled time: the same name for the same run."""
    return f"{cluster_name}-{when.astimezone(UTC):%Y%m%d%H%M}"


def checkpoint_id(checkpoint_name: str) -> str:
    """The checkpoint id for a RaftCheckpoint without spec.id: its name, shortened stably when
    over 63 characters (so a retried request asks for the same checkpoint)."""
    if len(checkpoint_name) <= 63:
        return checkpoint_name
    digest = hashlib.sha256(checkpoint_name.encode()).hexdigest()[:8]
    return f"{checkpoint_name[:54].rstrip('-.')}-{digest}"


# ---- checkpoint retention ------------------------------------------------------------------


@dataclass(frozen=True)
class CheckpointRecord:
    """What retention needs of a RaftCheckpoint."""

    name: str
    phase: str
    checkpoint_id: str | None
    index: int | None
    archived: bool
    archive_path: str | None
    scheduled: bool
    time: datetime | None = None
    """When the checkpoint was taken (status.time; None: unknown)."""

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> CheckpointRecord:
        meta, status = obj.get("metadata") or {}, obj.get("status") or {}
        index = status.get("index")
        return cls(
            name=str(meta.get("name")),
            phase=str(status.get("phase") or "Pending"),
            checkpoint_id=status.get("id"),
            index=int(index) if isinstance(index, int) else None,
            archived=bool(status.get("archived")),
            archive_path=status.get("archivePath"),
            scheduled=(meta.get("labels") or {}).get(desired.SCHEDULED_LABEL) == "true",
            time=_parse_time(status.get("time")),
        )


def _parse_time(value: object) -> datetime | None:
    """An RFC 3339 time from the API (a string we wrote, but read back as untrusted)."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Retention:
    expire: list[str]
    """Succeeded, but the members no longer hold the files: mark Expired."""
    unarchive: list[str]
    """Archived copies beyond archive retention: mark unarchived, then delete the copies."""
    delete: list[str]
    """Scheduled RaftCheckpoints with neither files on the members nor an archived copy."""


def checkpoint_retention(
    records: Iterable[CheckpointRecord],
    held: Mapping[str, int] | None,
    *,
    retain: int,
    archive_retain: int | None,
    archive_max_age: timedelta | None = None,
    now: datetime | None = None,
) -> Retention:
    """What follows from the members' retention and the archive's.

    `held`: {id: index} of the checkpoints the leader holds (None: unknown). A checkpoint expires only when
    the leader lacks it *and* holds `retain` newer ones, which is exactly when the members'
    retention (the newest `retain` by index) removed it: a leader that has not written a
    fresh checkpoint yet never expires it. Archive: the newest `archive_retain` copies by
    index (None: no archive), and, with `archive_max_age` (a bucket's maxAgeHours), none
    taken more than that before `now` except the newest: the same rule as the bucket's own
    prune (`raftkv archive prune`), so an object is unarchived before its copy goes."""
    records = list(records)

    def dropped(r: CheckpointRecord) -> bool:
        if held is None:  # the leader did not say: nothing expires now
            return False
        if not r.checkpoint_id or r.checkpoint_id in held or r.index is None:
            return False
        return sum(1 for index in held.values() if index > r.index) >= retain

    expire = [r.name for r in records if r.phase == "Succeeded" and dropped(r)]
    unarchive: list[str] = []
    if archive_retain is not None:
        archived = sorted(
            (r for r in records if r.archived),
            key=lambda r: (r.index if r.index is not None else -1, r.name),
            reverse=True,
        )

        def too_old(r: CheckpointRecord) -> bool:
            if archive_max_age is None or now is None or r.time is None:
                return False
            return now - r.time > archive_max_age

        unarchive = [
            r.name
            for rank, r in enumerate(archived)
            if rank >= archive_retain or (rank > 0 and too_old(r))
        ]
    gone = set(expire) | {r.name for r in records if r.phase == "Expired"}
    delete = [
        r.name
        for r in records
        if r.scheduled and r.name in gone and (not r.archived or r.name in unarchive)
    ]
    return Retention(expire=expire, unarchive=unarchive, delete=delete)


def overdue(started: datetime | None, seconds: float, now: datetime) -> bool:
    """More than `seconds` passed since `started` (unknown start: not overdue)."""
    return started is not None and (now - started).total_seconds() > seconds
