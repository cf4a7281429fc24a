"""Pure: which bytes an in-place restore (spec.restoreInPlace) restores every member from.

The RaftCheckpoint names the checkpoint and its sha256. Every member holds a copy on its
own volume when the RaftCheckpoint lists it among `status.members` (checkpoints are log
entries: every member writes the same bytes); otherwise the archived copy on the archive
claim is used. Either way each member's staged copy is checked against that one sha256,
so all members restore from the same bytes or the restore stops before any change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

SOURCE_MEMBERS = "members"


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
    """`members`, or `archive:<claim>/<path>`; None when refused."""
    archive_claim: str | None = None
    archive_path: str | None = None
    refused: str | None = None


def choose_source(
    checkpoint: CheckpointSource | None,
    *,
    cluster: str,
    requested: str,
    members: Iterable[str],
    archive_claim: str | None,
) -> SourceChoice:
    """The members' own copies when every member holds the checkpoint, else the archive."""
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
    lacking = ", ".join(missing) if missing else "the members"
    return SourceChoice(
        None,
        refused=f"RaftCheckpoint {requested} ({checkpoint.phase}) is not held by {lacking} "
        "and has no archived copy",
    )


def parse_source(source: str | None) -> tuple[str | None, str | None]:
    """(archive claim, path) of a recorded `archive:<claim>/<path>` source; (None, None) for
    the members' own copies."""
    if not source or not source.startswith("archive:"):
        return None, None
    claim, _, path = source[len("archive:") :].partition("/")
    return claim, path
