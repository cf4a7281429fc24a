"""The Helm chart, rendered by Helm's engine: every object valid, options wired as documented."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.unit.chart import object_schemas
from tests.unit.chart.rendering import (
    ALL_FEATURES,
    CHART_DIR,
    NAMESPACE,
    NAMESPACED,
    RELEASE_NAMESPACE_ONLY,
    REPO,
    by_kind,
    crds,
    helm,
    one,
    render,
    render_files,
)

SCENARIOS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "all-features": ALL_FEATURES,
    "namespaced": NAMESPACED,
    "release-namespace-only": RELEASE_NAMESPACE_ONLY,
    "as-a-subchart": {"global": {"imageRegistry": "registry.example.com"}},
    "helm-test-in-release-namespace": {"tests": {"raftCluster": {"name": "demo"}}},
    "external-service-account": {
        "serviceAccount": {"create": False, "name": "ops"},
        "rbac": {"create": False},
        "metrics": {"service": {"enabled": False}},
        "grafanaDashboard": {"enabled": False},
        "log": {"level": "debug", "format": "plain"},
        "extraArgs": ["--priority=10"],
    },
}


def _kubernetes_versions() -> tuple[str, ...]:
    from raftkv_operator.models import SUPPORTED_KUBERNETES_VERSIONS

    return SUPPORTED_KUBERNETES_VERSIONS


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {name: render(values) for name, values in SCENARIOS.items()}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_rendered_object_is_valid_on_every_supported_kubernetes(
    rendered: dict[str, list[dict[str, Any]]], scenario: str
) -> None:
    objects = rendered[scenario]
    assert objects, "the chart rendered nothing"
    chart_crds = crds()
    for version in _kubernetes_versions():
        for obj in objects:
            try:
                object_schemas.validate(obj, version, chart_crds)
            except Exception as error:  # name the object in the failure
                raise AssertionError(
                    f"{scenario}: {obj['kind']} {obj['metadata']['name']} invalid on "
                    f"Kubernetes {version}: {error}"
                ) from error


def test_the_chart_crds_are_valid_custom_resource_definitions() -> None:
    found = crds()
    assert {c["metadata"]["name"] for c in found} >= {
        "raftclusters.raftkv.dev",
        "raftcheckpoints.raftkv.dev",
        "clusterkopfpeerings.kopf.dev",
        "kopfpeerings.kopf.dev",
    }
    for version in _kubernetes_versions():
        for crd in found:
            object_schemas.validate(crd, version, [])


def test_the_chart_ships_exactly_the_generated_crds() -> None:
    generated = {p.name: p.read_bytes() for p in (REPO / "crds").glob("*.yaml")}
    assert generated, "no generated CRDs in crds/"
    shipped = {
        p.name: p.read_bytes()
        for p in (CHART_DIR / "crds").glob("*.yaml")
        if p.name != "kopf-peering.yaml"
    }
    assert sorted(shipped) == sorted(generated), "copy crds/*.yaml to charts/raftkv-operator/crds/"
    for name, content in generated.items():
        assert shipped[name] == content, (
            f"charts/raftkv-operator/crds/{name} differs from crds/{name}: copy it again"
        )


def test_strict_lint_finds_nothing_worse_than_info() -> None:
    for values in SCENARIOS.values():
        report = helm().lint(str(CHART_DIR), values, strict=True, namespace=NAMESPACE)
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert not problems and not report["errors"], (problems, report["errors"])


# ---- values and their schema -------------------------------------------------------------------


def _values() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    return loaded


def _schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((CHART_DIR / "values.schema.json").read_text())
    return loaded


def test_default_values_satisfy_the_schema() -> None:
    jsonschema.Draft7Validator(_schema()).validate(_values())
    for values in SCENARIOS.values():
        with helm().Chart.load(str(CHART_DIR)) as chart:
            jsonschema.Draft7Validator(_schema()).validate(chart.merge_values(values))


def test_every_object_of_the_schema_forbids_unknown_keys() -> None:
    # Kubernetes-typed passthroughs are validated after rendering (kubernetes-validate).
    passthrough = {
        "podSecurityContext", "securityContext", "resources", "affinity", "nodeSelector",
        "podAnnotations", "podLabels", "annotations", "labels", "global",
    }  # fmt: skip
    loose: list[str] = []

    def walk(node: dict[str, Any], path: str) -> None:
        for key, child in node.get("properties", {}).items():
            if child.get("type") == "object" and key not in passthrough:
                if child.get("additionalProperties") is not False:
                    loose.append(f"{path}.{key}")
                walk(child, f"{path}.{key}")

    assert _schema()["additionalProperties"] is False
    walk(_schema(), "")
    assert not loose, f"objects without additionalProperties: false: {loose}"


@pytest.mark.parametrize(
    "values",
    [
        {"replicaCont": 2},
        {"image": {"tagg": "x"}},
        {"serviceMonitor": {"enabled": True, "intervall": "10s"}},
        {"replicaCount": 0},
        {"log": {"level": "quiet"}},
        {"watch": {"namespaces": ["Not_A_Namespace"]}},
    ],
    ids=["unknown-top", "unknown-nested", "unknown-deep", "zero-replicas", "bad-enum", "bad-ns"],
)
def test_helm_rejects_values_outside_the_schema(values: dict[str, Any]) -> None:
    h = helm()
    with pytest.raises(h.HelmError):
        render_files(values)


# ---- wiring ------------------------------------------------------------------------------------


def _container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = one(objects, "Deployment")
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def _rules(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_one_replica_runs_alone_without_leader_election() -> None:
    objects = render({"replicaCount": 1})
    args = _container(objects)["args"]
    assert not any(a.startswith(("--peering", "--leader-election")) for a in args)
    assert "--all-namespaces" in args
    assert not by_kind(objects, "ClusterKopfPeering") and not by_kind(objects, "KopfPeering")
    assert not by_kind(objects, "Role")


def test_two_replicas_by_default_elect_one_through_a_lease(rendered: dict[str, Any]) -> None:
    objects = rendered["defaults"]
    assert one(objects, "Deployment")["spec"]["replicas"] == 2
    args = _container(objects)["args"]
    assert "--leader-election-lease=rk-raftkv-operator" in args
    assert f"--leader-election-namespace={NAMESPACE}" in args
    assert not any(a.startswith("--peering") for a in args)
    assert not by_kind(objects, "ClusterKopfPeering") and not by_kind(objects, "KopfPeering")
    (role,) = by_kind(objects, "Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert _rules(role) == {
        ("coordination.k8s.io", "leases", verb) for verb in ("get", "create", "update")
    }
    env = {e["name"]: e for e in _container(objects)["env"]}
    assert env["POD_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    (term,) = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"


def test_release_namespace_only_has_no_cluster_scoped_rbac(rendered: dict[str, Any]) -> None:
    objects = rendered["release-namespace-only"]
    args = _container(objects)["args"]
    assert f"--namespace={NAMESPACE}" in args and "--no-cluster-scan" in args
    assert "--all-namespaces" not in args
    assert not by_kind(objects, "ClusterRole") and not by_kind(objects, "ClusterRoleBinding")
    roles = by_kind(objects, "Role")
    assert {r["metadata"]["namespace"] for r in roles} == {NAMESPACE}
    granted = set().union(*(_rules(r) for r in roles))
    assert not {resource for _, resource, _ in granted} & {
        "namespaces",
        "customresourcedefinitions",
    }


def test_monitoring_objects_need_their_api_on_the_cluster() -> None:
    wanted = {
        "serviceMonitor": {"enabled": True},
        "podMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
    }
    kinds = {o["kind"] for o in render(wanted)}  # offline: no monitoring.coreos.com/v1
    assert not kinds & {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
    forced = {o["kind"] for o in render({**wanted, "monitoringApiCheck": False})}
    assert {"ServiceMonitor", "PodMonitor", "PrometheusRule"} <= forced


def test_the_chart_accepts_global_values_as_a_subchart(rendered: dict[str, Any]) -> None:
    assert one(rendered["as-a-subchart"], "Deployment")


def test_namespaced_mode_grants_roles_only_in_the_watched_namespaces(
    rendered: dict[str, Any],
) -> None:
    objects = rendered["namespaced"]
    args = _container(objects)["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args
    assert "--all-namespaces" not in args
    roles = [r for r in by_kind(objects, "Role") if not r["metadata"]["name"].endswith("-election")]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    bindings = [
        b
        for b in by_kind(objects, "RoleBinding")
        if not b["metadata"]["name"].endswith("-election")
    ]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for binding in bindings:
        assert binding["subjects"][0]["namespace"] == NAMESPACE
    cluster_rules = _rules(one(objects, "ClusterRole"))
    assert {resource for _, resource, _ in cluster_rules} == {
        "customresourcedefinitions",
        "namespaces",
    }, "namespaced mode must not grant cluster-wide access to namespaced resources"
    podmonitor = one(objects, "PodMonitor")
    assert podmonitor["spec"]["namespaceSelector"] == {"matchNames": ["team-a", "team-b"]}


def test_metrics_service_and_service_monitor_reach_the_operator_pods(
    rendered: dict[str, Any],
) -> None:
    objects = rendered["all-features"]
    deployment = one(objects, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = one(objects, "Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    port_names = {p["name"] for p in _container(objects)["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names
    monitor = one(objects, "ServiceMonitor")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= {
        p["name"] for p in service["spec"]["ports"]
    }
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert monitor["metadata"]["labels"]["release"] == "prom"
    probe_ports = {
        _container(objects)[probe]["httpGet"]["port"] for probe in ("livenessProbe", "startupProbe")
    }
    assert probe_ports <= port_names
    health = next(a for a in _container(objects)["args"] if a.startswith("--liveness="))
    health_port = next(p for p in _container(objects)["ports"] if p["name"] == "health")
    assert health.endswith(f":{health_port['containerPort']}/healthz")


def test_the_pod_monitor_selects_the_pods_the_operator_builds(rendered: dict[str, Any]) -> None:
    from raftkv_operator import desired
    from raftkv_operator.models import RaftCluster

    example = yaml.safe_load((REPO / "examples" / "minimal.yaml").read_text())
    example["metadata"]["namespace"] = "apps"
    cluster = RaftCluster.model_validate(example)
    template = desired.pod_template(cluster)
    monitor = one(rendered["all-features"], "PodMonitor")
    wanted = monitor["spec"]["selector"]["matchLabels"]
    assert wanted.items() <= template["metadata"]["labels"].items()
    # Only member pods: not the operator's own pods, not archive Jobs' pods.
    assert wanted.get("app.kubernetes.io/component") == desired.COMPONENT_NODE
    ports = {p["name"] for c in template["spec"]["containers"] for p in c.get("ports", [])}
    for endpoint in monitor["spec"]["podMetricsEndpoints"]:
        assert endpoint["port"] in ports
        assert endpoint["path"] == "/metrics"
        relabel = endpoint["relabelings"][0]
        assert relabel["targetLabel"] == "cluster"
        label = desired.LABEL_INSTANCE.replace(".", "_").replace("/", "_")
        assert relabel["sourceLabels"] == [f"__meta_kubernetes_pod_label_{label}"]
        assert template["metadata"]["labels"][desired.LABEL_INSTANCE] == cluster.name


def test_security_defaults_are_restrictive(rendered: dict[str, Any]) -> None:
    objects = rendered["defaults"]
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = _container(objects)
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["limits"]["memory"]


def test_the_prometheus_rule_is_the_rule_file(rendered: dict[str, Any]) -> None:
    rule = one(rendered["all-features"], "PrometheusRule")
    rule_file = yaml.safe_load((CHART_DIR / "files" / "prometheus-rules.yaml").read_text())
    assert rule["spec"] == rule_file
    assert not by_kind(rendered["defaults"], "PrometheusRule")


def test_the_dashboard_config_map_carries_the_dashboard_for_the_sidecar(
    rendered: dict[str, Any],
) -> None:
    config_map = next(
        c
        for c in by_kind(rendered["all-features"], "ConfigMap")
        if c["metadata"]["name"].endswith("-dashboard")
    )
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "raftkv"}
    ((name, text),) = config_map["data"].items()
    assert name.endswith(".json")
    shipped = json.loads((CHART_DIR / "files" / "grafana-dashboard.json").read_text())
    assert json.loads(text) == shipped
    assert not [c for c in by_kind(rendered["external-service-account"], "ConfigMap")], (
        "grafanaDashboard.enabled=false must not render the ConfigMap"
    )


def test_helm_test_pod_checks_metrics_and_the_named_cluster(rendered: dict[str, Any]) -> None:
    pods = [
        p for p in by_kind(rendered["all-features"], "Pod")
        if p["metadata"]["annotations"].get("helm.sh/hook") == "test"
    ]  # fmt: skip
    assert len(pods) == 1
    container = pods[0]["spec"]["containers"][0]
    script = container["args"][0]
    compile(script, "helm-test", "exec")  # the script is valid Python
    assert f"rk-raftkv-operator-metrics.{NAMESPACE}.svc:9090/metrics" in script
    # A cluster in another namespace: its admin Secret cannot be mounted, so only TLS is
    # checked, and nothing is mounted.
    assert "https://demo.apps.svc:7379" in script and "with_admin = False" in script
    assert "volumes" not in pods[0]["spec"]
    default_pod = next(p for p in by_kind(rendered["defaults"], "Pod"))
    assert 'base = ""' in default_pod["spec"]["containers"][0]["args"][0]
    # In the release namespace: the status call with the cluster's admin Secret.
    pod = one(rendered["helm-test-in-release-namespace"], "Pod")
    script = pod["spec"]["containers"][0]["args"][0]
    compile(script, "helm-test", "exec")
    assert f"https://demo.{NAMESPACE}.svc:7379" in script and "with_admin = True" in script
    assert pod["spec"]["volumes"] == [{"name": "admin", "secret": {"secretName": "demo-admin"}}]
    assert pod["spec"]["containers"][0]["volumeMounts"][0]["mountPath"] == "/etc/raftkv/admin"


def test_notes_tell_how_to_reach_the_operator() -> None:
    notes = render_files(ALL_FEATURES)["raftkv-operator/templates/NOTES.txt"]
    assert f"installed in namespace {NAMESPACE}" in notes
    assert 'one active through Lease "rk-raftkv-operator"' in notes
    assert "helm test rk" in notes
    assert "PodMonitor rk-raftkv-operator-nodes" in notes


def test_image_tag_defaults_to_the_app_version(rendered: dict[str, Any]) -> None:
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    image = _container(rendered["defaults"])["image"]
    assert image == f"{_values()['image']['repository']}:{chart['appVersion']}"
    tagged = render({"image": {"tag": "v9"}})
    assert _container(tagged)["image"].endswith(":v9")


def test_readme_documents_every_value() -> None:
    from tests.unit.chart.values_table import table

    readme = (CHART_DIR / "README.md").read_text()
    expected = table(Path(CHART_DIR / "values.yaml"))
    assert expected in readme, (
        "charts/raftkv-operator/README.md's values table is stale: regenerate it with "
        "`python -m tests.unit.chart.values_table`"
    )


def test_values_table_lists_every_leaf(rendered: dict[str, Any]) -> None:
    from tests.unit.chart.values_table import documented_keys

    keys = {key for key, _, _ in documented_keys(CHART_DIR / "values.yaml")}

    def leaves(node: Any, prefix: str) -> set[str]:
        if isinstance(node, dict) and node and prefix not in keys:
            return set().union(
                *(leaves(v, f"{prefix}.{k}" if prefix else k) for k, v in node.items())
            )
        return {prefix}

    assert leaves(copy.deepcopy(_values()), "") == keys


def test_the_operator_accepts_the_command_line_the_chart_gives_it(rendered: dict[str, Any]) -> None:
    import importlib
    import importlib.util

    if importlib.util.find_spec("raftkv_operator.__main__") is None:
        pytest.skip("raftkv_operator/__main__.py has not landed: no command line to check")
    parse_args = importlib.import_module("raftkv_operator.__main__").parse_args
    for scenario, objects in rendered.items():
        args = _container(objects)["args"]
        try:
            parsed = parse_args(args)
        except SystemExit as error:
            raise AssertionError(f"{scenario}: the operator rejects {args}") from error
        assert parsed.metrics_port == 9090
        assert parsed.peering is None
        several = one(objects, "Deployment")["spec"]["replicas"] > 1
        assert bool(parsed.leader_election_lease) == several, scenario
