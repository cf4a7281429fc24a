"""The reconciler's node calls name members by the ids the nodes report: a joiner's own id
(its /v1/status) when adding it, the leader's member list for everything else; never
member_id(name), which only founders have (docs/contracts.md "Node identity")."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import pytest

from raftkv_operator import planner, reconciler
from raftkv_operator.connections import RUNTIME, node_url
from raftkv_operator.members import NodeError, NodeUnreachable, member_id
from raftkv_operator.nodestatus import NodeStatus
from tests.unit.operator.test_planner import (
    NAME,
    cluster,
    healthy_cluster,
    member,
    node,
    pod,
    replace,
)

FRESH = 987654321  # demo-3's incarnation id: not member_id("demo-3")
PORT = cluster().spec.service.ports.client


@dataclass
class RecordingNodes:
    """A NodeClient twin: answers statuses from a table and records membership calls."""

    statuses: dict[str, NodeStatus]
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    auth: None = None  # plain HTTP, as with tls.mode disabled

    async def status(self, url: str) -> NodeStatus:
        self.calls.append(("status", url))
        if url not in self.statuses:
            raise NodeUnreachable(url)
        return self.statuses[url]

    async def add_learner(
        self, url: str, name: str, peer_url: str, client_url: str, mid: int
    ) -> int:
        self.calls.append(("add_learner", url, name, mid))
        return mid

    async def promote(self, url: str, mid: int) -> None:
        self.calls.append(("promote", url, mid))

    async def remove(self, url: str, mid: int) -> bool:
        self.calls.append(("remove", url, mid))
        return True

    async def transfer_leader(self, url: str, to: int | None = None) -> int:
        self.calls.append(("transfer_leader", url, to))
        return to or 0


def _with_incarnation(obs: planner.Observed) -> planner.Observed:
    """demo-3 is a learner under a fresh id in the leader's list; its pod runs."""
    joiner = replace(member(3, voter=False, match=100), id=FRESH)
    leader = obs.nodes[f"{NAME}-0"]
    nodes = dict(obs.nodes)
    nodes[f"{NAME}-0"] = replace(leader, members=(*leader.members, joiner))
    return replace(obs, pods={**obs.pods, f"{NAME}-3": pod(3)}, nodes=nodes)


async def _act(
    monkeypatch: pytest.MonkeyPatch,
    obs: planner.Observed,
    action: planner.Action,
    nodes: RecordingNodes,
) -> bool:
    async def cluster_nodes(namespace: str, name: str) -> RecordingNodes:
        return nodes

    monkeypatch.setattr(RUNTIME, "cluster_nodes", cluster_nodes)
    rec = reconciler.Reconciler("ns", NAME, logging.getLogger("test"))
    return await rec._do(obs.cluster, obs, action)


def _leader_url(obs: planner.Observed) -> str:
    ip = obs.pods[f"{NAME}-0"].ip
    assert ip is not None
    return node_url(ip, PORT)


async def test_add_learner_uses_the_id_the_new_pod_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    obs = healthy_cluster()
    obs = replace(obs, pods={**obs.pods, f"{NAME}-3": pod(3)})
    ip = obs.pods[f"{NAME}-3"].ip
    assert ip is not None
    blank = replace(node(3, "none", [], term=0, leader=None, ready=False), id=FRESH)
    nodes = RecordingNodes({node_url(ip, PORT): blank})
    done = await _act(monkeypatch, obs, planner.Action("add_learner", member=f"{NAME}-3"), nodes)
    assert done
    assert nodes.calls == [
        ("status", node_url(ip, PORT)),
        ("add_learner", _leader_url(obs), f"{NAME}-3", FRESH),
    ]


async def test_add_learner_refuses_a_pod_that_is_another_node(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    obs = healthy_cluster()
    obs = replace(obs, pods={**obs.pods, f"{NAME}-3": pod(3)})
    ip = obs.pods[f"{NAME}-3"].ip
    assert ip is not None
    nodes = RecordingNodes({node_url(ip, PORT): node(4, "none", [], leader=None)})
    with pytest.raises(NodeError, match="wrong_node"):
        await _act(monkeypatch, obs, planner.Action("add_learner", member=f"{NAME}-3"), nodes)
    assert [c[0] for c in nodes.calls] == ["status"]


@pytest.mark.parametrize("kind", ["promote", "remove_member"])
async def test_promote_and_remove_use_the_leaders_id_for_the_name(
    monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    obs = _with_incarnation(healthy_cluster())
    nodes = RecordingNodes({})
    action = planner.Action(kind, member=f"{NAME}-3")  # type: ignore[arg-type]
    assert await _act(monkeypatch, obs, action, nodes)
    assert nodes.calls == [(kind.split("_")[0], _leader_url(obs), FRESH)]
    assert member_id(f"{NAME}-3") != FRESH


async def test_remove_of_a_name_the_leader_no_longer_lists_is_done(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    obs = healthy_cluster()
    nodes = RecordingNodes({})
    assert await _act(monkeypatch, obs, planner.Action("remove_member", member=f"{NAME}-7"), nodes)
    assert nodes.calls == []


async def test_promote_waits_for_the_member_to_show_in_the_leaders_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    nodes = RecordingNodes({})
    assert not await _act(
        monkeypatch, healthy_cluster(), planner.Action("promote", member=f"{NAME}-3"), nodes
    )
    assert nodes.calls == []


async def test_transfer_names_the_target_by_the_leaders_id(monkeypatch: pytest.MonkeyPatch) -> None:
    obs = _with_incarnation(healthy_cluster())
    nodes = RecordingNodes({})
    action = planner.Action("transfer_leader", member=f"{NAME}-0", target=f"{NAME}-3")
    assert await _act(monkeypatch, obs, action, nodes)
    assert nodes.calls == [("transfer_leader", _leader_url(obs), FRESH)]
    with pytest.raises(NodeError, match="member_not_found"):
        await _act(monkeypatch, obs, replace(action, target=f"{NAME}-9"), nodes)
