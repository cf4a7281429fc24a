"""The generated CRDs: in sync with the models, valid, structural, and strict at admission."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pydantic
import pytest
import re2

from raftkv_operator import crdgen
from raftkv_operator.models import (
    SUPPORTED_KUBERNETES_VERSIONS,
    RaftCheckpoint,
    RaftCluster,
)

from .admission import Admission, Rejected, apply_defaults, cel_rules, unknown_fields
from .conftest import CRDS_DIR, EXAMPLES_DIR, load_example

Mutation = Callable[[dict[str, Any]], None]


def _walk(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, child in schema.get("properties", {}).items():
        yield from _walk(child, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from _walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _walk(schema["additionalProperties"], f"{path}{{}}")


def _schema(crd: dict[str, Any]) -> dict[str, Any]:
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


# ---- generation ------------------------------------------------------------------------------


def test_committed_crds_match_the_models() -> None:
    generated = crdgen.generate()
    assert sorted(generated) == sorted(p.name for p in CRDS_DIR.glob("*.yaml"))
    for name, content in generated.items():
        committed = (CRDS_DIR / name).read_text()
        assert committed == content, f"crds/{name} is stale: run `make crds`"


def test_crdgen_writes_files_and_check_mode_detects_drift(tmp_path: Path) -> None:
    assert crdgen.main([str(tmp_path)]) == 0
    assert crdgen.main([str(tmp_path), "--check"]) == 0
    target = tmp_path / "raftkv.dev_raftclusters.yaml"
    target.write_text(target.read_text().replace("maximum: 9", "maximum: 11"))
    assert crdgen.main([str(tmp_path), "--check"]) == 1
    assert "maximum: 11" in target.read_text(), "--check must not rewrite files"
    assert crdgen.main([str(tmp_path)]) == 0
    assert crdgen.main([str(tmp_path), "--check"]) == 0


def test_generation_is_deterministic() -> None:
    assert crdgen.generate() == crdgen.generate()


# ---- validity --------------------------------------------------------------------------------


@pytest.mark.parametrize("version", SUPPORTED_KUBERNETES_VERSIONS)
@pytest.mark.parametrize("model", [RaftCluster, RaftCheckpoint], ids=lambda m: m.__name__)
def test_crd_is_a_valid_apiextensions_v1_object(model: Any, version: str) -> None:
    kubernetes_validate.validate(crdgen.crd(model), version, strict=True)


def test_schemas_are_structural(
    cluster_crd: dict[str, Any], checkpoint_crd: dict[str, Any]
) -> None:
    for crd in (cluster_crd, checkpoint_crd):
        assert crdgen.structural_errors(_schema(crd)) == []


@pytest.mark.parametrize(
    ("schema", "fragment"),
    [
        ({"type": "object", "properties": {"a": {}}}, "needs a type"),
        ({"type": "object", "additionalProperties": False}, "additionalProperties: false"),
        (
            {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": {}},
            "mutually exclusive",
        ),
        ({"type": "string", "anyOf": [{"type": "string"}, {"type": "null"}]}, "int-or-string"),
        ({"type": "object", "required": ["x"], "properties": {}}, "not a property"),
        ({"$ref": "#/x"}, "$ref"),
        (
            {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
                "items": {"type": "object", "properties": {"name": {"type": "string"}}},
            },
            "must be required or defaulted",
        ),
    ],
)
def test_structural_checker_catches_violations(schema: dict[str, Any], fragment: str) -> None:
    errors = crdgen.structural_errors(schema)
    assert any(fragment in e for e in errors), errors


def test_generator_refuses_unions() -> None:
    class Union(pydantic.BaseModel):
        value: int | str

    with pytest.raises(ValueError, match="unions are not structural"):
        crdgen.model_schema(Union)


def test_patterns_compile_with_re2(
    cluster_crd: dict[str, Any], checkpoint_crd: dict[str, Any]
) -> None:
    # The API server compiles patterns with Go's RE2: no look-arounds or back-references.
    patterns = [
        (path, node["pattern"])
        for crd in (cluster_crd, checkpoint_crd)
        for path, node in _walk(_schema(crd))
        if "pattern" in node
    ]
    assert len(patterns) > 10
    for path, pattern in patterns:
        try:
            re2.compile(pattern)
        except Exception as error:  # noqa: PERF203 - report which one
            pytest.fail(f"{path}: pattern does not compile with RE2: {error}")


def test_defaults_are_valid_and_pruned(
    cluster_crd: dict[str, Any], checkpoint_crd: dict[str, Any]
) -> None:
    # The API server refuses a CRD whose defaults fail validation or would be pruned.
    checked = 0
    for crd in (cluster_crd, checkpoint_crd):
        for path, node in _walk(_schema(crd)):
            if "default" not in node:
                continue
            checked += 1
            jsonschema.validate(node["default"], node)
            assert unknown_fields(node, node["default"]) == [], path
    assert checked > 10


def test_status_has_no_defaults(
    cluster_crd: dict[str, Any], checkpoint_crd: dict[str, Any]
) -> None:
    for crd in (cluster_crd, checkpoint_crd):
        status = _schema(crd)["properties"]["status"]
        assert [p for p, node in _walk(status) if "default" in node] == []


def test_every_cel_rule_compiles(
    cluster_crd: dict[str, Any], checkpoint_crd: dict[str, Any]
) -> None:
    rules = cel_rules(_schema(cluster_crd)) + cel_rules(_schema(checkpoint_crd))
    where = {r.path for r in rules}
    assert {
        ".spec.replicas",
        ".spec.storage",
        ".spec.raft",
        ".spec.checkpoints.archive",
        ".spec.restore",
        ".spec.service.ports",
        ".spec.podLabels",
        ".spec",
    } <= where


# ---- names, columns, subresources -----------------------------------------------------------

# Short names of built-in kinds (kubectl api-resources); ours must not shadow them.
BUILTIN_SHORT_NAMES = {
    "cs", "cm", "ep", "ev", "limits", "ns", "no", "pvc", "pv", "po", "rc", "quota", "sa",
    "svc", "crd", "crds", "ds", "deploy", "rs", "sts", "hpa", "cj", "csr", "ing", "netpol",
    "pdb", "pc", "sc", "ingclass", "psp", "vac",
}  # fmt: skip


def _schema_at(schema: dict[str, Any], json_path: str) -> dict[str, Any] | None:
    node: dict[str, Any] | None = schema
    for part in json_path.strip(".").split("."):
        node = (node or {}).get("properties", {}).get(part)
    return node


@pytest.mark.parametrize("model", [RaftCluster, RaftCheckpoint], ids=lambda m: m.__name__)
def test_names_and_printer_columns(model: Any) -> None:
    crd = crdgen.crd(model)
    names = crd["spec"]["names"]
    assert not set(names["shortNames"]) & BUILTIN_SHORT_NAMES
    schema = _schema(crd)
    for column in crd["spec"]["versions"][0]["additionalPrinterColumns"]:
        if column["jsonPath"].startswith(".metadata."):
            continue
        node = _schema_at(schema, column["jsonPath"])
        assert node is not None, f"printer column {column['name']} points nowhere"
        assert node.get("type") == column["type"], column


def test_scale_subresource_points_at_real_fields(cluster_crd: dict[str, Any]) -> None:
    version = cluster_crd["spec"]["versions"][0]
    scale = version["subresources"]["scale"]
    schema = _schema(cluster_crd)
    assert _schema_at(schema, scale["specReplicasPath"])["type"] == "integer"  # type: ignore[index]
    assert _schema_at(schema, scale["statusReplicasPath"])["type"] == "integer"  # type: ignore[index]
    assert _schema_at(schema, scale["labelSelectorPath"])["type"] == "string"  # type: ignore[index]
    assert {c["name"] for c in version["additionalPrinterColumns"]} >= {
        "Ready", "Leader", "Phase", "Age",
    }  # fmt: skip


# ---- admission of examples and bad specs --------------------------------------------------------


def _paths(value: Any, prefix: str = "") -> set[str]:
    if isinstance(value, dict):
        return {prefix} | {p for k, v in value.items() for p in _paths(v, f"{prefix}.{k}")}
    return {prefix}


def _assert_same_defaults(model: Any, body: dict[str, Any], stored: dict[str, Any]) -> None:
    """What the API server stores (schema defaults) is what the operator assumes (pydantic)."""
    parsed_body = model.model_validate(body).spec.to_k8s()
    parsed_stored = model.model_validate(stored).spec.to_k8s()
    # Same fields filled in, and the same values once quantities are normalised (2 -> "2").
    assert _paths(stored["spec"]) == _paths(parsed_body)
    assert parsed_stored == parsed_body


def _admission_for(kind: str, cluster: Admission, checkpoint: Admission) -> Admission:
    return {"RaftCluster": cluster, "RaftCheckpoint": checkpoint}[kind]


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES_DIR.glob("*.yaml")))
def test_example_is_admitted_and_server_defaults_match_pydantic_defaults(
    name: str, cluster_admission: Admission, checkpoint_admission: Admission
) -> None:
    body = load_example(name)
    stored = _admission_for(body["kind"], cluster_admission, checkpoint_admission).admit(body)
    model = {"RaftCluster": RaftCluster, "RaftCheckpoint": RaftCheckpoint}[body["kind"]]
    _assert_same_defaults(model, body, stored)


def test_examples_cover_the_documented_cases() -> None:
    assert {p.name for p in EXAMPLES_DIR.glob("*.yaml")} >= {
        "minimal.yaml", "production.yaml", "restore.yaml", "checkpoint.yaml",
    }  # fmt: skip
    assert load_example("minimal.yaml")["spec"]["replicas"] == 3
    production = load_example("production.yaml")["spec"]
    assert production["replicas"] == 5
    assert production["placement"]["affinity"]["podAntiAffinity"]
    assert production["placement"]["topologySpreadConstraints"]
    assert production["checkpoints"]["schedule"] and production["checkpoints"]["archive"]


def _set(path: str, value: Any) -> Mutation:
    def mutate(body: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node = body
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value

    return mutate


def _delete(path: str) -> Mutation:
    def mutate(body: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node = body
        for part in parents:
            node = node[part]
        del node[leaf]

    return mutate


_BUCKET: dict[str, Any] = {
    "endpoint": "https://s3.example.com",
    "bucket": "raftkv-backups",
    "credentialsSecret": "s3-credentials",
}

BAD_CLUSTERS: list[tuple[str, Mutation, str]] = [
    ("an unknown consensus engine", _set("spec.consensus", "paxos"), "consensus"),
    (
        "tls disabled with auth on",
        _set("spec.tls", {"mode": "disabled"}),
        "auth.enabled must be false exactly when tls.mode is disabled",
    ),
    (
        "auth off with tls on",
        _set("spec.auth", {"enabled": False}),
        "auth.enabled must be false exactly when tls.mode is disabled",
    ),
    (
        "cert-manager without issuer",
        _set("spec.tls", {"mode": "certManager"}),
        "tls.mode certManager needs tls.issuerRef",
    ),
    (
        "issuer without cert-manager",
        _set("spec.tls", {"issuerRef": {"name": "ca"}}),
        "tls.issuerRef is used only with tls.mode certManager",
    ),
    ("unknown tls mode", _set("spec.tls", {"mode": "off"}), "is not one of"),
    ("even replicas", _set("spec.replicas", 4), "replicas must be odd"),
    ("zero replicas", _set("spec.replicas", 0), "minimum"),
    ("eleven replicas", _set("spec.replicas", 11), "maximum"),
    ("negative replicas", _set("spec.replicas", -1), "minimum"),
    ("negative storage", _set("spec.storage.size", "-1Gi"), "does not match"),
    ("negative int storage", _set("spec.storage.size", -5), "minimum"),
    ("zero storage", _set("spec.storage.size", "0Gi"), "does not match"),
    ("zero int storage", _set("spec.storage.size", 0), "minimum"),
    ("milli-byte storage", _set("spec.storage.size", "100m"), "does not match"),
    ("bad storage unit", _set("spec.storage.size", "10GB"), "does not match"),
    ("negative cpu", _set("spec.resources", {"requests": {"cpu": "-1"}}), "does not match"),
    ("cron prose", _set("spec.checkpoints.schedule", "every hour"), "does not match"),
    ("cron 4 fields", _set("spec.checkpoints.schedule", "* * * *"), "does not match"),
    ("cron 6 fields", _set("spec.checkpoints.schedule", "0 * * * * *"), "does not match"),
    ("cron minute 60", _set("spec.checkpoints.schedule", "60 * * * *"), "does not match"),
    ("cron hour 24", _set("spec.checkpoints.schedule", "0 24 * * *"), "does not match"),
    ("cron day 32", _set("spec.checkpoints.schedule", "0 0 32 * *"), "does not match"),
    ("cron month 13", _set("spec.checkpoints.schedule", "0 0 * 13 *"), "does not match"),
    ("cron weekday 8", _set("spec.checkpoints.schedule", "0 0 * * 8"), "does not match"),
    ("cron step 0", _set("spec.checkpoints.schedule", "*/0 * * * *"), "does not match"),
    ("cron bad macro", _set("spec.checkpoints.schedule", "@often"), "does not match"),
    ("unknown spec field", _set("spec.replica", 3), 'unknown field "replica"'),
    ("unknown nested field", _set("spec.storage.sizee", "1Gi"), 'unknown field "sizee"'),
    (
        "typo in affinity",
        _set("spec.placement.affinity", {"podAntiAffinity": {"requiredDuringScheduling": []}}),
        'unknown field "requiredDuringScheduling"',
    ),
    (
        "unknown toleration field",
        _set("spec.placement.tolerations", [{"key": "a", "operator": "Exists", "efect": "x"}]),
        'unknown field "efect"',
    ),
    (
        "bad toleration operator",
        _set("spec.placement.tolerations", [{"key": "a", "operator": "Matches"}]),
        "is not one of",
    ),
    (
        "spread without topologyKey",
        _set(
            "spec.placement.topologySpreadConstraints",
            [{"maxSkew": 1, "whenUnsatisfiable": "DoNotSchedule"}],
        ),
        "'topologyKey' is a required property",
    ),  # fmt: skip
    ("bad pull policy", _set("spec.imagePullPolicy", "Sometimes"), "is not one of"),
    ("image with space", _set("spec.image", "raftkv latest"), "does not match"),
    ("bad version", _set("spec.version", "-rc1"), "does not match"),
    (
        "heartbeat not below election",
        _set("spec.raft", {"electionTicks": 5, "heartbeatTicks": 5}),
        "heartbeatTicks must be smaller",
    ),
    ("tick too short", _set("spec.raft", {"tickMs": 1}), "minimum"),
    ("zero retain", _set("spec.checkpoints.retain", 0), "minimum"),
    (
        "archive with both targets",
        _set(
            "spec.checkpoints.archive", {"claimName": "x", "volumeClaimTemplate": {"size": "1Gi"}}
        ),
        "exactly one of claimName, volumeClaimTemplate or bucket",
    ),  # fmt: skip
    (
        "archive with no target",
        _set("spec.checkpoints.archive", {}),
        "exactly one of claimName, volumeClaimTemplate or bucket",
    ),
    (
        "archive to a claim and a bucket",
        _set("spec.checkpoints.archive", {"claimName": "x", "bucket": _BUCKET}),
        "exactly one of claimName, volumeClaimTemplate or bucket",
    ),
    (
        "bucket over plain http",
        _set("spec.checkpoints.archive", {"bucket": {**_BUCKET, "endpoint": "http://minio:9000"}}),
        "plain http",
    ),
    (
        "bucket endpoint with a path",
        _set(
            "spec.checkpoints.archive",
            {"bucket": {**_BUCKET, "endpoint": "https://s3.example.com/backups"}},
        ),
        "does not match",
    ),  # fmt: skip
    (
        "bucket endpoint with credentials",
        _set(
            "spec.checkpoints.archive",
            {"bucket": {**_BUCKET, "endpoint": "https://key:secret@s3.example.com"}},
        ),
        "does not match",
    ),  # fmt: skip
    (
        "bad bucket name",
        _set("spec.checkpoints.archive", {"bucket": {**_BUCKET, "bucket": "Raft_KV"}}),
        "does not match",
    ),
    (
        "bucket prefix escaping",
        _set("spec.checkpoints.archive", {"bucket": {**_BUCKET, "prefix": "a/../b"}}),
        "does not match",
    ),
    (
        "bucket without credentials",
        _set(
            "spec.checkpoints.archive",
            {"bucket": {"endpoint": "https://s3.example.com", "bucket": "backups"}},
        ),
        "'credentialsSecret' is a required property",
    ),  # fmt: skip
    (
        "zero max age",
        _set("spec.checkpoints.archive", {"bucket": {**_BUCKET, "maxAgeHours": 0}}),
        "minimum",
    ),
    (
        "restore from a volume and a bucket",
        _set(
            "spec.restore",
            {
                "archive": {"claimName": "c", "path": "a/b"},
                "bucket": {**_BUCKET, "path": "demo/x-1"},
            },
        ),
        "exactly one of fromCheckpoint, archive or bucket",
    ),  # fmt: skip
    (
        "restore bucket path escaping",
        _set("spec.restore", {"bucket": {**_BUCKET, "path": "demo/../x"}}),
        "does not match",
    ),
    (
        "restore with both sources",
        _set(
            "spec.restore",
            {
                "fromCheckpoint": {"cluster": "a", "id": "b"},
                "archive": {"claimName": "c", "path": "a/b"},
            },
        ),
        "exactly one of fromCheckpoint, archive or bucket",
    ),  # fmt: skip
    ("restore with no source", _set("spec.restore", {}), "exactly one of fromCheckpoint"),
    (
        "restore path escaping the claim",
        _set("spec.restore", {"archive": {"claimName": "c", "path": "../etc"}}),
        "does not match",
    ),
    (
        "absolute restore path",
        _set("spec.restore", {"archive": {"claimName": "c", "path": "/data"}}),
        "does not match",
    ),
    (
        "checkpoint id with a slash",
        _set("spec.restore", {"fromCheckpoint": {"cluster": "a", "id": "x/y"}}),
        "does not match",
    ),
    (
        "same client and peer port",
        _set("spec.service.ports", {"client": 80, "peer": 80}),
        "must differ",
    ),
    ("port out of range", _set("spec.service.ports", {"client": 70000}), "maximum"),
    ("bad service type", _set("spec.service.type", "ExternalName"), "is not one of"),
    (
        "reserved pod label",
        _set("spec.podLabels", {"app.kubernetes.io/instance": "other"}),
        "podLabels may not use",
    ),
    ("bad pod label value", _set("spec.podLabels", {"team": "a b"}), "does not match"),
    ("no spec", _delete("spec"), "'spec' is a required property"),
    (
        "recovery without the confirmation",
        _set("spec.recovery", {"requestId": "r1", "confirm": "yes"}),
        "is not one of",
    ),
    (
        "recovery without a request id",
        _set("spec.recovery", {"confirm": "ForceNewCluster"}),
        "'requestId' is a required property",
    ),
    (
        "restore in place without the confirmation",
        _set("spec.restoreInPlace", {"requestId": "r1", "checkpoint": "c"}),
        "'confirm' is a required property",
    ),
    (
        "restore in place with a bad request id",
        _set(
            "spec.restoreInPlace",
            {"requestId": "R 1", "checkpoint": "c", "confirm": "ReplaceAllData"},
        ),
        "does not match",
    ),
]

# Checked by the API server only: the operator never creates clusters, and pydantic's lax
# mode reads "3" as 3 (the server has already refused it).
BAD_CLUSTERS_ADMISSION_ONLY: list[tuple[str, Mutation, str]] = [
    ("name too long", _set("metadata.name", "a" * 53), "is too long"),
    ("upper-case name", _set("metadata.name", "Demo"), "does not match"),
    ("name starting with a digit", _set("metadata.name", "1demo"), "does not match"),
    ("string replicas", _set("spec.replicas", "3"), "not of type 'integer'"),
]

GOOD_CLUSTERS: list[tuple[str, Mutation]] = [
    ("on multipaxos", _set("spec.consensus", "multipaxos")),
    (
        "explicitly insecure",
        lambda b: (
            _set("spec.tls", {"mode": "disabled"})(b),
            _set("spec.auth", {"enabled": False})(b),
        ),
    ),
    (
        "cert-manager",
        _set(
            "spec.tls",
            {"mode": "certManager", "issuerRef": {"name": "ca", "kind": "ClusterIssuer"}},
        ),
    ),
    (
        "network selectors",
        _set(
            "spec.network",
            {
                "clientNamespaceSelector": {"matchLabels": {"team": "a"}},
                "monitoringNamespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": "mon"}
                },
            },
        ),
    ),
    ("no network policy", _set("spec.network", {"policy": False})),
    ("one replica", _set("spec.replicas", 1)),
    ("nine replicas", _set("spec.replicas", 9)),
    ("int storage", _set("spec.storage.size", 1073741824)),
    ("decimal storage", _set("spec.storage.size", "1.5Gi")),
    ("int cpu", _set("spec.resources", {"requests": {"cpu": 2, "memory": "1G"}})),
    ("cron macro", _set("spec.checkpoints.schedule", "@daily")),
    ("cron steps", _set("spec.checkpoints.schedule", "*/15 * * * *")),
    ("cron names", _set("spec.checkpoints.schedule", "0 3 * JAN,jul MON-FRI")),
    ("cron lists", _set("spec.checkpoints.schedule", "0,30 8-18/2 1,15 * 0,7")),
    ("claim archive", _set("spec.checkpoints.archive", {"claimName": "backups"})),
    (
        "bucket archive",
        _set(
            "spec.checkpoints.archive",
            {
                "retain": 10,
                "bucket": {
                    **_BUCKET,
                    "prefix": "raftkv/prod",
                    "region": "eu-west-1",
                    "pathStyle": True,
                    "caBundle": {"name": "s3-ca"},
                    "maxAgeHours": 720,
                },
            },
        ),
    ),
    (
        "bucket archive over http, allowed by name",
        _set(
            "spec.checkpoints.archive",
            {"bucket": {**_BUCKET, "endpoint": "http://127.0.0.1:9000", "allowInsecureHttp": True}},
        ),
    ),
    ("restore from a bucket", _set("spec.restore", {"bucket": {**_BUCKET, "path": "demo/x-1"}})),
    (
        "restore from archive",
        _set("spec.restore", {"archive": {"claimName": "b", "path": "demo/x-1"}}),
    ),
    ("custom ports", _set("spec.service.ports", {"client": 2379, "peer": 2380})),
    ("pod labels", _set("spec.podLabels", {"team": "payments", "example.com/tier": "db"})),
    ("paused", _set("spec.paused", True)),
    ("recovery request", _set("spec.recovery", {"requestId": "r1", "confirm": "ForceNewCluster"})),
    (
        "restore in place request",
        _set(
            "spec.restoreInPlace",
            {"requestId": "r1", "checkpoint": "demo-202612010000", "confirm": "ReplaceAllData"},
        ),
    ),
    ("explicit image", _set("spec.image", "registry.local:5000/raftkv@sha256:" + "a" * 64)),
]


def _mutated(mutation: Mutation) -> dict[str, Any]:
    body = copy.deepcopy(load_example("minimal.yaml"))
    mutation(body)
    return body


@pytest.mark.parametrize(
    ("mutation", "fragment"), [c[1:] for c in BAD_CLUSTERS], ids=[c[0] for c in BAD_CLUSTERS]
)
def test_bad_cluster_is_rejected_at_admission_and_by_the_model(
    cluster_admission: Admission, mutation: Mutation, fragment: str
) -> None:
    body = _mutated(mutation)
    with pytest.raises(Rejected) as rejected:
        cluster_admission.admit(body)
    assert any(fragment in e for e in rejected.value.errors), rejected.value.errors
    with pytest.raises(pydantic.ValidationError):
        RaftCluster.model_validate(body)


@pytest.mark.parametrize(
    ("mutation", "fragment"),
    [c[1:] for c in BAD_CLUSTERS_ADMISSION_ONLY],
    ids=[c[0] for c in BAD_CLUSTERS_ADMISSION_ONLY],
)
def test_bad_cluster_is_rejected_at_admission(
    cluster_admission: Admission, mutation: Mutation, fragment: str
) -> None:
    with pytest.raises(Rejected) as rejected:
        cluster_admission.admit(_mutated(mutation))
    assert any(fragment in e for e in rejected.value.errors), rejected.value.errors


@pytest.mark.parametrize(
    "mutation", [c[1] for c in GOOD_CLUSTERS], ids=[c[0] for c in GOOD_CLUSTERS]
)
def test_good_cluster_is_admitted_and_parsed_alike(
    cluster_admission: Admission, mutation: Mutation
) -> None:
    body = _mutated(mutation)
    _assert_same_defaults(RaftCluster, body, cluster_admission.admit(body))


# ---- updates (CEL transition rules) --------------------------------------------------------------


def _update(
    admission: Admission, old_mutation: Mutation | None, new_mutation: Mutation
) -> dict[str, Any]:
    old = _mutated(old_mutation or (lambda b: None))
    stored_old = admission.admit(old)
    new = copy.deepcopy(stored_old)
    new_mutation(new)
    return admission.admit(new, old=stored_old)


@pytest.mark.parametrize(
    ("old", "new", "fragment"),
    [
        (None, _set("spec.storage.size", "2Gi"), "immutable"),
        (None, _set("spec.storage.storageClassName", "fast"), "immutable"),
        (_set("spec.storage.storageClassName", "fast"), _delete("spec.storage.storageClassName"),
         "immutable"),
        (None, _set("spec.restore", {"fromCheckpoint": {"cluster": "a", "id": "b"}}),
         "only be set when the cluster is created"),
        (_set("spec.restore", {"fromCheckpoint": {"cluster": "a", "id": "b"}}),
         _set("spec.restore.fromCheckpoint.id", "c"), "restore is immutable"),
        (None, lambda b: (_set("spec.tls", {"mode": "disabled"})(b),
                          _set("spec.auth", {"enabled": False})(b)),
         "tls cannot be turned on or off"),
        (None, _set("spec.consensus", "multipaxos"), "consensus is immutable"),
        (_set("spec.consensus", "multipaxos"), _set("spec.consensus", "raft"),
         "consensus is immutable"),
    ],
    ids=["resize", "add class", "drop class", "add restore", "change restore", "tls off",
         "raft to multipaxos", "multipaxos to raft"],
)  # fmt: skip
def test_forbidden_updates_are_rejected(
    cluster_admission: Admission, old: Mutation | None, new: Mutation, fragment: str
) -> None:
    with pytest.raises(Rejected) as rejected:
        _update(cluster_admission, old, new)
    assert any(fragment in e for e in rejected.value.errors), rejected.value.errors


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (None, _set("spec.storage.reclaimPolicy", "Delete")),
        (None, _set("spec.replicas", 5)),
        (None, _set("spec.checkpoints.schedule", "0 * * * *")),
        (
            _set("spec.restore", {"fromCheckpoint": {"cluster": "a", "id": "b"}}),
            _delete("spec.restore"),
        ),
        (None, _set("status", {"phase": "Available"})),
        (_set("spec.consensus", "multipaxos"), _set("spec.replicas", 5)),
        (_set("spec.consensus", "multipaxos"), _set("spec.consensus", "multipaxos")),
    ],
    ids=[
        "reclaim policy",
        "scale",
        "schedule",
        "drop restore",
        "status",
        "scale multipaxos",
        "keep multipaxos",
    ],
)
def test_allowed_updates_are_admitted(
    cluster_admission: Admission, old: Mutation | None, new: Mutation
) -> None:
    _update(cluster_admission, old, new)


def test_checkpoint_spec_is_immutable(checkpoint_admission: Admission) -> None:
    old = checkpoint_admission.admit(load_example("checkpoint.yaml"))
    new = copy.deepcopy(old)
    new["spec"]["cluster"] = "other"
    with pytest.raises(Rejected, match="spec is immutable"):
        checkpoint_admission.admit(new, old=old)
    status_only = copy.deepcopy(old)
    status_only["status"] = {"phase": "Succeeded", "index": 42}
    checkpoint_admission.admit(status_only, old=old)


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({}, "'cluster' is a required property"),
        ({"cluster": "Orders"}, "does not match"),
        ({"cluster": "orders", "id": "../x"}, "does not match"),
        ({"cluster": "orders", "idd": "x"}, 'unknown field "idd"'),
    ],
)
def test_bad_checkpoint_is_rejected(
    checkpoint_admission: Admission, spec: dict[str, Any], fragment: str
) -> None:
    body = {**load_example("checkpoint.yaml"), "spec": spec}
    with pytest.raises(Rejected) as rejected:
        checkpoint_admission.admit(body)
    assert any(fragment in e for e in rejected.value.errors), rejected.value.errors
    with pytest.raises(pydantic.ValidationError):
        RaftCheckpoint.model_validate(body)


def test_admission_emulation_applies_nested_defaults(cluster_admission: Admission) -> None:
    # A guard on the test helper itself: without defaulting, CEL rules would see less.
    stored = apply_defaults(
        cluster_admission.schema["properties"]["spec"], {"raft": {"electionTicks": 20}}
    )
    assert stored["raft"] == {
        "electionTicks": 20, "tickMs": 100, "heartbeatTicks": 1, "snapshotEntries": 10000,
    }  # fmt: skip
    assert stored["storage"]["size"] == "1Gi"
