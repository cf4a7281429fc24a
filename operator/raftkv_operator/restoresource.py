"""Pure: which bytes an in-place restore (spec.restoreInPlace) restores every member from.

The RaftCheckpoint names the checkpoint and its sha256. Every member holds a copy on its
own volume when the RaftCheckpoint lists it among `status.members` (checkpoints are log
entries: every member writes the same bytes); otherwise the archived copy: on the archive
claim, or in the bucket when the cluster archives to one (`checkpoints.archive.bucket`;
each member's staging Job downloads it with the bucket's credentials). Either way each
member's staged copy is checked against that one sha256, so all members restore from the
same bytes or the restore stops before any change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

SOURCE_MEMBERS = "members"
BUCKET_SOURCE_PREFIX = "bucket:"


@dataclass(frozen=True)
class CheckpointSource:
    """What an in-place restore needs of a RaftCheckpoint object."""

    name: str
    cluster: str
    phase: str
    checkpoint_id: str | None
    sha256: str | None
    index: int | None
    members: tuple[str, ...]
    archive_path: str | None
    """Set when an archived copy exists (status.archived)."""

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> CheckpointSource:
        meta, spec, status = (obj.get(k) or {} for k in ("metadata", "spec", "status"))
        index = status.get("index")
        return cls(
            name=str(meta.get("name")),
            cluster=str(spec.get("cluster") or ""),
            phase=str(status.get("phase") or "Pending"),
            checkpoint_id=status.get("id") or spec.get("id"),
            sha256=status.get("sha256"),
            index=index if isinstance(index, int) else None,
            members=tuple(str(m) for m in status.get("members") or ()),
            archive_path=status.get("archivePath") if status.get("archived") else None,
        )


@dataclass(frozen=True)
class SourceChoice:
    source: str | None
    """`members`, `archive:<claim>/<path>` or `bucket:<path>`; None when refused."""
    archive_claim: str | None = None
    archive_path: str | None = None
    bucket_path: str | None = None
    refused: str | None = None


def choose_source(
    checkpoint: CheckpointSource | None,
    *,
    cluster: str,
    requested: str,
    members: Iterable[str],
    archive_claim: str | None,
    bucket_archive: bool = False,
) -> SourceChoice:
    """The members' own copies when every member holds the checkpoint, else the archived
    copy: on `archive_claim`, or in the bucket when `bucket_archive` (the cluster's archive
    target is a bucket). A refusal says which of those is missing."""
    if checkpoint is None:
        return SourceChoice(None, refused=f"RaftCheckpoint {requested} not found")
    if checkpoint.cluster != cluster:
        return SourceChoice(
            None,
            refused=f"RaftCheckpoint {requested} belongs to cluster {checkpoint.cluster!r}",
        )
    if not checkpoint.checkpoint_id or not checkpoint.sha256:
        return SourceChoice(
            None,
            refused=f"RaftCheckpoint {requested} has no id and sha256 yet ({checkpoint.phase})",
        )
    wanted = sorted(members)
    missing = [m for m in wanted if m not in checkpoint.members]
    if checkpoint.phase == "Succeeded" and not missing:
        return SourceChoice(SOURCE_MEMBERS)
    if checkpoint.archive_path and archive_claim:
        return SourceChoice(
            f"archive:{archive_claim}/{checkpoint.archive_path}",
            archive_claim=archive_claim,
            archive_path=checkpoint.archive_path,
        )
    if checkpoint.archive_path and bucket_archive:
        return SourceChoice(
            f"{BUCKET_SOURCE_PREFIX}{checkpoint.archive_path}", bucket_path=checkpoint.archive_path
        )
    if checkpoint.phase == "Expired":
        held = "is Expired (the members' retention removed their copies)"
    elif checkpoint.phase != "Succeeded":
        held = f"is {checkpoint.phase}, not held by the members"
    else:
        held = f"is not held by {', '.join(missing)}"
    if bucket_archive:
        archived = "is not archived to the bucket (status.archived is not true)"
    elif archive_claim:
        archived = f"is not archived to the archive volume {archive_claim}"
    else:
        archived = "the cluster has no checkpoints.archive to restore it from"
    return SourceChoice(None, refused=f"RaftCheckpoint {requested} {held}, and {archived}")


def parse_source(source: str | None) -> tuple[str | None, str | None]:
    """(archive claim, path) of a recorded `archive:<claim>/<path>` source; (None, None) for
    the members' own copies and a bucket copy (no claim to mount: see `bucket_path`)."""
    if not source or not source.startswith("archive:"):
        return None, None
    claim, _, path = source[len("archive:") :].partition("/")
    return claim, path


def bucket_path(source: str | None) -> str | None:
    """The copy's path (`<cluster>/<id>`, under the bucket's prefix) of a recorded
    `bucket:<path>` source; None for any other source."""
    if not source or not source.startswith(BUCKET_SOURCE_PREFIX):
        return None
    return source[len(BUCKET_SOURCE_PREFIX) :] or None
