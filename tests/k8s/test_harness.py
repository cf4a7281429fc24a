"""Self-tests of the emulated cluster: StatefulSets become real processes on pod IPs, probes
drive readiness, Endpoints follow labels and readiness, volumes outlive pods, crashes restart,
deletion is graceful, Jobs run, owners collect their dependents."""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import signal
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.k8s.harness import EmulatedCluster
from tests.k8s.harness.manifests import service, standin_statefulset

STS = "apps/v1/statefulsets"
PODS = "v1/pods"


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def _status(cluster: EmulatedCluster, ns: str, name: str) -> dict[str, Any]:
    sts = cluster.get(STS, ns, name)
    return (sts or {}).get("status") or {}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:  # a zombie is dead too
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:  # reaped between the two looks
        return False


def _start_lines(path: Path) -> list[str] | None:
    """The complete lines of a stand-in's `starts` file (None while there is none)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    return text.splitlines() if text.endswith("\n") else None


def _ready_sts(
    cluster: EmulatedCluster, ns: str, name: str, replicas: int = 3, **kwargs: Any
) -> None:
    cluster.create(STS, standin_statefulset(name, ns, replicas, **kwargs))
    cluster.wait_for(
        lambda: _status(cluster, ns, name).get("readyReplicas") == replicas,
        timeout=20,
        message=f"{replicas} ready replicas",
    )


def test_statefulset_pods_get_addresses_volumes_and_readiness(
    k8s_cluster: EmulatedCluster, k8s_namespace: str
) -> None:
    ns = k8s_namespace
    k8s_cluster.create("v1/services", service("web", ns, {"app": "web"}, [("http", 80, "http")]))
    _ready_sts(k8s_cluster, ns, "web")
    pods = {p["metadata"]["name"]: p for p in k8s_cluster.list(PODS, ns)}
    assert sorted(pods) == ["web-0", "web-1", "web-2"]
    ips = {name: p["status"]["podIP"] for name, p in pods.items()}
    assert len(set(ips.values())) == 3
    network = k8s_cluster.runtime.network.pod_network
    for name, ip in ips.items():
        pod = pods[name]
        assert pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] == name
        assert pod["spec"]["hostname"] == name and pod["spec"]["subdomain"] == "web-peers"
        whoami = _get_json(f"http://{ip}:8080/whoami")
        assert whoami["hostname"] == name and whoami["host"] == ip  # its own address
        assert whoami["argv"][-1] == str(k8s_cluster.pvc_path(ns, f"data-{name}"))
        assert (k8s_cluster.pvc_path(ns, f"data-{name}") / "starts").read_text().startswith(name)
        assert ipaddress.IPv4Address(ip) in network
        claim = k8s_cluster.get("v1/persistentvolumeclaims", ns, f"data-{name}")
        assert claim is not None and claim["status"]["phase"] == "Bound"
    assert sorted(ip for ip, _ in k8s_cluster.service_endpoints(ns, "web")) == sorted(ips.values())
    status = _status(k8s_cluster, ns, "web")
    assert status["currentRevision"] == status["updateRevision"]
    assert status["replicas"] == status["updatedReplicas"] == 3

    # Readiness: the probe drives the Ready condition and the endpoints.
    not_ready = k8s_cluster.pvc_path(ns, "data-web-1") / "not-ready"
    not_ready.touch()
    k8s_cluster.wait_for(
        lambda: ips["web-1"] not in [ip for ip, _ in k8s_cluster.service_endpoints(ns, "web")]
    )
    eps = k8s_cluster.get("v1/endpoints", ns, "web")
    assert eps is not None
    assert [a["ip"] for a in eps["subsets"][0]["notReadyAddresses"]] == [ips["web-1"]]
    not_ready.unlink()
    k8s_cluster.wait_for(lambda: len(k8s_cluster.service_endpoints(ns, "web")) == 3)

    # Labels: a pod relabelled out of the selector leaves the endpoints (and the slice).
    k8s_cluster.patch(PODS, ns, "web-2", {"metadata": {"labels": {"app": "other"}}})
    k8s_cluster.wait_for(lambda: len(k8s_cluster.service_endpoints(ns, "web")) == 2)
    slice_ = k8s_cluster.get("discovery.k8s.io/v1/endpointslices", ns, "web-emulated")
    assert slice_ is not None
    assert sorted(e["addresses"][0] for e in slice_["endpoints"]) == sorted(
        [ips["web-0"], ips["web-1"]]
    )


def test_service_routing_and_cluster_dns(k8s_cluster: EmulatedCluster, k8s_namespace: str) -> None:
    ns = k8s_namespace
    k8s_cluster.create("v1/services", service("web", ns, {"app": "web"}, [("http", 80, "http")]))
    k8s_cluster.create(
        "v1/services",
        service(
            "web-peers",
            ns,
            {"app": "web"},
            [("http", 8080, 8080)],
            headless=True,
            publish_not_ready=True,
        ),
    )
    _ready_sts(k8s_cluster, ns, "web", 2)
    ips = sorted(k8s_cluster.pod_ip(ns, f"web-{i}") or "" for i in range(2))
    # kube-proxy: the cluster IP forwards to ready endpoints.
    via_proxy = {
        _get_json(k8s_cluster.service_url(ns, "web") + "/whoami")["host"] for _ in range(12)
    }
    assert via_proxy <= set(ips) and via_proxy
    assert _get_json(k8s_cluster.client_for_service(ns, "web") + "/whoami")["host"] in ips
    # DNS: pod names, the headless service (all members) and the cluster IP service.
    assert k8s_cluster.resolve(f"web-1.web-peers.{ns}.svc.cluster.local") == [ips[1]]
    assert sorted(k8s_cluster.resolve(f"web-peers.{ns}.svc")) == ips
    svc = k8s_cluster.get("v1/services", ns, "web")
    assert svc is not None
    assert k8s_cluster.resolve(f"web.{ns}.svc") == [svc["spec"]["clusterIP"]]
    # A pod process (through the pod shim) resolves the same names, including short ones.
    result = k8s_cluster.pvc_path(ns, "data-web-0") / "resolved"
    k8s_cluster.create(
        "batch/v1/jobs",
        {
            "metadata": {"name": "lookup", "namespace": ns},
            "spec": {
                "backoffLimit": 0,
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [
                            {
                                "name": "lookup",
                                "image": "python",
                                "command": [
                                    "python",
                                    "-c",
                                    "import socket, sys; open(sys.argv[1], 'w').write(' '.join(sorted("
                                    "socket.gethostbyname_ex('web-peers')[2])))",
                                    str(result),
                                ],
                            }
                        ],
                    }
                },
            },
        },
    )
    k8s_cluster.wait_for(
        lambda: (
            (k8s_cluster.get("batch/v1/jobs", ns, "lookup") or {})
            .get("status", {})
            .get("succeeded")
            == 1
        ),
        timeout=20,
    )
    assert result.read_text().split() == ips

    # The test process's aiohttp clients (the operator's) resolve cluster names too.
    async def fetch() -> Any:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://web-0.web-peers.{ns}.svc:8080/whoami") as resp,
        ):
            return await resp.json()

    import asyncio

    assert asyncio.run(fetch())["hostname"] == "web-0"


def test_scale_down_removes_highest_ordinals_and_keeps_their_volumes(
    k8s_cluster: EmulatedCluster, k8s_namespace: str
) -> None:
    ns = k8s_namespace
    _ready_sts(k8s_cluster, ns, "kv")
    pids = {i: k8s_cluster.pod_pid(ns, f"kv-{i}") for i in range(3)}
    k8s_cluster.patch(STS, ns, "kv", {"spec": {"replicas": 1}})
    k8s_cluster.wait_for(
        lambda: [p["metadata"]["name"] for p in k8s_cluster.list(PODS, ns)] == ["kv-0"]
    )
    assert _pid_alive(pids[0] or 0)
    assert not _pid_alive(pids[1] or 0) and not _pid_alive(pids[2] or 0)
    k8s_cluster.wait_for(lambda: _status(k8s_cluster, ns, "kv").get("replicas") == 1)
    assert (k8s_cluster.pvc_path(ns, "data-kv-2") / "starts").exists()  # Retain: data stays
    k8s_cluster.patch(STS, ns, "kv", {"spec": {"replicas": 3}})
    k8s_cluster.wait_for(lambda: _status(k8s_cluster, ns, "kv").get("readyReplicas") == 3)
    starts = (k8s_cluster.pvc_path(ns, "data-kv-2") / "starts").read_text().splitlines()
    assert [line.split()[0] for line in starts] == ["kv-2", "kv-2"]  # the same volume again


def test_retention_policy_delete_removes_claims(
    k8s_cluster: EmulatedCluster, k8s_namespace: str
) -> None:
    ns = k8s_namespace
    _ready_sts(
        k8s_cluster, ns, "kv", 2, retention={"whenDeleted": "Delete", "whenScaled": "Delete"}
    )
    k8s_cluster.patch(STS, ns, "kv", {"spec": {"replicas": 1}})
    k8s_cluster.wait_for(
        lambda: k8s_cluster.get("v1/persistentvolumeclaims", ns, "data-kv-1") is None,
        message="claim of the removed ordinal deleted",
    )
    k8s_cluster.wait_for(lambda: not k8s_cluster.pvc_path(ns, "data-kv-1").exists())
    k8s_cluster.delete(STS, ns, "kv")
    k8s_cluster.wait_for(
        lambda: (
            not k8s_cluster.list("v1/persistentvolumeclaims", ns) and not k8s_cluster.list(PODS, ns)
        ),
        message="everything collected",
    )


def test_deleted_pod_stops_and_returns_with_its_volume_and_address(
    k8s_cluster: EmulatedCluster, k8s_namespace: str
) -> None:
    ns = k8s_namespace
    _ready_sts(k8s_cluster, ns, "kv")
    before = k8s_cluster.get(PODS, ns, "kv-1")
    pid = k8s_cluster.pod_pid(ns, "kv-1")
    assert before is not None and pid
    k8s_cluster.delete(PODS, ns, "kv-1")
    k8s_cluster.wait_for(lambda: not _pid_alive(pid), message="old process stopped")
    k8s_cluster.wait_for(
        lambda: (
            (k8s_cluster.get(PODS, ns, "kv-1") or before)["metadata"]["uid"]
            != before["metadata"]["uid"]
        ),
        message="pod recreated",
    )
    k8s_cluster.wait_for(lambda: _status(k8s_cluster, ns, "kv").get("readyReplicas") == 3)
    assert k8s_cluster.pod_ip(ns, "kv-1") == before["status"]["podIP"]
    starts = (k8s_cluster.pvc_path(ns, "data-kv-1") / "starts").read_text().splitlines()
    assert len(starts) == 2 and starts[0].split()[1] == str(pid)
    assert "SIGTERM" not in k8s_cluster.pod_logs(ns, "kv-1")  # exited cleanly on SIGTERM

    # Data loss: wipe the volume, delete the pod: it comes back on an empty volume.
    k8s_cluster.wipe_pvc(ns, "data-kv-1")
    k8s_cluster.delete(PODS, ns, "kv-1")
    # The file exists a moment before its line is written: wait for a whole line.
    lines = k8s_cluster.wait_for(
        lambda: _start_lines(k8s_cluster.pvc_path(ns, "data-kv-1") / "starts"),
        message="the new incarnation recorded its start",
    )
    assert len(lines) == 1


def test_crashed_container_is_restarted(k8s_cluster: EmulatedCluster, k8s_namespace: str) -> None:
    ns = k8s_namespace
    _ready_sts(k8s_cluster, ns, "kv", 1)
    pid = k8s_cluster.kill_pod_process(ns, "kv-0")

    def restarted() -> bool:
        pod = k8s_cluster.get(PODS, ns, "kv-0") or {}
        statuses = pod.get("status", {}).get("containerStatuses") or [{}]
        new_pid = k8s_cluster.pod_pid(ns, "kv-0")
        return (
            statuses[0].get("restartCount") == 1
            and statuses[0].get("ready") is True
            and new_pid not in (None, pid)
        )

    k8s_cluster.wait_for(restarted, message="restarted once and ready")
    pod = k8s_cluster.get(PODS, ns, "kv-0")
    assert pod is not None
    last = pod["status"]["containerStatuses"][0]["lastState"]["terminated"]
    assert last["exitCode"] == 128 + signal.SIGKILL


def test_graceful_deletion_escalates_to_sigkill(
    k8s_cluster: EmulatedCluster, k8s_namespace: str
) -> None:
    ns = k8s_namespace
    _ready_sts(k8s_cluster, ns, "stubborn", 1, grace=1, extra_args=["--ignore-sigterm"])
    pid = k8s_cluster.pod_pid(ns, "stubborn-0")
    assert pid
    k8s_cluster.delete(PODS, ns, "stubborn-0")
    terminating = k8s_cluster.get(PODS, ns, "stubborn-0")
    assert terminating is not None and terminating["metadata"]["deletionTimestamp"]
    assert _pid_alive(pid)  # SIGTERM is ignored: it lives through the grace period
    k8s_cluster.wait_for(lambda: not _pid_alive(pid), timeout=10, message="SIGKILL after grace")


def test_on_delete_updates_only_recreated_pods(
    k8s_cluster: EmulatedCluster, k8s_namespace: str
) -> None:
    ns = k8s_namespace
    _ready_sts(k8s_cluster, ns, "kv", 2)
    old = _status(k8s_cluster, ns, "kv")["updateRevision"]
    uids = {p["metadata"]["name"]: p["metadata"]["uid"] for p in k8s_cluster.list(PODS, ns)}
    sts = k8s_cluster.get(STS, ns, "kv")
    assert sts is not None
    container = sts["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [{"name": "TEST_VERSION", "value": "2"}]
    k8s_cluster.patch(STS, ns, "kv", {"spec": {"template": sts["spec"]["template"]}})
    k8s_cluster.wait_for(lambda: _status(k8s_cluster, ns, "kv")["updateRevision"] != old)
    status = _status(k8s_cluster, ns, "kv")
    assert status["currentRevision"] == old and status["updatedReplicas"] == 0
    assert {
        p["metadata"]["name"]: p["metadata"]["uid"] for p in k8s_cluster.list(PODS, ns)
    } == uids  # nothing replaced
    k8s_cluster.delete(PODS, ns, "kv-0")
    k8s_cluster.wait_for(
        lambda: (
            (k8s_cluster.get(PODS, ns, "kv-0") or {})
            .get("metadata", {})
            .get("labels", {})
            .get("controller-revision-hash")
            == status["updateRevision"]
        )
    )
    k8s_cluster.wait_for(lambda: _status(k8s_cluster, ns, "kv").get("readyReplicas") == 2)
    ip = k8s_cluster.pod_ip(ns, "kv-0")
    assert _get_json(f"http://{ip}:8080/whoami")["env"]["TEST_VERSION"] == "2"
    assert _status(k8s_cluster, ns, "kv")["updatedReplicas"] == 1
    assert (k8s_cluster.get(PODS, ns, "kv-1") or {})["metadata"]["uid"] == uids["kv-1"]


def test_jobs_complete_or_fail(k8s_cluster: EmulatedCluster, k8s_namespace: str) -> None:
    ns = k8s_namespace

    def job(name: str, code: str) -> dict[str, Any]:
        return {
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "backoffLimit": 1,
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [
                            {
                                "name": "main",
                                "image": "python",
                                "command": [sys.executable, "-c", code],
                            }
                        ],
                    }
                },
            },
        }

    k8s_cluster.create("batch/v1/jobs", job("ok", "print('copied')"))
    k8s_cluster.create("batch/v1/jobs", job("bad", "raise SystemExit(3)"))

    def finished(name: str) -> str | None:
        obj = k8s_cluster.get("batch/v1/jobs", ns, name) or {}
        for c in obj.get("status", {}).get("conditions") or []:
            if c["type"] in ("Complete", "Failed") and c["status"] == "True":
                return str(c["type"])
        return None

    assert k8s_cluster.wait_for(lambda: finished("ok"), timeout=20) == "Complete"
    assert k8s_cluster.wait_for(lambda: finished("bad"), timeout=20) == "Failed"
    bad = k8s_cluster.get("batch/v1/jobs", ns, "bad")
    assert bad is not None and bad["status"]["failed"] == 2  # backoffLimit 1: two attempts
    ok_pods = k8s_cluster.list(PODS, ns, label_selector="job-name=ok")
    assert len(ok_pods) == 1 and ok_pods[0]["status"]["phase"] == "Succeeded"
    assert "copied" in k8s_cluster.pod_logs(ns, ok_pods[0]["metadata"]["name"])


def test_owner_references_are_garbage_collected(
    k8s_cluster: EmulatedCluster, k8s_namespace: str
) -> None:
    ns = k8s_namespace
    owner = k8s_cluster.create("v1/configmaps", {"metadata": {"name": "owner"}}, ns)
    ref = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner["metadata"]["uid"],
        "blockOwnerDeletion": True,
    }
    for name in ("dep-a", "dep-b"):
        k8s_cluster.create(
            "v1/configmaps", {"metadata": {"name": name, "ownerReferences": [ref]}}, ns
        )
    k8s_cluster.delete("v1/configmaps", ns, "owner", propagation_policy="Foreground")
    k8s_cluster.wait_for(
        lambda: not k8s_cluster.list("v1/configmaps", ns), message="owner and dependents gone"
    )
    orphan_owner = k8s_cluster.create("v1/configmaps", {"metadata": {"name": "owner2"}}, ns)
    ref2 = {**ref, "name": "owner2", "uid": orphan_owner["metadata"]["uid"]}
    k8s_cluster.create(
        "v1/configmaps", {"metadata": {"name": "kept", "ownerReferences": [ref2]}}, ns
    )
    k8s_cluster.delete("v1/configmaps", ns, "owner2", propagation_policy="Orphan")
    k8s_cluster.wait_for(lambda: k8s_cluster.get("v1/configmaps", ns, "owner2") is None)
    kept = k8s_cluster.get("v1/configmaps", ns, "kept")
    assert kept is not None and "ownerReferences" not in kept["metadata"]


def test_kubernetes_client_sees_a_consistent_api(k8s_api: Any, k8s_namespace: str) -> None:
    import kubernetes.client
    from kubernetes.client.exceptions import ApiException

    core = kubernetes.client.CoreV1Api(k8s_api)
    ns = k8s_namespace
    first: Any = {"metadata": {"name": "a", "labels": {"tier": "x"}}, "data": {"k": "1"}}
    second: Any = {"metadata": {"name": "b"}}
    created = core.create_namespaced_config_map(ns, first)
    core.create_namespaced_config_map(ns, second)
    listed = core.list_namespaced_config_map(ns, label_selector="tier=x").items
    assert [c.metadata.name for c in listed if c.metadata] == ["a"]
    created.data = {"k": "2"}
    core.replace_namespaced_config_map("a", ns, created)
    created.data = {"k": "3"}  # still carries the old resourceVersion
    with pytest.raises(ApiException) as stale:
        core.replace_namespaced_config_map("a", ns, created)
    assert stale.value.status == 409
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_config_map("nope", ns)
    assert missing.value.status == 404


async def test_async_context_manager_and_namespaces_over_http(tmp_path: Any) -> None:
    async with EmulatedCluster(tmp_path / "k8s") as cluster:
        async with aiohttp.ClientSession(cluster.api_url) as http:
            created = await http.post("/api/v1/namespaces", json={"metadata": {"name": "x"}})
            assert created.status == 200
            listed = await (await http.get("/api/v1/namespaces")).json()
            assert "x" in [n["metadata"]["name"] for n in listed["items"]]
            one = await (await http.get("/api/v1/namespaces/x")).json()
            assert one["status"]["phase"] == "Active"
            deleted = await http.delete("/api/v1/namespaces/x")
            assert deleted.status == 200
        await cluster.await_for(
            lambda: cluster.get("v1/namespaces", None, "x") is None, message="namespace finalized"
        )
        assert not cluster.errors


def test_kmock_reactions_inject_faults_without_changing_objects(
    k8s_cluster: EmulatedCluster, k8s_namespace: str
) -> None:
    import kmock

    ns = k8s_namespace
    k8s_cluster.create("v1/configmaps", {"metadata": {"name": "a"}, "data": {"k": "1"}}, ns)
    server = k8s_cluster.server
    k8s_cluster.call(
        lambda: server[kmock.method.PATCH, kmock.resource("", "v1", "configmaps")] << 503
    )
    request = urllib.request.Request(
        f"{k8s_cluster.api_url}/api/v1/namespaces/{ns}/configmaps/a",
        data=json.dumps({"data": {"k": "2"}}).encode(),
        method="PATCH",
        headers={"Content-Type": "application/merge-patch+json"},
    )
    with pytest.raises(urllib.error.HTTPError) as failed:
        urllib.request.urlopen(request, timeout=5)
    assert failed.value.code == 503
    assert (k8s_cluster.get("v1/configmaps", ns, "a") or {})["data"] == {"k": "1"}
    assert _get_json(f"{k8s_cluster.api_url}/api/v1/namespaces/{ns}/configmaps/a")["data"] == {
        "k": "1"
    }


def test_the_request_log_stays_bounded_and_reactions_still_match(
    k8s_cluster: EmulatedCluster, k8s_namespace: str
) -> None:
    """kmock scans its whole request log for every request; the harness keeps the newest
    (apiserver.REQUEST_LOG_KEPT), and fault injection still sees each new request."""
    import http.client

    import kmock

    from tests.k8s.harness.apiserver import REQUEST_LOG_KEPT

    ns = k8s_namespace
    k8s_cluster.create("v1/secrets", {"metadata": {"name": "s"}, "data": {}}, ns)
    server = k8s_cluster.server
    k8s_cluster.call(lambda: server[kmock.method.PATCH, kmock.resource("", "v1", "secrets")] << 503)
    url = urllib.parse.urlsplit(k8s_cluster.api_url)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
    try:
        for _ in range(3 * REQUEST_LOG_KEPT):
            conn.request("GET", f"/api/v1/namespaces/{ns}/secrets/s")
            response = conn.getresponse()
            response.read()
            assert response.status == 200
        conn.request(
            "PATCH",
            f"/api/v1/namespaces/{ns}/secrets/s",
            body=json.dumps({"data": {"k": "eA=="}}).encode(),
            headers={"Content-Type": "application/merge-patch+json"},
        )
        response = conn.getresponse()
        response.read()
    finally:
        conn.close()
    assert response.status == 503
    assert (k8s_cluster.get("v1/secrets", ns, "s") or {}).get("data") in ({}, None)
    kept, in_flight = k8s_cluster.call(lambda: (len(server._requests), len(server._in_flight)))
    assert kept <= 2 * REQUEST_LOG_KEPT + in_flight


def test_two_clusters_in_one_process_stop_in_any_order(tmp_path: Any) -> None:
    first = EmulatedCluster(tmp_path / "a").start()
    second = EmulatedCluster(tmp_path / "b").start()
    try:
        assert first.api_url != second.api_url
        assert first.runtime.network.pod_network != second.runtime.network.pod_network
        first.create("v1/namespaces", {"metadata": {"name": "only-in-first"}})
        assert second.get("v1/namespaces", None, "only-in-first") is None
    finally:
        first.stop()
        second.stop()
    assert not first.errors and not second.errors


def test_deleting_a_claim_and_its_pod_gives_a_fresh_volume(
    k8s_cluster: EmulatedCluster, k8s_namespace: str
) -> None:
    ns = k8s_namespace
    _ready_sts(k8s_cluster, ns, "kv", 1)
    old_claim = k8s_cluster.get("v1/persistentvolumeclaims", ns, "data-kv-0")
    assert old_claim is not None
    k8s_cluster.delete("v1/persistentvolumeclaims", ns, "data-kv-0")
    protected = k8s_cluster.get("v1/persistentvolumeclaims", ns, "data-kv-0")
    assert protected is not None and protected["metadata"]["deletionTimestamp"]  # in use
    k8s_cluster.delete(PODS, ns, "kv-0")

    def fresh_claim() -> bool:
        claim = k8s_cluster.get("v1/persistentvolumeclaims", ns, "data-kv-0") or {}
        uid = claim.get("metadata", {}).get("uid")
        return uid not in (None, old_claim["metadata"]["uid"])

    k8s_cluster.wait_for(fresh_claim, message="the StatefulSet created a new claim")
    k8s_cluster.wait_for(lambda: _status(k8s_cluster, ns, "kv").get("readyReplicas") == 1)
    starts = (k8s_cluster.pvc_path(ns, "data-kv-0") / "starts").read_text().splitlines()
    assert len(starts) == 1  # an empty volume: the old data is gone


def test_secret_volumes_follow_the_secret_without_a_restart(
    k8s_cluster: EmulatedCluster, k8s_namespace: str
) -> None:
    """As the kubelet does: a changed Secret reaches the running container's files (all keys
    at once), so a process that re-reads them (raftkv's certificates) needs no restart."""
    ns = k8s_namespace

    def data(value: str) -> dict[str, str]:
        encoded = base64.b64encode(value.encode()).decode()
        return {"a": encoded, "b": encoded}

    k8s_cluster.create(
        "v1/secrets", {"metadata": {"name": "creds", "namespace": ns}, "data": data("one")}
    )
    # Exits 0 once it has seen "one" and then "two" in both files, never a mix of the two.
    code = (
        "import pathlib, sys, time\n"
        "d = pathlib.Path(sys.argv[1]); seen = []\n"
        "end = time.time() + 30\n"
        "while time.time() < end:\n"
        "    a = (d / 'a').read_text(); b = (d / 'b').read_text()\n"
        "    if a != b and (d / 'a').read_text() == a: sys.exit(3)\n"
        "    if not seen or seen[-1] != a: seen.append(a)\n"
        "    if seen[-2:] == ['one', 'two']: sys.exit(0)\n"
        "    time.sleep(0.02)\n"
        "sys.exit(1)\n"
    )
    k8s_cluster.create(
        PODS,
        {
            "metadata": {"name": "reader", "namespace": ns},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "main",
                        "image": "python",
                        "command": [sys.executable, "-c", code, "/etc/creds"],
                        "volumeMounts": [{"name": "creds", "mountPath": "/etc/creds"}],
                    }
                ],
                "volumes": [{"name": "creds", "secret": {"secretName": "creds"}}],
            },
        },
    )

    def phase() -> str | None:
        return ((k8s_cluster.get(PODS, ns, "reader") or {}).get("status") or {}).get("phase")

    k8s_cluster.wait_for(lambda: phase() == "Running", timeout=20, message="reader running")
    k8s_cluster.patch("v1/secrets", ns, "creds", {"data": data("two")})
    assert (
        k8s_cluster.wait_for(
            lambda: phase() if phase() in ("Succeeded", "Failed") else None, timeout=30
        )
        == "Succeeded"
    ), k8s_cluster.pod_logs(ns, "reader")
    pod = k8s_cluster.get(PODS, ns, "reader")
    assert pod is not None and pod["status"]["containerStatuses"][0]["restartCount"] == 0
