"""The pydantic API models: parsing, helpers, and fidelity of the embedded Kubernetes types."""

from __future__ import annotations

import functools
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

import kubernetes_validate
import pydantic
import pytest
from croniter import CroniterBadDateError, croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from raftkv_operator import crdgen
from raftkv_operator.k8s_types import EMBEDDED_K8S_MODELS, EmbeddedK8sModel
from raftkv_operator.models import (
    CRON_SCHEDULE_PATTERN,
    DEFAULT_IMAGE_REPOSITORY,
    SUPPORTED_KUBERNETES_VERSIONS,
    CheckpointsSpec,
    ClusterPhase,
    Condition,
    ConditionStatus,
    ConditionType,
    MemberRole,
    OperationKind,
    RaftCheckpoint,
    RaftCluster,
    ReclaimPolicy,
    quorum,
    set_condition,
)

from .conftest import load_example

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def test_parses_a_body_as_kopf_hands_it_over() -> None:
    body = MappingProxyType(
        {
            **load_example("production.yaml"),
            "metadata": {"name": "orders", "namespace": "prod", "uid": "u1", "generation": 4,
                         "managedFields": [{"manager": "kubectl"}]},
            "status": {
                "phase": "Scaling",
                "members": [{"name": "orders-0", "id": 7, "role": "Leader", "healthy": True}],
                "operation": {"kind": "ScaleUp", "step": "AddLearner", "member": "orders-5",
                              "targetReplicas": 7, "startedAt": "2024-05-01T12:00:00Z"},
                "kopf": {"progress": {}},
                "someHandlerResult": {"x": 1},
            },
        }
    )  # fmt: skip
    cluster = RaftCluster.model_validate(body)
    assert cluster.name == "orders" and cluster.namespace == "prod"
    assert cluster.metadata.generation == 4
    assert cluster.spec.replicas == 5
    assert cluster.spec.storage.reclaim_policy is ReclaimPolicy.RETAIN
    assert cluster.spec.placement.affinity is not None
    anti = cluster.spec.placement.affinity.pod_anti_affinity
    assert anti is not None and anti.required_during_scheduling_ignored_during_execution
    assert anti.required_during_scheduling_ignored_during_execution[0].topology_key == (
        "kubernetes.io/hostname"
    )
    assert cluster.status.phase is ClusterPhase.SCALING
    assert cluster.status.members[0].role is MemberRole.LEADER
    operation = cluster.status.operation
    assert operation is not None and operation.kind is OperationKind.SCALE_UP
    assert operation.started_at == T0


def test_spec_rejects_unknown_fields_but_status_tolerates_them() -> None:
    with pytest.raises(pydantic.ValidationError, match="replica"):
        RaftCluster.model_validate({"spec": {"replica": 3}})
    cluster = RaftCluster.model_validate({"spec": {}, "status": {"unknown": 1}})
    assert cluster.status.phase is ClusterPhase.PENDING


def test_names_are_required_for_builders() -> None:
    cluster = RaftCluster.model_validate({"spec": {}})
    with pytest.raises(ValueError, match="metadata.name"):
        _ = cluster.name
    cluster = RaftCluster.model_validate({"metadata": {"name": "a"}, "spec": {}})
    with pytest.raises(ValueError, match="metadata.namespace"):
        _ = cluster.namespace


def test_to_k8s_round_trips() -> None:
    cluster = RaftCluster.model_validate(load_example("production.yaml"))
    again = RaftCluster.model_validate(cluster.to_k8s())
    assert again == cluster
    dumped = cluster.to_k8s()
    assert "imagePullPolicy" in dumped["spec"] and "image_pull_policy" not in dumped["spec"]
    checkpoint = RaftCheckpoint.model_validate(load_example("checkpoint.yaml"))
    assert RaftCheckpoint.model_validate(checkpoint.to_k8s()) == checkpoint


def test_quantities_are_normalised_to_strings() -> None:
    spec = RaftCluster.model_validate(
        {"spec": {"storage": {"size": 1024}, "resources": {"requests": {"cpu": 2}}}}
    ).spec
    assert spec.storage.size == "1024"
    assert spec.resources.requests == {"cpu": "2"}
    for bad in (True, -1, 0):
        with pytest.raises(pydantic.ValidationError):
            RaftCluster.model_validate({"spec": {"storage": {"size": bad}}})


def test_container_image() -> None:
    spec = RaftCluster.model_validate({"spec": {"version": "1.2.3"}}).spec
    assert spec.container_image() == f"{DEFAULT_IMAGE_REPOSITORY}:1.2.3"
    assert spec.container_image("kind.local/raftkv") == "kind.local/raftkv:1.2.3"
    spec = RaftCluster.model_validate({"spec": {"image": "raftkv:dev"}}).spec
    assert spec.container_image() == "raftkv:dev"


def test_quorum() -> None:
    assert [quorum(n) for n in (1, 2, 3, 4, 5, 7, 9)] == [1, 2, 2, 3, 3, 4, 5]


def test_member_role_from_node() -> None:
    assert MemberRole.from_node("leader") is MemberRole.LEADER
    assert MemberRole.from_node("pre_candidate") is MemberRole.PRE_CANDIDATE
    assert MemberRole.from_node("learner") is MemberRole.LEARNER
    assert MemberRole.from_node(None) is MemberRole.UNKNOWN
    assert MemberRole.from_node("bogus") is MemberRole.UNKNOWN


def test_set_condition_moves_transition_time_only_on_change() -> None:
    available = ConditionType.AVAILABLE
    conditions = set_condition([], available, ConditionStatus.FALSE, "Bootstrapping", "", now=T0)
    assert [c.type for c in conditions] == ["Available"]
    later = T0 + timedelta(minutes=1)
    same = set_condition(
        conditions, available, ConditionStatus.FALSE, "WaitingForQuorum", "2/3", now=later,
        observed_generation=2,
    )  # fmt: skip
    assert same[0].last_transition_time == T0
    assert (same[0].reason, same[0].message, same[0].observed_generation) == (
        "WaitingForQuorum", "2/3", 2,
    )  # fmt: skip
    flipped = set_condition(same, available, ConditionStatus.TRUE, "QuorumUp", "", now=later)
    assert flipped[0].last_transition_time == later
    both = set_condition(flipped, ConditionType.DEGRADED, ConditionStatus.FALSE, "Healthy", "",
                         now=later)  # fmt: skip
    assert [c.type for c in both] == ["Available", "Degraded"]
    assert both[0] == flipped[0]


def test_condition_follows_kubernetes_conventions() -> None:
    with pytest.raises(pydantic.ValidationError):
        Condition(type="Available", status=ConditionStatus.TRUE, reason="not camel case",
                  last_transition_time=T0)  # fmt: skip
    dumped = Condition(
        type="Available", status=ConditionStatus.TRUE, reason="QuorumUp", last_transition_time=T0
    ).to_k8s()
    assert dumped["lastTransitionTime"] == "2024-05-01T12:00:00Z"
    assert dumped["status"] == "True"


# ---- cron: the schema's pattern and croniter (which the handlers use) agree ------------------


@settings(max_examples=100, deadline=None)
@given(st.from_regex(re.compile(CRON_SCHEDULE_PATTERN), fullmatch=True))
def test_every_schedule_the_schema_admits_is_understood_by_croniter(schedule: str) -> None:
    assert croniter.is_valid(schedule), schedule
    try:
        croniter(schedule, T0).get_next(datetime)
    except CroniterBadDateError:
        # No calendar date matches (30 FEB): the model refuses it, the cluster reports it.
        with pytest.raises(pydantic.ValidationError, match="never fires"):
            CheckpointsSpec(schedule=schedule)


@pytest.mark.parametrize("schedule", ["* * 30 FEB *", "0 0 31 4 *", "0 0 30 2 *"])
def test_a_schedule_no_date_matches_is_refused(schedule: str) -> None:
    assert re.match(CRON_SCHEDULE_PATTERN, schedule)  # the pattern alone admits it
    with pytest.raises(pydantic.ValidationError, match="never fires"):
        CheckpointsSpec(schedule=schedule)
    assert CheckpointsSpec(schedule="0 0 29 2 *").schedule == "0 0 29 2 *"  # leap days fire


@pytest.mark.parametrize(
    "schedule",
    ["* * * * *", "0 */6 * * *", "30 2 * * 0", "0 0 1 */3 *", "15 10 * * MON-FRI", "@hourly",
     "0 0 * * 7", "5,35 * * * *", "0 9-17 * * 1-5", "0 0 1 jan *"],
)  # fmt: skip
def test_common_schedules_are_admitted(schedule: str) -> None:
    assert re.match(CRON_SCHEDULE_PATTERN, schedule)
    assert croniter.is_valid(schedule)


# ---- embedded Kubernetes types are faithful --------------------------------------------------

_DEFINITIONS_DIR = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"


@functools.cache
def _definitions(version: str) -> dict[str, Any]:
    path = _DEFINITIONS_DIR / f"v{version}.0-local-strict" / "_definitions.json"
    return json.loads(path.read_text())["$defs"]


def _types(node: dict[str, Any]) -> set[str]:
    declared = node.get("type", [])
    return {declared} if isinstance(declared, str) else set(declared)


def _compare(
    ours: dict[str, Any],
    theirs: dict[str, Any],
    defs: dict[str, Any],
    path: str,
    tightened: frozenset[str] = frozenset(),
) -> None:
    while "$ref" in theirs:
        theirs = defs[theirs["$ref"].rsplit("/", 1)[-1]]
    if ours.get("x-kubernetes-int-or-string"):
        assert theirs == defs["io.k8s.apimachinery.pkg.api.resource.Quantity"], path
        return
    assert ours["type"] in _types(theirs), f"{path}: {ours['type']} vs {_types(theirs)}"
    for name, child in ours.get("properties", {}).items():
        assert name in theirs.get("properties", {}), f"{path}.{name} does not exist in Kubernetes"
        _compare(child, theirs["properties"][name], defs, f"{path}.{name}")
    assert set(ours.get("required", [])) - tightened <= set(theirs.get("required", [])), path
    if "items" in ours:
        _compare(ours["items"], theirs["items"], defs, f"{path}[]")
    if isinstance(ours.get("additionalProperties"), dict):
        _compare(ours["additionalProperties"], theirs["additionalProperties"], defs, f"{path}{{}}")


@pytest.mark.parametrize("version", SUPPORTED_KUBERNETES_VERSIONS)
@pytest.mark.parametrize("model", EMBEDDED_K8S_MODELS, ids=lambda m: m.__name__)
def test_embedded_type_matches_kubernetes(model: type[EmbeddedK8sModel], version: str) -> None:
    defs = _definitions(version)
    schema = crdgen.model_schema(model)
    _compare(schema, defs[model.k8s_definition], defs, model.__name__, model.required_here_only)


def test_fidelity_check_can_fail() -> None:
    class Misspelt(EmbeddedK8sModel):
        k8s_definition = "io.k8s.api.core.v1.Toleration"
        efect: str | None = None

    defs = _definitions(SUPPORTED_KUBERNETES_VERSIONS[0])
    with pytest.raises(AssertionError, match="efect"):
        _compare(crdgen.model_schema(Misspelt), defs[Misspelt.k8s_definition], defs, "Misspelt")


def test_api_version_and_kind_defaults_match_the_served_resource() -> None:
    for model in (RaftCluster, RaftCheckpoint):
        obj = model.model_validate({"spec": {"cluster": "a"} if model is RaftCheckpoint else {}})
        assert (obj.api_version, obj.kind) == (model.resource.api_version, model.resource.kind)
