"""Snapshots on disk: `FileSnapshotStore`.

A snapshot is two files in the store's directory:

    snap-<index:020d>-<term:020d>.data       the state machine bytes
    snap-<index:020d>-<term:020d>.meta.json  index, term, voters, learners, size, sha256

Each is written to a temporary name, fsynced and renamed; the meta goes last,
so a snapshot exists only once its data is complete, and the directory is
fsynced before `save` returns. The newest `retain` snapshots are kept.
`latest()` verifies size and sha256 and falls back to an older snapshot (with a
logged warning) when the newest is damaged.

A snapshot streamed by a peer arrives through `receive(meta)`: chunks go to a
temporary file, `finish()` verifies and publishes it the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
from dataclasses import dataclass
from typing import BinaryIO

from raftkv.raft.types import ConfState, SnapshotMeta
from raftkv.storage.errors import CorruptSnapshotError, StorageError
from raftkv.storage.fsutil import fsync_directory, make_directory

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
_TEMP_PREFIX = ".tmp-"
_META_NAME = re.compile(r"^snap-([0-9]{20})-([0-9]{20})\.meta\.json$")
_READ_CHUNK = 1 << 20


def _base_name(index: int, term: int) -> str:
    return f"snap-{index:020d}-{term:020d}"


@dataclass(slots=True)
class _Stored:
    meta: SnapshotMeta
    size: int
    sha256: str
    data_path: str
    meta_path: str


class FileSnapshotStore:
    """SnapshotStore in a directory. `fsync=False` only for the unsafe no-fsync mode."""

    def __init__(
        self, directory: str | os.PathLike[str], *, retain: int = 2, fsync: bool = True
    ) -> None:
        if retain < 1:
            raise ValueError("retain must be >= 1")
        self.directory = os.fspath(directory)
        self.retain = retain
        self.fsync = fsync
        make_directory(self.directory)
        self._remove_leftovers()

    # -- SnapshotStore ------------------------------------------------------------------

    def save(self, meta: SnapshotMeta, data: bytes) -> None:
        with self.receive(meta, size=len(data)) as receiver:
            receiver.write(data)
            receiver.finish()

    def latest(self) -> tuple[SnapshotMeta, bytes] | None:
        for stored in self._list():
            try:
                with open(stored.data_path, "rb") as f:
                    data = f.read()
                _check_content(stored, len(data), hashlib.sha256(data).hexdigest())
            except (OSError, CorruptSnapshotError) as exc:
                self._warn_damaged(stored, exc)
                continue
            return stored.meta, data
        return None

    def open_latest(self) -> tuple[SnapshotMeta, BinaryIO, int] | None:
        for stored in self._list():
            try:
                f = open(stored.data_path, "rb")  # noqa: SIM115 - handed to the caller
            except OSError as exc:
                self._warn_damaged(stored, exc)
                continue
            try:
                digest = hashlib.sha256()
                size = 0
                while chunk := f.read(_READ_CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                _check_content(stored, size, digest.hexdigest())
            except (OSError, CorruptSnapshotError) as exc:
                f.close()
                self._warn_damaged(stored, exc)
                continue
            f.seek(0)
            return stored.meta, f, size
        return None

    # -- more than the protocol ---------------------------------------------------------

    def receive(
        self, meta: SnapshotMeta, *, size: int | None = None, sha256: str | None = None
    ) -> SnapshotReceiver:
        """Start receiving a snapshot in chunks; `size`/`sha256`, when given, are
        checked by `finish()`. Use as a context manager: leaving it without
        `finish()` (or on an exception) discards the partial file."""
        return SnapshotReceiver(self, meta, size, sha256)

    def location(self, meta: SnapshotMeta) -> str:
        """The data file of the snapshot `meta` (its meta file sits beside it)."""
        return os.path.join(self.directory, _base_name(meta.index, meta.term) + ".data")

    def metas(self) -> list[SnapshotMeta]:
        """Metadata of the retained snapshots, newest first (not verified)."""
        return [stored.meta for stored in self._list()]

    # -- internals ----------------------------------------------------------------------

    def _list(self) -> list[_Stored]:
        found: list[_Stored] = []
        for name in os.listdir(self.directory):
            if not _META_NAME.match(name):
                continue
            meta_path = os.path.join(self.directory, name)
            try:
                found.append(_read_meta(meta_path))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("snapshot meta %s is unreadable (%s): ignoring it", meta_path, exc)
        found.sort(key=lambda s: (s.meta.index, s.meta.term), reverse=True)
        return found

    def _warn_damaged(self, stored: _Stored, exc: BaseException) -> None:
        log.warning(
            "snapshot %s (index %d, term %d) is damaged (%s): trying an older one",
            stored.data_path,
            stored.meta.index,
            stored.meta.term,
            exc,
        )

    def _publish(self, temp_data: str, meta: SnapshotMeta, size: int, sha256: str) -> None:
        base = os.path.join(self.directory, _base_name(meta.index, meta.term))
        data_path, meta_path = base + ".data", base + ".meta.json"
        if os.path.exists(meta_path):
            # Replacing a snapshot: retract the old meta first so its checksum
            # never describes the new data.
            os.unlink(meta_path)
            self._sync_dir()
        os.replace(temp_data, data_path)
        document = {
            "format": FORMAT_VERSION,
            "index": meta.index,
            "term": meta.term,
            "voters": sorted(meta.conf_state.voters),
            "learners": sorted(meta.conf_state.learners),
            "size": size,
            "sha256": sha256,
        }
        temp_meta = os.path.join(self.directory, f"{_TEMP_PREFIX}{secrets.token_hex(8)}.meta")
        with open(temp_meta, "w") as f:
            json.dump(document, f)
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())
        os.replace(temp_meta, meta_path)
        self._sync_dir()
        self._prune()

    def _prune(self) -> None:
        doomed = self._list()[self.retain :]
        for stored in doomed:
            # Meta first: a data file without meta is an unfinished snapshot, ignored.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(stored.meta_path)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(stored.data_path)
        if doomed:
            self._sync_dir()

    def _remove_leftovers(self) -> None:
        """Temp files of interrupted writes, and data files whose meta never landed."""
        names = set(os.listdir(self.directory))
        removed = []
        for name in names:
            orphan = name.endswith(".data") and name[: -len(".data")] + ".meta.json" not in names
            if name.startswith(_TEMP_PREFIX) or orphan:
                os.unlink(os.path.join(self.directory, name))
                removed.append(name)
        if removed:
            log.info("snapshot store %s: removed unfinished files %s", self.directory, removed)
            self._sync_dir()

    def _sync_dir(self) -> None:
        if self.fsync:
            fsync_directory(self.directory)


class SnapshotReceiver:
    """A snapshot being written chunk by chunk; see FileSnapshotStore.receive."""

    def __init__(
        self, store: FileSnapshotStore, meta: SnapshotMeta, size: int | None, sha256: str | None
    ) -> None:
        self._store = store
        self.meta = meta
        self._expected_size = size
        self._expected_sha256 = sha256
        self._digest = hashlib.sha256()
        self.size = 0
        self._path = os.path.join(store.directory, f"{_TEMP_PREFIX}{secrets.token_hex(8)}.data")
        self._file: BinaryIO | None = open(self._path, "wb")  # noqa: SIM115
        self._done = False

    def write(self, chunk: bytes) -> None:
        if self._file is None:
            raise StorageError("snapshot receiver is closed")
        self._file.write(chunk)
        self._digest.update(chunk)
        self.size += len(chunk)

    def finish(self) -> SnapshotMeta:
        """Verify, make durable and publish the snapshot; returns its meta."""
        if self._file is None:
            raise StorageError("snapshot receiver is closed")
        sha256 = self._digest.hexdigest()
        if self._expected_size is not None and self.size != self._expected_size:
            self.abort()
            raise CorruptSnapshotError(
                f"snapshot {self.meta.index}: received {self.size} bytes, "
                f"expected {self._expected_size}"
            )
        if self._expected_sha256 is not None and sha256 != self._expected_sha256:
            self.abort()
            raise CorruptSnapshotError(f"snapshot {self.meta.index}: sha256 mismatch")
        f, self._file = self._file, None
        try:
            f.flush()
            if self._store.fsync:
                os.fsync(f.fileno())
        finally:
            f.close()
        self._store._publish(self._path, self.meta, self.size, sha256)
        self._done = True
        return self.meta

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if not self._done:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path)

    def __enter__(self) -> SnapshotReceiver:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self._done:
            self.abort()


def _read_meta(meta_path: str) -> _Stored:
    with open(meta_path) as f:
        document = json.load(f)
    if document.get("format") != FORMAT_VERSION:
        raise ValueError(f"unsupported format {document.get('format')!r}")
    conf = ConfState(
        frozenset(int(v) for v in document["voters"]),
        frozenset(int(v) for v in document["learners"]),
    )
    meta = SnapshotMeta(int(document["index"]), int(document["term"]), conf)
    expected_name = _base_name(meta.index, meta.term) + ".meta.json"
    if os.path.basename(meta_path) != expected_name:
        raise ValueError(f"meta describes {expected_name}")
    data_path = meta_path[: -len(".meta.json")] + ".data"
    return _Stored(meta, int(document["size"]), str(document["sha256"]), data_path, meta_path)


def _check_content(stored: _Stored, size: int, sha256: str) -> None:
    if size != stored.size:
        raise CorruptSnapshotError(f"size {size}, meta says {stored.size}")
    if sha256 != stored.sha256:
        raise CorruptSnapshotError("sha256 does not match the meta")
