"""Emulated Kubernetes: create a RaftCluster, write through its Service, lose the leader.

One 3-member cluster for the module (creating one costs a few seconds); the scenarios run
in order on it.
"""

from __future__ import annotations

import http.client as http_client
import json
import ssl
import statistics
import sys
from collections.abc import Callable

import pytest

from raftkv_operator import metrics as operator_metrics
from raftkv_operator.members import member_id
from tests.k8s.harness.cluster import EmulatedCluster
from tests.k8s.harness_ext import (
    CLUSTERS,
    NAMESPACE,
    ClusterTLS,
    Operator,
    cluster_manifest,
    cluster_tls,
    emulated_fixture,  # noqa: F401 - the `emulated` fixture
    event_reasons,
    get_via_service,
    http,
    kill_leader_once,
    leader_endpoints,
    must_get,
    operator_fixture,  # noqa: F401 - the `operator` fixture
    pods,
    put_retrying,
    role_of,
    service_http,
    status,
    wait_available,
    wait_for,
)

NAME = "life"
pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def three(emulated: EmulatedCluster, operator: Operator) -> str:
    emulated.create(CLUSTERS, cluster_manifest(NAME, 3), NAMESPACE)
    wait_available(emulated, NAME, 3, timeout=90)
    return NAME


def test_create_three_becomes_available_with_owned_objects(
    emulated: EmulatedCluster,
    three: str,
) -> None:
    st = status(emulated, three)
    assert st["bootstrapped"] is True
    assert st["initialReplicas"] == 3
    assert st["readyReplicas"] == 3
    owner = emulated.get(CLUSTERS, NAMESPACE, three)
    assert owner is not None
    uid = owner["metadata"]["uid"]
    for resource, name in [
        ("apps/v1/statefulsets", three),
        ("v1/services", three),
        ("v1/services", f"{three}-peers"),
        ("v1/services", f"{three}-read"),
        ("v1/configmaps", f"{three}-config"),
        ("policy/v1/poddisruptionbudgets", three),
        ("networking.k8s.io/v1/networkpolicies", three),
        *[
            ("v1/secrets", f"{three}-{suffix}")
            for suffix in ("ca", "peer-tls", "client-tls", "auth", "admin")
        ],
    ]:
        obj = emulated.get(resource, NAMESPACE, name)
        assert obj is not None, f"{resource} {name} missing"
        refs = obj["metadata"].get("ownerReferences") or []
        assert [r["uid"] for r in refs if r.get("controller")] == [uid], (resource, refs)
    config = emulated.get("v1/configmaps", NAMESPACE, f"{three}-config")
    assert config is not None
    # Bootstrapped: a member that loses its volume must wait to be re-added.
    assert config["data"]["initial-cluster-state"] == "existing"
    roles = {name: role_of(p) for name, p in pods(emulated, three).items()}
    assert sorted(str(r) for r in roles.values()) == ["follower", "follower", "leader"], roles
    leader = next(n for n, r in roles.items() if r == "leader")
    assert st["leader"] == leader
    leader_ip = pods(emulated, three)[leader]["status"]["podIP"]
    wait_for(
        emulated,
        lambda: leader_endpoints(emulated, three) == [leader_ip],
        10,
        "the client Service selects exactly the leader",
    )
    wait_for(
        emulated,
        lambda: (
            {"Creating", "StatefulSetCreated", "Bootstrapped"} <= event_reasons(emulated, three)
        ),
        30,
        "Events for each step",
    )


def test_the_cluster_is_secured_by_default(emulated: EmulatedCluster, three: str) -> None:
    """TLS + tokens, with nothing asked for: the members run with the Secrets' files and no
    insecure flag, a caller without the admin token is refused, and plain HTTP gets no
    answer from the TLS port."""
    for pod in pods(emulated, three).values():
        args = pod["spec"]["containers"][0]["args"]
        assert not [a for a in args if "insecure" in a], args
        assert "--auth-file=/etc/raftkv/auth/auth.json" in args
    tls = cluster_tls(emulated, three)
    assert tls is not None
    code, _ = service_http(emulated, three, "GET", "/v1/status")
    assert code == 200
    base = emulated.service_url(NAMESPACE, three, "client", scheme="https")
    anonymous = ClusterTLS(tls.context, tls.server_name, token="not-a-token")
    code, body = http("GET", f"{base}/v1/status", tls=anonymous)
    assert code == 401 and json.loads(body)["error"] == "unauthenticated"
    plain = emulated.service_url(NAMESPACE, three, "client")
    with pytest.raises((OSError, http_client.HTTPException)):
        http("GET", f"{plain}/v1/status", timeout=2)
    # The certificate is checked for the Service's name: another name is refused.
    wrong = ClusterTLS(tls.context, f"{three}.elsewhere.svc", tls.token)
    with pytest.raises(ssl.SSLCertVerificationError):
        http("GET", f"{base}/v1/status", tls=wrong)


def test_writes_through_the_client_service(emulated: EmulatedCluster, three: str) -> None:
    for i in range(20):
        revision = put_retrying(emulated, three, f"k{i}", f"v{i}")
        assert revision > 0
    for i in range(20):
        assert get_via_service(emulated, three, f"k{i}") == f"v{i}"


def test_leader_death_moves_the_service_and_loses_no_write(
    emulated: EmulatedCluster, three: str, record_property: Callable[[str, object], None]
) -> None:
    acknowledged: dict[str, str] = {}
    for i in range(10):
        key, value = f"before-{i}", f"x{i}"
        put_retrying(emulated, three, key, value)
        acknowledged[key] = value
    timings = []
    routed_before = _routing_samples()
    for run in range(3):
        timings.append(kill_leader_once(emulated, three))
        key, value = f"after-{run}", f"y{run}"
        put_retrying(emulated, three, key, value, timeout=20)
        acknowledged[key] = value
    for key, value in acknowledged.items():
        assert get_via_service(emulated, three, key) == value, key
    routed_after = _routing_samples()
    moves = routed_after[1] - routed_before[1]
    summary = (
        f"leader death -> Service switch (s): runs={[round(t, 3) for t in timings]} "
        f"min={min(timings):.3f} median={statistics.median(timings):.3f} "
        f"max={max(timings):.3f}; operator share (change seen -> labels moved, "
        f"raftkv_operator_leader_switch_seconds): {moves:.0f} moves, mean "
        f"{(routed_after[0] - routed_before[0]) / max(moves, 1) * 1000:.1f} ms"
    )
    record_property("leader_switch_seconds", timings)
    # KopfRunner swaps sys.stdout while the operator runs: report on the real one.
    print(f"\n{summary}", file=sys.__stdout__, flush=True)
    wait_for(
        emulated,
        lambda: "LeaderChanged" in event_reasons(emulated, three),
        30,
        "an Event for the leader change",
    )
    # Election timeout is 0.5-1 s with these ticks and routing adds ~0.1 s; a loose bound
    # that still catches routing on a slow path (e.g. the 10 s pod refresh).
    assert max(timings) < 8.0, timings


def _routing_samples() -> tuple[float, float]:
    """(sum, count) of the operator's leader-switch histogram (same process)."""
    registry = operator_metrics.REGISTRY
    total = registry.get_sample_value("raftkv_operator_leader_switch_seconds_sum") or 0.0
    count = registry.get_sample_value("raftkv_operator_leader_switch_seconds_count") or 0.0
    return total, count


def test_member_that_lost_its_volume_is_removed_and_re_added(
    emulated: EmulatedCluster, three: str
) -> None:
    wait_available(emulated, three, 3)
    put_retrying(emulated, three, "survives", "yes", 10)
    leader = status(emulated, three)["leader"]
    victim = sorted(n for n in pods(emulated, three) if n != leader)[0]
    claim = f"data-{victim}"
    old_uid = must_get(emulated, "v1/persistentvolumeclaims", claim)["metadata"]["uid"]
    recorded = json.loads(
        must_get(emulated, CLUSTERS, three)["metadata"]["annotations"]["raftkv.dev/member-volumes"]
    )
    assert recorded[victim] == old_uid
    # The volume is lost: its claim is deleted with the pod, and the StatefulSet controller
    # gives the new pod a new, empty one.
    emulated.delete("v1/persistentvolumeclaims", NAMESPACE, claim)
    emulated.delete("v1/pods", NAMESPACE, victim)

    def new_volume() -> str | None:
        obj = emulated.get("v1/persistentvolumeclaims", NAMESPACE, claim)
        uid = obj["metadata"]["uid"] if obj else None
        return uid if uid and uid != old_uid else None

    new_uid = wait_for(emulated, new_volume, 30, "a new claim for the member")
    wait_for(
        emulated,
        lambda: "MemberRecovering" in event_reasons(emulated, three),
        30,
        "the operator removes the member to re-add it",
    )
    wait_available(emulated, three, 3, timeout=60)
    wait_for(
        emulated,
        lambda: (
            json.loads(
                must_get(emulated, CLUSTERS, three)["metadata"]["annotations"][
                    "raftkv.dev/member-volumes"
                ]
            ).get(victim)
            == new_uid
        ),
        20,
        "the new volume is recorded",
    )
    wait_for(
        emulated,
        lambda: {"MemberAdded", "MemberPromoted"} <= event_reasons(emulated, three),
        30,
        "Events for the re-add",
    )
    assert get_via_service(emulated, three, "survives") == "yes"
    # The empty volume made a new incarnation: it rejoined under a fresh id, not the old one.
    ids = {m["name"]: m["id"] for m in status(emulated, three)["members"]}
    assert ids[victim] != member_id(victim), ids
    assert all(ids[n] == member_id(n) for n in ids if n != victim), ids
    config = emulated.get("v1/configmaps", NAMESPACE, f"{three}-config")
    assert config is not None and config["data"]["initial-cluster-state"] == "existing"
