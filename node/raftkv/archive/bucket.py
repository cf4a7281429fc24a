"""Checkpoint copies in an S3-compatible bucket: upload, verified download, retention.

Layout: one checkpoint per "directory" `<prefix>/<cluster>/<id>/`, holding

- `data`: the checkpoint's bytes, with user metadata `sha256` (and `index`, `term`, `id`);
- `manifest.json`: the checkpoint's manifest (docs/contracts.md), written LAST.

A copy exists only once its manifest does: an interrupted upload leaves `data` alone,
which `list_copies` reports as incomplete and `prune` removes. Prune deletes the
manifest first for the same reason, so no copy ever looks complete without its data.

Every byte read back from the bucket is checked: the manifest is parsed and validated,
`data`'s metadata sha256 and size must match it, and the downloaded bytes are hashed
while they stream to disk; nothing appears in the output directory before it is checked
(same contract as `raftkv checkpoint download`: `DIR/data` + `DIR/manifest.json`, the
directory `raftkv serve --restore-from` takes).

Credentials are explicit (`Credentials`, from RAFTKV_S3_* environment variables in the
archive Jobs): boto3's default chain is never consulted, so a pod never picks up its
node's instance role or a stray ~/.aws by accident.

boto3 is imported when a client is made, so `raftkv --help` works without it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from raftkv.security.pki import write_file_atomic

DATA_NAME = "data"
MANIFEST_NAME = "manifest.json"
SHA256_METADATA = "sha256"
"""User metadata key (`x-amz-meta-sha256`) of the data object."""
CHUNK = 1 << 20
MAX_MANIFEST_BYTES = 64 * 1024
"""A manifest is a few hundred bytes; anything much larger is not one."""
INCOMPLETE_GRACE = timedelta(hours=1)
"""An incomplete copy (data, no manifest) younger than this may be an upload in progress."""

_SAFE_SEGMENT = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")

ENV_ACCESS_KEY_ID = "RAFTKV_S3_ACCESS_KEY_ID"
ENV_SECRET_ACCESS_KEY = "RAFTKV_S3_SECRET_ACCESS_KEY"
ENV_SESSION_TOKEN = "RAFTKV_S3_SESSION_TOKEN"


class ArchiveError(Exception):
    """A bucket operation failed; the message says what and where."""


class ArchiveConfigError(ArchiveError):
    """Bad arguments (a location or key that cannot be right): nothing was sent."""


class ArchiveAccessDenied(ArchiveError):
    """The bucket refused the credentials (unknown key, bad signature, no permission)."""


class ArchiveNotFound(ArchiveError):
    """No such bucket, or no such checkpoint copy."""


class ArchiveVerifyError(ArchiveError):
    """A copy's bytes do not match its manifest (sha256 or size): never restored."""


class ArchiveConnectError(ArchiveError):
    """The endpoint could not be reached, or its TLS certificate is not trusted."""


def _segments(path: str, what: str) -> list[str]:
    parts = [p for p in path.split("/")] if path else []
    for part in parts:
        if not _SAFE_SEGMENT.match(part):
            raise ArchiveConfigError(
                f"invalid {what} {path!r}: '/'-separated names of [A-Za-z0-9._-], none "
                "empty or starting with '.'"
            )
    return parts


@dataclass(frozen=True)
class BucketLocation:
    """Where copies live: an S3-compatible endpoint, a bucket and a key prefix."""

    endpoint: str
    """`https://host[:port]` (`http://` only with allow_http)."""
    bucket: str
    prefix: str = ""
    region: str = "us-east-1"
    path_style: bool = False
    """`https://host/bucket/key` instead of `https://bucket.host/key` (MinIO, Ceph...)."""
    ca_file: str | None = None
    """PEM CA bundle that signs the endpoint's certificate; the system's when None."""
    allow_http: bool = False
    """Plain HTTP: credentials signed but data in the clear. Named so on purpose."""

    def __post_init__(self) -> None:
        url = urlsplit(self.endpoint)
        if url.scheme not in ("https", "http") or not url.hostname:
            raise ArchiveConfigError(
                f"invalid endpoint {self.endpoint!r}: want https://host[:port]"
            )
        if url.scheme == "http" and not self.allow_http:
            raise ArchiveConfigError(
                f"endpoint {self.endpoint!r} is plain http: the data would travel in the "
                "clear; use https, or allow it explicitly (--allow-http / allowInsecureHttp)"
            )
        if url.path not in ("", "/") or url.query or url.fragment:
            raise ArchiveConfigError(f"invalid endpoint {self.endpoint!r}: no path or query")
        if not _BUCKET.match(self.bucket) or ".." in self.bucket:
            raise ArchiveConfigError(f"invalid bucket name {self.bucket!r}")
        _segments(self.prefix.strip("/"), "prefix")

    def key(self, *parts: str) -> str:
        prefix = self.prefix.strip("/")
        return "/".join([*([prefix] if prefix else []), *parts])

    def describe(self) -> str:
        return f"{self.endpoint.rstrip('/')}/{self.bucket}/{self.key()}"


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Credentials:
        key, secret = environ.get(ENV_ACCESS_KEY_ID), environ.get(ENV_SECRET_ACCESS_KEY)
        if not key or not secret:
            raise ArchiveConfigError(
                f"no bucket credentials: set {ENV_ACCESS_KEY_ID} and {ENV_SECRET_ACCESS_KEY} "
                f"(and {ENV_SESSION_TOKEN} for temporary ones)"
            )
        return cls(key, secret, environ.get(ENV_SESSION_TOKEN) or None)


def copy_key(cluster: str, checkpoint_id: str) -> str:
    """`<cluster>/<id>`: where a checkpoint's copy lives under the prefix (validated)."""
    _segments(f"{cluster}/{checkpoint_id}", "copy key")
    return f"{cluster}/{checkpoint_id}"


def _split_copy_key(copy: str) -> list[str]:
    parts = _segments(copy.strip("/"), "copy key")
    if len(parts) < 2:
        raise ArchiveConfigError(f"invalid copy key {copy!r}: want <cluster>/<checkpoint id>")
    return parts


@dataclass(frozen=True)
class Manifest:
    """A checkpoint manifest read from anywhere hostile: every field checked."""

    id: str
    index: int
    term: int
    sha256: str
    size: int
    time: str | None
    raw: dict[str, Any]

    @classmethod
    def parse(cls, payload: bytes, where: str) -> Manifest:
        if len(payload) > MAX_MANIFEST_BYTES:
            raise ArchiveVerifyError(f"{where}: manifest is {len(payload)} bytes: not a manifest")
        try:
            raw = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ArchiveVerifyError(f"{where}: manifest is not JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise ArchiveVerifyError(f"{where}: manifest is not a JSON object")
        ident, sha, time = raw.get("id"), raw.get("sha256"), raw.get("time")
        index, term, size = raw.get("index"), raw.get("term"), raw.get("size")
        ints_ok = all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (index, term, size)
        )
        if not isinstance(ident, str) or not _SAFE_SEGMENT.match(ident):
            raise ArchiveVerifyError(f"{where}: manifest has no valid id")
        if not isinstance(sha, str) or not _SHA256.match(sha):
            raise ArchiveVerifyError(f"{where}: manifest has no valid sha256")
        if not ints_ok:
            raise ArchiveVerifyError(
                f"{where}: manifest index, term and size must be integers >= 0"
            )
        if time is not None and not isinstance(time, str):
            raise ArchiveVerifyError(f"{where}: manifest time must be a string")
        assert isinstance(index, int) and isinstance(term, int) and isinstance(size, int)
        return cls(ident, index, term, sha, size, time, raw)

    def taken_at(self) -> datetime | None:
        if not self.time:
            return None
        try:
            stamp = datetime.fromisoformat(self.time.replace("Z", "+00:00"))
        except ValueError:
            return None
        return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Copy:
    """One checkpoint copy in the bucket (`manifest` None: incomplete)."""

    key: str
    """`<cluster>/<id>` under the prefix."""
    manifest: Manifest | None
    modified: datetime
    """When its newest object was written (the bucket's clock)."""

    def age_reference(self) -> datetime:
        """When the checkpoint was taken (its manifest's time), else when it was uploaded."""
        taken = self.manifest.taken_at() if self.manifest else None
        return taken or self.modified


@dataclass(frozen=True)
class PrunePlan:
    keep: list[str]
    delete: list[str]
    """Complete copies beyond retention, then incomplete ones past INCOMPLETE_GRACE."""


def plan_prune(
    copies: list[Copy], *, keep: int, max_age: timedelta | None, now: datetime
) -> PrunePlan:
    """Which copies retention deletes: all but the newest `keep` (by Raft index, then time),
    and those older than `max_age` (by the checkpoint's time), but never the newest one: an
    idle cluster keeps its last copy however old. Pure: `now` is given."""
    if keep < 1:
        raise ArchiveConfigError("keep must be >= 1")
    complete = [c for c in copies if c.manifest is not None]
    complete.sort(
        key=lambda c: (c.manifest.index if c.manifest else -1, c.age_reference()), reverse=True
    )
    kept, doomed = [], []
    for rank, copy in enumerate(complete):
        too_old = max_age is not None and now - copy.age_reference() > max_age
        if rank == 0 or (rank < keep and not too_old):
            kept.append(copy.key)
        else:
            doomed.append(copy.key)
    stale = sorted(
        c.key for c in copies if c.manifest is None and now - c.modified > INCOMPLETE_GRACE
    )
    return PrunePlan(keep=kept, delete=doomed + stale)


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str((response.get("Error") or {}).get("Code") or "")


_DENIED = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "InvalidToken",
    "ExpiredToken",
    "InvalidSecurity",
    "403",
    "Forbidden",
}
_MISSING = {"NoSuchBucket", "NoSuchKey", "404", "NotFound"}


class BucketArchive:
    """Checkpoint copies at one BucketLocation, with one set of credentials."""

    def __init__(
        self, location: BucketLocation, credentials: Credentials, *, client: Any = None
    ) -> None:
        self.location = location
        self._client = client if client is not None else self._make_client(credentials)

    def _make_client(self, credentials: Credentials) -> Any:
        try:
            import boto3
            from botocore.config import Config
        except ModuleNotFoundError as exc:  # pragma: no cover - depends on the install
            raise ArchiveConfigError(
                "the bucket archive needs boto3: pip install 'raftkv[archive]'"
            ) from exc
        loc = self.location
        if loc.ca_file is not None and not Path(loc.ca_file).is_file():
            raise ArchiveConfigError(f"CA bundle {loc.ca_file} does not exist")
        config = Config(
            region_name=loc.region,
            s3={"addressing_style": "path" if loc.path_style else "virtual"},
            retries={"max_attempts": 5, "mode": "standard"},
            connect_timeout=10,
            read_timeout=60,
            # Our own sha256 covers integrity end to end; the newer default CRC checksums
            # are not understood by every S3-compatible store.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        # A session of its own with explicit keys: never the default credential chain.
        session = boto3.session.Session(
            aws_access_key_id=credentials.access_key_id,
            aws_secret_access_key=credentials.secret_access_key,
            aws_session_token=credentials.session_token,
            region_name=loc.region,
        )
        return session.client(
            "s3",
            endpoint_url=loc.endpoint,
            config=config,
            verify=loc.ca_file if loc.ca_file is not None else True,
        )

    # ---- errors ----

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            EndpointConnectionError,
            SSLError,
        )

        where = self.location.describe()
        try:
            yield
        except ClientError as exc:
            code = _error_code(exc)
            if code in _DENIED:
                raise ArchiveAccessDenied(
                    f"{action}: {where} refused the credentials ({code}): check the "
                    "credentials Secret and the key's permissions on the bucket"
                ) from None
            if code in _MISSING:
                raise ArchiveNotFound(f"{action}: {where}: not found ({code})") from None
            raise ArchiveError(f"{action}: {where}: {code or exc}") from None
        except SSLError as exc:
            raise ArchiveConnectError(
                f"{action}: TLS with {self.location.endpoint} failed ({exc}); give the CA "
                "that signs its certificate (--cacert / caBundle)"
            ) from None
        except EndpointConnectionError as exc:
            raise ArchiveConnectError(
                f"{action}: cannot reach {self.location.endpoint}: {exc}"
            ) from None
        except BotoCoreError as exc:
            raise ArchiveError(f"{action}: {where}: {exc}") from None

    # ---- upload ----

    def upload(self, checkpoint_dir: str | os.PathLike[str], cluster: str) -> Manifest:
        """Upload `DIR/data` + `DIR/manifest.json` as `<prefix>/<cluster>/<id>/`.

        The local copy is verified against its manifest first (sha256 while reading), the
        data object carries the sha256 as metadata and is checked (size, metadata) after
        the upload, and the manifest is written last: the copy exists only once whole."""
        directory = Path(checkpoint_dir)
        where = str(directory)
        try:
            manifest = Manifest.parse((directory / MANIFEST_NAME).read_bytes(), where)
        except FileNotFoundError:
            raise ArchiveConfigError(f"{where}: no {MANIFEST_NAME} (not a checkpoint)") from None
        data = directory / DATA_NAME
        digest, size = _hash_file(data)
        if digest != manifest.sha256 or size != manifest.size:
            raise ArchiveVerifyError(
                f"{where}: local data has sha256 {digest} ({size} bytes), its manifest says "
                f"{manifest.sha256} ({manifest.size} bytes): not uploaded"
            )
        base = copy_key(cluster, manifest.id)
        data_key, manifest_key = (
            self.location.key(base, DATA_NAME),
            self.location.key(base, MANIFEST_NAME),
        )
        from boto3.s3.transfer import TransferConfig

        transfer = TransferConfig(
            multipart_threshold=64 * CHUNK, multipart_chunksize=16 * CHUNK, max_concurrency=2
        )
        metadata = {
            SHA256_METADATA: manifest.sha256,
            "index": str(manifest.index),
            "term": str(manifest.term),
            "id": manifest.id,
        }
        with self._errors(f"upload {base}"):
            # The old manifest goes first: while the data is replaced the copy is incomplete.
            self._client.delete_object(Bucket=self.location.bucket, Key=manifest_key)
            self._client.upload_file(
                str(data),
                self.location.bucket,
                data_key,
                ExtraArgs={"Metadata": metadata, "ContentType": "application/octet-stream"},
                Config=transfer,
            )
            head = self._client.head_object(Bucket=self.location.bucket, Key=data_key)
            self._check_head(head, manifest, data_key)
            self._client.put_object(
                Bucket=self.location.bucket,
                Key=manifest_key,
                Body=json.dumps(manifest.raw, indent=2).encode(),
                ContentType="application/json",
            )
        return manifest

    def _check_head(self, head: Mapping[str, Any], manifest: Manifest, key: str) -> None:
        stored = (head.get("Metadata") or {}).get(SHA256_METADATA)
        length = head.get("ContentLength")
        if stored != manifest.sha256:
            raise ArchiveVerifyError(
                f"{self.location.bucket}/{key}: metadata sha256 {stored!r} does not match the "
                f"manifest's {manifest.sha256}"
            )
        if length != manifest.size:
            raise ArchiveVerifyError(
                f"{self.location.bucket}/{key}: {length} bytes, the manifest says {manifest.size}"
            )

    # ---- download ----

    def read_manifest(self, copy: str) -> Manifest:
        parts = _split_copy_key(copy)
        key = self.location.key(*parts, MANIFEST_NAME)
        with self._errors(f"read {copy}"):
            obj = self._client.get_object(Bucket=self.location.bucket, Key=key)
            body = obj["Body"].read(MAX_MANIFEST_BYTES + 1)
        return Manifest.parse(body, f"{self.location.bucket}/{key}")

    def download(self, copy: str, out_dir: str | os.PathLike[str]) -> Manifest:
        """Write `<out_dir>/data` and `<out_dir>/manifest.json` of the copy `<cluster>/<id>`,
        verified: metadata sha256 and size against the manifest, then the bytes' sha256
        while they stream to disk. Files appear only once checked (temp names, fsync,
        rename); a mismatch raises ArchiveVerifyError and leaves nothing."""
        manifest = self.read_manifest(copy)
        parts = _split_copy_key(copy)
        key = self.location.key(*parts, DATA_NAME)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        part = out / f".data.{secrets.token_hex(4)}.part"
        digest = hashlib.sha256()
        size = 0
        try:
            with self._errors(f"download {copy}"):
                obj = self._client.get_object(Bucket=self.location.bucket, Key=key)
                self._check_head(obj, manifest, key)
                with open(part, "wb") as f:
                    for chunk in obj["Body"].iter_chunks(CHUNK):
                        f.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
                        if size > manifest.size:
                            break
                    f.flush()
                    os.fsync(f.fileno())
            if size != manifest.size or digest.hexdigest() != manifest.sha256:
                raise ArchiveVerifyError(
                    f"{self.location.bucket}/{key}: downloaded bytes have sha256 "
                    f"{digest.hexdigest()} ({size} bytes), the manifest says {manifest.sha256} "
                    f"({manifest.size} bytes): the copy is corrupt, not restored"
                )
            os.replace(part, out / DATA_NAME)
            # Written (fsynced) and renamed, then the directory fsynced: both renames stick.
            write_file_atomic(out / MANIFEST_NAME, json.dumps(manifest.raw, indent=2).encode())
        finally:
            with contextlib.suppress(FileNotFoundError):
                part.unlink()
        return manifest

    # ---- listing and retention ----

    def list_copies(self, cluster: str) -> list[Copy]:
        """Every copy of `cluster` under the prefix, complete or not."""
        _segments(cluster, "cluster name")
        base = self.location.key(cluster) + "/"
        found: dict[str, dict[str, Any]] = {}
        with self._errors(f"list {cluster}"):
            paginator = self._client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.location.bucket, Prefix=base):
                for obj in page.get("Contents") or ():
                    rest = str(obj["Key"])[len(base) :].split("/")
                    if len(rest) != 2 or rest[1] not in (DATA_NAME, MANIFEST_NAME):
                        continue  # not ours: never touched
                    if not _SAFE_SEGMENT.match(rest[0]):
                        continue
                    entry = found.setdefault(rest[0], {"objects": set(), "modified": None})
                    entry["objects"].add(rest[1])
                    stamp = obj.get("LastModified")
                    if stamp is not None and (
                        entry["modified"] is None or stamp > entry["modified"]
                    ):
                        entry["modified"] = stamp
        copies = []
        for ident, entry in sorted(found.items()):
            manifest = None
            if MANIFEST_NAME in entry["objects"]:
                try:
                    manifest = self.read_manifest(f"{cluster}/{ident}")
                except (ArchiveVerifyError, ArchiveNotFound):
                    manifest = None  # unreadable: treated as incomplete
            modified = entry["modified"] or datetime.now(UTC)
            copies.append(Copy(f"{cluster}/{ident}", manifest, modified))
        return copies

    def delete_copy(self, copy: str) -> None:
        parts = _split_copy_key(copy)
        with self._errors(f"delete {copy}"):
            for name in (MANIFEST_NAME, DATA_NAME):  # the manifest first: never "complete"
                self._client.delete_object(
                    Bucket=self.location.bucket, Key=self.location.key(*parts, name)
                )

    def prune(
        self, cluster: str, *, keep: int, max_age: timedelta | None, now: datetime | None = None
    ) -> PrunePlan:
        plan = plan_prune(
            self.list_copies(cluster), keep=keep, max_age=max_age, now=now or datetime.now(UTC)
        )
        for copy in plan.delete:
            self.delete_copy(copy)
        return plan


def _hash_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    try:
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except FileNotFoundError:
        raise ArchiveConfigError(f"{path} does not exist (not a checkpoint)") from None
    return digest.hexdigest(), size


def download_checkpoint(
    location: BucketLocation,
    copy: str,
    out_dir: str | os.PathLike[str],
    credentials: Credentials | None = None,
) -> Manifest:
    """Restore helper: fetch and verify `<cluster>/<id>` into `out_dir` (data + manifest.json,
    what `raftkv serve --restore-from` takes). Credentials from RAFTKV_S3_* when None.
    Raises ArchiveError subclasses; leaves no unverified file behind."""
    archive = BucketArchive(location, credentials or Credentials.from_env())
    return archive.download(copy, out_dir)
