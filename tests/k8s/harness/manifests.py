"""Small manifest builders for harness self-tests and scenario tests."""

from __future__ import annotations

import sys
from typing import Any

from tests.k8s.harness.runtime import HARNESS_DIR

Obj = dict[str, Any]
STANDIN = HARNESS_DIR / "standin.py"


def namespace(name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def standin_container(
    port: int = 8080,
    *,
    data_mount: str | None = "/data",
    extra_args: list[str] | None = None,
    probe_period: int = 1,
) -> Obj:
    """A container running standin.py (serves /healthz, /readyz, /whoami on `port`)."""
    args = [
        "--port",
        str(port),
        *(["--data-dir", data_mount] if data_mount else []),
        *(extra_args or []),
    ]
    container: Obj = {
        "name": "main",
        "image": "standin:dev",
        "command": [sys.executable, str(STANDIN)],
        "args": args,
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "http"},
            "periodSeconds": probe_period,
            "failureThreshold": 1,
        },
    }
    if data_mount:
        container["volumeMounts"] = [{"name": "data", "mountPath": data_mount}]
    return container


def standin_statefulset(
    name: str,
    ns: str,
    replicas: int = 3,
    *,
    port: int = 8080,
    policy: str = "Parallel",
    update: str = "OnDelete",
    grace: int = 5,
    extra_args: list[str] | None = None,
    retention: dict[str, str] | None = None,
) -> Obj:
    """A StatefulSet of stand-in servers with a `data` claim per pod mounted at /data."""
    spec: Obj = {
        "replicas": replicas,
        "serviceName": f"{name}-peers",
        "podManagementPolicy": policy,
        "updateStrategy": {"type": update},
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {
                "terminationGracePeriodSeconds": grace,
                "containers": [standin_container(port, extra_args=extra_args)],
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
    }
    if retention:
        spec["persistentVolumeClaimRetentionPolicy"] = retention
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


def service(
    name: str,
    ns: str,
    selector: dict[str, str],
    ports: list[tuple[str, int, Any]],
    *,
    headless: bool = False,
    publish_not_ready: bool = False,
) -> Obj:
    """ports: (name, port, targetPort)."""
    spec: Obj = {
        "selector": selector,
        "ports": [{"name": n, "port": p, "targetPort": t} for n, p, t in ports],
    }
    if headless:
        spec["clusterIP"] = "None"
    if publish_not_ready:
        spec["publishNotReadyAddresses"] = True
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }
