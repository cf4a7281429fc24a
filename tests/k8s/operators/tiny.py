"""A tiny kopf operator for the harness self-test: it exercises what the real operator
relies on (finalizers, JSON patches with a resourceVersion test, the status subresource,
adoption and garbage collection, events, label-selected lists, pods' status.podIP)."""

from __future__ import annotations

from typing import Any

import kopf
import kubernetes.client
import kubernetes.config

GROUP, VERSION, PLURAL = "raftkv.dev", "v1alpha1", "raftclusters"


def _core() -> kubernetes.client.CoreV1Api:
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(client_configuration=configuration)
    return kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(configuration))


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.watching.server_timeout = 30


@kopf.on.create(GROUP, VERSION, PLURAL)
def created(
    body: kopf.Body,
    spec: kopf.Spec,
    name: str,
    namespace: str | None,
    patch: kopf.Patch,
    **_: Any,
) -> dict[str, str]:
    assert namespace is not None
    config_name = f"{name}-config"
    config: Any = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": config_name, "labels": {"tiny/owner": name}},
        "data": {"replicas": str(spec.get("replicas", 1))},
    }
    kopf.adopt(config)
    _core().create_namespaced_config_map(namespace, config)
    patch.status["phase"] = "Created"
    kopf.info(body, reason="ConfigCreated", message=f"config map {config_name} created")
    return {"config": config_name}


@kopf.on.update(GROUP, VERSION, PLURAL, field="spec.replicas")
def scaled(new: Any, name: str, namespace: str | None, patch: kopf.Patch, **_: Any) -> None:
    assert namespace is not None
    core = _core()
    owned = core.list_namespaced_config_map(namespace, label_selector=f"tiny/owner={name}")
    change: Any = {"data": {"replicas": str(new)}}
    for config in owned.items:
        assert config.metadata is not None and config.metadata.name is not None
        core.patch_namespaced_config_map(config.metadata.name, namespace, change)
    patch.status["phase"] = f"Scaled to {new}"


@kopf.on.delete(GROUP, VERSION, PLURAL)
def deleted(**_: Any) -> None:
    pass
