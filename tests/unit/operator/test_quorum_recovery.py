"""Quorum-loss detection and the RecoverQuorum operation (spec.recovery), as pure decisions:
observed state -> the next step, walked through every step as the reconciler would."""

from __future__ import annotations

from typing import Any

import pytest

from raftkv_operator import planner, quorumloss
from raftkv_operator.members import member_id
from raftkv_operator.models import (
    ClusterPhase,
    ConditionStatus,
    ConditionType,
    OperationKind,
    RaftCluster,
    RecoveryPhase,
    RecoveryStatus,
)
from raftkv_operator.nodestatus import NodeStatus
from raftkv_operator.reconciler import job_state
from tests.unit.operator.test_planner import HASH, NAME, NOW, member, node, pod, replace

REQUEST = {"requestId": "r1", "confirm": "ForceNewCluster"}


def blank(i: int) -> NodeStatus:
    """A pod back on an empty volume: answers, under a fresh id, outside any configuration."""
    return NodeStatus(
        name=f"{NAME}-{i}",
        id=900 + i,
        role="none",
        term=0,
        leader=None,
        commit_index=0,
        applied_index=0,
        last_index=0,
        ready=False,
        members=(),
    )


def raft_cluster(
    *,
    recovery: dict[str, Any] | None = None,
    status: dict[str, Any] | None = None,
) -> RaftCluster:
    spec: dict[str, Any] = {"replicas": 3}
    if recovery is not None:
        spec["recovery"] = recovery
    return RaftCluster.model_validate(
        {
            "metadata": {"name": NAME, "namespace": "ns", "uid": "u", "generation": 1},
            "spec": spec,
            "status": {"bootstrapped": True, "initialReplicas": 3, **(status or {})},
        }
    )


def lost_majority(
    survivor_last: int = 100, *, second: int | None = None, **kw: Any
) -> planner.Observed:
    """demo-0 survives (no leader); demo-1 and demo-2 came back empty, or `second` also
    survives with its data (last index 90)."""
    members = [member(i) for i in range(3)]
    nodes = {f"{NAME}-{i}": blank(i) for i in (1, 2)}
    nodes[f"{NAME}-0"] = replace(
        node(0, "follower", members, leader=None, ready=False, last=survivor_last), last_term=3
    )
    if second is not None:
        nodes[f"{NAME}-{second}"] = replace(
            node(second, "follower", members, leader=None, ready=False, last=90), last_term=3
        )
    fields: dict[str, Any] = {
        "cluster": raft_cluster(),
        "statefulset_replicas": 3,
        "statefulset_hash": HASH,
        "pods": {f"{NAME}-{i}": pod(i, ready=False) for i in range(3)},
        "nodes": nodes,
        "volumes": {f"{NAME}-{i}": f"pvc-{i}" for i in range(3)},
        "recorded_volumes": {f"{NAME}-{i}": f"pvc-{i}" for i in range(3)},
    }
    fields.update(kw)
    return planner.Observed(**fields)


def persist(obs: planner.Observed, result: planner.Plan, **kw: Any) -> planner.Observed:
    """obs with the plan's status.operation and status.recovery written, as the reconciler
    does before it acts; kw: what the world looks like afterwards."""
    status: dict[str, Any] = {}
    if result.operation is not None:
        status["operation"] = result.operation.model_dump(
            mode="json", by_alias=True, exclude_none=True
        )
    recovery = result.recovery or obs.cluster.status.recovery
    if recovery is not None:
        status["recovery"] = recovery.model_dump(mode="json", by_alias=True, exclude_none=True)
    spec = obs.cluster.spec.recovery
    cluster = raft_cluster(
        recovery=spec.model_dump(mode="json", by_alias=True) if spec else None, status=status
    )
    return replace(obs, cluster=cluster, **kw)


# ---- detection ----------------------------------------------------------------------------------


def test_assess_names_what_is_missing_and_why() -> None:
    obs = lost_majority()
    obs = replace(
        obs,
        nodes={k: v for k, v in obs.nodes.items() if k != f"{NAME}-2"},
        pods={k: v for k, v in obs.pods.items() if k != f"{NAME}-2"},
    )
    view = planner.quorum_view(obs)
    assert view.lost and view.needed == 2
    assert [n.name for n in view.answering] == [f"{NAME}-0"]
    assert "new incarnation" in view.missing[f"{NAME}-1"]
    assert view.missing[f"{NAME}-2"] == "no pod"
    assert "1 of 3 voters answer" in view.describe()


def test_a_majority_answering_is_not_quorum_loss() -> None:
    obs = lost_majority(second=1)
    view = planner.quorum_view(obs)
    assert not view.lost
    result = planner.plan(obs, NOW)
    assert not result.quorum_lost and result.notice is None
    assert result.action is None


def test_the_survivor_is_the_most_complete_log_by_last_term_then_index() -> None:
    members = [member(i) for i in range(3)]
    long_old = replace(node(0, "follower", members, leader=None, last=200), last_term=2)
    short_new = replace(node(1, "follower", members, leader=None, last=150), last_term=3)
    view = quorumloss.assess(
        {n.name: n for n in (long_old, short_new)}, [f"{NAME}-{i}" for i in range(3)], []
    )
    assert view.survivor is not None and view.survivor.name == f"{NAME}-1"


def test_quorum_loss_without_a_request_only_reports() -> None:
    obs = lost_majority()
    result = planner.plan(obs, NOW)
    assert result.phase == ClusterPhase.DEGRADED and result.action is None
    assert result.quorum_lost and result.recovery is None
    assert result.notice is not None and result.notice.warning
    assert result.notice.reason == "QuorumLost" and "spec.recovery" in result.notice.message
    conds = {t: (s, r, m) for t, s, r, m in planner.conditions(obs, result)}
    assert conds[ConditionType.DEGRADED][:2] == (ConditionStatus.TRUE, "QuorumLost")
    assert f"{NAME}-1" in conds[ConditionType.DEGRADED][2]
    assert conds[ConditionType.AVAILABLE][:2] == (ConditionStatus.FALSE, "QuorumLost")


# ---- refusals -----------------------------------------------------------------------------------


def test_a_request_while_a_leader_exists_is_refused_once() -> None:
    members = [member(i) for i in range(3)]
    obs = lost_majority(cluster=raft_cluster(recovery=REQUEST))
    obs = replace(
        obs,
        nodes={
            f"{NAME}-{i}": node(i, "leader" if i == 0 else "follower", members) for i in range(3)
        },
        pods={f"{NAME}-{i}": pod(i) for i in range(3)},
    )
    result = planner.plan(obs, NOW)
    assert result.recovery is not None and result.recovery.phase == RecoveryPhase.REFUSED
    assert result.action is None or result.action.kind != "set_replicas"
    assert result.notice is not None and result.notice.reason == "RecoveryRefused"
    # Acted on once: the same requestId is not looked at again, even after a quorum loss.
    again = persist(lost_majority(), result)
    assert planner.plan(again, NOW).recovery is None
    assert planner.plan(again, NOW).operation is None


def test_a_request_with_a_majority_answering_is_refused() -> None:
    obs = lost_majority(second=1, cluster=raft_cluster(recovery=REQUEST))
    result = planner.plan(obs, NOW)
    assert result.recovery is not None and result.recovery.phase == RecoveryPhase.REFUSED
    assert result.operation is None and result.action is None


def test_a_request_with_no_survivor_is_refused() -> None:
    obs = lost_majority(cluster=raft_cluster(recovery=REQUEST))
    obs = replace(obs, nodes={k: v for k, v in obs.nodes.items() if k != f"{NAME}-0"})
    result = planner.plan(
        replace(
            obs,
            cluster=raft_cluster(
                recovery=REQUEST,
                status={
                    "members": [
                        {"name": f"{NAME}-{i}", "id": member_id(f"{NAME}-{i}"), "role": "Follower"}
                        for i in range(3)
                    ]
                },
            ),
        ),
        NOW,
    )
    assert result.recovery is not None and result.recovery.phase == RecoveryPhase.REFUSED
    assert "checkpoint" in (result.recovery.message or "")


# ---- the operation, step by step ------------------------------------------------------------------


def test_recovery_walks_every_step_to_three_voters() -> None:
    obs = lost_majority(cluster=raft_cluster(recovery=REQUEST))
    result = planner.plan(obs, NOW)
    op = result.operation
    assert op is not None and op.kind == OperationKind.RECOVER_QUORUM
    assert op.member == f"{NAME}-0" and op.request_id == "r1" and op.target_replicas == 3
    assert result.action is not None and result.action.kind == "set_replicas"
    assert result.action.replicas == 0
    assert result.recovery is not None and result.recovery.phase == RecoveryPhase.RUNNING
    assert (result.recovery.last_term, result.recovery.last_index) == (3, 100)

    # Pods still terminating: wait for them all to be gone.
    obs = persist(obs, result, statefulset_replicas=0)
    result = planner.plan(obs, NOW)
    assert result.action is None and result.waiting and "to stop" in result.waiting
    # All gone, no Job yet: run it on the survivor.
    obs = persist(obs, result, pods={}, nodes={})
    result = planner.plan(obs, NOW)
    assert result.action is not None and result.action.kind == "run_recover_job"
    assert result.action.member == f"{NAME}-0"
    obs = persist(obs, result, recovery_job="Running")
    assert planner.plan(obs, NOW).action is None
    # Succeeded: the other members' volumes go (never the survivor's), in one action.
    obs = persist(obs, result, recovery_job="Succeeded")
    result = planner.plan(obs, NOW)
    assert result.action is not None and result.action.kind == "delete_volumes"
    assert result.action.members == (f"{NAME}-1", f"{NAME}-2")
    assert result.record_volumes == {f"{NAME}-1": None, f"{NAME}-2": None}
    obs = persist(obs, result, volumes={f"{NAME}-0": "pvc-0"})
    result = planner.plan(obs, NOW)
    assert result.action is not None
    assert result.action.kind == "set_replicas" and result.action.replicas == 3
    # Started: the survivor leads alone; the others are blank joiners.
    alone = [member(0)]
    nodes = {f"{NAME}-0": node(0, "leader", alone), **{f"{NAME}-{i}": blank(i) for i in (1, 2)}}
    obs = persist(
        obs,
        result,
        statefulset_replicas=3,
        nodes=nodes,
        pods={f"{NAME}-{i}": pod(i) for i in range(3)},
    )
    result = planner.plan(obs, NOW)
    assert result.recovery is not None and result.recovery.writable_at == NOW
    assert result.notice is not None and result.notice.reason == "QuorumRestored"
    obs = persist(obs, result)
    result = planner.plan(obs, NOW)
    assert result.action is not None and result.action.kind == "add_learner"
    assert result.action.member == f"{NAME}-1"
    assert result.phase == ClusterPhase.RECOVERING
    # demo-1 a learner, caught up: promoted.
    configured = [member(0), member(1, voter=False, match=100)]
    nodes = {
        f"{NAME}-0": node(0, "leader", configured),
        f"{NAME}-1": node(1, "learner", configured),
        f"{NAME}-2": blank(2),
    }
    obs = persist(obs, result, nodes=nodes)
    result = planner.plan(obs, NOW)
    assert result.action is not None and result.action.kind == "promote"
    # Everyone a healthy voter: done, Succeeded.
    every = [member(i) for i in range(3)]
    nodes = {f"{NAME}-{i}": node(i, "leader" if i == 0 else "follower", every) for i in range(3)}
    obs = persist(obs, result, nodes=nodes)
    result = planner.plan(obs, NOW)
    assert result.operation is None
    assert result.recovery is not None and result.recovery.phase == RecoveryPhase.SUCCEEDED
    assert result.recovery.writable_at == NOW
    assert result.phase == ClusterPhase.AVAILABLE


def stopped_with_job(job: planner.JobState) -> planner.Observed:
    """Recovery requested and persisted at StopMembers; the members are gone, the recover
    Job in `job` state."""
    obs = lost_majority(cluster=raft_cluster(recovery=REQUEST))
    result = planner.plan(obs, NOW)
    return persist(obs, result, statefulset_replicas=0, pods={}, nodes={}, recovery_job=job)


def test_a_failed_recover_job_restarts_the_members_and_changes_nothing_else() -> None:
    obs = stopped_with_job("Failed")
    result = planner.plan(obs, NOW)
    assert result.operation is not None and result.operation.step == planner.STEP_ABORT
    assert result.notice is not None and result.notice.reason == "RecoveryFailed"
    assert result.action is None  # no volume deleted
    obs = persist(obs, result)
    result = planner.plan(obs, NOW)
    assert result.action is not None and result.action.kind == "set_replicas"
    assert result.action.replicas == 3
    obs = persist(obs, result, statefulset_replicas=3)
    result = planner.plan(obs, NOW)
    assert result.operation is None
    assert result.recovery is not None and result.recovery.phase == RecoveryPhase.FAILED


def test_a_restarted_operator_resumes_from_the_persisted_step() -> None:
    """The step is re-derived from the world: a Job that already succeeded is not re-run."""
    # Persisted at StopMembers; the Job ran while the operator was away.
    result = planner.plan(stopped_with_job("Succeeded"), NOW)
    assert result.action is not None and result.action.kind == "delete_volumes"


@pytest.mark.parametrize("confirm", ["", "yes", "forcenewcluster"])
def test_the_request_needs_the_exact_confirmation(confirm: str) -> None:
    with pytest.raises(ValueError, match="confirm"):
        raft_cluster(recovery={"requestId": "r1", "confirm": confirm})


def test_recovery_status_round_trips() -> None:
    record = RecoveryStatus(request_id="r1", phase=RecoveryPhase.RUNNING, started_at=NOW)
    dumped = record.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert dumped == {"requestId": "r1", "phase": "Running", "startedAt": "2026-01-02T03:04:05Z"}


def test_job_state_reads_the_job_conditions() -> None:
    assert job_state(None) is None
    assert job_state({"status": {"active": 1}}) == "Running"
    assert (
        job_state({"status": {"conditions": [{"type": "Complete", "status": "True"}]}})
        == "Succeeded"
    )
    assert job_state({"status": {"conditions": [{"type": "Failed", "status": "True"}]}}) == "Failed"
    assert (
        job_state({"status": {"conditions": [{"type": "Failed", "status": "False"}]}}) == "Running"
    )
