"""Faithful models of the Kubernetes types a RaftCluster embeds (pod placement, resources).

They exist so the CRD schema rejects a typo in `affinity` at admission instead of the
StatefulSet failing later, and so the handlers get typed access. Each model names the
Kubernetes OpenAPI definition it mirrors (`k8s_definition`); a unit test checks, for every
supported Kubernetes version, that every field declared here exists there with the same
shape. Fields newer than our oldest supported Kubernetes version are left out on purpose.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
)
from pydantic.alias_generators import to_camel

# Go's regexp (RE2) checks CRD patterns; keep every pattern free of look-arounds/back-refs.
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
"""Kubernetes resource.Quantity, as controller-gen writes it into CRDs."""

NON_NEGATIVE_QUANTITY_PATTERN = (
    r"^\+?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
"""A quantity without a minus sign: resource requests and limits are never negative."""


class KubeModel(BaseModel):
    """Base of every API model: camelCase on the wire, snake_case in Python, no unknown fields."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
        serialize_by_alias=True,
    )

    def to_k8s(self) -> dict[str, Any]:
        """The object as the Kubernetes API writes it: camelCase keys, unset fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class EmbeddedK8sModel(KubeModel):
    """A Kubernetes API type embedded in our spec; `k8s_definition` names its OpenAPI twin."""

    k8s_definition: ClassVar[str]
    required_here_only: ClassVar[frozenset[str]] = frozenset()
    """Fields this API requires although Kubernetes does not (a deliberate tightening)."""


def _int_or_string_schema(pattern: str) -> dict[str, Any]:
    # The only anyOf shape a structural schema allows, plus value checks at its own level.
    return {
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "x-kubernetes-int-or-string": True,
        "minimum": 0,
        "pattern": pattern,
    }


def _quantity_to_str(pattern: str) -> Any:
    compiled = re.compile(pattern)

    def convert(value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("a quantity is a number or a string like '512Mi', not a boolean")
        if isinstance(value, int):
            if value < 0:
                raise ValueError(f"quantity must not be negative, got {value}")
            return str(value)
        if isinstance(value, str) and not compiled.match(value):
            raise ValueError(
                f"{value!r} is not a valid quantity (like '500m', '2', '512Mi', '10Gi')"
            )
        return value

    return convert


ResourceQuantity = Annotated[
    str,
    BeforeValidator(_quantity_to_str(NON_NEGATIVE_QUANTITY_PATTERN)),
    WithJsonSchema(_int_or_string_schema(NON_NEGATIVE_QUANTITY_PATTERN)),
]
"""A non-negative resource quantity (`250m`, `1`, `512Mi`); integers are kept as strings."""


class ResourceRequirements(EmbeddedK8sModel):
    """Compute resources of the raftkv container (core/v1 ResourceRequirements, without claims)."""

    k8s_definition: ClassVar[str] = "io.k8s.api.core.v1.ResourceRequirements"

    limits: dict[str, ResourceQuantity] | None = Field(default=None, max_length=16)
    """Maximum amount of compute resources allowed, e.g. {memory: 1Gi}."""
    requests: dict[str, ResourceQuantity] | None = Field(default=None, max_length=16)
    """Minimum amount of compute resources required, e.g. {cpu: 500m, memory: 512Mi}."""


class LabelSelectorRequirement(EmbeddedK8sModel):
    """A label selector requirement (meta/v1 LabelSelectorRequirement)."""

    k8s_definition: ClassVar[str] = "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelectorRequirement"

    key: str
    """The label key that the selector applies to."""
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    """How the key relates to the values."""
    values: list[str] | None = None
    """Values for In/NotIn; must be empty for Exists/DoesNotExist."""


class LabelSelector(EmbeddedK8sModel):
    """A label query over a set of resources (meta/v1 LabelSelector)."""

    k8s_definition: ClassVar[str] = "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"

    match_expressions: list[LabelSelectorRequirement] | None = None
    """Requirements that are ANDed."""
    match_labels: dict[str, str] | None = None
    """{key: value} pairs, each equivalent to an In requirement with one value."""


class NodeSelectorRequirement(EmbeddedK8sModel):
    """A node selector requirement (core/v1 NodeSelectorRequirement)."""

    k8s_definition: ClassVar[str] = "io.k8s.api.core.v1.NodeSelectorRequirement"

    key: str
    """The label key that the selector applies to."""
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]
    """How the key relates to the values."""
    values: list[str] | None = None
    """Values for In/NotIn (any number), Gt/Lt (one integer); empty for Exists/DoesNotExist."""


class NodeSelectorTerm(EmbeddedK8sModel):
    """Node selector requirements that are ANDed (core/v1 NodeSelectorTerm)."""

    k8s_definition: ClassVar[str] = "io.k8s.api.core.v1.NodeSelectorTerm"

    match_expressions: list[NodeSelectorRequirement] | None = None
    """Requirements on node labels."""
    match_fields: list[NodeSelectorRequirement] | None = None
    """Requirements on node fields."""


class NodeSelector(EmbeddedK8sModel):
    """Node selector terms that are ORed (core/v1 NodeSelector)."""

    k8s_definition: ClassVar[str] = "io.k8s.api.core.v1.NodeSelector"

    node_selector_terms: list[NodeSelectorTerm]
    """The terms; a node matching any of them is selected."""


class PreferredSchedulingTerm(EmbeddedK8sModel):
    """A weighted node preference (core/v1 PreferredSchedulingTerm)."""

    k8s_definition: ClassVar[str] = "io.k8s.api.core.v1.PreferredSchedulingTerm"

    preference: NodeSelectorTerm
    """The node selector term."""
    weight: int = Field(ge=1, le=100)
    """Weight in the range 1-100."""


class NodeAffinity(EmbeddedK8sModel):
    """Node affinity scheduling rules (core/v1 NodeAffinity)."""

    k8s_definition: ClassVar[str] = "io.k8s.api.core.v1.NodeAffinity"

    preferred_during_scheduling_ignored_during_execution: list[PreferredSchedulingTerm] | None = (
        None
    )
    """Nodes the scheduler prefers."""
    required_during_scheduling_ignored_during_execution: NodeSelector | None = None
    """Nodes the pods must be scheduled on."""


class PodAffinityTerm(EmbeddedK8sModel):
    """Pods to be co-located with (or away from) on a topology domain (core/v1 PodAffinityTerm)."""

    k8s_definition: ClassVar[str] = "io.k8s.api.core.v1.PodAffinityTerm"

    label_selector: LabelSelector | None = None
    """The pods this term matches."""
    namespace_selector: LabelSelector | None = None
    """Namespaces this term applies to, selected by label."""
    namespaces: list[str] | None = None
    """Namespaces this term applies to, by name."""
    topology_key: str = Field(min_length=1)
    """The node label whose value defines a topology domain, e.g. kubernetes.io/hostname."""


class WeightedPodAffinityTerm(EmbeddedK8sModel):
    """A weighted pod affinity term (core/v1 WeightedPodAffinityTerm)."""

    k8s_definition: ClassVar[str] = "io.k8s.api.core.v1.WeightedPodAffinityTerm"

    pod_affinity_term: PodAffinityTerm
    """The term."""
    weight: int = Field(ge=1, le=100)
    """Weight in the range 1-100."""


class PodAffinity(EmbeddedK8sModel):
    """Pod affinity scheduling rules (core/v1 PodAffinity)."""

    k8s_definition: ClassVar[str] = "io.k8s.api.core.v1.PodAffinity"

    preferred_during_scheduling_ignored_during_execution: list[WeightedPodAffinityTerm] | None = (
        None
    )
    """Preferred co-location terms."""
    required_during_scheduling_ignored_during_execution: list[PodAffinityTerm] | None = None
    """Required co-location terms."""


class PodAntiAffinity(EmbeddedK8sModel):
    """Pod anti-affinity scheduling rules (core/v1 PodAntiAffinity)."""

    k8s_definition: ClassVar[str] = "io.k8s.api.core.v1.PodAntiAffinity"

    preferred_during_scheduling_ignored_during_execution: list[WeightedPodAffinityTerm] | None = (
        None
    )
    """Preferred spreading terms."""
    required_during_scheduling_ignored_during_execution: list[PodAffinityTerm] | None = None
    """Required spreading terms."""


class Affinity(EmbeddedK8sModel):
    """Affinity scheduling rules (core/v1 Affinity)."""

    k8s_definition: ClassVar[str] = "io.k8s.api.core.v1.Affinity"

    node_affinity: NodeAffinity | None = None
    """Node affinity."""
    pod_affinity: PodAffinity | None = None
    """Pod affinity."""
    pod_anti_affinity: PodAntiAffinity | None = None
    """Pod anti-affinity: spread members over failure domains."""


class Toleration(EmbeddedK8sModel):
    """A toleration of a node taint (core/v1 Toleration)."""

    k8s_definition: ClassVar[str] = "io.k8s.api.core.v1.Toleration"

    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """Taint effect to match; empty matches all effects."""
    key: str | None = None
    """Taint key; empty (with operator Exists) matches all taints."""
    operator: Literal["Exists", "Equal"] | None = None
    """Exists or Equal (the default)."""
    toleration_seconds: int | None = None
    """How long a NoExecute taint is tolerated; unset means forever."""
    value: str | None = None
    """Taint value for operator Equal."""


class TopologySpreadConstraint(EmbeddedK8sModel):
    """How to spread members over topology domains (core/v1 TopologySpreadConstraint)."""

    k8s_definition: ClassVar[str] = "io.k8s.api.core.v1.TopologySpreadConstraint"

    label_selector: LabelSelector | None = None
    """Pods counted in each domain; usually the cluster's own pods."""
    match_label_keys: list[str] | None = None
    """Pod label keys whose values are added to the label selector."""
    max_skew: int = Field(ge=1)
    """Maximum allowed difference of matching pods between domains."""
    min_domains: int | None = Field(default=None, ge=1)
    """Minimum number of eligible domains."""
    node_affinity_policy: Literal["Honor", "Ignore"] | None = None
    """Whether node affinity/selector is honoured when computing the skew."""
    node_taints_policy: Literal["Honor", "Ignore"] | None = None
    """Whether node taints are honoured when computing the skew."""
    topology_key: str = Field(min_length=1)
    """The node label whose value defines a domain, e.g. topology.kubernetes.io/zone."""
    when_unsatisfiable: Literal["DoNotSchedule", "ScheduleAnyway"]
    """What to do with a pod that cannot satisfy the constraint."""


class LocalObjectReference(EmbeddedK8sModel):
    """A reference to an object in the same namespace (core/v1 LocalObjectReference)."""

    k8s_definition: ClassVar[str] = "io.k8s.api.core.v1.LocalObjectReference"
    required_here_only: ClassVar[frozenset[str]] = frozenset({"name"})

    name: str = Field(min_length=1, max_length=253)
    """Name of the referent."""


EMBEDDED_K8S_MODELS: tuple[type[EmbeddedK8sModel], ...] = (
    ResourceRequirements,
    LabelSelectorRequirement,
    LabelSelector,
    NodeSelectorRequirement,
    NodeSelectorTerm,
    NodeSelector,
    PreferredSchedulingTerm,
    NodeAffinity,
    PodAffinityTerm,
    WeightedPodAffinityTerm,
    PodAffinity,
    PodAntiAffinity,
    Affinity,
    Toleration,
    TopologySpreadConstraint,
    LocalObjectReference,
)
"""Every embedded Kubernetes model, for the fidelity test."""
