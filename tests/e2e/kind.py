"""The kind end-to-end harness: a real Kubernetes (kind), the chart installed with Helm, and
raftkv reached through the API server's proxy (no port mappings or port-forwards needed).

Runs only under `make e2e-kind` (it sets RAFTKV_E2E_KIND=1 after building the images and
loading them into kind); elsewhere every test skips and says what is missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "raftkv-operator"
EXAMPLES = REPO / "examples"
GROUP, VERSION = "raftkv.dev", "v1alpha1"
OPERATOR_NAMESPACE = "raftkv-system"
RELEASE = "raftkv-e2e"
CLIENT_PORT = 7379
ROLE_LABEL = "raftkv.dev/role"


def missing_requirements() -> str | None:
    """Why the kind suite cannot run here, or None."""
    if os.environ.get("RAFTKV_E2E_KIND") != "1":
        return "kind e2e runs under `make e2e-kind` (RAFTKV_E2E_KIND=1 not set)"
    missing = [tool for tool in ("docker", "kind", "kubectl", "helm") if shutil.which(tool) is None]
    if missing:
        return f"missing tools: {', '.join(missing)}"
    if subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode != 0:
        return "docker has no working engine (docker info failed)"
    return None


def wait_for(what: str, check: Callable[[], Any], timeout: float, interval: float = 1.0) -> Any:
    """Poll `check` until it returns something truthy, or fail naming `what`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = check()
            if last:
                return last
        except Exception as error:  # the API or a node may be briefly unavailable
            last = error
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})"
            )
        time.sleep(interval)


def run(*command: str, timeout: float = 600) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


@dataclass
class Kube:
    """Typed access to the kind cluster through the kubernetes client."""

    core: Any
    apps: Any
    custom: Any
    session: Any  # requests.Session carrying the kubeconfig's credentials
    host: str
    policy: Any = None
    coordination: Any = None

    @classmethod
    def connect(cls, cluster: str) -> Kube:
        import requests
        from kubernetes import client, config

        configuration = client.Configuration()
        config.load_kube_config(context=f"kind-{cluster}", client_configuration=configuration)
        api = client.ApiClient(configuration)
        session = requests.Session()
        session.verify = configuration.ssl_ca_cert or True
        if configuration.cert_file and configuration.key_file:
            session.cert = (configuration.cert_file, configuration.key_file)
        token = configuration.api_key.get("authorization") if configuration.api_key else None
        if token:
            session.headers["Authorization"] = token
        return cls(
            core=client.CoreV1Api(api),
            apps=client.AppsV1Api(api),
            custom=client.CustomObjectsApi(api),
            session=session,
            host=configuration.host,
            policy=client.PolicyV1Api(api),
            coordination=client.CoordinationV1Api(api),
        )

    # ---- raftkv through the API server proxy ----------------------------------------------

    def proxy(
        self, namespace: str, target: str, method: str, path: str, body: bytes | None = None
    ) -> tuple[int, bytes]:
        """HTTP to `services/<name>:7379` or `pods/<name>:7379` through the API server."""
        url = f"{self.host}/api/v1/namespaces/{namespace}/{target}:{CLIENT_PORT}/proxy{path}"
        response = self.session.request(method, url, data=body, timeout=15)
        return response.status_code, response.content

    def node_status(self, namespace: str, pod: str) -> dict[str, Any]:
        code, body = self.proxy(namespace, f"pods/{pod}", "GET", "/v1/status")
        if code != 200:
            raise RuntimeError(f"{pod} /v1/status: {code} {body[:200]!r}")
        status: dict[str, Any] = json.loads(body)
        return status

    def put(self, namespace: str, cluster: str, key: str, value: bytes) -> int:
        code, _ = self.proxy(namespace, f"services/{cluster}", "PUT", f"/v1/kv/{key}", value)
        return code

    def get(self, namespace: str, cluster: str, key: str) -> tuple[int, bytes]:
        return self.proxy(namespace, f"services/{cluster}", "GET", f"/v1/kv/{key}")

    # ---- objects -----------------------------------------------------------------------------

    def apply_example(self, namespace: str, example: str, **spec_overrides: Any) -> dict[str, Any]:
        import yaml

        obj: dict[str, Any] = yaml.safe_load((EXAMPLES / example).read_text())
        obj["metadata"]["namespace"] = namespace
        obj["spec"].update(spec_overrides)
        plural = "raftclusters" if obj["kind"] == "RaftCluster" else "raftcheckpoints"
        created: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, obj
        )
        return created

    def create(self, namespace: str, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        created: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, obj
        )
        return created

    def cluster(self, namespace: str, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, "raftclusters", name
        )
        return found

    def patch_cluster(self, namespace: str, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "raftclusters", name, {"spec": spec}
        )

    def pods(self, namespace: str, cluster: str) -> list[Any]:
        selector = f"app.kubernetes.io/instance={cluster},app.kubernetes.io/component=node"
        return list(self.core.list_namespaced_pod(namespace, label_selector=selector).items)

    def leader_pod(self, namespace: str, cluster: str) -> str | None:
        pods = self.core.list_namespaced_pod(
            namespace, label_selector=f"app.kubernetes.io/instance={cluster},{ROLE_LABEL}=leader"
        ).items
        return pods[0].metadata.name if len(pods) == 1 else None

    def service_endpoint_pods(self, namespace: str, service: str) -> set[str]:
        endpoints = self.core.read_namespaced_endpoints(service, namespace)
        return {
            address.target_ref.name
            for subset in endpoints.subsets or []
            for address in subset.addresses or []
            if address.target_ref is not None
        }

    def available(self, namespace: str, name: str, replicas: int) -> bool:
        """The RaftCluster says Available with `replicas` healthy voters and a leader."""
        status = self.cluster(namespace, name).get("status") or {}
        conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
        voters = [  # MemberRole: voters are the Leader and the Followers
            m
            for m in status.get("members", [])
            if m.get("role") in ("Leader", "Follower") and m.get("healthy")
        ]
        return (
            conditions.get("Available") == "True"
            and len(voters) == replicas
            and bool(status.get("leader"))
        )


@contextlib.contextmanager
def namespace(kube: Kube, name: str) -> Any:
    from kubernetes import client

    kube.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        kube.core.delete_namespace(name)
