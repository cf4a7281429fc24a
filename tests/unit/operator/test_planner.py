"""The reconciler's pure decisions: observed state -> the next step."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from pydantic import BaseModel

from raftkv_operator import desired, planner
from raftkv_operator.members import member_id
from raftkv_operator.models import (
    ClusterPhase,
    ConditionStatus,
    ConditionType,
    MemberRole,
    Operation,
    OperationKind,
    RaftCluster,
)
from raftkv_operator.nodestatus import Member, NodeStatus, StatusLeader

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
NAME = "demo"
HASH = "hash-new"


_T = TypeVar("_T")


def replace(obj: _T, **changes: Any) -> _T:
    """dataclasses.replace, also for the (pydantic) status models: validated, so a
    misspelt field fails here instead of being ignored."""
    if isinstance(obj, BaseModel):
        return type(obj).model_validate({**dict(obj), **changes})
    return dataclasses.replace(obj, **changes)  # type: ignore[type-var]


def pod(
    i: int,
    *,
    ready: bool = True,
    hash_: str = HASH,
    terminating: bool = False,
    ip: str | None = "auto",
) -> planner.PodState:
    return planner.PodState(
        name=f"{NAME}-{i}",
        ordinal=i,
        ip=f"127.0.0.{10 + i}" if ip == "auto" else ip,
        ready=ready,
        terminating=terminating,
        template_hash=hash_,
        uid=f"pod-uid-{i}",
    )


def member(i: int, *, voter: bool = True, match: int | None = 100) -> Member:
    name = f"{NAME}-{i}"
    return Member(
        id=member_id(name),
        name=name,
        peer_url=f"{name}:7380",
        client_url=f"http://{name}:7379",
        role="voter" if voter else "learner",
        match_index=match,
    )


def node(
    i: int,
    role: str,
    members: list[Member],
    *,
    term: int = 3,
    leader: int | None = 0,
    ready: bool = True,
    last: int = 100,
) -> NodeStatus:
    leader_name = f"{NAME}-{leader}" if leader is not None else None
    return NodeStatus(
        name=f"{NAME}-{i}",
        id=member_id(f"{NAME}-{i}"),
        role=role,
        term=term,
        leader=StatusLeader(id=member_id(leader_name), name=leader_name) if leader_name else None,
        commit_index=last,
        applied_index=last,
        last_index=last,
        ready=ready,
        members=tuple(members),
    )


def cluster(
    replicas: int = 3,
    *,
    bootstrapped: bool = True,
    operation: Operation | None = None,
    paused: bool = False,
    **spec: Any,
) -> RaftCluster:
    status: dict[str, Any] = {"bootstrapped": bootstrapped, "initialReplicas": 3}
    if operation is not None:
        status["operation"] = operation.model_dump(mode="json", by_alias=True, exclude_none=True)
    return RaftCluster.model_validate(
        {
            "metadata": {"name": NAME, "namespace": "ns", "uid": "u", "generation": 1},
            "spec": {"replicas": replicas, "paused": paused, **spec},
            "status": status,
        }
    )


def healthy_cluster(n: int = 3, *, leader: int = 0, **kw: Any) -> planner.Observed:
    """n voters, all healthy, `leader` leads; kw overrides Observed fields."""
    members = [member(i) for i in range(n)]
    nodes = {
        f"{NAME}-{i}": node(i, "leader" if i == leader else "follower", members, leader=leader)
        for i in range(n)
    }
    fields: dict[str, Any] = {
        "cluster": cluster(n),
        "statefulset_replicas": n,
        "statefulset_hash": HASH,
        "pods": {f"{NAME}-{i}": pod(i) for i in range(n)},
        "nodes": nodes,
        "volumes": {f"{NAME}-{i}": f"pvc-{i}" for i in range(n)},
        "recorded_volumes": {f"{NAME}-{i}": f"pvc-{i}" for i in range(n)},
    }
    fields.update(kw)
    return planner.Observed(**fields)


def with_spec(obs: planner.Observed, **cluster_kw: Any) -> planner.Observed:
    return replace(obs, cluster=cluster(**cluster_kw))


def run(obs: planner.Observed) -> planner.Plan:
    return planner.plan(obs, NOW)


def persisted(obs: planner.Observed, result: planner.Plan, **cluster_kw: Any) -> planner.Observed:
    """obs with the plan's operation written to status (as the handlers do first)."""
    cluster_kw.setdefault("replicas", obs.cluster.spec.replicas)
    recorded = dict(obs.recorded_volumes)
    for name, uid in result.record_volumes.items():
        if uid is None:
            recorded.pop(name, None)
        else:
            recorded[name] = uid
    return replace(
        obs, cluster=cluster(operation=result.operation, **cluster_kw), recorded_volumes=recorded
    )


# ---- steady state, bootstrap, pause ----------------------------------------------------------


def test_healthy_cluster_is_available_with_nothing_to_do() -> None:
    result = run(healthy_cluster())
    assert result.phase == ClusterPhase.AVAILABLE
    assert result.action is None and result.operation is None and not result.refused


def test_paused_cluster_does_nothing_even_when_the_spec_differs() -> None:
    obs = with_spec(healthy_cluster(), replicas=5, paused=True)
    result = run(obs)
    assert result.phase == ClusterPhase.PAUSED and result.action is None


def test_bootstrap_waits_for_the_founders_then_marks_bootstrapped() -> None:
    obs = healthy_cluster()
    obs = replace(obs, cluster=cluster(bootstrapped=False), nodes={})
    waiting = run(obs)
    assert waiting.phase == ClusterPhase.BOOTSTRAPPING and waiting.action is None
    ready = replace(healthy_cluster(), cluster=cluster(bootstrapped=False), recorded_volumes={})
    result = run(ready)
    assert result.action is not None and result.action.kind == "mark_bootstrapped"
    assert result.record_volumes == {f"{NAME}-{i}": f"pvc-{i}" for i in range(3)}


def test_bootstrap_waits_for_every_founder_not_just_a_quorum() -> None:
    obs = replace(healthy_cluster(), cluster=cluster(bootstrapped=False))
    slow = {n: s for n, s in obs.nodes.items() if n != f"{NAME}-2"}
    assert run(replace(obs, nodes=slow)).action is None
    assert run(obs).action is not None


def test_bootstrap_needs_exactly_the_initial_members_as_voters() -> None:
    obs = healthy_cluster()
    obs = _set_members(obs, [member(0), member(1)])
    obs = replace(obs, cluster=cluster(bootstrapped=False))
    assert run(obs).action is None


def test_no_leader_means_degraded_and_no_action() -> None:
    obs = healthy_cluster()
    followers = {n: replace(s, role="follower") for n, s in obs.nodes.items()}
    result = run(replace(obs, nodes=followers))
    assert result.phase == ClusterPhase.DEGRADED and result.action is None


def test_leader_is_the_self_reported_leader_with_the_highest_term() -> None:
    members = [member(i) for i in range(3)]
    stale = node(0, "leader", members, term=2)
    current = node(1, "leader", members, term=5, leader=1)
    assert planner.find_leader([stale, current]) == current


# ---- scale up ----------------------------------------------------------------------------


def scale_up_sequence() -> list[tuple[str, str | None]]:
    """Drive a 3 -> 5 scale-up against a simulated world; the (action, member) list."""
    obs = with_spec(healthy_cluster(), replicas=5)
    seen: list[tuple[str, str | None]] = []
    for _ in range(30):
        result = run(obs)
        obs = persisted(obs, result, replicas=5)
        if result.action is None:
            if result.operation is None:
                break
            name = result.operation.member
            assert name is not None
            # The world moves on: the pod starts and answers, or the learner catches up.
            if name not in obs.nodes:
                i = int(name.rsplit("-", 1)[1])
                leader = obs.nodes[f"{NAME}-0"]
                obs = replace(
                    obs, nodes={**obs.nodes, name: node(i, "learner", list(leader.members))}
                )
            else:
                obs = _update_member(obs, name, match=100)
            continue
        action = result.action
        seen.append((action.kind, action.member or str(action.replicas)))
        if action.kind == "set_replicas":
            assert action.replicas is not None
            i = action.replicas - 1
            obs = replace(
                obs,
                statefulset_replicas=action.replicas,
                pods={**obs.pods, f"{NAME}-{i}": pod(i)},
                volumes={**obs.volumes, f"{NAME}-{i}": f"pvc-{i}"},
            )
        elif action.kind == "add_learner":
            assert action.member is not None
            i = int(action.member.rsplit("-", 1)[1])
            obs = _add_member(obs, member(i, voter=False, match=None))
        elif action.kind == "promote":
            assert action.member is not None
            obs = _update_member(obs, action.member, voter=True)
    return seen


def _leader_members(obs: planner.Observed) -> list[Member]:
    leader = planner.find_leader(obs.nodes.values())
    assert leader is not None
    return list(leader.members)


def _set_members(obs: planner.Observed, members: list[Member]) -> planner.Observed:
    nodes = {n: replace(s, members=tuple(members)) for n, s in obs.nodes.items()}
    return replace(obs, nodes=nodes)


def _add_member(obs: planner.Observed, new: Member) -> planner.Observed:
    return _set_members(obs, [*_leader_members(obs), new])


def _update_member(obs: planner.Observed, name: str, **fields: Any) -> planner.Observed:
    """`match=` sets match_index, `voter=` the role."""
    if "voter" in fields:
        fields["role"] = "voter" if fields.pop("voter") else "learner"
    if "match" in fields:
        fields["match_index"] = fields.pop("match")
    updated = [replace(m, **fields) if m.name == name else m for m in _leader_members(obs)]
    return _set_members(obs, updated)


def test_scale_up_adds_one_member_at_a_time_as_a_learner_then_promotes() -> None:
    assert scale_up_sequence() == [
        ("set_replicas", "4"),
        ("add_learner", f"{NAME}-3"),
        ("promote", f"{NAME}-3"),
        ("set_replicas", "5"),
        ("add_learner", f"{NAME}-4"),
        ("promote", f"{NAME}-4"),
    ]


def test_a_lagging_learner_is_not_promoted() -> None:
    obs = _add_member(with_spec(healthy_cluster(), replicas=5), member(3, voter=False, match=1))
    obs = replace(
        obs,
        statefulset_replicas=4,
        pods={**obs.pods, f"{NAME}-3": pod(3)},
        nodes={**obs.nodes, f"{NAME}-3": node(3, "learner", _leader_members(obs))},
    )
    op = Operation(
        kind=OperationKind.SCALE_UP,
        step="AddLearner",
        started_at=NOW,
        member=f"{NAME}-3",
        target_replicas=5,
    )
    result = run(replace(obs, cluster=cluster(5, operation=op)))
    assert result.action is None
    assert result.operation is not None and result.operation.step == planner.STEP_CATCH_UP


def test_scale_up_resumes_from_the_persisted_operation() -> None:
    # The operator died after starting pod -3 (StatefulSet already 4): the new operator
    # must add it, not start yet another pod.
    obs = with_spec(healthy_cluster(), replicas=5)
    op = Operation(
        kind=OperationKind.SCALE_UP,
        step="CreatePod",
        started_at=NOW,
        member=f"{NAME}-3",
        target_replicas=5,
    )
    obs = replace(
        obs,
        cluster=cluster(5, operation=op),
        statefulset_replicas=4,
        pods={**obs.pods, f"{NAME}-3": pod(3)},
        nodes={**obs.nodes, f"{NAME}-3": node(3, "follower", [], term=0, leader=None, ready=False)},
    )
    result = run(obs)
    assert result.action is not None
    assert (result.action.kind, result.action.member) == ("add_learner", f"{NAME}-3")


# ---- scale down ----------------------------------------------------------------------------


def test_scale_down_removes_the_highest_member_then_shrinks_then_deletes_its_volume() -> None:
    obs = with_spec(healthy_cluster(5), replicas=3)
    steps = []
    for _ in range(20):
        result = run(obs)
        obs = persisted(obs, result, replicas=3, storage={"reclaimPolicy": "Delete"})
        if result.operation is None and result.action is None:
            break
        action = result.action
        if action is None:
            # The StatefulSet controller deletes the pod.
            name = result.operation.member if result.operation else None
            obs = replace(obs, pods={k: v for k, v in obs.pods.items() if k != name})
            continue
        steps.append((action.kind, action.member or str(action.replicas)))
        if action.kind == "remove_member":
            obs = _set_members(obs, [m for m in _leader_members(obs) if m.name != action.member])
            obs = replace(obs, nodes={k: v for k, v in obs.nodes.items() if k != action.member})
        elif action.kind == "set_replicas":
            obs = replace(obs, statefulset_replicas=action.replicas)
        elif action.kind == "delete_volume":
            obs = replace(obs, volumes={k: v for k, v in obs.volumes.items() if k != action.member})
    assert steps == [
        ("remove_member", f"{NAME}-4"),
        ("set_replicas", "4"),
        ("delete_volume", f"{NAME}-4"),
        ("remove_member", f"{NAME}-3"),
        ("set_replicas", "3"),
        ("delete_volume", f"{NAME}-3"),
    ]


def test_scale_down_transfers_leadership_away_from_the_member_first() -> None:
    obs = with_spec(healthy_cluster(5, leader=4), replicas=3)
    result = run(obs)
    assert result.action is not None and result.action.kind == "transfer_leader"
    assert result.action.member == f"{NAME}-4" and result.action.target != f"{NAME}-4"


def test_scale_down_that_would_lose_quorum_is_refused() -> None:
    obs = healthy_cluster()
    # demo-1 does not answer: removing demo-2 would leave 1 healthy voter of 2.
    obs = replace(obs, nodes={k: v for k, v in obs.nodes.items() if k != f"{NAME}-1"})
    result = run(with_spec(obs, replicas=1))
    assert result.action is None and result.refused
    assert "demo-2" in result.refused
    conditions = {t: (s, r) for t, s, r, _ in planner.conditions(obs, result)}
    assert conditions[ConditionType.PROGRESSING] == (ConditionStatus.FALSE, "QuorumAtRisk")
    assert conditions[ConditionType.DEGRADED][0] == ConditionStatus.TRUE


# ---- rolling update --------------------------------------------------------------------------


def test_rolling_update_restarts_followers_first_and_the_leader_last() -> None:
    obs = healthy_cluster(leader=1)
    obs = replace(obs, pods={n: replace(p, template_hash="old") for n, p in obs.pods.items()})
    order = []
    for _ in range(30):
        result = run(obs)
        obs = persisted(obs, result)
        if result.operation is None:
            break
        action = result.action
        if action is None:
            # The restarted pod comes back with the new template, ready and caught up.
            name = result.operation.member
            assert name is not None
            obs = replace(
                obs,
                pods={
                    **obs.pods,
                    name: replace(obs.pods[name], template_hash=HASH, terminating=False),
                },
            )
            continue
        order.append((action.kind, action.member))
        if action.kind == "delete_pod":
            assert action.member is not None
            obs = replace(
                obs,
                pods={
                    **obs.pods,
                    action.member: replace(obs.pods[action.member], terminating=True),
                },
            )
        elif action.kind == "transfer_leader":
            target = action.target
            assert target is not None
            i = int(target.rsplit("-", 1)[1])
            nodes = {
                n: replace(
                    s,
                    role="leader" if n == target else "follower",
                    leader=StatusLeader(id=member_id(target), name=target),
                )
                for n, s in obs.nodes.items()
            }
            obs = replace(obs, nodes=nodes)
            assert i != 1
    kinds = [k for k, _ in order]
    assert kinds == ["delete_pod", "delete_pod", "transfer_leader", "delete_pod"], order
    assert order[-1] == ("delete_pod", f"{NAME}-1")
    assert {m for _, m in order[:2]} == {f"{NAME}-0", f"{NAME}-2"}


def test_rolling_update_waits_for_every_other_member_to_be_caught_up() -> None:
    obs = healthy_cluster()
    obs = replace(obs, pods={n: replace(p, template_hash="old") for n, p in obs.pods.items()})
    obs = _update_member(obs, f"{NAME}-1", match=1)  # far behind
    result = run(obs)
    assert result.action is None or result.action.member == f"{NAME}-1"
    assert result.operation is not None and result.operation.kind == OperationKind.ROLLING_UPDATE


def test_rolling_update_refuses_when_another_voter_is_down() -> None:
    obs = healthy_cluster()
    obs = replace(obs, pods={n: replace(p, template_hash="old") for n, p in obs.pods.items()})
    obs = replace(
        obs,
        pods={
            **obs.pods,
            f"{NAME}-2": replace(obs.pods[f"{NAME}-2"], template_hash=HASH, ready=False),
        },
    )
    result = run(obs)
    assert result.action is None


# ---- recovery ------------------------------------------------------------------------------


def test_member_with_a_replaced_volume_is_removed_then_re_added() -> None:
    obs = healthy_cluster()
    obs = replace(obs, volumes={**obs.volumes, f"{NAME}-2": "pvc-new"})
    first = run(obs)
    assert first.action is not None
    assert (first.action.kind, first.action.member) == ("remove_member", f"{NAME}-2")
    assert first.operation is not None and first.operation.kind == OperationKind.RECOVER
    obs = persisted(obs, first)
    obs = _set_members(obs, [m for m in _leader_members(obs) if m.name != f"{NAME}-2"])
    second = run(obs)
    assert second.action is not None
    assert (second.action.kind, second.action.member) == ("add_learner", f"{NAME}-2")
    obs = persisted(obs, second)
    obs = _add_member(obs, member(2, voter=False, match=100))
    third = run(obs)
    assert third.action is not None and third.action.kind == "promote"
    obs = persisted(obs, third)
    obs = _update_member(obs, f"{NAME}-2", voter=True)
    fourth = run(obs)
    # Whole again: the new volume is recorded and the operation ends; never removed again.
    assert fourth.action is None
    assert fourth.record_volumes == {f"{NAME}-2": "pvc-new"}
    obs = replace(
        persisted(obs, fourth), recorded_volumes={**obs.recorded_volumes, f"{NAME}-2": "pvc-new"}
    )
    assert run(obs).operation is None


def test_blank_node_that_the_leader_has_as_voter_is_recovered() -> None:
    obs = healthy_cluster()
    blank = node(2, "follower", [], term=0, leader=None, ready=False)
    result = run(replace(obs, nodes={**obs.nodes, f"{NAME}-2": blank}))
    assert result.operation is not None and result.operation.kind == OperationKind.RECOVER


def test_new_volumes_of_healthy_voters_are_recorded() -> None:
    result = run(healthy_cluster(recorded_volumes={}))
    assert result.record_volumes == {f"{NAME}-{i}": f"pvc-{i}" for i in range(3)}


# ---- status and labels -------------------------------------------------------------------


def test_member_statuses_come_from_the_leader_and_lag_goes_to_metrics() -> None:
    obs = _update_member(healthy_cluster(), f"{NAME}-2", match=90)
    statuses = {m.name: m for m in planner.member_statuses(obs)}
    assert statuses[f"{NAME}-0"].role == MemberRole.LEADER and statuses[f"{NAME}-2"].healthy
    # No counter in status: it would change with every write.
    assert "lag" not in statuses[f"{NAME}-2"].model_dump(by_alias=True)
    assert planner.member_lags(obs) == {f"{NAME}-0": 0, f"{NAME}-1": 0, f"{NAME}-2": 10}


def test_role_labels_follow_the_leader_and_skip_non_members() -> None:
    obs = _add_member(healthy_cluster(), member(3, voter=False))
    statuses: dict[str, NodeStatus | None] = dict(obs.nodes)
    statuses[f"{NAME}-4"] = None
    labels = planner.role_labels([f"{NAME}-{i}" for i in range(5)], statuses)
    assert labels == {
        f"{NAME}-0": desired.ROLE_LEADER,
        f"{NAME}-1": desired.ROLE_FOLLOWER,
        f"{NAME}-2": desired.ROLE_FOLLOWER,
        f"{NAME}-3": desired.ROLE_LEARNER,
        f"{NAME}-4": None,
    }


def test_without_a_leader_nobody_keeps_the_leader_label() -> None:
    obs = healthy_cluster()
    statuses: dict[str, NodeStatus | None] = {
        n: replace(s, role="follower") for n, s in obs.nodes.items()
    }
    statuses[f"{NAME}-0"] = None  # the dead leader
    labels = planner.role_labels(list(statuses), statuses)
    assert desired.ROLE_LEADER not in labels.values()
    assert labels[f"{NAME}-0"] is None


# ---- checkpoints -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "last", "now", "due"),
    [
        ("*/5 * * * *", "2026-01-01T00:00", "2026-01-01T00:04", None),
        ("*/5 * * * *", "2026-01-01T00:00", "2026-01-01T00:05", "2026-01-01T00:05"),
        # Missed runs while the operator was down: one checkpoint, for the newest time.
        ("*/5 * * * *", "2026-01-01T00:00", "2026-01-01T00:17", "2026-01-01T00:15"),
        ("@hourly", None, "2026-01-01T01:30", "2026-01-01T01:00"),
    ],
)
def test_schedule_due(schedule: str, last: str | None, now: str, due: str | None) -> None:
    def at(text: str) -> datetime:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)

    created = at("2026-01-01T00:30")
    result = planner.schedule_due(schedule, at(last) if last else None, created, at(now))
    assert result == (at(due) if due else None)


def test_scheduled_checkpoint_names_are_per_minute_and_ids_fit() -> None:
    when = datetime(2026, 3, 4, 5, 6, 59, tzinfo=UTC)
    assert planner.scheduled_checkpoint_name("demo", when) == "demo-202603040506"
    long_name = "x" * 80
    ident = planner.checkpoint_id(long_name)
    assert len(ident) <= 63 and ident == planner.checkpoint_id(long_name)
    assert planner.checkpoint_id("short") == "short"


# ---- a returning member whose id was removed (a retained volume) ----------------------------


def _returning(retired: int | None, node_id: int, *, terminating: bool = False) -> planner.Plan:
    """Scale-up of -3 whose pod runs with `node_id`; the operation recorded `retired`."""
    obs = with_spec(healthy_cluster(), replicas=5)
    op = Operation(
        kind=OperationKind.SCALE_UP,
        step="AddLearner",
        started_at=NOW,
        member=f"{NAME}-3",
        target_replicas=5,
        retired_id=retired,
    )
    joiner = replace(node(3, "none", []), id=node_id, leader=None)
    obs = replace(
        obs,
        cluster=cluster(5, operation=op),
        statefulset_replicas=4,
        pods={**obs.pods, f"{NAME}-3": pod(3, terminating=terminating)},
        nodes={**obs.nodes, f"{NAME}-3": joiner},
        volumes={**obs.volumes, f"{NAME}-3": "pvc-3"},
    )
    return run(obs)


def test_a_member_back_under_a_removed_id_gets_its_volume_replaced() -> None:
    result = _returning(retired=777, node_id=777)
    assert result.action is not None and result.action.kind == "replace_volume"
    assert result.action.member == f"{NAME}-3"
    assert result.operation is not None and result.operation.retired_id == 777
    assert result.operation.step == planner.STEP_REPLACE_VOLUME


def test_while_the_old_pod_goes_the_operator_waits() -> None:
    result = _returning(retired=777, node_id=777, terminating=True)
    assert result.action is None and result.waiting


def test_the_fresh_incarnation_is_added_as_a_learner() -> None:
    result = _returning(retired=777, node_id=778)
    assert result.action is not None and result.action.kind == "add_learner"
    assert result.operation is not None and result.operation.retired_id is None


def test_without_a_refusal_a_joiner_is_simply_added() -> None:
    result = _returning(retired=None, node_id=777)
    assert result.action is not None and result.action.kind == "add_learner"


# ---- the disruption budget follows the voters ------------------------------------------------


def test_budget_counts_the_leaders_voters_not_the_spec() -> None:
    obs = _add_member(with_spec(healthy_cluster(), replicas=5), member(3, voter=False))
    assert planner.budget_voters(obs, run(obs)) == 3


def test_budget_shrinks_before_a_voter_is_removed() -> None:
    obs = with_spec(healthy_cluster(5), replicas=3)
    result = run(obs)
    assert result.action is not None and result.action.kind == "remove_member"
    assert planner.budget_voters(obs, result) == 4


def test_budget_is_unknown_without_a_leader() -> None:
    obs = healthy_cluster()
    obs = replace(obs, nodes={n: replace(s, role="follower") for n, s in obs.nodes.items()})
    assert planner.budget_voters(obs, run(obs)) is None


# ---- checkpoint retention --------------------------------------------------------------------


def _record(
    name: str,
    index: int,
    *,
    phase: str = "Succeeded",
    archived: bool = False,
    scheduled: bool = True,
    time: datetime | None = None,
) -> planner.CheckpointRecord:
    return planner.CheckpointRecord(
        name=name, phase=phase, checkpoint_id=name, index=index, archived=archived,
        archive_path=f"{NAME}/{name}" if archived else None, scheduled=scheduled, time=time,
    )  # fmt: skip


def test_objects_whose_files_the_members_dropped_expire() -> None:
    records = [_record("a", 1), _record("b", 2, scheduled=False), _record("c", 3)]
    verdict = planner.checkpoint_retention(records, {"c": 3}, retain=1, archive_retain=None)
    assert verdict.expire == ["a", "b"]
    # Scheduled ones with nothing left go; on-demand ones stay, marked Expired.
    assert verdict.delete == ["a"] and verdict.unarchive == []


def test_a_checkpoint_the_leader_has_not_written_yet_does_not_expire() -> None:
    # A new leader that has not applied the newest checkpoint: it lacks "c", but "c" is
    # newer than everything it holds, so no retention removed it.
    records = [_record("b", 2), _record("c", 3)]
    verdict = planner.checkpoint_retention(records, {"b": 2}, retain=1, archive_retain=None)
    assert verdict.expire == []
    # With retain 2 and one newer checkpoint held, "a" may still be on the members' disks.
    older = planner.checkpoint_retention([_record("a", 1)], {"b": 2}, retain=2, archive_retain=None)
    assert older.expire == []


def test_an_archived_copy_keeps_an_expired_object_until_archive_retention_prunes_it() -> None:
    records = [_record("a", 1, archived=True), _record("b", 2, archived=True), _record("c", 3)]
    kept = planner.checkpoint_retention(records, {"c": 3}, retain=1, archive_retain=2)
    assert kept.expire == ["a", "b"] and kept.delete == [] and kept.unarchive == []
    pruned = planner.checkpoint_retention(records, {"c": 3}, retain=1, archive_retain=1)
    assert pruned.unarchive == ["a"] and pruned.delete == ["a"]


def test_archived_copies_older_than_the_bucket_max_age_are_unarchived_but_never_the_newest() -> (
    None
):
    """The bucket's prune (`raftkv archive prune --max-age-hours`) deletes copies by age as
    well as by count; the objects must say so before their copies go, not after."""
    day = timedelta(days=1)
    records = [
        _record("a", 1, archived=True, time=NOW - 10 * day),
        _record("b", 2, archived=True, time=NOW - 3 * day),
        _record("c", 3, archived=True, time=NOW - 2 * day),
    ]
    by_age = planner.checkpoint_retention(
        records, {"c": 3}, retain=1, archive_retain=5, archive_max_age=5 * day, now=NOW
    )
    assert by_age.unarchive == ["a"]
    # The newest copy stays however old: an idle cluster keeps its last one.
    idle = planner.checkpoint_retention(
        records, {"c": 3}, retain=1, archive_retain=5, archive_max_age=day, now=NOW
    )
    assert idle.unarchive == ["b", "a"]
    # A record without a time is judged by count only.
    untimed = [_record("x", 1, archived=True), _record("y", 2, archived=True, time=NOW)]
    kept = planner.checkpoint_retention(
        untimed, {"y": 2}, retain=1, archive_retain=5, archive_max_age=day, now=NOW
    )
    assert kept.unarchive == []


def test_a_record_reads_the_checkpoint_time_from_status() -> None:
    obj = {
        "metadata": {"name": "a"},
        "status": {"phase": "Succeeded", "index": 4, "time": "2026-12-01T10:00:00Z"},
    }
    record = planner.CheckpointRecord.from_object(obj)
    assert record.time == datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    assert planner.CheckpointRecord.from_object({"status": {"time": "garbage"}}).time is None


def test_overdue_is_measured_in_time() -> None:
    assert planner.overdue(NOW - timedelta(seconds=200), 150, NOW)
    assert not planner.overdue(NOW - timedelta(seconds=100), 150, NOW)
    assert not planner.overdue(None, 150, NOW)


def test_a_single_member_is_restarted_for_a_new_template() -> None:
    obs = healthy_cluster(1)
    obs = replace(
        obs, cluster=cluster(1), pods={f"{NAME}-0": pod(0, hash_="old")}, statefulset_hash=HASH
    )
    result = run(obs)
    assert result.action is not None and result.action.kind == "delete_pod", result
    assert not result.refused


def test_without_the_leaders_list_nothing_expires_but_the_archive_is_still_pruned() -> None:
    records = [_record("a", 1, archived=True), _record("b", 2, archived=True)]
    verdict = planner.checkpoint_retention(records, None, retain=1, archive_retain=1)
    assert verdict.expire == [] and verdict.unarchive == ["a"] and verdict.delete == []


def test_the_operator_leaves_alone_a_label_a_member_wrote_at_a_newer_term() -> None:
    """The members label themselves; the operator's polled view may predate an election.
    Here -0 led at the view's term and died; -1 won the next election and labelled itself
    leader (term annotated) before the operator's polls caught up."""
    obs = healthy_cluster()
    term = obs.nodes[f"{NAME}-0"].term
    statuses: dict[str, NodeStatus | None] = {
        n: replace(s, role="follower") for n, s in obs.nodes.items()
    }
    statuses[f"{NAME}-0"] = None  # the dead leader
    labels = {
        f"{NAME}-0": desired.ROLE_LEADER,
        f"{NAME}-1": desired.ROLE_LEADER,
        f"{NAME}-2": desired.ROLE_FOLLOWER,
    }
    terms = {f"{NAME}-0": term, f"{NAME}-1": term + 1, f"{NAME}-2": term}
    # Nothing in this view is newer than what the members wrote: hands off (the dead
    # leader's pod is NotReady, so its label routes nothing).
    assert planner.label_changes(statuses, labels, terms) == {}
    # Another member reports the new term, but nobody has told the operator who won: the
    # new leader's own word stands; the dead leader's label, from an older term, goes.
    statuses[f"{NAME}-2"] = replace(obs.nodes[f"{NAME}-2"], role="follower", term=term + 1)
    assert planner.label_changes(statuses, labels, terms) == {f"{NAME}-0": None}
    # Without the member's newer term, the stale view would demote the new leader.
    stale = planner.label_changes(statuses, labels, {**terms, f"{NAME}-1": term})
    assert stale[f"{NAME}-1"] == desired.ROLE_FOLLOWER
    # Once the view is past that term, the operator corrects labels again (second line).
    statuses[f"{NAME}-2"] = replace(obs.nodes[f"{NAME}-2"], role="follower", term=term + 2)
    assert f"{NAME}-1" in planner.label_changes(statuses, labels, terms)


def test_label_changes_write_the_new_leader_first() -> None:
    obs = healthy_cluster()
    labels = {
        f"{NAME}-0": None,
        f"{NAME}-1": desired.ROLE_LEADER,
        f"{NAME}-2": desired.ROLE_FOLLOWER,
    }
    changes = planner.label_changes(dict(obs.nodes), labels, {})
    assert list(changes.items())[0] == (f"{NAME}-0", desired.ROLE_LEADER)
    assert changes[f"{NAME}-1"] == desired.ROLE_FOLLOWER
