"""Emulated Kubernetes: the operator's role-label writes never undo a member's own.

CI caught it on Multi-Paxos: the operator, deciding from a view older than the election,
dropped the label the new leader had just written for itself (the operator's write kept
the member's term annotation), and then left that wrong label alone for good because the
annotation said the member knew better; the member did not write again, so the client
Service had no endpoint. Label writes are now conditional on the pod's resourceVersion
the decision was made from, and the operator's own writes drop the member's annotation.
"""

from __future__ import annotations

import asyncio
import logging

from raftkv.protocol.kubernetes import ROLE_LABEL, ROLE_TERM_ANNOTATION
from raftkv_operator import desired, kube
from raftkv_operator.nodestatus import NodeStatus
from raftkv_operator.observe import pod_state
from raftkv_operator.routing import LeaderRouter
from tests.k8s.harness.cluster import EmulatedCluster
from tests.k8s.harness.manifests import standin_statefulset
from tests.k8s.harness_ext import (
    NAMESPACE,
    emulated_fixture,  # noqa: F401 - the `emulated` fixture
    wait_for,
)
from tests.unit.operator.test_planner import NAME, member, node

PODS = "v1/pods"


def _router_with_current_view(emulated: EmulatedCluster) -> LeaderRouter:
    """A router whose caches hold the pods as the API has them now (what refresh_pods
    reads), without its status polls."""
    kube.configure(reload=True)
    router = LeaderRouter(NAMESPACE, NAME, 7379, logging.getLogger("test"))
    for obj in _pods(emulated).values():
        state = pod_state(NAME, obj)
        assert state is not None
        router.labels[state.name] = state.role_label
        router.role_terms[state.name] = state.role_term
        router.versions[state.name] = state.resource_version
    return router


def _pods(emulated: EmulatedCluster) -> dict[str, dict[str, object]]:
    """The stand-in StatefulSet's pods (they carry its labels, not a RaftCluster's)."""
    return {
        p["metadata"]["name"]: p
        for p in emulated.list(PODS, NAMESPACE)
        if p["metadata"]["name"].startswith(f"{NAME}-")
    }


def _view(leader: int, term: int) -> dict[str, NodeStatus | None]:
    members = [member(i) for i in range(3)]
    return {
        f"{NAME}-{i}": node(
            i, "leader" if i == leader else "follower", members, term=term, leader=leader
        )
        for i in range(3)
    }


def _label_and_term(emulated: EmulatedCluster, pod: str) -> tuple[str | None, str | None]:
    meta = (emulated.get(PODS, NAMESPACE, pod) or {})["metadata"]
    return (
        (meta.get("labels") or {}).get(ROLE_LABEL),
        (meta.get("annotations") or {}).get(ROLE_TERM_ANNOTATION),
    )


def test_a_stale_decision_never_overwrites_a_label_a_member_wrote_meanwhile(
    emulated: EmulatedCluster,
) -> None:
    emulated.create("apps/v1/statefulsets", standin_statefulset(NAME, NAMESPACE, 3), NAMESPACE)
    wait_for(emulated, lambda: len(_pods(emulated)) == 3, 30, "three pods")
    term = 3
    for i in range(3):  # as the members write their labels (podlabel.py)
        role = desired.ROLE_LEADER if i == 0 else desired.ROLE_FOLLOWER
        emulated.patch(
            PODS,
            NAMESPACE,
            f"{NAME}-{i}",
            {
                "metadata": {
                    "labels": {ROLE_LABEL: role},
                    "annotations": {ROLE_TERM_ANNOTATION: "3"},
                }
            },
        )
    router = _router_with_current_view(emulated)
    router.leader = (f"{NAME}-0", term)  # known already: no status write in this test

    # -1 wins an election and labels itself after the router read the pods; the router's
    # view is older still (-0 leads at `term`, and -1's label reads `follower`). Force a
    # decision about -1 from that view: it must not land.
    emulated.patch(
        PODS,
        NAMESPACE,
        f"{NAME}-1",
        {
            "metadata": {
                "labels": {ROLE_LABEL: desired.ROLE_LEADER},
                "annotations": {ROLE_TERM_ANNOTATION: str(term + 1)},
            }
        },
    )
    router.labels[f"{NAME}-1"] = desired.ROLE_LEADER  # what the view would write differs
    router.role_terms[f"{NAME}-1"] = None  # nothing in the view says -1 knows better
    router.statuses = _view(leader=0, term=term)
    asyncio.run(router.apply())
    assert _label_and_term(emulated, f"{NAME}-1") == (desired.ROLE_LEADER, str(term + 1))
    assert router.pods_changed.is_set()  # it reads the pods again before deciding again

    # Read again, the member's newer word stands against the old view.
    router = _router_with_current_view(emulated)
    router.leader = (f"{NAME}-0", term)
    router.statuses = _view(leader=0, term=term)
    asyncio.run(router.apply())
    assert _label_and_term(emulated, f"{NAME}-1") == (desired.ROLE_LEADER, str(term + 1))

    # A label the operator writes is its own: the member's annotation goes with it, so a
    # later, better view of the operator corrects it (it is never mistaken for the
    # member's).
    router.leader = (f"{NAME}-2", term + 2)
    router.statuses = _view(leader=2, term=term + 2)
    asyncio.run(router.apply())
    assert _label_and_term(emulated, f"{NAME}-1") == (desired.ROLE_FOLLOWER, None)
    assert _label_and_term(emulated, f"{NAME}-2") == (desired.ROLE_LEADER, None)
    router.statuses = _view(leader=1, term=term + 2)  # (a view the operator later gets)
    router.leader = (f"{NAME}-1", term + 2)
    asyncio.run(router.apply())
    assert _label_and_term(emulated, f"{NAME}-1") == (desired.ROLE_LEADER, None)
