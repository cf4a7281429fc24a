"""Moving a cluster made without TLS onto it: the pure decisions (docs/security.md,
"Migrating a pre-TLS cluster on Kubernetes").

An earlier operator ran every member with `--client-insecure --peer-insecure`; once the
CRD defaults apply such a cluster reads as `tls.mode: operator`, but switching its
members to TLS in one rolling update would split them into TLS and plain-text halves that
cannot talk. The peer plane goes through the node's migration stages instead, every
member into one stage before any member enters the next:

| stage | member flags | accepts | dials |
|---|---|---|---|
| P0 (the old template) | `--peer-insecure` | plain | plain |
| P1 | peer TLS files + `--peer-tls-migration accept-both` | TLS, plain | plain |
| P2 | peer TLS files + `--peer-tls-migration dial-tls` | TLS, plain | TLS |
| P3 | peer TLS files alone | TLS | TLS |

The stage is recorded in `status.tlsMigration` before the StatefulSet's template changes
(desired.py builds the template from it), so a restarted operator writes the same template
and resumes; the restarts themselves are the planner's RollingUpdate (one member at a
time, each caught up before the next, the leader last). A stage is done only when every
member — every pod not being deleted and every member of the leader's configuration —
reports it in `/v1/status` `modes.peer`: observed, never assumed from templates or time.

The client plane has no mixed mode on the node: it stays `--client-insecure` (plain HTTP,
no tokens) through the whole migration and after it, and status says so
(`status.tlsMigration.clientPlane`); see docs/security.md for why and what is left.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from raftkv_operator.models import PeerTLSStage, RaftCluster, TLSMigrationStatus
from raftkv_operator.nodestatus import NodeStatus

CLIENT_PLANE_PLAIN = (
    "plain HTTP without authentication (--client-insecure): the client-plane cutover "
    "to TLS and tokens is not automated yet (docs/security.md)"
)

NEXT_STAGE: Mapping[PeerTLSStage, PeerTLSStage | None] = {
    PeerTLSStage.P1: PeerTLSStage.P2,
    PeerTLSStage.P2: PeerTLSStage.P3,
    PeerTLSStage.P3: None,
}

STAGE_FLAGS: Mapping[PeerTLSStage, tuple[str, ...]] = {
    PeerTLSStage.P1: ("--peer-tls-migration=accept-both",),
    PeerTLSStage.P2: ("--peer-tls-migration=dial-tls",),
    PeerTLSStage.P3: (),
}
"""The node flags of each stage, beside the three peer TLS files."""

ReportedStage = PeerTLSStage | Literal["P0"]


def reported_stage(node: NodeStatus | None) -> ReportedStage | None:
    """The stage a member's `/v1/status` `modes.peer` describes (None: it did not answer,
    says nothing, or says something no stage is)."""
    if node is None or node.modes.peer is None:
        return None
    peer = node.modes.peer
    accepts = set(peer.accepts)
    if peer.migration == "accept-both" and accepts == {"tls", "plain"} and peer.dials == "plain":
        return PeerTLSStage.P1
    if peer.migration == "dial-tls" and accepts == {"tls", "plain"} and peer.dials == "tls":
        return PeerTLSStage.P2
    if peer.migration is None and accepts == {"tls"} and peer.dials == "tls":
        return PeerTLSStage.P3
    if peer.migration is None and accepts == {"plain"} and peer.dials == "plain":
        return "P0"
    return None


@dataclass(frozen=True)
class Decision:
    """status.tlsMigration to persist (None: unchanged) and the Event for it."""

    record: TLSMigrationStatus | None = None
    event: tuple[str, str] | None = None
    warning: bool = False


NOTHING = Decision()


def decide(
    cluster: RaftCluster,
    live_peer_tls: bool | None,
    members: Mapping[str, NodeStatus | None] | None,
    now: datetime,
) -> Decision:
    """The migration's next move, from the cluster (its spec and status.tlsMigration), the
    live StatefulSet template's peer setting (desired.peer_tls_of; None: no StatefulSet),
    and every member's status this round (None: not observed, so only a start can happen;
    a member mapped to None did not answer)."""
    if not cluster.spec.secure or cluster.spec.paused:
        return NOTHING
    record = cluster.status.tls_migration
    if record is None:
        if live_peer_tls is not False:
            return NOTHING  # already TLS (or nothing runs yet): a new cluster starts secure
        return Decision(
            TLSMigrationStatus(
                stage=PeerTLSStage.P1,
                started_at=now,
                stage_started_at=now,
                client_plane=CLIENT_PLANE_PLAIN,
            ),
            (
                "TLSMigrationStarted",
                "the members run --peer-insecure while spec.tls asks for TLS: moving the "
                "peer plane to TLS in stages P1 -> P2 -> P3, one member at a time; the "
                "client port stays plain HTTP",
            ),
        )
    if record.finished_at is not None or members is None:
        return NOTHING
    waiting = sorted(name for name, node in members.items() if reported_stage(node) != record.stage)
    if waiting or not members:
        if waiting == record.waiting_for:
            return NOTHING
        return Decision(record.model_copy(update={"waiting_for": waiting}))
    following = NEXT_STAGE[record.stage]
    if following is None:
        return Decision(
            record.model_copy(update={"finished_at": now, "waiting_for": []}),
            (
                "PeerTLSMigrated",
                f"every member reports P3: the peer plane is TLS only; the client port is "
                f"still {CLIENT_PLANE_PLAIN}",
            ),
            warning=True,
        )
    return Decision(
        record.model_copy(update={"stage": following, "stage_started_at": now, "waiting_for": []}),
        (
            "TLSMigrationStage",
            f"every member reports {record.stage.value}: rolling the members to {following.value}",
        ),
    )


def in_flight(cluster: RaftCluster) -> bool:
    """A migration is recorded and its peer plane has not reached P3 everywhere."""
    record = cluster.status.tls_migration
    return cluster.spec.secure and record is not None and record.finished_at is None


def expected_members(pods: Mapping[str, bool], configuration: list[str] | None) -> list[str]:
    """Who must report a stage: every pod not being deleted (`pods`: name -> terminating)
    and every member of the leader's configuration (None: no leader seen)."""
    return sorted(
        {n for n, terminating in pods.items() if not terminating} | set(configuration or [])
    )
