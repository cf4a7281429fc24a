"""The resource kinds the emulated API server serves, and their discovery information.

kmock 0.8 serves discovery only for what is declared in `kmock.resources` (or has objects);
kopf waits forever for `v1/namespaces` and `apiextensions.k8s.io/v1/customresourcedefinitions`
if they are not served. Every kind the operator, kopf and the harness use is declared here; a
CustomResourceDefinition created through the API declares its kinds too, like a real server.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = frozenset(
    {"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}
)


@dataclass(frozen=True)
class ScalePaths:
    """Where a kind keeps what its `scale` subresource shows (a CRD's
    `subresources.scale`; for StatefulSets the built-in fields)."""

    spec_replicas: str = ".spec.replicas"
    status_replicas: str = ".status.replicas"
    label_selector: str | None = None
    """A string (a CRD's `.status.selector`) or a LabelSelector object (`.spec.selector`)."""


@dataclass(frozen=True)
class ResourceSpec:
    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool
    subresources: frozenset[str] = frozenset()
    singular: str = ""
    short_names: frozenset[str] = frozenset()
    categories: frozenset[str] = frozenset()
    builtin: bool = True
    """Built-in kinds accept strategic merge patches; custom resources answer 415, as in
    Kubernetes."""
    schema: Mapping[str, Any] | None = field(default=None, compare=False, hash=False)
    """openAPIV3Schema of a custom resource version: served in /openapi/v3; unknown fields
    are rejected under `fieldValidation=Strict` (harness/fieldvalidation.py)."""
    scale: ScalePaths | None = field(default=None, compare=False, hash=False)
    """Set when the kind has a `scale` subresource (then "scale" is in `subresources`)."""
    printer_columns: tuple[Mapping[str, Any], ...] = field(default=(), compare=False, hash=False)
    """A CRD version's additionalPrinterColumns: the columns of `kubectl get` (tables.py)."""

    @property
    def key(self) -> str:
        """`v1/pods`, `apps/v1/statefulsets`: the form every harness helper accepts."""
        return f"{self.api_version}/{self.plural}"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    def __str__(self) -> str:
        return self.key


def _core(
    plural: str,
    kind: str,
    *,
    namespaced: bool = True,
    status: bool = False,
    short: Iterable[str] = (),
) -> ResourceSpec:
    return ResourceSpec(
        "",
        "v1",
        plural,
        kind,
        namespaced,
        frozenset({"status"} if status else ()),
        kind.lower(),
        frozenset(short),
    )


def _res(
    group: str,
    version: str,
    plural: str,
    kind: str,
    *,
    namespaced: bool = True,
    status: bool = False,
    short: Iterable[str] = (),
    builtin: bool = True,
    scale: ScalePaths | None = None,
) -> ResourceSpec:
    return ResourceSpec(
        group,
        version,
        plural,
        kind,
        namespaced,
        frozenset({"status"} if status else ()) | frozenset({"scale"} if scale else ()),
        kind.lower(),
        frozenset(short),
        builtin=builtin,
        scale=scale,
    )


BUILTIN_RESOURCES: tuple[ResourceSpec, ...] = (
    _core("namespaces", "Namespace", namespaced=False, status=True, short=["ns"]),
    _core("nodes", "Node", namespaced=False, status=True, short=["no"]),
    ResourceSpec(
        "", "v1", "pods", "Pod", True, frozenset({"status", "log"}), "pod", frozenset({"po"})
    ),
    _core("services", "Service", status=True, short=["svc"]),
    _core("endpoints", "Endpoints", short=["ep"]),
    _core("configmaps", "ConfigMap", short=["cm"]),
    _core("secrets", "Secret"),
    _core("serviceaccounts", "ServiceAccount", short=["sa"]),
    _core("events", "Event", short=["ev"]),
    _core("persistentvolumeclaims", "PersistentVolumeClaim", status=True, short=["pvc"]),
    _core("persistentvolumes", "PersistentVolume", namespaced=False, status=True, short=["pv"]),
    _res("events.k8s.io", "v1", "events", "Event", short=["ev"]),
    _res(
        "apps",
        "v1",
        "statefulsets",
        "StatefulSet",
        status=True,
        short=["sts"],
        scale=ScalePaths(label_selector=".spec.selector"),
    ),
    _res("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", status=True, short=["pdb"]),
    _res("batch", "v1", "jobs", "Job", status=True),
    _res("coordination.k8s.io", "v1", "leases", "Lease"),
    # Enforced for service account tokens only (harness/rbac.py).
    _res("rbac.authorization.k8s.io", "v1", "roles", "Role"),
    _res("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
    # Stored only: nothing in the emulated network enforces NetworkPolicies.
    _res("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", short=["netpol"]),
    _res("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice"),
    _res(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        namespaced=False,
        status=True,
        short=["crd", "crds"],
    ),
)

KOPF_RESOURCES: tuple[ResourceSpec, ...] = (
    # kopf's peering CRDs: with them served, `kopf run` without --standalone finds no
    # "default" peering object and falls back to standalone mode with a warning.
    _res(
        "kopf.dev",
        "v1",
        "clusterkopfpeerings",
        "ClusterKopfPeering",
        namespaced=False,
        builtin=False,
    ),
    _res("kopf.dev", "v1", "kopfpeerings", "KopfPeering", builtin=False),
)

RAFTKV_RESOURCES: tuple[ResourceSpec, ...] = (
    # Declared up front so the API serves them even before crds/*.yaml is applied; applying the
    # generated CRDs replaces these with the CRDs' own names, short names and schemas.
    _res("raftkv.dev", "v1alpha1", "raftclusters", "RaftCluster", status=True, builtin=False),
    _res("raftkv.dev", "v1alpha1", "raftcheckpoints", "RaftCheckpoint", status=True, builtin=False),
)

DEFAULT_RESOURCES: tuple[ResourceSpec, ...] = BUILTIN_RESOURCES + KOPF_RESOURCES + RAFTKV_RESOURCES


def specs_from_crd(crd: Mapping[str, Any]) -> list[ResourceSpec]:
    """The served versions of a CustomResourceDefinition object."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group, plural, kind = spec.get("group"), names.get("plural"), names.get("kind")
    if not group or not plural or not kind:
        raise ValueError(
            "a CustomResourceDefinition needs spec.group, spec.names.plural and spec.names.kind"
        )
    namespaced = spec.get("scope", "Namespaced") == "Namespaced"
    specs = []
    for version in spec.get("versions") or []:
        if not version.get("served", True):
            continue
        subresources = frozenset((version.get("subresources") or {}).keys())
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        scale = (version.get("subresources") or {}).get("scale")
        specs.append(
            ResourceSpec(
                group,
                version["name"],
                plural,
                kind,
                namespaced,
                subresources,
                names.get("singular") or kind.lower(),
                frozenset(names.get("shortNames") or ()),
                frozenset(names.get("categories") or ()),
                builtin=False,
                schema=schema,
                scale=ScalePaths(
                    scale.get("specReplicasPath", ".spec.replicas"),
                    scale.get("statusReplicasPath", ".status.replicas"),
                    scale.get("labelSelectorPath"),
                )
                if isinstance(scale, dict)
                else None,
                printer_columns=tuple(version.get("additionalPrinterColumns") or ()),
            )
        )
    return specs


class ResourceRegistry:
    """Resource kinds by `group/version/plural`; also resolves `kind` and short names."""

    def __init__(self, specs: Iterable[ResourceSpec] = DEFAULT_RESOURCES) -> None:
        self._specs: dict[tuple[str, str, str], ResourceSpec] = {}
        for spec in specs:
            self.add(spec)

    def add(self, spec: ResourceSpec) -> None:
        self._specs[(spec.group, spec.version, spec.plural)] = spec

    def remove(self, spec: ResourceSpec) -> None:
        self._specs.pop((spec.group, spec.version, spec.plural), None)

    def __iter__(self) -> Iterator[ResourceSpec]:
        return iter(list(self._specs.values()))

    def find(self, group: str, version: str, plural: str) -> ResourceSpec | None:
        return self._specs.get((group, version, plural))

    def resolve(self, ref: str | ResourceSpec) -> ResourceSpec:
        """`v1/pods`, `apps/v1/statefulsets`, `raftkv.dev/v1alpha1/raftclusters`, or a spec."""
        if isinstance(ref, ResourceSpec):
            return ref
        parts = ref.strip("/").split("/")
        if len(parts) == 2:
            group, version, plural = "", parts[0], parts[1]
        elif len(parts) == 3:
            group, version, plural = parts
        else:
            raise KeyError(f"resource reference must be [group/]version/plural, got {ref!r}")
        spec = self.find(group, version, plural)
        if spec is None:
            raise KeyError(f"resource {ref!r} is not served by the emulated API server")
        return spec

    def by_kind(self, api_version: str, kind: str) -> ResourceSpec:
        group, _, version = api_version.rpartition("/")
        for spec in self._specs.values():
            if spec.group == group and spec.version == version and spec.kind == kind:
                return spec
        raise KeyError(f"no served resource for apiVersion={api_version!r} kind={kind!r}")
