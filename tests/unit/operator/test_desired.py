"""The pure builders: valid Kubernetes objects that say what the design says."""

from __future__ import annotations

import copy
import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from raftkv_operator import credentials, desired
from raftkv_operator.models import (
    SUPPORTED_KUBERNETES_VERSIONS,
    RaftCheckpoint,
    RaftCluster,
    quorum,
)

from .conftest import NAMESPACE, example_cluster, load_example


def _cluster(example: str, spec: dict[str, Any] | None = None, **status: Any) -> RaftCluster:
    cluster = example_cluster(example, **status)
    if spec:
        body = cluster.to_k8s()
        body["spec"].update(spec)
        cluster = RaftCluster.model_validate(body)
    return cluster


def _checkpoint(cluster: str = "orders", **spec: Any) -> RaftCheckpoint:
    body = copy.deepcopy(load_example("checkpoint.yaml"))
    body["metadata"].update(namespace=NAMESPACE, uid="uid-ckpt")
    body["spec"] = {"cluster": cluster, **spec}
    return RaftCheckpoint.model_validate(body)


ARCHIVE_RESTORE = {
    "restore": {"archive": {"claimName": "orders-checkpoints", "path": "orders/n-1"}}
}
BUCKET = {
    "endpoint": "https://minio.storage.svc:9000",
    "bucket": "raftkv-backups",
    "prefix": "prod",
    "pathStyle": True,
    "credentialsSecret": "s3-credentials",
    "caBundle": {"name": "s3-ca"},
}
BUCKET_ARCHIVE = {
    "checkpoints": {
        "schedule": "@daily",
        "archive": {"retain": 7, "bucket": {**BUCKET, "maxAgeHours": 720}},
    }
}
BUCKET_RESTORE = {"restore": {"bucket": {**BUCKET, "path": "orders/n-1"}}}
CASES: dict[str, RaftCluster] = {
    "minimal": _cluster("minimal.yaml"),
    "single": _cluster("minimal.yaml", {"replicas": 1}),
    "production": _cluster("production.yaml"),
    "restore": _cluster("restore.yaml"),
    "restore-archive": _cluster("restore.yaml", ARCHIVE_RESTORE),
    "bucket-archive": _cluster("minimal.yaml", BUCKET_ARCHIVE),
    "restore-bucket": _cluster("restore.yaml", BUCKET_RESTORE),
    "bootstrapped": _cluster("minimal.yaml", {"replicas": 5}, bootstrapped=True, initialReplicas=3),
    "insecure": _cluster("minimal.yaml", {"tls": {"mode": "disabled"}, "auth": {"enabled": False}}),
    "network-selectors": _cluster(
        "minimal.yaml",
        {
            "network": {
                "clientNamespaceSelector": {"matchLabels": {"team": "orders"}},
                "monitoringNamespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": "monitoring"}
                },
            }
        },
    ),
}
OPERATOR_NAMESPACE = "raftkv-system"


def _all_objects(cluster: RaftCluster) -> list[dict[str, Any]]:
    objects = desired.desired_objects(cluster)
    policy = desired.network_policy(cluster, operator_namespace=OPERATOR_NAMESPACE)
    assert policy is not None
    objects.append(policy)
    claim = desired.archive_claim(cluster)
    if claim is not None:
        objects.append(claim)
    if cluster.spec.checkpoints.archive is not None:
        checkpoint = _checkpoint(cluster.name, id="nightly-1")
        objects.append(desired.checkpoint_archive_job(cluster, checkpoint))
    if desired.archive_claim_in_use(cluster) is not None:
        objects.append(
            desired.archive_prune_job(cluster, [f"{cluster.name}/old-1", f"{cluster.name}/old-2"])
        )
    return [desired.with_owner(o, cluster) for o in objects if o["kind"] != "Job"] + [
        o for o in objects if o["kind"] == "Job"
    ]


@pytest.mark.parametrize("version", SUPPORTED_KUBERNETES_VERSIONS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_objects_are_valid_kubernetes(case: str, version: str) -> None:
    cluster = CASES[case]
    objects = _all_objects(cluster)
    # The Secrets (key generation draws randomness, so they are not in _all_objects).
    objects += [
        desired.with_owner(m, cluster)
        for m, _why in credentials.plan(cluster, {}, datetime.now(UTC)).writes
    ]
    kinds = {o["kind"] for o in objects}
    assert {
        "StatefulSet",
        "Service",
        "PodDisruptionBudget",
        "ConfigMap",
        "NetworkPolicy",
        "Secret",
    } <= kinds
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = ".".join(map(str, error.path))
            pytest.fail(f"{obj['kind']} {obj['metadata']['name']} @ {where}: {error.message}")


def test_validation_catches_a_broken_object() -> None:
    sts = desired.stateful_set(CASES["minimal"])
    sts["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(sts, SUPPORTED_KUBERNETES_VERSIONS[0], strict=True)


# ---- StatefulSet ---------------------------------------------------------------------------


def _container(sts: dict[str, Any]) -> dict[str, Any]:
    containers = sts["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for e in container["env"]}


def test_statefulset_shape() -> None:
    cluster = CASES["minimal"]
    sts = desired.stateful_set(cluster)
    spec = sts["spec"]
    assert sts["metadata"]["name"] == "demo" and sts["metadata"]["namespace"] == NAMESPACE
    assert spec["replicas"] == 3
    assert spec["serviceName"] == "demo-peers"
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["updateStrategy"] == {"type": "OnDelete"}
    assert spec["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Retain", "whenScaled": "Retain",
    }  # fmt: skip
    template_labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= template_labels.items()
    assert template_labels["app.kubernetes.io/managed-by"] == "raftkv-operator"
    assert desired.ROLE_LABEL not in template_labels
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == desired.DATA_VOLUME
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert desired.stateful_set(cluster, replicas=4)["spec"]["replicas"] == 4
    with pytest.raises(ValueError):
        desired.stateful_set(cluster, replicas=-1)


def test_member_container_runs_serve_with_the_contract_flags() -> None:
    container = _container(desired.stateful_set(CASES["minimal"]))
    assert container["command"] == ["raftkv"]
    args = container["args"]
    assert args[0] == "serve"
    assert "--name=$(RAFTKV_NAME)" in args
    assert f"--data-dir={desired.DATA_DIR}" in args
    assert "--advertise-peer-url=$(RAFTKV_NAME).demo-peers.prod.svc:7380" in args
    assert "--advertise-client-url=https://$(RAFTKV_NAME).demo-peers.prod.svc:7379" in args
    assert {"--tick-ms=100", "--election-ticks=10", "--heartbeat-ticks=1",
            "--snapshot-entries=10000", "--checkpoint-retain=5"} <= set(args)  # fmt: skip
    env = _env(container)
    assert env["RAFTKV_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    for name, key in [
        ("RAFTKV_INITIAL_CLUSTER", "initial-cluster"),
        ("RAFTKV_INITIAL_CLUSTER_STATE", "initial-cluster-state"),
    ]:
        assert env[name]["valueFrom"] == {"configMapKeyRef": {"name": "demo-config", "key": key}}
    assert "RAFTKV_RESTORE_FROM" not in env
    # Every $(VAR) in args must be defined before use, or Kubernetes leaves it verbatim.
    for arg in args:
        if "$(" in arg:
            assert arg.split("$(")[1].split(")")[0] in env


def test_member_pod_hardening_and_probes() -> None:
    cluster = CASES["minimal"]
    pod = desired.stateful_set(cluster)["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts["/tmp"] == "tmp" and mounts[desired.VOLUME_MOUNT] == desired.DATA_VOLUME
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}} in pod["volumes"]
    assert pod["enableServiceLinks"] is False
    # The token mounted is the cluster's own account's, which may only label its pods.
    assert pod["automountServiceAccountToken"] is True
    assert pod["serviceAccountName"] == desired.service_account_name(cluster.name) != "default"
    assert container["resources"] == {
        "requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "1Gi"},
    }  # fmt: skip
    # Grace covers several election timeouts, so a leader can hand over before it is killed.
    assert pod["terminationGracePeriodSeconds"] >= 30
    slow = _cluster("minimal.yaml", {"raft": {"tickMs": 1000, "electionTicks": 10}})
    assert desired.termination_grace_seconds(slow) >= 3 * slow.spec.raft.election_timeout_ms / 1000


@pytest.mark.parametrize(
    ("consensus", "flags"), [(None, []), ("raft", []), ("multipaxos", ["--consensus=multipaxos"])]
)
def test_members_run_the_consensus_engine_of_the_spec(
    consensus: str | None, flags: list[str]
) -> None:
    cluster = _cluster("minimal.yaml", {"consensus": consensus} if consensus else None)
    assert cluster.spec.consensus == (consensus or "raft")
    args = desired.stateful_set(cluster)["spec"]["template"]["spec"]["containers"][0]["args"]
    # Raft, the members' default, is not spelled out: existing clusters keep their template.
    assert [a for a in args if a.startswith("--consensus")] == flags


def test_production_placement_and_options_pass_through() -> None:
    cluster = CASES["production"]
    sts = desired.stateful_set(cluster)
    pod = sts["spec"]["template"]["spec"]
    source = load_example("production.yaml")["spec"]
    assert pod["affinity"] == source["placement"]["affinity"]
    assert pod["topologySpreadConstraints"] == source["placement"]["topologySpreadConstraints"]
    assert pod["tolerations"] == source["placement"]["tolerations"]
    assert pod["nodeSelector"] == source["placement"]["nodeSelector"]
    assert pod["priorityClassName"] == "high-priority"
    container = pod["containers"][0]
    assert container["resources"] == source["resources"]
    assert "--checkpoint-retain=7" in container["args"]
    assert "--snapshot-entries=50000" in container["args"]
    template_meta = sts["spec"]["template"]["metadata"]
    assert template_meta["labels"]["team"] == "payments"
    assert template_meta["annotations"]["prometheus.io/scrape"] == "true"
    claim = sts["spec"]["volumeClaimTemplates"][0]["spec"]
    assert claim["storageClassName"] == "fast-ssd"
    assert claim["resources"]["requests"]["storage"] == "20Gi"


def test_user_pod_labels_cannot_override_ours() -> None:
    # The model refuses reserved prefixes; the builder still lets ours win if one slips in.
    cluster = CASES["minimal"].model_copy(deep=True)
    cluster.spec.pod_labels = {"app.kubernetes.io/instance": "other", "team": "x"}
    labels = desired.stateful_set(cluster)["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/instance"] == "demo" and labels["team"] == "x"


def test_image() -> None:
    container = _container(desired.stateful_set(CASES["minimal"]))
    assert container["image"] == "ghcr.io/raftkv/raftkv:0.1.0"
    container = _container(
        desired.stateful_set(CASES["minimal"], default_image_repository="kind.local/raftkv")
    )
    assert container["image"] == "kind.local/raftkv:0.1.0"
    pinned = _cluster("minimal.yaml", {"image": "raftkv:dev", "imagePullPolicy": "Never"})
    container = _container(desired.stateful_set(pinned))
    assert (container["image"], container["imagePullPolicy"]) == ("raftkv:dev", "Never")


# ---- pod-template hash ---------------------------------------------------------------------


def _hash(cluster: RaftCluster) -> str:
    sts = desired.stateful_set(cluster)
    return sts["spec"]["template"]["metadata"]["annotations"][desired.POD_TEMPLATE_HASH_ANNOTATION]


def test_pod_template_hash_is_the_hash_of_the_template() -> None:
    template = desired.stateful_set(CASES["production"])["spec"]["template"]
    assert template["metadata"]["annotations"][desired.POD_TEMPLATE_HASH_ANNOTATION] == (
        desired.pod_template_hash(template)
    )


def test_pod_template_hash_ignores_what_needs_no_restart() -> None:
    base = _hash(CASES["minimal"])
    assert _hash(CASES["minimal"]) == base
    # Scaling and the bootstrap flip must not restart members.
    assert _hash(_cluster("minimal.yaml", {"replicas": 5})) == base
    assert _hash(_cluster("minimal.yaml", bootstrapped=True, initialReplicas=3)) == base
    assert _hash(_cluster("minimal.yaml", {"paused": True})) == base
    assert _hash(_cluster("minimal.yaml", {"checkpoints": {"schedule": "@daily"}})) == base


@pytest.mark.parametrize(
    "change",
    [
        {"version": "0.2.0"},
        {"image": "raftkv:dev"},
        {"resources": {"requests": {"cpu": "1"}}},
        {"raft": {"tickMs": 50}},
        {"checkpoints": {"retain": 9}},
        {"podAnnotations": {"a": "b"}},
        {"placement": {"nodeSelector": {"disk": "ssd"}}},
        {"service": {"ports": {"client": 2379, "peer": 2380}}},
    ],
    ids=lambda c: next(iter(c)),
)
def test_pod_template_hash_changes_with_the_pod(change: dict[str, Any]) -> None:
    assert _hash(_cluster("minimal.yaml", change)) != _hash(CASES["minimal"])


# ---- ConfigMap -----------------------------------------------------------------------------


def test_config_map_for_a_new_cluster() -> None:
    cm = desired.config_map(CASES["minimal"])
    assert cm["metadata"]["name"] == "demo-config"
    assert cm["data"] == {
        "initial-cluster": ",".join(
            f"demo-{i}=demo-{i}.demo-peers.prod.svc:7380" for i in range(3)
        ),
        "initial-cluster-state": "new",
    }


def test_config_map_once_bootstrapped_keeps_the_initial_members() -> None:
    cm = desired.config_map(CASES["bootstrapped"])  # spec.replicas 5, initially 3
    assert cm["data"]["initial-cluster-state"] == "existing"
    assert cm["data"]["initial-cluster"].count("=") == 3


def test_restore_from_is_offered_only_until_bootstrapped() -> None:
    cluster = CASES["restore"]
    assert desired.config_map(cluster)["data"]["restore-from"] == desired.RESTORE_DIR
    done = _cluster("restore.yaml", bootstrapped=True, initialReplicas=3)
    assert "restore-from" not in desired.config_map(done)["data"]
    env = _env(_container(desired.stateful_set(cluster)))
    assert env["RAFTKV_RESTORE_FROM"]["valueFrom"]["configMapKeyRef"] == {
        "name": "orders-copy-config", "key": "restore-from", "optional": True,
    }  # fmt: skip


# ---- restore init container ----------------------------------------------------------------


def test_restore_init_container_downloads_from_the_source_cluster() -> None:
    pod = desired.stateful_set(CASES["restore"])["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    script = init["command"][2]
    assert (
        "raftkv checkpoint download nightly-1 --endpoint https://orders.prod.svc:7379 "
        "--out /var/lib/raftkv/restore.tmp --cacert /etc/raftkv/admin/ca.crt "
        "--token-file /etc/raftkv/admin/token"
    ) in script
    assert init["securityContext"]["readOnlyRootFilesystem"] is True
    # The source cluster's admin Secret, mounted only into the init container.
    assert {"name": "admin", "mountPath": "/etc/raftkv/admin", "readOnly": True} in (
        init["volumeMounts"]
    )
    assert {"name": "admin", "secret": {"secretName": "orders-admin", "defaultMode": 0o440}} in (
        pod["volumes"]
    )
    assert all(m["name"] != "admin" for m in pod["containers"][0]["volumeMounts"])


def test_restore_init_container_copies_from_the_archive_claim() -> None:
    pod = desired.stateful_set(CASES["restore-archive"])["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert "/archive/orders/n-1/." in init["command"][2]
    assert {"name": "archive", "mountPath": "/archive", "readOnly": True} in init["volumeMounts"]
    archive = next(v for v in pod["volumes"] if v["name"] == "archive")
    assert archive["persistentVolumeClaim"] == {"claimName": "orders-checkpoints", "readOnly": True}


def _run_restore_script(
    tmp_path: Path, cluster: RaftCluster, state: str, fetch_ok: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run the init container's script with its paths moved under tmp_path."""
    pod = desired.stateful_set(cluster)["spec"]["template"]["spec"]
    script = pod["initContainers"][0]["command"][2]
    root = tmp_path / "vol"
    script = script.replace(desired.VOLUME_MOUNT, str(root))
    script = script.replace(desired.ARCHIVE_MOUNT + "/", str(tmp_path / "archive") + "/")
    # A stand-in for `raftkv checkpoint download ID --endpoint URL --out DIR`.
    fake = (
        'raftkv() { [ "$1 $2 $4 $6" = "checkpoint download --endpoint --out" ] || exit 9; '
        + ('mkdir -p "$7"; echo state > "$7/data"; echo "{}" > "$7/manifest.json"; }'
           if fetch_ok else 'mkdir -p "$7"; echo partial > "$7/data"; return 1; }')
    )  # fmt: skip
    return subprocess.run(
        ["/bin/sh", "-c", f"{fake}\n{script}"],
        env={"PATH": "/usr/bin:/bin", "RAFTKV_INITIAL_CLUSTER_STATE": state},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_restore_script_stages_the_checkpoint_once(tmp_path: Path) -> None:
    result = _run_restore_script(tmp_path, CASES["restore"], "new")
    assert result.returncode == 0, result.stderr
    restored = tmp_path / "vol" / "restore"
    assert (restored / "data").read_text() == "state\n"
    assert not (tmp_path / "vol" / "restore.tmp").exists()
    (restored / "data").write_text("kept")
    again = _run_restore_script(tmp_path, CASES["restore"], "new")
    assert "nothing to do" in again.stdout and (restored / "data").read_text() == "kept"


def test_restore_script_never_restores_over_data_or_after_bootstrap(tmp_path: Path) -> None:
    result = _run_restore_script(tmp_path, CASES["restore"], "existing")
    assert result.returncode == 0 and "nothing to do" in result.stdout
    data_dir = tmp_path / "vol" / "data"
    data_dir.mkdir(parents=True)
    (data_dir / "wal-0").write_text("x")
    result = _run_restore_script(tmp_path, CASES["restore"], "new")
    assert result.returncode == 0 and "nothing to do" in result.stdout
    assert not (tmp_path / "vol" / "restore").exists()


def test_restore_script_fails_without_leaving_a_partial_checkpoint(tmp_path: Path) -> None:
    result = _run_restore_script(tmp_path, CASES["restore"], "new", fetch_ok=False)
    assert result.returncode != 0
    assert not (tmp_path / "vol" / "restore").exists()


def test_restore_script_copies_from_the_archive(tmp_path: Path) -> None:
    source = tmp_path / "archive" / "orders" / "n-1"
    source.mkdir(parents=True)
    (source / "data").write_text("archived")
    (source / "manifest.json").write_text("{}")
    result = _run_restore_script(tmp_path, CASES["restore-archive"], "new")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "vol" / "restore" / "data").read_text() == "archived"
    (source / "manifest.json").unlink()
    (tmp_path / "vol" / "restore" / "manifest.json").unlink()
    result = _run_restore_script(tmp_path, CASES["restore-archive"], "new")
    assert result.returncode != 0, "an incomplete archive must not be staged"


# ---- Services and PDB ----------------------------------------------------------------------


def _pod_labels(cluster: RaftCluster) -> dict[str, str]:
    labels: dict[str, str] = desired.stateful_set(cluster)["spec"]["template"]["metadata"]["labels"]
    return labels


def test_peers_service_is_headless_and_publishes_unready_members() -> None:
    svc = desired.peers_service(CASES["minimal"])
    assert svc["metadata"]["name"] == "demo-peers"
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["publishNotReadyAddresses"] is True
    assert {p["name"]: p["port"] for p in svc["spec"]["ports"]} == {"client": 7379, "peer": 7380}
    assert svc["spec"]["selector"].items() <= _pod_labels(CASES["minimal"]).items()


def test_client_service_selects_only_the_leader() -> None:
    cluster = CASES["minimal"]
    svc = desired.client_service(cluster)
    assert svc["metadata"]["name"] == "demo"
    selector = svc["spec"]["selector"]
    assert selector[desired.ROLE_LABEL] == desired.ROLE_LEADER
    leader_pod = {**_pod_labels(cluster), desired.ROLE_LABEL: desired.ROLE_LEADER}
    follower_pod = {**_pod_labels(cluster), desired.ROLE_LABEL: desired.ROLE_FOLLOWER}
    assert selector.items() <= leader_pod.items()
    assert not selector.items() <= follower_pod.items()
    assert not selector.items() <= _pod_labels(cluster).items()


def test_read_service_selects_every_member() -> None:
    cluster = CASES["minimal"]
    svc = desired.read_service(cluster)
    assert svc["metadata"]["name"] == "demo-read"
    assert svc["spec"]["selector"].items() <= _pod_labels(cluster).items()
    assert "publishNotReadyAddresses" not in svc["spec"]


def test_service_options_apply_to_client_facing_services() -> None:
    cluster = CASES["production"]
    for svc in (desired.client_service(cluster), desired.read_service(cluster)):
        assert svc["spec"]["type"] == "LoadBalancer"
        assert svc["metadata"]["annotations"] == {
            "service.beta.kubernetes.io/aws-load-balancer-internal": "true"
        }
    assert "type" not in desired.peers_service(cluster)["spec"]


@pytest.mark.parametrize(
    ("voters", "expected"), [(1, 1), (2, 0), (3, 1), (4, 1), (5, 2), (7, 3), (9, 4)]
)
def test_pdb_keeps_a_quorum_of_the_voters(voters: int, expected: int) -> None:
    pdb = desired.pod_disruption_budget(_cluster("minimal.yaml", {"replicas": 9}), voters=voters)
    assert pdb["spec"]["maxUnavailable"] == expected
    if voters > 1:
        assert voters - expected >= quorum(voters)
    assert pdb["spec"]["selector"]["matchLabels"] == desired.selector_labels("demo")


def test_pdb_without_a_leader_uses_the_recorded_voters_never_more_than_replicas() -> None:
    # 3 -> 5 asked; status still records three voters and a learner.
    cluster = _cluster("minimal.yaml", {"replicas": 5})
    members = [
        {"name": f"demo-{i}", "id": i + 1, "role": "Learner" if i == 3 else "Follower"}
        for i in range(4)
    ]
    cluster = cluster.model_copy(
        update={"status": cluster.status.model_validate({"members": members})}
    )
    assert desired.pod_disruption_budget(cluster)["spec"]["maxUnavailable"] == 1
    fresh = _cluster("minimal.yaml", {"replicas": 5})
    assert desired.pod_disruption_budget(fresh)["spec"]["maxUnavailable"] == 2


def test_label_selector_string_matches_the_selector() -> None:
    selector = desired.label_selector("demo")
    pairs = dict(p.split("=") for p in selector.split(","))
    assert pairs == desired.selector_labels("demo")


# ---- owner references ----------------------------------------------------------------------


def test_with_owner() -> None:
    cluster = CASES["minimal"]
    sts = desired.stateful_set(cluster)
    owned = desired.with_owner(sts, cluster)
    assert "ownerReferences" not in sts["metadata"], "input must not be mutated"
    assert owned["metadata"]["ownerReferences"] == [
        {"apiVersion": "raftkv.dev/v1alpha1", "kind": "RaftCluster", "name": "demo",
         "uid": "uid-demo", "controller": True, "blockOwnerDeletion": True},
    ]  # fmt: skip
    assert desired.with_owner(owned, cluster) == owned
    foreign = {"apiVersion": "v1", "kind": "X", "name": "x", "uid": "u2"}
    owned["metadata"]["ownerReferences"].append(foreign)
    assert desired.with_owner(owned, cluster)["metadata"]["ownerReferences"][0] == foreign


def test_with_owner_refuses_bad_owners() -> None:
    cluster = CASES["minimal"]
    other_ns = {"metadata": {"name": "x", "namespace": "elsewhere"}}
    with pytest.raises(ValueError, match="namespaces"):
        desired.with_owner(other_ns, cluster)
    no_uid = RaftCluster.model_validate({"metadata": {"name": "a", "namespace": "b"}, "spec": {}})
    with pytest.raises(ValueError, match="uid"):
        desired.owner_reference(no_uid)


# ---- checkpoint archive --------------------------------------------------------------------


def test_archive_claim_from_template() -> None:
    claim = desired.archive_claim(CASES["production"])
    assert claim is not None
    assert claim["metadata"]["name"] == "orders-checkpoints"
    assert claim["spec"] == {
        "accessModes": ["ReadWriteMany"],
        "resources": {"requests": {"storage": "100Gi"}},
        "storageClassName": "standard",
    }
    assert "ownerReferences" not in claim["metadata"]
    assert desired.archive_claim(CASES["minimal"]) is None
    existing = _cluster("minimal.yaml", {"checkpoints": {"archive": {"claimName": "backups"}}})
    assert desired.archive_claim(existing) is None
    assert desired.archive_claim_in_use(existing) == "backups"


def test_archive_job_downloads_into_the_claim() -> None:
    cluster = CASES["production"]
    job = desired.checkpoint_archive_job(cluster, _checkpoint("orders", id="nightly-1"))
    assert job["metadata"]["name"] == "orders-before-migration-archive"
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert container["image"] == "ghcr.io/raftkv/raftkv:0.1.0"
    assert container["command"][:2] == ["/bin/sh", "-c"]
    script = container["command"][2].splitlines()
    assert script == [
        "set -eu",
        "rm -rf /archive/orders/nightly-1.partial",
        "raftkv checkpoint download nightly-1 --endpoint https://orders.prod.svc:7379 "
        "--out /archive/orders/nightly-1.partial --cacert /etc/raftkv/admin/ca.crt "
        "--token-file /etc/raftkv/admin/token",
        "rm -rf /archive/orders/nightly-1",
        "mv /archive/orders/nightly-1.partial /archive/orders/nightly-1",
    ]
    volume = next(v for v in pod["volumes"] if v["name"] == "archive")
    assert volume["persistentVolumeClaim"]["claimName"] == "orders-checkpoints"
    assert pod["tolerations"] == load_example("production.yaml")["spec"]["placement"]["tolerations"]
    assert job["metadata"]["labels"][desired.CHECKPOINT_LABEL] == "orders-before-migration"
    assert desired.archive_path("orders", "nightly-1") == "orders/nightly-1"


def test_archive_job_id_comes_from_status_when_the_leader_chose_it() -> None:
    checkpoint = _checkpoint("orders")
    with pytest.raises(ValueError, match="no id"):
        desired.checkpoint_archive_job(CASES["production"], checkpoint)
    checkpoint.status.id = "auto-17"
    job = desired.checkpoint_archive_job(CASES["production"], checkpoint)
    assert "download auto-17 " in job["spec"]["template"]["spec"]["containers"][0]["command"][2]


def test_archive_job_refusals() -> None:
    with pytest.raises(ValueError, match="no checkpoints.archive"):
        desired.checkpoint_archive_job(CASES["minimal"], _checkpoint("demo", id="x"))
    with pytest.raises(ValueError, match="belongs to cluster"):
        desired.checkpoint_archive_job(CASES["production"], _checkpoint("demo", id="x"))


def test_long_names_are_bounded() -> None:
    long = "c" * 60
    name = desired.bounded_name(f"{long}-archive")
    assert len(name) <= 63 and name.startswith("c" * 40)
    assert name != desired.bounded_name(f"{long}x-archive")
    assert desired.bounded_name("short") == "short"


# ---- purity --------------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_builders_are_pure(case: str) -> None:
    cluster = CASES[case]
    before = cluster.model_dump()
    first = _all_objects(cluster)
    assert _all_objects(cluster) == first
    assert cluster.model_dump() == before


def test_restore_parts_leave_the_pod_template_once_bootstrapped() -> None:
    # The archive claim is mounted only while restoring: a ReadWriteOnce claim held by every
    # member for good keeps anything else that mounts it Pending.
    done = _cluster("restore.yaml", ARCHIVE_RESTORE, bootstrapped=True, initialReplicas=3)
    pod = desired.stateful_set(done)["spec"]["template"]["spec"]
    assert "initContainers" not in pod
    assert all(v["name"] != "archive" for v in pod["volumes"])
    # A restore from another cluster mounts nothing: its template stays (no restart).
    before = desired.stateful_set(CASES["restore"])["spec"]["template"]
    after = _cluster("restore.yaml", bootstrapped=True, initialReplicas=3)
    assert desired.stateful_set(after)["spec"]["template"] == before


def test_archive_job_deadline_is_the_archive_timeout() -> None:
    cluster = _cluster(
        "minimal.yaml", {"checkpoints": {"archive": {"claimName": "b", "timeoutSeconds": 7200}}}
    )
    job = desired.checkpoint_archive_job(cluster, _checkpoint("demo", id="n-1"))
    assert job["spec"]["activeDeadlineSeconds"] == 7200


def test_prune_job_removes_only_this_clusters_archived_copies() -> None:
    cluster = CASES["production"]
    job = desired.archive_prune_job(cluster, ["orders/b", "orders/a"])
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == [
        "rm", "-rf", "--", "/archive/orders/a", "/archive/orders/a.partial",
        "/archive/orders/b", "/archive/orders/b.partial",
    ]  # fmt: skip
    for bad in (["other/a"], ["orders/../x"], ["orders"], ["orders/a/b"], []):
        with pytest.raises(ValueError):
            desired.archive_prune_job(cluster, bad)
    assert desired.archive_retain(cluster) == cluster.spec.checkpoints.retain


def test_members_spread_over_nodes_and_zones_by_default() -> None:
    pod = desired.stateful_set(CASES["minimal"])["spec"]["template"]["spec"]
    (term,) = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == desired.selector_labels(
        "demo"
    )
    (spread,) = pod["topologySpreadConstraints"]
    assert spread["whenUnsatisfiable"] == "ScheduleAnyway"
    assert spread["topologyKey"] == "topology.kubernetes.io/zone"
    off = _cluster("minimal.yaml", {"placement": {"topologySpreadConstraints": []}})
    assert "topologySpreadConstraints" not in desired.pod_template(off)["spec"]


@pytest.mark.parametrize("fetch_ok", [True, False])
def test_archive_script_leaves_a_copy_only_when_complete(tmp_path: Path, fetch_ok: bool) -> None:
    job = desired.checkpoint_archive_job(CASES["production"], _checkpoint("orders", id="n-1"))
    script = job["spec"]["template"]["spec"]["containers"][0]["command"][2]
    script = script.replace(desired.ARCHIVE_MOUNT + "/", str(tmp_path) + "/")
    # A stand-in for `raftkv checkpoint download ID --endpoint URL --out DIR` that writes a
    # partial copy and then fails, or a whole one.
    fake = 'raftkv() { mkdir -p "$7"; echo data > "$7/data"; ' + (
        'echo "{}" > "$7/manifest.json"; }' if fetch_ok else "return 1; }"
    )
    (tmp_path / "orders" / "n-1").mkdir(parents=True)  # an older, stale copy
    done = subprocess.run(
        ["/bin/sh", "-c", f"{fake}\n{script}"],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    final = tmp_path / "orders" / "n-1"
    if fetch_ok:
        assert done.returncode == 0, done.stderr
        assert (final / "manifest.json").is_file()
        assert not (tmp_path / "orders" / "n-1.partial").exists()
    else:
        assert done.returncode != 0
        assert not (final / "manifest.json").exists()  # never a half copy under the name


def test_members_are_secure_by_default() -> None:
    """TLS on both ports and an auth file, from mounted Secrets (whole, never subPath, so
    that renewed certificates reach running members); no insecure flag."""
    pod = desired.stateful_set(CASES["minimal"])["spec"]["template"]["spec"]
    container = pod["containers"][0]
    args = container["args"]
    assert not [a for a in args if "insecure" in a]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    for volume, secret_name, flags in [
        (
            "peer-tls",
            "demo-peer-tls",
            [
                "--peer-cert-file=%s/tls.crt",
                "--peer-key-file=%s/tls.key",
                "--peer-trusted-ca-file=%s/ca.crt",
            ],
        ),
        (
            "client-tls",
            "demo-client-tls",
            [
                "--client-cert-file=%s/tls.crt",
                "--client-key-file=%s/tls.key",
                "--client-trusted-ca-file=%s/ca.crt",
            ],
        ),
        ("auth", "demo-auth", ["--auth-file=%s/auth.json"]),
    ]:
        assert volumes[volume]["secret"]["secretName"] == secret_name
        assert "subPath" not in mounts[volume] and mounts[volume]["readOnly"] is True
        for flag in flags:
            assert flag % mounts[volume]["mountPath"] in args
    # The CA's key and the admin token are never mounted into members.
    secret_names = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert secret_names == {"demo-peer-tls", "demo-client-tls", "demo-auth"}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["scheme"] == "HTTPS"


def test_tls_disabled_is_explicit_and_named_insecure() -> None:
    pod = desired.stateful_set(CASES["insecure"])["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert {"--client-insecure", "--peer-insecure"} <= set(container["args"])
    assert not [v for v in pod["volumes"] if "secret" in v]
    assert container["readinessProbe"]["httpGet"]["scheme"] == "HTTP"
    assert desired.client_url(CASES["insecure"]).startswith("http://")


def test_archive_job_calls_the_cluster_with_its_admin_secret() -> None:
    cluster = _cluster(
        "minimal.yaml", {"checkpoints": {"archive": {"volumeClaimTemplate": {"size": "1Gi"}}}}
    )
    job = desired.checkpoint_archive_job(cluster, _checkpoint("demo", id="n-1"))
    pod = job["spec"]["template"]["spec"]
    script = pod["containers"][0]["command"][-1]
    assert "--cacert /etc/raftkv/admin/ca.crt --token-file /etc/raftkv/admin/token" in script
    assert "--endpoint https://demo.prod.svc:7379" in script
    assert {"name": "admin", "secret": {"secretName": "demo-admin", "defaultMode": 0o440}} in (
        pod["volumes"]
    )


def test_network_policy_peer_port_only_from_members() -> None:
    cluster = CASES["minimal"]
    policy = desired.network_policy(cluster, operator_namespace=OPERATOR_NAMESPACE)
    assert policy is not None
    spec = policy["spec"]
    members = {"matchLabels": desired.selector_labels("demo")}
    assert spec["podSelector"] == members and spec["policyTypes"] == ["Ingress"]
    peer, client = spec["ingress"]
    assert peer == {
        "from": [{"podSelector": members}],
        "ports": [{"protocol": "TCP", "port": 7380}],
    }
    assert client["ports"] == [{"protocol": "TCP", "port": 7379}]
    assert client["from"] == [
        {"podSelector": {}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": OPERATOR_NAMESPACE}}},
    ]


def test_network_policy_admits_the_selected_namespaces_to_the_client_port_only() -> None:
    policy = desired.network_policy(CASES["network-selectors"], operator_namespace=NAMESPACE)
    assert policy is not None
    peer, client = policy["spec"]["ingress"]
    assert len(peer["from"]) == 1
    assert client["from"] == [
        {"podSelector": {}},  # the operator shares the cluster's namespace: no extra rule
        {"namespaceSelector": {"matchLabels": {"team": "orders"}}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}},
    ]
    off = _cluster("minimal.yaml", {"network": {"policy": False}})
    assert desired.network_policy(off, operator_namespace=NAMESPACE) is None


def test_peer_tls_of_a_template() -> None:
    secure = desired.pod_template(CASES["minimal"])
    insecure = desired.pod_template(CASES["insecure"])
    assert desired.peer_tls_of(secure) is True
    assert desired.peer_tls_of(insecure) is False
    assert desired.peer_tls_of({"spec": {"containers": []}}) is None


# ---- bucket archive ----------------------------------------------------------------------------


def test_bucket_archive_job_downloads_uploads_and_prunes_with_the_secret_as_env() -> None:
    cluster = CASES["bucket-archive"]
    job = desired.checkpoint_archive_job(cluster, _checkpoint("demo", id="nightly-1"))
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    flags = (
        "--endpoint https://minio.storage.svc:9000 --bucket raftkv-backups --region "
        "us-east-1 --prefix prod --path-style --cacert /etc/raftkv/bucket-ca/ca.crt"
    )
    assert container["command"][2].splitlines() == [
        "set -eu",
        "rm -rf /staging/nightly-1",
        "raftkv checkpoint download nightly-1 --endpoint https://demo.prod.svc:7379 "
        "--out /staging/nightly-1 --cacert /etc/raftkv/admin/ca.crt "
        "--token-file /etc/raftkv/admin/token",
        f"raftkv archive upload /staging/nightly-1 --cluster demo {flags}",
        f"raftkv archive prune --cluster demo --keep 7 --max-age-hours 720 {flags}",
        "rm -rf /staging/nightly-1",
    ]
    env = {e["name"]: e for e in container["env"]}
    assert env["RAFTKV_S3_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {
        "name": "s3-credentials",
        "key": "accessKeyId",
    }
    assert env["RAFTKV_S3_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "s3-credentials",
        "key": "secretAccessKey",
    }
    assert env["RAFTKV_S3_SESSION_TOKEN"]["valueFrom"]["secretKeyRef"]["optional"] is True
    assert not any("value" in e and "s3" in str(e["value"]).lower() for e in container["env"])
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "persistentVolumeClaim" not in json.dumps(pod)
    assert volumes["bucket-ca"]["secret"]["secretName"] == "s3-ca"
    assert volumes["staging"] == {"name": "staging", "emptyDir": {}}
    assert desired.archive_claim(cluster) is None
    assert desired.archive_claim_in_use(cluster) is None
    with pytest.raises(ValueError, match="no checkpoints.archive"):
        desired.archive_prune_job(cluster, ["demo/old-1"])


def test_members_never_get_the_bucket_credentials() -> None:
    for case in ("bucket-archive", "restore-bucket"):
        container = desired.pod_template(CASES[case])["spec"]["containers"][0]
        assert "s3-credentials" not in json.dumps(container), case
    assert "s3-credentials" not in json.dumps(desired.pod_template(CASES["bucket-archive"]))


def test_bucket_restore_init_container_verifies_the_copy_then_leaves() -> None:
    template = desired.pod_template(CASES["restore-bucket"])
    (init,) = template["spec"]["initContainers"]
    script = init["command"][2]
    assert (
        "raftkv archive download orders/n-1 --out /var/lib/raftkv/restore.tmp --endpoint "
        "https://minio.storage.svc:9000 --bucket raftkv-backups"
    ) in script
    env = {e["name"]: e for e in init["env"]}
    assert env["RAFTKV_S3_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == (
        "s3-credentials"
    )
    assert {"name": "bucket-ca", "mountPath": "/etc/raftkv/bucket-ca", "readOnly": True} in (
        init["volumeMounts"]
    )
    assert any(v["name"] == "bucket-ca" for v in template["spec"]["volumes"])
    # Once bootstrapped the init container, its credentials and the CA volume are gone.
    body = CASES["restore-bucket"].to_k8s()
    body["status"] = {**(body.get("status") or {}), "bootstrapped": True}
    after = desired.pod_template(RaftCluster.model_validate(body))
    assert "initContainers" not in after["spec"]
    assert "s3-credentials" not in json.dumps(after)
    assert "bucket-ca" not in json.dumps(after)
