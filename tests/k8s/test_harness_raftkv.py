"""A real 3-node `raftkv serve` cluster under the harness, from a StatefulSet built by hand
with the flags pinned in docs/contracts.md: the name from metadata.name, --initial-cluster,
--resolve and --listen-host = the pod IP. No harness conveniences (no injected RAFTKV_* env,
no pod shim): the contract's flags alone must be enough."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.k8s.harness import EmulatedCluster
from tests.k8s.harness.manifests import service

STS = "apps/v1/statefulsets"
PODS = "v1/pods"
ROLE = "raftkv.dev/role"


@pytest.fixture
def k8s_cluster_options() -> dict[str, Any]:
    return {"raftkv_env": False, "pod_shim": False}


def _http(method: str, url: str, body: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _status(ip: str) -> dict[str, Any] | None:
    try:
        code, body = _http("GET", f"http://{ip}:7379/v1/status")
    except OSError:
        return None
    return json.loads(body) if code == 200 else None


def raftkv_statefulset(ns: str, ips: dict[str, str]) -> dict[str, Any]:
    def host(pod: str) -> str:
        return f"{pod}.kv-peers.{ns}.svc"

    initial = ",".join(f"{pod}={host(pod)}:7380" for pod in ips)
    resolve = ",".join(f"{host(pod)}={ip}" for pod, ip in ips.items())
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "kv", "namespace": ns},
        "spec": {
            "replicas": len(ips),
            "serviceName": "kv-peers",
            "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "OnDelete"},
            "selector": {"matchLabels": {"app": "kv"}},
            "template": {
                "metadata": {"labels": {"app": "kv"}},
                "spec": {
                    "terminationGracePeriodSeconds": 10,
                    "containers": [
                        {
                            "name": "raftkv",
                            "image": "raftkv:dev",
                            "command": ["raftkv"],
                            "args": [
                                "serve",
                                "--name=$(POD_NAME)",
                                "--data-dir=/var/lib/raftkv/data",
                                "--listen-host=$(POD_IP)",
                                f"--advertise-client-url=http://$(POD_NAME).kv-peers.{ns}.svc:7379",
                                f"--advertise-peer-url=$(POD_NAME).kv-peers.{ns}.svc:7380",
                                f"--initial-cluster={initial}",
                                "--initial-cluster-state=new",
                                f"--resolve={resolve}",
                                "--tick-ms=50",
                                "--client-insecure",
                                "--peer-insecure",
                            ],
                            "env": [
                                {
                                    "name": "POD_NAME",
                                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                                },
                                {
                                    "name": "POD_IP",
                                    "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}},
                                },
                            ],
                            "ports": [
                                {"name": "client", "containerPort": 7379},
                                {"name": "peer", "containerPort": 7380},
                            ],
                            "readinessProbe": {
                                "httpGet": {"path": "/readyz", "port": "client"},
                                "periodSeconds": 5,
                                "failureThreshold": 2,
                            },
                            "livenessProbe": {
                                "httpGet": {"path": "/healthz", "port": "client"},
                                "periodSeconds": 10,
                                "failureThreshold": 6,
                            },
                            "volumeMounts": [{"name": "data", "mountPath": "/var/lib/raftkv"}],
                        }
                    ],
                },
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}},
                    },
                }
            ],
        },
    }


def _leader(ips: dict[str, str]) -> str | None:
    """The pod every member agrees is leader, if they all do."""
    statuses = [_status(ip) for ip in ips.values()]
    names = {(s.get("leader") or {}).get("name") for s in statuses if s}
    if len(names) == 1 and None not in names and all(statuses):
        return names.pop()
    return None


def test_real_raftkv_cluster_forms_and_survives_a_crash(
    k8s_cluster: EmulatedCluster, k8s_namespace: str
) -> None:
    ns = k8s_namespace
    # Pod addresses are stable per pod name, so they can be known before the pods exist.
    ips = {
        f"kv-{i}": k8s_cluster.call(k8s_cluster.runtime.network.pod_ip, ns, f"kv-{i}")
        for i in range(3)
    }
    k8s_cluster.create(
        "v1/services",
        service(
            "kv-peers",
            ns,
            {"app": "kv"},
            [("client", 7379, "client"), ("peer", 7380, "peer")],
            headless=True,
            publish_not_ready=True,
        ),
    )
    k8s_cluster.create(
        "v1/services",
        service("kv", ns, {"app": "kv", ROLE: "leader"}, [("client", 7379, "client")]),
    )
    k8s_cluster.create(STS, raftkv_statefulset(ns, ips))
    k8s_cluster.wait_for(
        lambda: (
            ((k8s_cluster.get(STS, ns, "kv") or {}).get("status") or {}).get("readyReplicas") == 3
        ),
        timeout=30,
        message="3 ready members",
    )
    assert {p["metadata"]["name"]: p["status"]["podIP"] for p in k8s_cluster.list(PODS, ns)} == ips
    leader = k8s_cluster.wait_for(lambda: _leader(ips), timeout=20, message="one leader")
    status = _status(ips[leader])
    assert status is not None and status["role"] == "leader"
    assert sorted(m["name"] for m in status["members"]) == sorted(ips)

    # The client Service routes to the pod labelled leader (what the operator maintains).
    k8s_cluster.patch(PODS, ns, leader, {"metadata": {"labels": {ROLE: "leader"}}})
    k8s_cluster.wait_for(lambda: k8s_cluster.service_endpoints(ns, "kv") == [(ips[leader], 7379)])
    code, body = _http("PUT", k8s_cluster.service_url(ns, "kv") + "/v1/kv/greeting", b"hello")
    assert code == 200 and json.loads(body)["revision"] >= 1
    follower = next(pod for pod in ips if pod != leader)
    assert _http("GET", f"http://{ips[follower]}:7379/v1/kv/greeting") == (200, b"hello")
    # A follower forwards writes to the leader's advertised URL: a cluster DNS name that
    # only --resolve maps to an address here.
    code, _ = _http("PUT", f"http://{ips[follower]}:7379/v1/kv/forwarded", b"via follower")
    assert code == 200
    assert _http("GET", f"http://{ips[leader]}:7379/v1/kv/forwarded") == (200, b"via follower")

    # kill -9 the leader: the others elect a new one, the kubelet restarts the old one, which
    # rejoins with its data.
    k8s_cluster.kill_pod_process(ns, leader)

    def new_leader() -> str | None:
        found = _leader(ips)
        return found if found not in (None, leader) else None

    k8s_cluster.wait_for(new_leader, timeout=20, message="a new leader after the crash")

    def rejoined() -> bool:
        pod = k8s_cluster.get(PODS, ns, leader) or {}
        statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
        return statuses[0].get("restartCount") == 1 and statuses[0].get("ready") is True

    k8s_cluster.wait_for(rejoined, timeout=20, message="the crashed member is back and ready")
    assert _http("GET", f"http://{ips[leader]}:7379/v1/kv/greeting?consistency=serializable") == (
        200,
        b"hello",
    )
