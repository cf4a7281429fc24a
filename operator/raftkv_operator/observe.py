"""Reading what Kubernetes says about a cluster's members, as plain data for the planner:
pods, their template hash, and the annotations that remember members' volumes. No I/O."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from raftkv.protocol.kubernetes import ROLE_LABEL, ROLE_TERM_ANNOTATION
from raftkv_operator import desired, planner

MEMBER_VOLUMES_ANNOTATION = "raftkv.dev/member-volumes"
"""On a RaftCluster: {member: uid of its data claim} while it was a healthy voter. A
different uid later means the member's data is gone (recover it, never let it vote as is)."""
SCHEDULED_LABEL = desired.SCHEDULED_LABEL
DATA_CLAIM_PREFIX = f"{desired.DATA_VOLUME}-"
"""A member's claim is `data-<pod>` (the StatefulSet's volumeClaimTemplate)."""


def pod_state(cluster_name: str, pod: Mapping[str, Any]) -> planner.PodState | None:
    meta = pod.get("metadata", {})
    ordinal = planner.ordinal_of(cluster_name, meta.get("name", ""))
    if ordinal is None:
        return None
    status = pod.get("status") or {}
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or ()
    )
    return planner.PodState(
        name=meta["name"],
        ordinal=ordinal,
        ip=status.get("podIP") or None,
        ready=ready,
        terminating=bool(meta.get("deletionTimestamp")),
        template_hash=(meta.get("annotations") or {}).get(desired.POD_TEMPLATE_HASH_ANNOTATION),
        role_label=(meta.get("labels") or {}).get(ROLE_LABEL),
        uid=meta.get("uid"),
        role_term=_term((meta.get("annotations") or {}).get(ROLE_TERM_ANNOTATION)),
        resource_version=meta.get("resourceVersion") or None,
    )


def _term(text: object) -> int | None:
    """A Raft term written by a member (anyone who may patch the pod could write anything)."""
    if not isinstance(text, str) or not text.isdigit() or len(text) > 20:
        return None
    return int(text)


def template_hash(template: Mapping[str, Any]) -> str | None:
    """The pod-template hash annotation of a (StatefulSet's or pod's) template."""
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(desired.POD_TEMPLATE_HASH_ANNOTATION)
    return str(value) if value else None
