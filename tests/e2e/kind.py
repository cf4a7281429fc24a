"""The kind end-to-end harness: a real Kubernetes (kind), the chart installed with Helm, and
raftkv reached as a user in the cluster reaches it: a client pod running the `raftkv` CLI
over TLS with the CA and token of the cluster's `<name>-admin` Secret (clusters are secured
by default; the API server's proxy would neither speak the node's TLS as a client nor pass
the node's bearer token on).

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
import uuid
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
ADMIN_MOUNT = "/etc/raftkv/admin"
CLIENT_POD_SECONDS = 300.0


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
    policy: Any = None
    coordination: Any = None
    client_image: str = ""
    """The node image: its `raftkv` CLI is the client (set by the conftest)."""

    @classmethod
    def connect(cls, cluster: str) -> Kube:
        from kubernetes import client, config

        configuration = client.Configuration()
        config.load_kube_config(context=f"kind-{cluster}", client_configuration=configuration)
        api = client.ApiClient(configuration)
        return cls(
            core=client.CoreV1Api(api),
            apps=client.AppsV1Api(api),
            custom=client.CustomObjectsApi(api),
            policy=client.PolicyV1Api(api),
            coordination=client.CoordinationV1Api(api),
        )

    # ---- raftkv through a client pod and the admin Secret ----------------------------------

    def raftkv(
        self,
        namespace: str,
        cluster: str,
        args: list[str],
        *,
        endpoint: str | None = None,
        token: bool = True,
    ) -> tuple[str, str]:
        """Run `raftkv <args>` once in a pod of `namespace` against `endpoint` (default the
        `<cluster>` Service) with the CA and, if `token`, the admin token of Secret
        `<cluster>-admin`; return the pod's final phase and its log."""
        from kubernetes import client

        name = f"client-{uuid.uuid4().hex[:6]}"
        auth = ["--token-file", f"{ADMIN_MOUNT}/token"] if token else []
        target = endpoint or f"https://{cluster}:{CLIENT_PORT}"
        pod = client.V1Pod(
            metadata=client.V1ObjectMeta(name=name, labels={"app": "raftkv-e2e-client"}),
            spec=client.V1PodSpec(
                restart_policy="Never",
                automount_service_account_token=False,
                containers=[
                    client.V1Container(
                        name="client",
                        image=self.client_image,
                        image_pull_policy="Never",
                        command=[
                            "raftkv",
                            *args,
                            "--endpoints",
                            target,
                            "--cacert",
                            f"{ADMIN_MOUNT}/ca.crt",
                            *auth,
                        ],
                        volume_mounts=[
                            client.V1VolumeMount(
                                name="admin", mount_path=ADMIN_MOUNT, read_only=True
                            )
                        ],
                    )
                ],
                volumes=[
                    client.V1Volume(
                        name="admin",
                        secret=client.V1SecretVolumeSource(secret_name=f"{cluster}-admin"),
                    )
                ],
            ),
        )
        self.core.create_namespaced_pod(namespace, pod)
        try:

            def finished() -> str | None:
                phase = self.core.read_namespaced_pod(name, namespace).status.phase
                return str(phase) if phase in ("Succeeded", "Failed") else None

            phase = wait_for(f"client pod {name} to finish", finished, CLIENT_POD_SECONDS)
            return phase, str(self.core.read_namespaced_pod_log(name, namespace))
        finally:
            with contextlib.suppress(Exception):
                self.core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)

    def node_status(self, namespace: str, pod: str) -> dict[str, Any]:
        """One member's `/v1/status`, by its stable name under the `<cluster>-peers`
        Service (which the client certificate names)."""
        cluster = pod.rsplit("-", 1)[0]
        endpoint = f"https://{pod}.{cluster}-peers.{namespace}.svc:{CLIENT_PORT}"
        # `raftkv status` exits 3 while the member knows no leader; its JSON still says why.
        _, log = self.raftkv(namespace, cluster, ["status", "-o", "json"], endpoint=endpoint)
        try:
            report = json.loads(log.strip().splitlines()[-1])
            status: dict[str, Any] = report["endpoints"][0]
        except (ValueError, IndexError, KeyError):
            raise RuntimeError(f"{pod} status: {log[-300:]!r}") from None
        if "role" not in status:
            raise RuntimeError(f"{pod} status: {status!r}")
        return status

    def put(self, namespace: str, cluster: str, key: str, value: bytes) -> int:
        """200 once the write is acknowledged, 0 otherwise (the client pod failed)."""
        phase, _ = self.raftkv(namespace, cluster, ["put", key, value.decode()])
        return 200 if phase == "Succeeded" else 0

    def get(self, namespace: str, cluster: str, key: str) -> tuple[int, bytes]:
        """(200, value) as read linearizably through the `<cluster>` Service, else (0, log)."""
        phase, log = self.raftkv(namespace, cluster, ["get", key, "--raw"])
        return (200, log.encode()) if phase == "Succeeded" else (0, log.encode())

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
