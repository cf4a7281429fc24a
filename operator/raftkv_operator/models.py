"""The RaftCluster and RaftCheckpoint API (group raftkv.dev, version v1alpha1).

These pydantic models are the one source of the CRD schemas: `crds/*.yaml` are generated
from them by `make crds` (raftkv_operator.crdgen), and a unit test fails when they drift.
Handlers parse objects with `RaftCluster.model_validate(body)` and use typed attributes.

Rules that span fields are written twice, on purpose: as CEL (`x-kubernetes-validations`,
enforced by the API server at admission) and as a pydantic validator (enforced when the
operator parses an object, e.g. in the emulated cluster that has no admission). The unit
tests evaluate both on the same good and bad specs, so the two cannot drift apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from croniter import CroniterBadDateError, croniter
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel

from raftkv.protocol.checkpoints import checkpoint_id_pattern
from raftkv_operator.k8s_types import (
    Affinity,
    KubeModel,
    LabelSelector,
    LocalObjectReference,
    ResourceRequirements,
    Toleration,
    TopologySpreadConstraint,
)

API_GROUP = "raftkv.dev"
API_VERSION = "v1alpha1"
GROUP_VERSION = f"{API_GROUP}/{API_VERSION}"

SUPPORTED_KUBERNETES_VERSIONS: tuple[str, ...] = ("1.29", "1.30", "1.31", "1.32", "1.33", "1.34")
"""Kubernetes versions whose API schemas the CRDs and built objects are tested against.

1.29 is the floor: CRD validation rules (CEL) are GA there, and StatefulSet
persistentVolumeClaimRetentionPolicy is on by default.
"""

DEFAULT_VERSION = "0.1.0"
"""The raftkv release a new RaftCluster runs when `spec.version` is not given."""
DEFAULT_IMAGE_REPOSITORY = "ghcr.io/raftkv/raftkv"
"""Image repository used with `spec.version` when `spec.image` is not given."""
DEFAULT_CLIENT_PORT = 7379
DEFAULT_PEER_PORT = 7380

MAX_CLUSTER_NAME_LENGTH = 52
"""A StatefulSet's pods carry `controller-revision-hash: <name>-<10 chars>`, a 63-char label."""

RESERVED_LABEL_PREFIXES = ("app.kubernetes.io/", "raftkv.dev/")
"""Label prefixes the operator owns on pods; users may not set them in podLabels."""

# ---- patterns (RE2-compatible: the API server compiles them with Go's regexp) ----------------

DNS1035_LABEL_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
DNS1123_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
IMAGE_PATTERN = r"^[^\s]+$"
VERSION_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$"
"""A version is an image tag and the app.kubernetes.io/version label value: both must accept it."""
CHECKPOINT_ID_PATTERN = checkpoint_id_pattern(max_length=63)
"""The node's checkpoint id rule (raftkv.protocol), within a Kubernetes name's 63 characters."""
RELATIVE_PATH_PATTERN = r"^[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$"
"""A path inside a volume: relative, no `.`/`..` segments, no hidden names."""
SHA256_PATTERN = r"^[0-9a-f]{64}$"
CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
CONDITION_TYPE_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
POSITIVE_STORAGE_SIZE_PATTERN = (
    r"^([0-9]*[1-9][0-9]*(\.[0-9]*)?|[0-9]*\.[0-9]*[1-9][0-9]*)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"
)
"""A positive byte size: `10Gi`, `500M`, `1073741824`; zero, negatives and milli-bytes are out."""


def _cron_field(value: str, names: tuple[str, ...] = ()) -> str:
    atom = value
    if names:
        # Case-insensitive names without (?i), which Python only allows at the very start.
        spelled = ["".join(f"[{c.upper()}{c.lower()}]" for c in name) for name in names]
        atom = f"({value}|{'|'.join(spelled)})"
    element = f"(\\*|{atom}(-{atom})?)(/[1-9][0-9]?)?"
    return f"{element}(,{element})*"


_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
CRON_SCHEDULE_PATTERN = (
    "^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|"
    + " +".join(
        [
            _cron_field("[0-5]?[0-9]"),  # minute
            _cron_field("([01]?[0-9]|2[0-3])"),  # hour
            _cron_field("(0?[1-9]|[12][0-9]|3[01])"),  # day of month
            _cron_field("(0?[1-9]|1[0-2])", _MONTHS),  # month
            _cron_field("[0-7]", _WEEKDAYS),  # day of week (0 and 7 are Sunday)
        ]
    )
    + ")$"
)
"""A standard 5-field cron schedule (minute hour day-of-month month day-of-week), as a
Kubernetes CronJob takes it, or one of the @hourly/@daily/... macros. Times are UTC."""


def _cel(*rules: tuple[str, str]) -> dict[str, Any]:
    """CEL validation rules (rule, message) for a schema node."""
    return {"x-kubernetes-validations": [{"rule": r, "message": m} for r, m in rules]}


# ---- shared small types ------------------------------------------------------------------------


def _storage_size(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("a size is a number of bytes or a string like '10Gi', not a boolean")
    if isinstance(value, int):
        if value < 1:
            raise ValueError(f"size must be positive, got {value}")
        return str(value)
    if isinstance(value, str) and not re.match(POSITIVE_STORAGE_SIZE_PATTERN, value):
        raise ValueError(f"{value!r} is not a positive size (like '10Gi', '500M', '1073741824')")
    return value


StorageSize = Annotated[
    str,
    BeforeValidator(_storage_size),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-int-or-string": True,
            "minimum": 1,
            "pattern": POSITIVE_STORAGE_SIZE_PATTERN,
        }
    ),
]
"""A positive storage size quantity; integers (bytes) are kept as strings."""

ClusterName = Annotated[
    str, Field(min_length=1, max_length=MAX_CLUSTER_NAME_LENGTH, pattern=DNS1035_LABEL_PATTERN)
]
ObjectName = Annotated[str, Field(min_length=1, max_length=253, pattern=DNS1123_SUBDOMAIN_PATTERN)]
CheckpointId = Annotated[str, Field(max_length=63, pattern=CHECKPOINT_ID_PATTERN)]


def _schedule_fires(schedule: str) -> str:
    """The pattern admits day/month pairs no calendar has (`30 FEB`, `31 4`); such a
    schedule would never fire, so it is refused like any other invalid spec."""
    try:
        croniter(schedule, datetime(2000, 1, 1)).get_next(datetime)
    except CroniterBadDateError:
        raise ValueError(f"schedule {schedule!r} never fires: no date matches it") from None
    return schedule


CronSchedule = Annotated[
    str, Field(max_length=256, pattern=CRON_SCHEDULE_PATTERN), AfterValidator(_schedule_fires)
]
LabelValue = Annotated[str, Field(max_length=63, pattern=LABEL_VALUE_PATTERN)]
Port = Annotated[int, Field(ge=1, le=65535)]


class ObjectMeta(BaseModel):
    """The parts of Kubernetes object metadata the operator reads; the rest is kept as is."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="allow",
        serialize_by_alias=True,
    )

    name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = None
    creation_timestamp: datetime | None = None
    deletion_timestamp: datetime | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    json_path: str
    type: Literal["string", "integer", "number", "boolean", "date"]
    description: str = ""
    priority: int = 0


@dataclass(frozen=True)
class ResourceInfo:
    """How a kind is served: everything a CRD says besides the schema."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    categories: tuple[str, ...]
    printer_columns: tuple[PrinterColumn, ...]
    scale: bool = False
    group: str = API_GROUP
    version: str = API_VERSION

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{self.group}"


# ---- RaftCluster spec --------------------------------------------------------------------------


class ReclaimPolicy(StrEnum):
    """What happens to a member's volume when the member goes away."""

    DELETE = "Delete"
    RETAIN = "Retain"


class StorageSpec(KubeModel):
    """The persistent volume of each member (WAL, snapshots, checkpoints)."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            (
                "self.size == oldSelf.size && has(self.storageClassName) == "
                "has(oldSelf.storageClassName) && (!has(self.storageClassName) || "
                "self.storageClassName == oldSelf.storageClassName)",
                "storage.size and storage.storageClassName are immutable: the StatefulSet's "
                "volumeClaimTemplate cannot change (expand the PVCs directly instead)",
            ),
        )
    )

    size: StorageSize = "1Gi"
    """Size of each member's volume, e.g. 10Gi."""
    storage_class_name: ObjectName | None = None
    """StorageClass of the volumes; the cluster default when unset."""
    reclaim_policy: ReclaimPolicy = ReclaimPolicy.RETAIN
    """Delete or Retain a member's volume when the member is removed or the cluster deleted."""


class RaftTimings(KubeModel):
    """Raft timing and compaction settings passed to every member."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            (
                "self.heartbeatTicks < self.electionTicks",
                "raft.heartbeatTicks must be smaller than raft.electionTicks",
            ),
        )
    )

    tick_ms: int = Field(default=100, ge=10, le=10_000)
    """Length of one Raft tick in milliseconds."""
    election_ticks: int = Field(default=10, ge=2, le=1000)
    """Ticks without a leader before a follower campaigns (randomised up to twice that)."""
    heartbeat_ticks: int = Field(default=1, ge=1, le=1000)
    """Ticks between leader heartbeats."""
    snapshot_entries: int = Field(default=10_000, ge=100, le=100_000_000)
    """Compact the log after this many applied entries."""

    @model_validator(mode="after")
    def _heartbeat_before_election(self) -> RaftTimings:
        if self.heartbeat_ticks >= self.election_ticks:
            raise ValueError("raft.heartbeatTicks must be smaller than raft.electionTicks")
        return self

    @property
    def election_timeout_ms(self) -> int:
        return self.tick_ms * self.election_ticks


class AccessMode(StrEnum):
    READ_WRITE_ONCE = "ReadWriteOnce"
    READ_ONLY_MANY = "ReadOnlyMany"
    READ_WRITE_MANY = "ReadWriteMany"
    READ_WRITE_ONCE_POD = "ReadWriteOncePod"


class ArchiveClaimTemplate(KubeModel):
    """A PersistentVolumeClaim the operator creates to hold archived checkpoints."""

    size: StorageSize
    """Size of the archive volume."""
    storage_class_name: ObjectName | None = None
    """StorageClass of the archive volume; the cluster default when unset."""
    access_modes: list[AccessMode] = Field(
        default_factory=lambda: [AccessMode.READ_WRITE_ONCE], min_length=1, max_length=4
    )
    """Access modes; ReadWriteMany lets restores run on any node."""


S3_BUCKET_PATTERN = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
"""An S3 bucket name (3-63 characters, DNS-like)."""
S3_ENDPOINT_PATTERN = r"^https?://[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?/?$"
"""`https://host[:port]` of an S3-compatible service; no path, no credentials in the URL."""
S3_REGION_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$"
SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
BUCKET_COPY_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?/[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
"""A copy in the bucket: `<cluster>/<checkpoint id>` under the prefix."""


class SecretKeyRef(KubeModel):
    """One key of a Secret in the cluster's namespace."""

    name: ObjectName
    key: Annotated[str, Field(min_length=1, max_length=253, pattern=SECRET_KEY_PATTERN)] = "ca.crt"


_BUCKET_HTTP_RULE = (
    "!self.endpoint.startsWith('http://') || (has(self.allowInsecureHttp) && "
    "self.allowInsecureHttp)",
    "the bucket endpoint is plain http (credentials signed, data in the clear): use https, "
    "or set allowInsecureHttp: true",
)


class BucketLocation(KubeModel):
    """An S3-compatible bucket (AWS S3, MinIO, Ceph RGW...) and how to reach it.

    The operator never reads the credentials: only the archive Jobs (and the restore init
    containers) mount them, from the Secret `credentialsSecret` with keys `accessKeyId`,
    `secretAccessKey` and, for temporary credentials, `sessionToken`."""

    model_config = ConfigDict(json_schema_extra=_cel(_BUCKET_HTTP_RULE))

    endpoint: Annotated[str, Field(max_length=512, pattern=S3_ENDPOINT_PATTERN)]
    """`https://host[:port]` of the S3 API, e.g. `https://s3.eu-west-1.amazonaws.com`."""
    bucket: Annotated[str, Field(min_length=3, max_length=63, pattern=S3_BUCKET_PATTERN)]
    """The bucket; it must exist (the operator does not create buckets)."""
    prefix: Annotated[str, Field(max_length=512, pattern=RELATIVE_PATH_PATTERN)] | None = None
    """Key prefix: copies are `<prefix>/<cluster>/<checkpoint id>/{data,manifest.json}`."""
    region: Annotated[str, Field(max_length=32, pattern=S3_REGION_PATTERN)] = "us-east-1"
    """Signing region."""
    path_style: bool = False
    """Path-style URLs (`https://host/bucket/key`), as MinIO and Ceph usually need."""
    credentials_secret: ObjectName
    """Secret (this namespace) with `accessKeyId`, `secretAccessKey` (and `sessionToken`)."""
    ca_bundle: SecretKeyRef | None = None
    """PEM CA bundle that signs the endpoint's certificate (key default `ca.crt`); the
    image's system CAs when unset."""
    allow_insecure_http: bool = False
    """Accept an `http://` endpoint: INSECURE, the checkpoint travels in the clear."""

    @model_validator(mode="after")
    def _https_unless_allowed(self) -> BucketLocation:
        if self.endpoint.startswith("http://") and not self.allow_insecure_http:
            raise ValueError(_BUCKET_HTTP_RULE[1])
        return self


class BucketArchive(BucketLocation):
    """Archive target: copies go to a bucket, uploaded by a Job with the node image."""

    max_age_hours: int | None = Field(default=None, ge=1, le=87_600)
    """Also delete copies older than this (by the checkpoint's time); the newest copy is
    always kept. Count retention is `archive.retain`."""


class BucketCheckpointRef(BucketLocation):
    """A checkpoint copy in a bucket, as the bucket archive wrote it."""

    path: Annotated[str, Field(max_length=116, pattern=BUCKET_COPY_PATTERN)]
    """`<cluster>/<checkpoint id>` under the prefix, e.g. `demo/demo-202401010000`."""


_ARCHIVE_TARGET = (
    "(has(self.claimName) ? 1 : 0) + (has(self.volumeClaimTemplate) ? 1 : 0) + "
    "(has(self.bucket) ? 1 : 0) == 1",
    "checkpoints.archive needs exactly one of claimName, volumeClaimTemplate or bucket",
)


class CheckpointArchive(KubeModel):
    """Where checkpoints are copied after they are taken: an existing claim, a new one, or
    an S3-compatible bucket."""

    model_config = ConfigDict(json_schema_extra=_cel(_ARCHIVE_TARGET))

    claim_name: ObjectName | None = None
    """An existing PersistentVolumeClaim in the cluster's namespace."""
    volume_claim_template: ArchiveClaimTemplate | None = None
    """A claim the operator creates, named `<cluster>-checkpoints`; it outlives the cluster."""
    bucket: BucketArchive | None = None
    """An S3-compatible bucket (copies outlive the cluster and its Kubernetes cluster)."""
    retain: int | None = Field(default=None, ge=1, le=1000)
    """Archived copies kept (the newest by Raft index); older ones are deleted by a Job.
    Default: checkpoints.retain."""
    timeout_seconds: int = Field(default=3600, ge=60, le=86400)
    """Time an archive Job may take, image pull and scheduling included (its
    activeDeadlineSeconds); the operator waits that long, then reports the archive failed."""

    @model_validator(mode="after")
    def _exactly_one_target(self) -> CheckpointArchive:
        targets = (self.claim_name, self.volume_claim_template, self.bucket)
        if sum(t is not None for t in targets) != 1:
            raise ValueError(_ARCHIVE_TARGET[1])
        return self


class CheckpointsSpec(KubeModel):
    """Scheduled checkpoints: consistent copies of the state machine on every member."""

    schedule: CronSchedule | None = None
    """Cron schedule (5 fields, UTC) of automatic checkpoints, e.g. `0 */6 * * *`; none if unset."""
    retain: int = Field(default=5, ge=1, le=100)
    """Checkpoints kept on each member (the newest by index; the members own this retention).
    A RaftCheckpoint whose files are gone is marked Expired; scheduled ones are then deleted
    unless an archived copy remains."""
    archive: CheckpointArchive | None = None
    """Copy each checkpoint to this volume through a Job."""


class CheckpointRef(KubeModel):
    """A checkpoint held by another, running RaftCluster."""

    cluster: ClusterName
    """Name of the RaftCluster holding the checkpoint."""
    id: CheckpointId
    """The checkpoint id."""
    namespace: Annotated[str, Field(max_length=63, pattern=DNS1035_LABEL_PATTERN)] | None = None
    """Namespace of that RaftCluster; this cluster's namespace when unset."""
    client_port: Port = DEFAULT_CLIENT_PORT
    """Client port of that cluster's Service."""


class ArchivedCheckpointRef(KubeModel):
    """A checkpoint directory (data + manifest.json) on a PersistentVolumeClaim."""

    claim_name: ObjectName
    """The claim; every member mounts it, so ReadOnlyMany/ReadWriteMany unless they share a node."""
    path: Annotated[str, Field(max_length=1024, pattern=RELATIVE_PATH_PATTERN)]
    """Directory inside the claim, e.g. `demo/20240101-000000` as written by the archive Job."""


_RESTORE_SOURCE = (
    "(has(self.fromCheckpoint) ? 1 : 0) + (has(self.archive) ? 1 : 0) + "
    "(has(self.bucket) ? 1 : 0) == 1",
    "restore needs exactly one of fromCheckpoint, archive or bucket",
)


class RestoreSpec(KubeModel):
    """Bootstrap a new cluster from a checkpoint instead of an empty state."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            _RESTORE_SOURCE,
            ("self == oldSelf", "restore is immutable"),
        )
    )

    from_checkpoint: CheckpointRef | None = None
    """Download the checkpoint from another RaftCluster."""
    archive: ArchivedCheckpointRef | None = None
    """Copy the checkpoint from an archive volume."""
    bucket: BucketCheckpointRef | None = None
    """Download the checkpoint from an S3-compatible bucket (sha256 verified)."""

    @model_validator(mode="after")
    def _exactly_one_source(self) -> RestoreSpec:
        sources = (self.from_checkpoint, self.archive, self.bucket)
        if sum(s is not None for s in sources) != 1:
            raise ValueError(_RESTORE_SOURCE[1])
        return self


class QuorumRecoveryConfirmation(StrEnum):
    FORCE_NEW_CLUSTER = "ForceNewCluster"
    """The survivor becomes the only voter of a new cluster (like etcd's
    --force-new-cluster); writes only the lost members had are gone for good."""


class QuorumRecoveryRequest(KubeModel):
    """Recover a cluster that lost its quorum for good, from its best surviving member.

    Never done without this request: the operator picks the reachable member with the
    highest (last log term, last index), runs `raftkv recover` on its volume, and adds the
    others back on empty volumes. A request is acted on once (status.recovery records it);
    a new `requestId` asks again. Refused while a leader exists or a majority answers.
    """

    request_id: Annotated[str, Field(min_length=1, max_length=63, pattern=DNS1035_LABEL_PATTERN)]
    """Names this request; change it to ask again after a refusal or a failure."""
    confirm: QuorumRecoveryConfirmation
    """Must be `ForceNewCluster`: the entries only the lost members had are lost."""


class RestoreInPlaceConfirmation(StrEnum):
    REPLACE_ALL_DATA = "ReplaceAllData"
    """Every member's data is replaced by the checkpoint's: writes after it are gone from
    the cluster (the old data is kept aside on each volume, not deleted)."""


class RestoreInPlaceRequest(KubeModel):
    """Restore this running cluster from one of its RaftCheckpoints, in place.

    The operator stops every member (writes stop), stages the checkpoint on each member's
    volume from the same bytes (the members' own copies, or the archived copy), checks its
    sha256 against the RaftCheckpoint's on every member, moves the old data aside, and
    starts the members as a new cluster from it. A failure before the members restart puts
    the old data back. Acted on once per requestId (status.restore records it).
    """

    request_id: Annotated[str, Field(min_length=1, max_length=40, pattern=DNS1035_LABEL_PATTERN)]
    """Names this request; change it to ask again."""
    checkpoint: ObjectName
    """The RaftCheckpoint (of this cluster, same namespace) to restore."""
    confirm: RestoreInPlaceConfirmation
    """Must be `ReplaceAllData`."""


class ServiceType(StrEnum):
    CLUSTER_IP = "ClusterIP"
    NODE_PORT = "NodePort"
    LOAD_BALANCER = "LoadBalancer"


class ServicePorts(KubeModel):
    """Ports the members listen on and the Services expose."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            ("self.client != self.peer", "service.ports.client and service.ports.peer must differ"),
        )
    )

    client: Port = DEFAULT_CLIENT_PORT
    """Client API port (HTTP)."""
    peer: Port = DEFAULT_PEER_PORT
    """Raft peer port."""

    @model_validator(mode="after")
    def _distinct(self) -> ServicePorts:
        if self.client == self.peer:
            raise ValueError("service.ports.client and service.ports.peer must differ")
        return self


class ServiceSpec(KubeModel):
    """The client-facing Services `<name>` (leader) and `<name>-read` (all ready members)."""

    type: ServiceType = ServiceType.CLUSTER_IP
    """Service type of both client-facing Services."""
    annotations: dict[str, str] | None = Field(default=None, max_length=64)
    """Annotations of both client-facing Services (e.g. for a cloud load balancer)."""
    ports: ServicePorts = Field(default_factory=ServicePorts)
    """Listening and Service ports."""


class PlacementSpec(KubeModel):
    """Where members may run; passed through to the pod template."""

    affinity: Affinity | None = None
    """Affinity rules. Unset: a preferred pod anti-affinity on kubernetes.io/hostname (one
    member per node where the nodes allow it)."""
    tolerations: list[Toleration] | None = Field(default=None, max_length=64)
    """Tolerations of node taints."""
    topology_spread_constraints: list[TopologySpreadConstraint] | None = Field(
        default=None, max_length=16
    )
    """Spread members over zones or nodes. Unset: maxSkew 1 over topology.kubernetes.io/zone,
    ScheduleAnyway; an empty list: none."""
    node_selector: dict[str, str] | None = Field(default=None, max_length=64)
    """Node labels a member's node must have."""
    priority_class_name: ObjectName | None = None
    """PriorityClass of the members."""


class TLSMode(StrEnum):
    OPERATOR = "operator"
    """The operator makes a CA per cluster and the certificates it signs, and renews them."""
    CERT_MANAGER = "certManager"
    """cert-manager `Certificate`s from `tls.issuerRef` (cert-manager must be installed)."""
    DISABLED = "disabled"
    """INSECURE: plain HTTP, no authentication, no peer TLS (`--client-insecure
    --peer-insecure`). For isolated test clusters only."""


class IssuerRef(KubeModel):
    """A cert-manager Issuer or ClusterIssuer."""

    name: ObjectName
    kind: Literal["Issuer", "ClusterIssuer"] = "Issuer"
    group: Annotated[str, Field(max_length=253)] = "cert-manager.io"


class TLSSpec(KubeModel):
    """TLS of the peer and client ports (secure by default)."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            (
                "self.mode != 'certManager' || has(self.issuerRef)",
                "tls.mode certManager needs tls.issuerRef",
            ),
            (
                "self.mode == 'certManager' || !has(self.issuerRef)",
                "tls.issuerRef is used only with tls.mode certManager",
            ),
            (
                "(self.mode == 'disabled') == (oldSelf.mode == 'disabled')",
                "tls cannot be turned on or off on a running cluster: its members would split "
                "between TLS and plain-text peers",
            ),
        )
    )

    mode: TLSMode = TLSMode.OPERATOR
    """Who makes the certificates: `operator` (default), `certManager`, or `disabled`
    (explicitly insecure)."""
    issuer_ref: IssuerRef | None = None
    """The cert-manager issuer (mode certManager)."""
    certificate_days: int = Field(default=90, ge=1, le=3650)
    """Lifetime of member certificates; renewed when less than a third of it remains."""

    @model_validator(mode="after")
    def _issuer(self) -> TLSSpec:
        if self.mode == TLSMode.CERT_MANAGER and self.issuer_ref is None:
            raise ValueError("tls.mode certManager needs tls.issuerRef")
        if self.mode != TLSMode.CERT_MANAGER and self.issuer_ref is not None:
            raise ValueError("tls.issuerRef is used only with tls.mode certManager")
        return self


class AuthSpec(KubeModel):
    """Client authentication: bearer tokens whose digests the members hold."""

    enabled: bool = True
    """Members require a token (the admin token is in Secret `<name>-admin`). Must be
    false exactly when `tls.mode` is `disabled` (a token over plain HTTP is readable)."""


class NetworkSpec(KubeModel):
    """The cluster's NetworkPolicy: the peer port only from members; the client port (which
    also serves /metrics) from the namespaces below, the cluster's own and the operator's."""

    policy: bool = True
    """Create the NetworkPolicy `<name>` (needs a CNI that enforces NetworkPolicies)."""
    client_namespace_selector: LabelSelector | None = None
    """More namespaces whose pods may reach the client port (unset: only the cluster's own
    namespace and the operator's)."""
    monitoring_namespace_selector: LabelSelector | None = None
    """Namespaces of the metrics scrapers (e.g. `kubernetes.io/metadata.name: monitoring`)."""


def default_resources() -> ResourceRequirements:
    return ResourceRequirements(
        requests={"cpu": "250m", "memory": "256Mi"}, limits={"memory": "1Gi"}
    )


_RESERVED_LABELS_RULE = " && ".join(f"!k.startsWith('{p}')" for p in RESERVED_LABEL_PREFIXES)


_AUTH_TLS_MESSAGE = (
    "auth.enabled must be false exactly when tls.mode is disabled: members require TLS "
    "with tokens, and a token over plain HTTP is readable"
)


class RaftClusterSpec(KubeModel):
    """Desired state of a raftkv cluster."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            (
                "!has(self.restore) || has(oldSelf.restore)",
                "restore can only be set when the cluster is created",
            ),
            (
                "!has(self.tls) || !has(self.auth) "
                "|| (self.tls.mode == 'disabled') == !self.auth.enabled",
                _AUTH_TLS_MESSAGE,
            ),
        )
    )

    replicas: int = Field(
        default=3,
        ge=1,
        le=9,
        json_schema_extra=_cel(
            ("self % 2 == 1", "replicas must be odd (1, 3, 5, 7 or 9) so a majority survives"),
        ),
    )
    """Number of voting members: odd, 1 to 9."""
    version: Annotated[str, Field(max_length=63, pattern=VERSION_PATTERN)] = DEFAULT_VERSION
    """raftkv release to run; the image tag when `image` is not set."""
    image: Annotated[str, Field(max_length=512, pattern=IMAGE_PATTERN)] | None = None
    """Full image reference; overrides the image derived from `version`."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    """Image pull policy of the members."""
    image_pull_secrets: list[LocalObjectReference] | None = Field(default=None, max_length=16)
    """Secrets for pulling the image from a private registry."""
    storage: StorageSpec = Field(default_factory=StorageSpec)
    """Per-member persistent volume."""
    resources: ResourceRequirements = Field(default_factory=default_resources)
    """Compute resources of each member."""
    consensus: Literal["raft", "multipaxos"] = Field(
        default="raft",
        json_schema_extra=_cel(
            (
                "self == oldSelf",
                "consensus is immutable: each member's data belongs to the engine that wrote it",
            ),
        ),
    )
    """Consensus engine of the members (`raftkv serve --consensus`), fixed at creation.
    The operator's quorum-loss recovery (spec.recovery) works on both (docs/recovery.md)."""
    raft: RaftTimings = Field(default_factory=RaftTimings)
    """Raft timings (the same ticks drive the Multi-Paxos engine)."""
    checkpoints: CheckpointsSpec = Field(default_factory=CheckpointsSpec)
    """Checkpoint schedule, retention and archive."""
    restore: RestoreSpec | None = None
    """Bootstrap from a checkpoint (only at creation)."""
    service: ServiceSpec = Field(default_factory=ServiceSpec)
    """Client Service options and ports."""
    placement: PlacementSpec = Field(default_factory=PlacementSpec)
    """Pod placement."""
    tls: TLSSpec = Field(default_factory=TLSSpec)
    """TLS of both ports: on by default, certificates made by the operator."""
    auth: AuthSpec = Field(default_factory=AuthSpec)
    """Token authentication of clients: on by default."""
    network: NetworkSpec = Field(default_factory=NetworkSpec)
    """The cluster's NetworkPolicy."""
    recovery: QuorumRecoveryRequest | None = None
    """Ask for a quorum-loss recovery (docs/recovery.md); acted on once per requestId."""
    restore_in_place: RestoreInPlaceRequest | None = None
    """Ask for a restore of this cluster from a RaftCheckpoint (docs/recovery.md); acted on
    once per requestId."""
    paused: bool = False
    """Stop reconciling (no restarts, scaling or checkpoints) until unset."""
    pod_annotations: dict[str, str] | None = Field(default=None, max_length=64)
    """Extra annotations on member pods."""
    pod_labels: dict[str, LabelValue] | None = Field(
        default=None,
        max_length=64,
        json_schema_extra=_cel(
            (
                f"self.all(k, {_RESERVED_LABELS_RULE})",
                "podLabels may not use the app.kubernetes.io/ or raftkv.dev/ prefixes",
            ),
        ),
    )
    """Extra labels on member pods."""

    @model_validator(mode="after")
    def _check(self) -> RaftClusterSpec:
        if (self.tls.mode == TLSMode.DISABLED) != (not self.auth.enabled):
            raise ValueError(_AUTH_TLS_MESSAGE)
        if self.replicas % 2 != 1:
            raise ValueError("replicas must be odd (1, 3, 5, 7 or 9) so a majority survives")
        for key in self.pod_labels or {}:
            if key.startswith(RESERVED_LABEL_PREFIXES):
                raise ValueError(
                    "podLabels may not use the app.kubernetes.io/ or raftkv.dev/ prefixes"
                )
        return self

    def container_image(self, default_repository: str = DEFAULT_IMAGE_REPOSITORY) -> str:
        """The image members run: `image`, else `<default_repository>:<version>`."""
        return self.image or f"{default_repository}:{self.version}"

    @property
    def secure(self) -> bool:
        """TLS on both ports and token authentication (the default)."""
        return self.tls.mode != TLSMode.DISABLED


# ---- RaftCluster status ------------------------------------------------------------------------


class ClusterPhase(StrEnum):
    PENDING = "Pending"
    BOOTSTRAPPING = "Bootstrapping"
    AVAILABLE = "Available"
    DEGRADED = "Degraded"
    SCALING = "Scaling"
    UPGRADING = "Upgrading"
    PAUSED = "Paused"
    FAILED = "Failed"
    RECOVERING = "Recovering"
    """A quorum-loss recovery (spec.recovery) is in flight."""
    RESTORING = "Restoring"
    """An in-place restore (spec.restoreInPlace) is in flight."""


class ConditionType(StrEnum):
    AVAILABLE = "Available"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(KubeModel):
    """A Kubernetes condition (the shape of meta/v1 Condition)."""

    model_config = ConfigDict(extra="ignore")

    type: Annotated[str, Field(max_length=316, pattern=CONDITION_TYPE_PATTERN)]
    """Condition type: Available, Progressing or Degraded."""
    status: ConditionStatus
    """True, False or Unknown."""
    observed_generation: int | None = Field(default=None, ge=0)
    """The .metadata.generation the condition was computed from."""
    last_transition_time: datetime
    """When the status last changed."""
    reason: Annotated[str, Field(min_length=1, max_length=1024, pattern=CONDITION_REASON_PATTERN)]
    """A CamelCase reason for the last transition."""
    message: Annotated[str, Field(max_length=32768)] = ""
    """Human-readable details."""


class MemberRole(StrEnum):
    LEADER = "Leader"
    FOLLOWER = "Follower"
    CANDIDATE = "Candidate"
    PRE_CANDIDATE = "PreCandidate"
    LEARNER = "Learner"
    UNKNOWN = "Unknown"

    @classmethod
    def from_node(cls, role: str | None) -> MemberRole:
        """Map a node's `/v1/status` role (`leader`, `pre_candidate`, ...) to a MemberRole."""
        by_node_name = {
            "leader": cls.LEADER,
            "follower": cls.FOLLOWER,
            "candidate": cls.CANDIDATE,
            "pre_candidate": cls.PRE_CANDIDATE,
            "learner": cls.LEARNER,
        }
        return by_node_name.get(role or "", cls.UNKNOWN)


class MemberStatus(KubeModel):
    """One Raft member as last observed."""

    model_config = ConfigDict(extra="ignore")

    name: str
    """Member (pod) name."""
    id: int = Field(ge=1)
    """Numeric Raft id."""
    role: MemberRole = MemberRole.UNKNOWN
    """Raft role."""
    healthy: bool = False
    """The member answers and is ready (its replication lag is the metric
    raftkv_operator_member_lag_entries, not status: status holds no fast-moving counters)."""


class OperationKind(StrEnum):
    SCALE_UP = "ScaleUp"
    SCALE_DOWN = "ScaleDown"
    ROLLING_UPDATE = "RollingUpdate"
    RECOVER = "Recover"
    RECOVER_QUORUM = "RecoverQuorum"
    RESTORE_IN_PLACE = "RestoreInPlace"


class Operation(KubeModel):
    """A multi-step change in flight, persisted so a restarted operator resumes it."""

    model_config = ConfigDict(extra="ignore")

    kind: OperationKind
    """What is being done."""
    step: Annotated[str, Field(min_length=1, max_length=63)]
    """The reconciler's step within the operation (its own vocabulary)."""
    started_at: datetime
    """When the operation started."""
    member: str | None = None
    """The member being added, removed, restarted or recovered."""
    target_replicas: int | None = Field(default=None, ge=0, le=9)
    """ScaleUp/ScaleDown: the member count the operation converges to."""
    target_revision: str | None = Field(default=None, max_length=63)
    """RollingUpdate: the pod-template hash every member must run."""
    attempts: int = Field(default=0, ge=0)
    """Failed attempts of the current step."""
    retired_id: int | None = Field(default=None, ge=1)
    """ScaleUp/Recover: the Raft id `member`'s volume came back with, which the leader
    refuses for good (it was removed: 409 member_id_removed). The volume is replaced so the
    member starts empty and joins under a fresh id."""
    request_id: str | None = Field(default=None, max_length=63)
    """RecoverQuorum, RestoreInPlace: the request's requestId being carried out."""
    message: Annotated[str, Field(max_length=4096)] | None = None
    """Last error or progress note."""


class CheckpointSummary(KubeModel):
    """The newest successful checkpoint."""

    model_config = ConfigDict(extra="ignore")

    name: str | None = None
    """The RaftCheckpoint object."""
    id: str
    """Checkpoint id."""
    index: int | None = Field(default=None, ge=0)
    """Raft index of the checkpoint."""
    time: datetime | None = None
    """When it was taken."""


class RecoveryPhase(StrEnum):
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    REFUSED = "Refused"
    FAILED = "Failed"


class RecoveryStatus(KubeModel):
    """The last quorum-loss recovery request and what became of it."""

    model_config = ConfigDict(extra="ignore")

    request_id: str
    """spec.recovery.requestId of that request (a request is acted on once)."""
    phase: RecoveryPhase
    """Running, Succeeded, Refused (nothing changed) or Failed."""
    survivor: str | None = None
    """The member recovered from."""
    last_term: int | None = Field(default=None, ge=0)
    """The survivor's last log term when chosen."""
    last_index: int | None = Field(default=None, ge=0)
    """The survivor's last log index when chosen (entries after it, held only by lost
    members, are lost)."""
    started_at: datetime | None = None
    """When the request was accepted."""
    writable_at: datetime | None = None
    """When the recovered survivor first led (the cluster took writes again)."""
    finished_at: datetime | None = None
    """When every member was a healthy voter again (or the request was refused/failed)."""
    message: Annotated[str, Field(max_length=4096)] | None = None
    """Why, for Refused and Failed; the candidates considered otherwise."""


class RestoreStatus(KubeModel):
    """The last in-place restore request (spec.restoreInPlace) and what became of it."""

    model_config = ConfigDict(extra="ignore")

    request_id: str
    """spec.restoreInPlace.requestId of that request (a request is acted on once)."""
    phase: RecoveryPhase
    """Running, Succeeded, Refused (nothing changed) or Failed (the old data is back)."""
    checkpoint: str | None = None
    """The RaftCheckpoint restored."""
    checkpoint_id: str | None = None
    """Its checkpoint id."""
    index: int | None = Field(default=None, ge=0)
    """Its Raft index."""
    sha256: Annotated[str, Field(pattern=SHA256_PATTERN)] | None = None
    """The sha256 every member's staged copy was checked against."""
    source: str | None = None
    """Where the bytes came from: `members` (their own copies) or `archive:<claim>/<path>`."""
    kept_aside: str | None = None
    """On each member's volume, where its old data directory was moved (kept until deleted
    by hand, docs/recovery.md)."""
    started_at: datetime | None = None
    """When the request was accepted."""
    finished_at: datetime | None = None
    """When the restored cluster had every member healthy (or the request failed)."""
    message: Annotated[str, Field(max_length=4096)] | None = None
    """Why, for Refused and Failed; progress otherwise."""


class CARotationPhase(StrEnum):
    TRUST_BOTH = "TrustBoth"
    """A new CA exists; every place that trusts holds old + new; leaves are still old."""
    ISSUE_NEW = "IssueNew"
    """Every member trusts both: member certificates are issued by the new CA."""
    DROP_OLD = "DropOld"
    """Every member serves a new certificate: the old CA is dropped from every bundle."""
    SUCCEEDED = "Succeeded"
    """Every member trusts the new CA only (status only; not a step)."""


class CARotationStatus(KubeModel):
    """The cluster CA's rotation (tls.mode operator): the step in flight or the last one
    done. The `<name>-ca` Secret holds the state itself (with the new CA's key); this
    mirrors it for people and alerts."""

    model_config = ConfigDict(extra="ignore")

    phase: CARotationPhase
    """TrustBoth, IssueNew, DropOld, or Succeeded."""
    reason: Annotated[str, Field(max_length=63)] | None = None
    """Why it started: Requested (annotation raftkv.dev/rotate-ca) or Expiring."""
    request_id: Annotated[str, Field(max_length=253)] | None = None
    """The annotation's value acted on (a value is acted on once)."""
    started_at: datetime | None = None
    """When the new CA was made."""
    finished_at: datetime | None = None
    """When every member trusted the new CA only."""
    waiting_for: list[Annotated[str, Field(max_length=63)]] = Field(
        default_factory=list, max_length=16
    )
    """Members that have not loaded what the current step needs yet."""
    ca_not_after: datetime | None = None
    """When the CA that signs member certificates now expires."""


class PeerTLSStage(StrEnum):
    """A stage of moving a plain-text peer plane to TLS (docs/security.md, P1..P3)."""

    P1 = "P1"
    """The TLS files mounted, `--peer-tls-migration accept-both`: accepts TLS or plain
    text, dials plain text."""
    P2 = "P2"
    """`--peer-tls-migration dial-tls`: accepts TLS or plain text, dials TLS."""
    P3 = "P3"
    """The TLS files alone: TLS only (the secure default of the peer plane)."""


class TLSMigrationStatus(KubeModel):
    """Moving a cluster made with `--client-insecure --peer-insecure` (an earlier operator)
    onto TLS. Written before the StatefulSet's template changes, so a restarted operator
    builds the same template and resumes; the stage moves on only once every member
    reports the current one in `/v1/status` `modes.peer`."""

    model_config = ConfigDict(extra="ignore")

    stage: PeerTLSStage
    """The peer stage the StatefulSet's template runs (P1, P2 or P3)."""
    started_at: datetime | None = None
    """When the migration started (P1 recorded)."""
    stage_started_at: datetime | None = None
    """When the current stage was recorded."""
    finished_at: datetime | None = None
    """When every member reported P3 (the peer plane is TLS only)."""
    waiting_for: list[Annotated[str, Field(max_length=63)]] = Field(
        default_factory=list, max_length=16
    )
    """Members that do not report the current stage yet."""
    client_plane: Annotated[str, Field(max_length=253)] | None = None
    """What the client port still is: plain HTTP without authentication until the
    client-plane cutover (docs/security.md); kept here so nobody reads P3 as done."""


class RaftClusterStatus(KubeModel):
    """Observed state of a raftkv cluster, written by the operator."""

    # Status comes from the API server (or kopf); unknown fields are ignored, never fatal.
    model_config = ConfigDict(extra="ignore")

    phase: ClusterPhase = ClusterPhase.PENDING
    """Summary of the cluster's state."""
    observed_generation: int | None = Field(default=None, ge=0)
    """The .metadata.generation last acted upon."""
    replicas: int = Field(default=0, ge=0)
    """Member pods that exist (the scale subresource's current replicas)."""
    ready_replicas: int = Field(default=0, ge=0)
    """Members that are ready."""
    selector: str | None = None
    """Label selector of the member pods (for the scale subresource)."""
    leader: str | None = None
    """Name of the current leader."""
    term: int | None = Field(default=None, ge=0)
    """Current Raft term."""
    members: list[MemberStatus] = Field(
        default_factory=list,
        max_length=32,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    """Raft members as seen by the leader."""
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=16,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    """Available, Progressing and Degraded conditions."""
    last_checkpoint: CheckpointSummary | None = None
    """The newest successful checkpoint."""
    last_schedule_time: datetime | None = None
    """When the checkpoint schedule last fired (a restarted operator neither repeats nor skips)."""
    bootstrapped: bool = False
    """The initial members formed a cluster; new members now join as learners."""
    initial_replicas: int | None = Field(default=None, ge=1, le=9)
    """Members listed in --initial-cluster (fixed when the cluster is created)."""
    operation: Operation | None = None
    """The multi-step operation in flight, if any."""
    recovery: RecoveryStatus | None = None
    """The last quorum-loss recovery request (spec.recovery) and its outcome."""
    restore: RestoreStatus | None = None
    """The last in-place restore request (spec.restoreInPlace) and its outcome."""
    ca_rotation: CARotationStatus | None = None
    """The cluster CA's rotation in flight, or the last one done (tls.mode operator)."""
    tls_migration: TLSMigrationStatus | None = None
    """A cluster made without TLS being moved onto it (peer plane: P1 -> P2 -> P3); kept
    after P3 while its client port stays plain."""
    kopf: dict[str, Any] | None = None
    """Reserved for the kopf framework's own bookkeeping."""

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    *,
    now: datetime,
    observed_generation: int | None = None,
) -> list[Condition]:
    """Conditions with `type_` set; lastTransitionTime moves only when the status changes."""
    previous = next((c for c in conditions if c.type == type_), None)
    transition = previous.last_transition_time if previous and previous.status == status else now
    updated = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=transition,
        observed_generation=observed_generation,
    )
    if previous is None:
        return [*conditions, updated]
    return [updated if c.type == type_ else c for c in conditions]


# ---- top-level objects -------------------------------------------------------------------------


class RaftCluster(BaseModel):
    """A Raft-replicated raftkv cluster."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        serialize_by_alias=True,
    )

    resource: ClassVar[ResourceInfo] = ResourceInfo(
        kind="RaftCluster",
        plural="raftclusters",
        singular="raftcluster",
        # `rc` is ReplicationController's short name.
        short_names=("rkc",),
        categories=("raftkv",),
        printer_columns=(
            PrinterColumn("Replicas", ".spec.replicas", "integer", "Desired members"),
            PrinterColumn("Ready", ".status.readyReplicas", "integer", "Ready members"),
            PrinterColumn("Leader", ".status.leader", "string", "Current leader"),
            PrinterColumn("Phase", ".status.phase", "string", "Cluster phase"),
            PrinterColumn("Term", ".status.term", "integer", "Raft term", priority=1),
            PrinterColumn("Version", ".spec.version", "string", "raftkv version", priority=1),
            PrinterColumn("Age", ".metadata.creationTimestamp", "date"),
        ),
        scale=True,
    )

    api_version: Literal["raftkv.dev/v1alpha1"] = "raftkv.dev/v1alpha1"
    kind: Literal["RaftCluster"] = "RaftCluster"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: RaftClusterSpec
    status: RaftClusterStatus = Field(default_factory=RaftClusterStatus)

    @property
    def name(self) -> str:
        if not self.metadata.name:
            raise ValueError("RaftCluster has no metadata.name")
        return self.metadata.name

    @property
    def client_port_tls(self) -> bool:
        """TLS and tokens on the client port: unless `tls.mode: disabled`, or the cluster
        was made without TLS and is being (or was) moved onto it, whose client port stays
        plain (status.tlsMigration; docs/security.md)."""
        return self.spec.secure and self.status.tls_migration is None

    @property
    def namespace(self) -> str:
        if not self.metadata.namespace:
            raise ValueError(f"RaftCluster {self.metadata.name!r} has no metadata.namespace")
        return self.metadata.namespace

    def to_k8s(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class CheckpointPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    EXPIRED = "Expired"
    """It succeeded, but the members no longer hold it (their retention removed the files);
    an archived copy may remain (status.archived)."""


class RaftCheckpointSpec(KubeModel):
    """Which cluster to checkpoint."""

    model_config = ConfigDict(json_schema_extra=_cel(("self == oldSelf", "spec is immutable")))

    cluster: ClusterName
    """Name of the RaftCluster (same namespace)."""
    id: CheckpointId | None = None
    """Checkpoint id; chosen by the leader when unset."""


class RaftCheckpointStatus(KubeModel):
    """Result of a checkpoint."""

    model_config = ConfigDict(extra="ignore")

    phase: CheckpointPhase = CheckpointPhase.PENDING
    """Pending, Running, Succeeded, Failed or Expired."""
    id: str | None = None
    """The checkpoint id (spec.id or the one the leader chose)."""
    index: int | None = Field(default=None, ge=0)
    """Raft index the checkpoint was taken at."""
    term: int | None = Field(default=None, ge=0)
    """Raft term of that index."""
    sha256: Annotated[str, Field(pattern=SHA256_PATTERN)] | None = None
    """SHA-256 of the checkpoint data."""
    size: int | None = Field(default=None, ge=0)
    """Size of the checkpoint data in bytes."""
    members: list[str] | None = Field(default=None, max_length=32)
    """Members holding the checkpoint."""
    time: datetime | None = None
    """When the checkpoint was taken."""
    archived: bool = False
    """A copy is on the archive volume."""
    archive_path: str | None = None
    """Directory of that copy inside the archive claim."""
    message: Annotated[str, Field(max_length=4096)] | None = None
    """Error or progress details."""
    kopf: dict[str, Any] | None = None
    """Reserved for the kopf framework's own bookkeeping."""


class RaftCheckpoint(BaseModel):
    """A checkpoint of a RaftCluster (on demand, or created by the schedule)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        serialize_by_alias=True,
    )

    resource: ClassVar[ResourceInfo] = ResourceInfo(
        kind="RaftCheckpoint",
        plural="raftcheckpoints",
        singular="raftcheckpoint",
        short_names=("rkcp",),
        categories=("raftkv",),
        printer_columns=(
            PrinterColumn("Cluster", ".spec.cluster", "string", "RaftCluster"),
            PrinterColumn("Id", ".status.id", "string", "Checkpoint id"),
            PrinterColumn("Phase", ".status.phase", "string", "Checkpoint phase"),
            PrinterColumn("Index", ".status.index", "integer", "Raft index"),
            PrinterColumn("Size", ".status.size", "integer", "Bytes", priority=1),
            PrinterColumn("Archived", ".status.archived", "boolean", priority=1),
            PrinterColumn("Age", ".metadata.creationTimestamp", "date"),
        ),
    )

    api_version: Literal["raftkv.dev/v1alpha1"] = "raftkv.dev/v1alpha1"
    kind: Literal["RaftCheckpoint"] = "RaftCheckpoint"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: RaftCheckpointSpec
    status: RaftCheckpointStatus = Field(default_factory=RaftCheckpointStatus)

    @property
    def name(self) -> str:
        if not self.metadata.name:
            raise ValueError("RaftCheckpoint has no metadata.name")
        return self.metadata.name

    @property
    def namespace(self) -> str:
        if not self.metadata.namespace:
            raise ValueError(f"RaftCheckpoint {self.metadata.name!r} has no metadata.namespace")
        return self.metadata.namespace

    def to_k8s(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


TOP_LEVEL_MODELS: tuple[type[RaftCluster] | type[RaftCheckpoint], ...] = (
    RaftCluster,
    RaftCheckpoint,
)


def quorum(voters: int) -> int:
    """Votes needed for a majority of `voters`."""
    return voters // 2 + 1


__all__ = [
    "API_GROUP",
    "API_VERSION",
    "GROUP_VERSION",
    "Affinity",
    "ArchiveClaimTemplate",
    "ArchivedCheckpointRef",
    "BucketArchive",
    "BucketCheckpointRef",
    "BucketLocation",
    "CheckpointArchive",
    "CheckpointPhase",
    "CheckpointRef",
    "CheckpointSummary",
    "CheckpointsSpec",
    "ClusterPhase",
    "Condition",
    "ConditionStatus",
    "ConditionType",
    "KubeModel",
    "MemberRole",
    "MemberStatus",
    "ObjectMeta",
    "Operation",
    "OperationKind",
    "PlacementSpec",
    "QuorumRecoveryConfirmation",
    "QuorumRecoveryRequest",
    "RaftCheckpoint",
    "RaftCheckpointSpec",
    "RaftCheckpointStatus",
    "RaftCluster",
    "RaftClusterSpec",
    "RaftClusterStatus",
    "RaftTimings",
    "ReclaimPolicy",
    "RestoreInPlaceConfirmation",
    "RestoreInPlaceRequest",
    "RestoreStatus",
    "RecoveryPhase",
    "RecoveryStatus",
    "ResourceInfo",
    "ResourceRequirements",
    "RestoreSpec",
    "SecretKeyRef",
    "ServicePorts",
    "ServiceSpec",
    "ServiceType",
    "StorageSpec",
    "Toleration",
    "TopologySpreadConstraint",
    "quorum",
    "set_condition",
]
