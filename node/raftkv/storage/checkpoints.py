"""Checkpoints on disk: `<data-dir>/checkpoints/<id>/{data,manifest.json}`.

A checkpoint is written when a CHECKPOINT(id) log entry is applied, so every
member writes the same one. Writing is atomic (a temp directory, files and
directory fsynced, renamed into place, parent fsynced) and idempotent: an entry
re-applied after a restart finds the checkpoint already there and gets its
manifest back. Retention keeps the newest `retain` checkpoints by log index.

Manifest (docs/contracts.md):
    {"id", "index", "term", "sha256", "size", "time", "members": [names]}
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

from raftkv.protocol.checkpoints import is_checkpoint_id, validate_checkpoint_id
from raftkv.storage.errors import CheckpointExistsError, CorruptCheckpointError
from raftkv.storage.fsutil import fsync_directory, make_directory

log = logging.getLogger(__name__)

DATA_NAME = "data"
MANIFEST_NAME = "manifest.json"
_TEMP_PREFIX = ".tmp-"
_READ_CHUNK = 1 << 20

Manifest = dict[str, Any]


class CheckpointStore:
    """Checkpoints under one directory (`<data-dir>/checkpoints`)."""

    def __init__(self, directory: str | os.PathLike[str], *, retain: int = 5) -> None:
        if retain < 1:
            raise ValueError("retain must be >= 1")
        self.directory = Path(directory)
        self.retain = retain
        make_directory(self.directory)
        self._remove_leftovers()

    def write(
        self, checkpoint_id: str, index: int, term: int, data: bytes, members: list[str], time: str
    ) -> Manifest:
        """Write checkpoint `checkpoint_id` of the state at `index`; returns its manifest.

        Idempotent: if the checkpoint exists for the same index and content, its
        manifest is returned and nothing is written. The same id for another
        index or content raises CheckpointExistsError."""
        validate_checkpoint_id(checkpoint_id)
        if index < 0 or term < 0:
            raise ValueError("index and term must be >= 0")
        if not all(isinstance(m, str) for m in members):
            raise ValueError("members must be a list of names")
        if not isinstance(time, str):
            raise ValueError("time must be a string (RFC 3339)")
        sha256 = hashlib.sha256(data).hexdigest()
        final = self.directory / checkpoint_id
        if final.exists():
            return self._existing(checkpoint_id, index, sha256)

        manifest: Manifest = {
            "id": checkpoint_id,
            "index": index,
            "term": term,
            "sha256": sha256,
            "size": len(data),
            "time": time,
            "members": list(members),
        }
        temp = self.directory / f"{_TEMP_PREFIX}{checkpoint_id}-{secrets.token_hex(4)}"
        temp.mkdir()
        try:
            _write_durably(temp / DATA_NAME, data)
            _write_durably(temp / MANIFEST_NAME, json.dumps(manifest, indent=2).encode())
            fsync_directory(temp)
            os.rename(temp, final)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        fsync_directory(self.directory)
        self._prune()
        return manifest

    def get(self, checkpoint_id: str) -> Manifest | None:
        """The manifest of a checkpoint, or None if there is no such checkpoint."""
        validate_checkpoint_id(checkpoint_id)
        path = self.directory / checkpoint_id / MANIFEST_NAME
        if not path.exists():
            return None
        return _read_manifest(path)

    def data_path(self, checkpoint_id: str) -> Path | None:
        """The data file of a checkpoint (for download), or None."""
        validate_checkpoint_id(checkpoint_id)
        if self.get(checkpoint_id) is None:
            return None
        return self.directory / checkpoint_id / DATA_NAME

    def verify(self, checkpoint_id: str) -> Manifest:
        """Re-read the data and check size and sha256; raises CorruptCheckpointError."""
        validate_checkpoint_id(checkpoint_id)
        manifest, _data = read_checkpoint(self.directory / checkpoint_id)
        return manifest

    def _existing(self, checkpoint_id: str, index: int, sha256: str) -> Manifest:
        manifest = _read_manifest(self.directory / checkpoint_id / MANIFEST_NAME)
        if manifest["index"] != index:
            raise CheckpointExistsError(
                f"checkpoint {checkpoint_id!r} already exists at index {manifest['index']}, "
                f"not {index}"
            )
        if manifest["sha256"] != sha256:
            raise CheckpointExistsError(
                f"checkpoint {checkpoint_id!r} already exists at index {index} with "
                "different content (is the state machine serialization deterministic?)"
            )
        return manifest

    def _prune(self) -> None:
        doomed = self.list()[: -self.retain]
        for manifest in doomed:
            # Rename first (atomic), then delete: a crash never leaves half a checkpoint
            # under its real name; the temp name is cleaned up on the next start.
            gone = self.directory / f"{_TEMP_PREFIX}deleted-{manifest['id']}-{secrets.token_hex(4)}"
            os.rename(self.directory / manifest["id"], gone)
            shutil.rmtree(gone, ignore_errors=True)
            log.info(
                "checkpoint %s (index %d) removed by retention", manifest["id"], manifest["index"]
            )
        if doomed:
            fsync_directory(self.directory)

    def _remove_leftovers(self) -> None:
        for path in self.directory.iterdir():
            if path.name.startswith(_TEMP_PREFIX):
                log.info("removing unfinished checkpoint directory %s", path)
                shutil.rmtree(path, ignore_errors=True)

    def list(self) -> list[Manifest]:
        """Manifests of all checkpoints, oldest first (by log index, then id).
        A checkpoint with an unreadable manifest is skipped with a warning."""
        manifests = []
        for path in self.directory.iterdir():
            if not is_checkpoint_id(path.name):  # our temp names start with "."
                continue
            try:
                manifests.append(_read_manifest(path / MANIFEST_NAME))
            except (OSError, CorruptCheckpointError) as exc:
                log.warning("checkpoint %s is unreadable (%s): ignoring it", path, exc)
        manifests.sort(key=lambda m: (m["index"], m["id"]))
        return manifests


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[Manifest, bytes]:
    """Read and verify a checkpoint directory (e.g. for `--restore-from`)."""
    path = Path(path)
    manifest = _read_manifest(path / MANIFEST_NAME)
    try:
        data = (path / DATA_NAME).read_bytes()
    except OSError as exc:
        raise CorruptCheckpointError(f"checkpoint {path}: cannot read data: {exc}") from exc
    if len(data) != manifest["size"]:
        raise CorruptCheckpointError(
            f"checkpoint {path}: data is {len(data)} bytes, manifest says {manifest['size']}"
        )
    if hashlib.sha256(data).hexdigest() != manifest["sha256"]:
        raise CorruptCheckpointError(f"checkpoint {path}: sha256 does not match the manifest")
    return manifest, data


def _read_manifest(path: Path) -> Manifest:
    try:
        manifest = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise CorruptCheckpointError(f"cannot read manifest {path}: {exc}") from exc
    fields = {
        "id": str,
        "index": int,
        "term": int,
        "sha256": str,
        "size": int,
        "time": str,
        "members": list,
    }
    if not isinstance(manifest, dict):
        raise CorruptCheckpointError(f"manifest {path} is not an object")
    for name, kind in fields.items():
        if not isinstance(manifest.get(name), kind) or isinstance(manifest.get(name), bool):
            raise CorruptCheckpointError(f"manifest {path}: field {name!r} missing or invalid")
    return manifest


def _write_durably(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


__all__ = ["CheckpointStore", "Manifest", "read_checkpoint", "validate_checkpoint_id"]
