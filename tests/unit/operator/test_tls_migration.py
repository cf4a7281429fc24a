"""Moving a cluster made without TLS onto it (tlsmigration.py): the stage moves on only
when every member reports the current one, the StatefulSet template follows the recorded
stage, and a restarted operator (a fresh decision from the persisted record) neither
repeats nor skips a stage."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pytest

from raftkv.protocol.status import StatusModes, StatusPeerModes
from raftkv.runtime.config import add_serve_arguments, config_from_args
from raftkv_operator import desired, tlsmigration
from raftkv_operator.connections import node_auth
from raftkv_operator.models import PeerTLSStage, RaftCluster, TLSMigrationStatus
from raftkv_operator.nodestatus import NodeStatus

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
NAME = "demo"
MEMBERS = [f"{NAME}-{i}" for i in range(3)]

Stage = Literal["P0", "P1", "P2", "P3"]

MODES: dict[str, StatusPeerModes] = {
    "P0": StatusPeerModes(accepts=["plain"], dials="plain", migration=None),
    "P1": StatusPeerModes(accepts=["tls", "plain"], dials="plain", migration="accept-both"),
    "P2": StatusPeerModes(accepts=["tls", "plain"], dials="tls", migration="dial-tls"),
    "P3": StatusPeerModes(accepts=["tls"], dials="tls", migration=None),
}


def cluster(
    record: TLSMigrationStatus | None = None, *, tls: str = "operator", paused: bool = False
) -> RaftCluster:
    status: dict[str, Any] = {"bootstrapped": True, "initialReplicas": 3}
    if record is not None:
        status["tlsMigration"] = record.model_dump(mode="json", by_alias=True, exclude_none=True)
    spec: dict[str, Any] = {"replicas": 3, "paused": paused}
    if tls == "disabled":
        spec.update(tls={"mode": "disabled"}, auth={"enabled": False})
    return RaftCluster.model_validate(
        {
            "metadata": {"name": NAME, "namespace": "ns", "uid": "u", "generation": 1},
            "spec": spec,
            "status": status,
        }
    )


def node(name: str, stage: Stage | None) -> NodeStatus:
    modes = StatusModes(peer=MODES[stage]) if stage is not None else StatusModes()
    return NodeStatus(name=name, id=1, modes=modes)


def reports(*stages: Stage | None) -> dict[str, NodeStatus | None]:
    return {
        name: node(name, stage) if stage is not None else None
        for name, stage in zip(MEMBERS, stages, strict=True)
    }


def persist(c: RaftCluster, decision: tlsmigration.Decision) -> RaftCluster:
    """What the reconciler does first: the record written to status (a fresh read)."""
    assert decision.record is not None
    return cluster(decision.record)


def args_of(c: RaftCluster) -> list[str]:
    template = desired.stateful_set(c)["spec"]["template"]
    return list(template["spec"]["containers"][0]["args"])


# ---- what a member reports -----------------------------------------------------------------


@pytest.mark.parametrize("stage", ["P0", "P1", "P2", "P3"])
def test_each_stage_is_read_from_modes_peer(stage: Stage) -> None:
    expected = stage if stage == "P0" else PeerTLSStage(stage)
    assert tlsmigration.reported_stage(node("x", stage)) == expected


@pytest.mark.parametrize(
    "modes",
    [
        # A stage name with the wrong behaviour, or the other way round: no stage.
        StatusPeerModes(accepts=["tls"], dials="tls", migration="accept-both"),
        StatusPeerModes(accepts=["tls", "plain"], dials="tls", migration="accept-both"),
        StatusPeerModes(accepts=["tls", "plain"], dials="plain", migration=None),
        StatusPeerModes(accepts=[], dials=None, migration=None),
    ],
)
def test_a_report_that_is_no_stage_is_none(modes: StatusPeerModes) -> None:
    assert (
        tlsmigration.reported_stage(NodeStatus(name="x", id=1, modes=StatusModes(peer=modes)))
        is None
    )


def test_no_answer_and_an_older_node_that_says_nothing_are_none() -> None:
    assert tlsmigration.reported_stage(None) is None
    assert tlsmigration.reported_stage(node("x", None)) is None


# ---- starting ------------------------------------------------------------------------------


def test_plain_members_with_a_secure_spec_start_at_p1_client_port_left_plain() -> None:
    decision = tlsmigration.decide(cluster(), live_peer_tls=False, members=None, now=NOW)
    assert decision.record is not None
    assert decision.record.stage == PeerTLSStage.P1
    assert decision.record.started_at == NOW and decision.record.finished_at is None
    assert "plain HTTP" in (decision.record.client_plane or "")
    assert decision.event is not None and decision.event[0] == "TLSMigrationStarted"


@pytest.mark.parametrize(
    ("c", "live"),
    [
        (cluster(), True),  # a cluster made with TLS
        (cluster(), None),  # no StatefulSet yet: a new cluster starts secure
        (cluster(tls="disabled"), False),  # plain asked for explicitly
        (cluster(paused=True), False),
    ],
    ids=["tls-already", "no-statefulset", "tls-disabled", "paused"],
)
def test_nothing_starts_otherwise(c: RaftCluster, live: bool | None) -> None:
    assert tlsmigration.decide(c, live_peer_tls=live, members=None, now=NOW) == tlsmigration.NOTHING


# ---- moving on, observed -------------------------------------------------------------------


def test_the_full_walk_p1_p2_p3_each_stage_only_once_everyone_reports_it() -> None:
    c = persist(cluster(), tlsmigration.decide(cluster(), False, None, NOW))
    seen: list[tuple[str, str | None]] = []
    for current, following in (("P1", "P2"), ("P2", "P3"), ("P3", None)):
        previous: Stage = {"P1": "P0", "P2": "P1", "P3": "P2"}[current]  # type: ignore[assignment]
        # Two members restarted into the stage, one not yet: hold, and name it.
        waiting = tlsmigration.decide(c, None, reports(current, current, previous), NOW)
        assert waiting.record is not None and waiting.event is None
        assert waiting.record.stage == PeerTLSStage(current)
        assert waiting.record.waiting_for == [MEMBERS[2]]
        c = persist(c, waiting)
        # The same reports again: nothing new to write.
        assert tlsmigration.decide(c, None, reports(current, current, previous), NOW) == (
            tlsmigration.NOTHING
        )
        done = tlsmigration.decide(c, None, reports(current, current, current), NOW)
        assert done.record is not None and done.event is not None
        seen.append((current, done.record.stage.value if following else None))
        if following is not None:
            assert done.record.stage == PeerTLSStage(following)
            assert done.record.finished_at is None and done.record.waiting_for == []
        else:
            assert done.record.stage == PeerTLSStage.P3
            assert done.record.finished_at == NOW
            assert done.event[0] == "PeerTLSMigrated" and done.warning
        c = persist(c, done)
    assert seen == [("P1", "P2"), ("P2", "P3"), ("P3", None)]
    assert not tlsmigration.in_flight(c)
    # Finished: nothing more, whatever members say.
    assert tlsmigration.decide(c, None, reports("P3", None, "P0"), NOW) == tlsmigration.NOTHING


@pytest.mark.parametrize(
    "stages",
    [
        ("P1", "P1", None),  # one did not answer
        ("P1", "P1", "P2"),  # one ahead is not in the stage either
        ("P1", "P0", "P1"),
    ],
)
def test_a_member_not_reporting_the_stage_holds_it(stages: tuple[Stage | None, ...]) -> None:
    c = cluster(TLSMigrationStatus(stage=PeerTLSStage.P1, started_at=NOW))
    decision = tlsmigration.decide(c, None, reports(*stages), NOW)
    assert decision.record is not None and decision.record.stage == PeerTLSStage.P1
    assert decision.event is None and decision.record.waiting_for


def test_nobody_observed_is_no_progress() -> None:
    c = cluster(TLSMigrationStatus(stage=PeerTLSStage.P1, started_at=NOW))
    assert tlsmigration.decide(c, None, {}, NOW) == tlsmigration.NOTHING
    assert tlsmigration.decide(c, None, None, NOW) == tlsmigration.NOTHING


def test_a_restarted_operator_resumes_from_the_record_neither_repeating_nor_skipping() -> None:
    # The record alone (as a new process reads it) gives the same template and decision.
    record = TLSMigrationStatus(stage=PeerTLSStage.P2, started_at=NOW - timedelta(minutes=5))
    fresh = cluster(record)
    assert tlsmigration.decide(fresh, False, None, NOW) == tlsmigration.NOTHING  # no restart at P1
    assert "--peer-tls-migration=dial-tls" in args_of(fresh)
    nxt = tlsmigration.decide(fresh, None, reports("P2", "P2", "P2"), NOW)
    assert nxt.record is not None and nxt.record.stage == PeerTLSStage.P3


def test_the_members_to_wait_for_are_the_pods_and_the_configuration() -> None:
    pods = {"demo-0": False, "demo-1": True, "demo-2": False}
    assert tlsmigration.expected_members(pods, ["demo-0", "demo-1", "demo-3"]) == [
        "demo-0",
        "demo-1",
        "demo-2",
        "demo-3",
    ]
    assert tlsmigration.expected_members(pods, None) == ["demo-0", "demo-2"]


# ---- the template per stage ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("stage", "flag"),
    [
        (PeerTLSStage.P1, ["--peer-tls-migration=accept-both"]),
        (PeerTLSStage.P2, ["--peer-tls-migration=dial-tls"]),
        (PeerTLSStage.P3, []),
    ],
)
def test_the_template_runs_the_recorded_stage_with_the_client_port_plain(
    stage: PeerTLSStage, flag: list[str]
) -> None:
    c = cluster(TLSMigrationStatus(stage=stage, started_at=NOW))
    args = args_of(c)
    assert [a for a in args if a.startswith("--peer-tls-migration")] == flag
    assert "--peer-insecure" not in args
    assert {a.split("=")[0] for a in args} >= {
        "--peer-cert-file",
        "--peer-key-file",
        "--peer-trusted-ca-file",
        "--client-insecure",
    }
    # Nothing of the client plane's TLS or tokens: the node would refuse the mix.
    assert not [a for a in args if a.startswith(("--client-cert-file", "--auth-file"))]
    assert any(a.startswith("--advertise-client-url=http://") for a in args)
    assert desired.peer_tls_of(desired.stateful_set(c)["spec"]["template"]) is True
    probe = desired.stateful_set(c)["spec"]["template"]["spec"]["containers"][0]
    assert probe["readinessProbe"]["httpGet"]["scheme"] == "HTTP"
    # The operator calls such members without TLS and without its token.
    assert node_auth(c, {}) is None
    assert not desired.client_tls(c)


def test_without_a_record_a_secure_cluster_is_tls_on_both_ports() -> None:
    args = args_of(cluster())
    assert "--client-insecure" not in args and "--peer-insecure" not in args
    assert not [a for a in args if a.startswith("--peer-tls-migration")]
    assert desired.client_tls(cluster())


def test_the_node_accepts_every_stage_template() -> None:
    """The flags the operator writes parse and validate on the node (not a guess at them)."""
    for stage in PeerTLSStage:
        argv = args_of(cluster(TLSMigrationStatus(stage=stage)))
        assert argv[0] == "serve"
        parser = argparse.ArgumentParser()
        add_serve_arguments(parser)
        config = config_from_args(
            parser, [a.replace("$(RAFTKV_NAME)", "demo-0") for a in argv[1:]], env={}
        )
        assert config.peer_tls and config.client_insecure
        assert config.peer_accepts_plain == (stage != PeerTLSStage.P3)
        assert config.peer_dials_tls == (stage != PeerTLSStage.P1)
