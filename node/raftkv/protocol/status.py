"""The `/v1/status` document: what a node says about itself and the cluster.

One typed model for every reader (the client, the `raftkv` CLI, the operator).
Unknown fields are ignored, so a newer node still answers an older client; a
field a newer node added has a default here, so an older node answers a newer
one. Anything else malformed is a `StatusFormatError` naming the field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, model_validator

_WIRE = "wire"  # validation context: parsing an answer from a node


class StatusFormatError(ValueError):
    """A `/v1/status` answer that does not fit the document (hostile or broken node)."""


class WireModel(BaseModel):
    """A part of the status document as read off the wire.

    Frozen: a status is a snapshot of a moment, compared and hashed as a value.
    Unknown fields are dropped when parsing an answer (`parse`), but refused when
    code builds a model: a misspelt or retired field name there is a bug."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _drop_unknown_fields_from_the_wire(cls, data: Any, info: ValidationInfo) -> Any:
        if info.context and info.context.get(_WIRE) and isinstance(data, dict):
            return {k: v for k, v in data.items() if k in cls.model_fields}
        return data

    @classmethod
    def parse(cls, document: Any, **extra: Any) -> Self:
        """Validate a decoded JSON document (plus fields the reader adds, e.g. the
        client's `endpoint`): a `StatusFormatError` if it does not fit."""
        if not isinstance(document, dict):
            raise StatusFormatError(
                f"{cls.__name__}: expected an object, got {type(document).__name__}"
            )
        try:
            return cls.model_validate({**document, **extra}, context={_WIRE: True})
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise StatusFormatError(f"{cls.__name__}: {where}: {first['msg']}") from None


class StatusLeader(WireModel):
    """The leader as this node knows it."""

    id: int
    name: str = ""
    client_url: str = ""
    """Empty until the leader's URL is known (a new leader registers it as its first entry)."""


class StatusMember(WireModel):
    """One member of the Raft configuration."""

    id: int
    name: str = ""
    peer_url: str = ""
    client_url: str = ""
    role: str = "voter"
    """voter or learner."""
    match_index: int | None = None
    """Only on the leader's report."""

    @property
    def voter(self) -> bool:
        return self.role != "learner"


Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class StatusPlaneTLS(WireModel):
    """The TLS files one plane's contexts were built from (what a CA rotation waits on)."""

    cert_sha256: Sha256Hex | None = None
    """SHA-256 of the certificate file; None while the plane's contexts disagree (one
    reloaded, another not yet) or without one."""
    ca_sha256: Sha256Hex | None = None
    """SHA-256 of the trusted-CA file, likewise."""


class StatusTLS(WireModel):
    """Per plane (None: no TLS on it)."""

    peer: StatusPlaneTLS | None = None
    client: StatusPlaneTLS | None = None


class StatusPeerModes(WireModel):
    """What the peer port accepts and how the node dials its peers: what a migration of
    a plain-text cluster to TLS waits on (docs/security.md)."""

    accepts: list[Literal["tls", "plain"]] = []
    dials: Literal["tls", "plain"] | None = None
    migration: Literal["accept-both", "dial-tls"] | None = None
    """The --peer-tls-migration stage (INSECURE while set), None outside one."""


class StatusModes(WireModel):
    peer: StatusPeerModes | None = None
    """None from an older node that does not say."""


class StatusEngineMismatch(WireModel):
    """The last peer this node refused for running another consensus engine."""

    member: int
    name: str = ""
    engine: str | None = None
    """The peer's engine; None when the peer refused ours (REFUSED does not say)."""
    message: str = ""
    seconds_ago: float = 0.0


class NodeStatus(WireModel):
    """A node's `/v1/status`."""

    name: str
    id: int
    cluster_id: str | None = None
    consensus: str | None = None
    """raft or multipaxos (None from an older node that does not say)."""
    engine_mismatch: StatusEngineMismatch | None = None
    """Set while this node refuses a peer of the other engine (a joiner started with the
    wrong --consensus says here why it cannot join)."""
    role: str = "unknown"
    """leader, follower, candidate, pre_candidate, learner or none (outside any configuration)."""
    term: int = 0
    leader: StatusLeader | None = None
    commit_index: int = 0
    applied_index: int = 0
    last_index: int = 0
    last_term: int | None = None
    """Term of the entry at last_index (None from a node that does not say)."""
    ready: bool = False
    """Caught up with the leader closely enough to serve (the readiness probe)."""
    revision: int = 0
    members: tuple[StatusMember, ...] = ()
    tls: StatusTLS = StatusTLS()
    """An older node says nothing: both planes read as unknown."""
    modes: StatusModes = StatusModes()

    @property
    def is_leader(self) -> bool:
        return self.role == "leader"
