"""Scenarios against a real Kubernetes (kind): create, failover with the Service following the
leader, scale 3->5->3, rolling update, checkpoint + restore, delete; a pod-deletion chaos
loop; Retain scale 1->3->1->3, the disruption budget during 3->5, and the HA operator's
failover; create, failover and scale on `spec.consensus: multipaxos`. `make e2e-kind`;
skipped elsewhere with the reason."""

from __future__ import annotations

import random
import time

import pytest

from tests.e2e.kind import OPERATOR_NAMESPACE, RELEASE, Kube, run, wait_for

pytestmark = [pytest.mark.kind, pytest.mark.timeout(1800)]

READY = 600.0  # seconds for a cluster to become Available on a cold kind node
STEP = 300.0


def _create(kube: Kube, ns: str, image: str, replicas: int = 3, consensus: str = "raft") -> str:
    """examples/minimal.yaml (RaftCluster `demo`) on the locally built image, Available."""
    name = kube.apply_example(
        ns, "minimal.yaml", image=image, replicas=replicas, consensus=consensus
    )["metadata"]["name"]
    wait_for(f"{ns}/{name} Available", lambda: kube.available(ns, name, replicas), READY)
    return str(name)


def _write(kube: Kube, ns: str, cluster: str, key: str, value: bytes) -> None:
    wait_for(
        f"PUT {key} through the client Service",
        lambda: kube.put(ns, cluster, key, value) == 200,
        STEP,
    )


def test_create_serves_through_the_leader_service_and_passes_helm_test(
    kube: Kube, ns: str, node_image: str
) -> None:
    cluster = _create(kube, ns, node_image)
    _write(kube, ns, cluster, "greeting", b"hello")
    assert kube.get(ns, cluster, "greeting") == (200, b"hello")
    leader = wait_for("a pod labelled leader", lambda: kube.leader_pod(ns, cluster), STEP)
    assert kube.service_endpoint_pods(ns, cluster) == {leader}
    assert kube.node_status(ns, leader)["role"] == "leader"
    run(
        "helm", "upgrade", RELEASE, "charts/raftkv-operator", "--namespace", OPERATOR_NAMESPACE,
        "--reuse-values", "--set", f"tests.raftCluster.name={cluster}",
        "--set", f"tests.raftCluster.namespace={ns}", "--wait",
    )  # fmt: skip
    run("helm", "test", RELEASE, "--namespace", OPERATOR_NAMESPACE, "--timeout", "5m")


def test_failover_moves_the_service_to_the_new_leader(kube: Kube, ns: str, node_image: str) -> None:
    cluster = _create(kube, ns, node_image)
    _write(kube, ns, cluster, "before", b"1")
    old = wait_for("a leader pod", lambda: kube.leader_pod(ns, cluster), STEP)
    old_uid = kube.core.read_namespaced_pod(old, ns).metadata.uid
    kube.core.delete_namespaced_pod(old, ns)
    started = time.monotonic()

    def switched() -> str | None:
        leader = kube.leader_pod(ns, cluster)
        if leader is None:
            return None
        pod = kube.core.read_namespaced_pod(leader, ns)
        if leader == old and pod.metadata.uid == old_uid:
            return None
        return leader if kube.service_endpoint_pods(ns, cluster) == {leader} else None

    new = wait_for("the client Service to route to a new leader", switched, STEP, interval=0.5)
    print(f"failover: {old} -> {new} in {time.monotonic() - started:.1f}s")
    assert kube.node_status(ns, new)["role"] == "leader"
    _write(kube, ns, cluster, "after", b"2")
    assert kube.get(ns, cluster, "before") == (200, b"1")


def test_scale_up_to_five_and_back_to_three(kube: Kube, ns: str, node_image: str) -> None:
    cluster = _create(kube, ns, node_image)
    _write(kube, ns, cluster, "k", b"v")
    for replicas in (5, 3):
        kube.patch_cluster(ns, cluster, {"replicas": replicas})

        def scaled(wanted: int = replicas) -> bool:
            return kube.available(ns, cluster, wanted)

        wait_for(f"{replicas} healthy voters", scaled, READY)
        leader = wait_for("a leader pod", lambda: kube.leader_pod(ns, cluster), STEP)
        voters = [m for m in kube.node_status(ns, leader)["members"] if m["role"] == "voter"]
        assert len(voters) == replicas
        assert len(kube.pods(ns, cluster)) == replicas
        assert kube.get(ns, cluster, "k") == (200, b"v")


def test_rolling_update_restarts_members_one_at_a_time(
    kube: Kube, ns: str, node_image: str
) -> None:
    cluster = _create(kube, ns, node_image)
    _write(kube, ns, cluster, "kept", b"across-restarts")
    before = {p.metadata.name: p.metadata.uid for p in kube.pods(ns, cluster)}
    kube.patch_cluster(ns, cluster, {"podAnnotations": {"e2e.raftkv.dev/rollout": "1"}})
    most_unready = 0

    def rolled() -> bool:
        nonlocal most_unready
        pods = kube.pods(ns, cluster)
        unready = sum(
            1
            for p in pods
            if not any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        )
        most_unready = max(most_unready, unready)
        replaced = all(before.get(p.metadata.name) != p.metadata.uid for p in pods)
        return replaced and unready == 0 and kube.available(ns, cluster, 3)

    wait_for("every member restarted with the new template", rolled, READY, interval=0.5)
    assert most_unready <= 1, f"{most_unready} members were down at once during the rollout"
    assert kube.get(ns, cluster, "kept") == (200, b"across-restarts")


def test_checkpoint_then_restore_into_a_new_cluster(kube: Kube, ns: str, node_image: str) -> None:
    cluster = _create(kube, ns, node_image)
    _write(kube, ns, cluster, "saved", b"in-checkpoint")
    kube.create(
        ns,
        "raftcheckpoints",
        {
            "apiVersion": "raftkv.dev/v1alpha1",
            "kind": "RaftCheckpoint",
            "metadata": {"name": "e2e"},
            "spec": {"cluster": cluster, "id": "e2e-1"},
        },
    )

    def succeeded() -> bool:
        found = kube.custom.get_namespaced_custom_object(
            "raftkv.dev", "v1alpha1", ns, "raftcheckpoints", "e2e"
        )
        phase = (found.get("status") or {}).get("phase")
        assert phase != "Failed", found.get("status")
        return phase == "Succeeded"

    wait_for("the checkpoint to succeed", succeeded, STEP)
    kube.create(
        ns,
        "raftclusters",
        {
            "apiVersion": "raftkv.dev/v1alpha1",
            "kind": "RaftCluster",
            "metadata": {"name": "copy"},
            "spec": {
                "replicas": 3,
                "image": node_image,
                "restore": {"fromCheckpoint": {"cluster": cluster, "id": "e2e-1"}},
            },
        },
    )
    wait_for("the restored cluster Available", lambda: kube.available(ns, "copy", 3), READY)
    assert wait_for(
        "the restored key", lambda: kube.get(ns, "copy", "saved") == (200, b"in-checkpoint"), STEP
    )


def test_delete_removes_everything_the_cluster_owned(kube: Kube, ns: str, node_image: str) -> None:
    cluster = _create(kube, ns, node_image)
    kube.custom.delete_namespaced_custom_object(
        "raftkv.dev", "v1alpha1", ns, "raftclusters", cluster
    )

    def gone() -> bool:
        statefulsets = kube.apps.list_namespaced_stateful_set(ns).items
        services = [
            s
            for s in kube.core.list_namespaced_service(ns).items
            if s.metadata.name.startswith(cluster)
        ]
        return not statefulsets and not services and not kube.pods(ns, cluster)

    wait_for("the StatefulSet, Services and pods to be gone", gone, STEP)


def test_chaos_pod_deletions_keep_every_acknowledged_write(
    kube: Kube, ns: str, node_image: str
) -> None:
    cluster = _create(kube, ns, node_image)
    rng = random.Random(20240601)
    acknowledged: dict[str, bytes] = {}
    for round_ in range(6):
        victim = rng.choice([p.metadata.name for p in kube.pods(ns, cluster)])
        kube.core.delete_namespaced_pod(victim, ns)
        # Writes keep succeeding (after at most an election) while the pod comes back.
        for i in range(5):
            key, value = f"chaos-{round_}-{i}", f"{round_}:{i}".encode()
            _write(kube, ns, cluster, key, value)
            acknowledged[key] = value
        wait_for("the cluster to heal", lambda: kube.available(ns, cluster, 3), READY)
    for key, value in acknowledged.items():
        assert kube.get(ns, cluster, key) == (200, value), key


def test_retained_volumes_scale_down_and_up_again(kube: Kube, ns: str, node_image: str) -> None:
    # reclaimPolicy Retain (the default): the returning members come back on their kept
    # volumes under removed ids; the operator replaces those volumes (Warning
    # MemberIdentityRemoved) and re-adds them under fresh ids.
    cluster = _create(kube, ns, node_image, replicas=1)
    _write(kube, ns, cluster, "kept", b"through-retain")
    for replicas in (3, 1, 3):
        kube.patch_cluster(ns, cluster, {"replicas": replicas})

        def scaled(wanted: int = replicas) -> bool:
            return kube.available(ns, cluster, wanted)

        wait_for(f"{replicas} healthy voters", scaled, READY)
    reasons = {e.reason for e in kube.core.list_namespaced_event(ns).items}
    assert "MemberIdentityRemoved" in reasons, reasons
    assert kube.get(ns, cluster, "kept") == (200, b"through-retain")


def test_disruption_budget_follows_the_voters(kube: Kube, ns: str, node_image: str) -> None:
    cluster = _create(kube, ns, node_image)
    kube.patch_cluster(ns, cluster, {"replicas": 5})
    seen: list[tuple[int, int]] = []

    def sample() -> bool:
        leader = kube.leader_pod(ns, cluster)
        pdb = kube.policy.read_namespaced_pod_disruption_budget(cluster, ns)
        if leader is not None:
            members = kube.node_status(ns, leader)["members"]
            voters = sum(1 for m in members if m["role"] == "voter")
            seen.append((voters, int(pdb.spec.max_unavailable)))
        return kube.available(ns, cluster, 5)

    wait_for("5 healthy voters", sample, READY, interval=0.5)
    assert all(voters - allowed >= voters // 2 + 1 for voters, allowed in seen), seen


def test_operator_standby_takes_over_after_the_active_replica_dies(
    kube: Kube, ns: str, node_image: str
) -> None:
    # The chart's default: two operator replicas, one active through a Lease.
    lease_name = f"{RELEASE}-raftkv-operator"

    def holder() -> str | None:
        lease = kube.coordination.read_namespaced_lease(lease_name, OPERATOR_NAMESPACE)
        return str(lease.spec.holder_identity) if lease.spec.holder_identity else None

    active = wait_for("a replica holds the Lease", holder, STEP)
    cluster = _create(kube, ns, node_image, replicas=1)
    kube.core.delete_namespaced_pod(active, OPERATOR_NAMESPACE, grace_period_seconds=0)
    started = time.monotonic()
    wait_for("another replica holds the Lease", lambda: holder() not in (None, active), STEP)
    kube.patch_cluster(ns, cluster, {"paused": True})
    wait_for(
        "the new active replica reconciles",
        lambda: kube.cluster(ns, cluster).get("status", {}).get("phase") == "Paused",
        STEP,
    )
    print(f"operator failover: {time.monotonic() - started:.1f}s")


def test_multipaxos_cluster_fails_over_and_scales(kube: Kube, ns: str, node_image: str) -> None:
    """The same create / leader loss / 3->5->3 on the other engine (docs/consensus.md)."""
    cluster = _create(kube, ns, node_image, consensus="multipaxos")
    for pod in kube.pods(ns, cluster):
        args = " ".join(pod.spec.containers[0].args or [])
        assert "--consensus=multipaxos" in args, args
    _write(kube, ns, cluster, "before", b"1")
    old = wait_for("a leader pod", lambda: kube.leader_pod(ns, cluster), STEP)
    kube.core.delete_namespaced_pod(old, ns, grace_period_seconds=0)

    def moved() -> str | None:
        leader = kube.leader_pod(ns, cluster)
        if leader is None or leader == old:
            return None
        return leader if kube.service_endpoint_pods(ns, cluster) == {leader} else None

    wait_for("the client Service to route to a new leader", moved, STEP, interval=0.5)
    _write(kube, ns, cluster, "after", b"2")
    assert kube.get(ns, cluster, "before") == (200, b"1")
    for replicas in (5, 3):
        kube.patch_cluster(ns, cluster, {"replicas": replicas})

        def scaled(wanted: int = replicas) -> bool:
            return kube.available(ns, cluster, wanted)

        wait_for(f"{replicas} healthy multipaxos voters", scaled, READY)
        assert kube.get(ns, cluster, "after") == (200, b"2")
