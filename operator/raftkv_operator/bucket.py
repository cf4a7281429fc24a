"""Pure builders for S3-compatible bucket access from a pod (the archive Job, restore init
containers): the `raftkv archive` flags, the credential environment and the CA volume.

Uploads and downloads run in pods with the node image, never in the operator: the
checkpoint streams leader -> Job pod -> bucket (the operator's memory never holds it), and
the credentials Secret is mounted into those pods only (the operator creates the Jobs but
never reads the Secret's data). Credentials are environment variables from secretKeyRef,
read by `raftkv archive` (raftkv.archive.bucket.Credentials.from_env), never command-line
flags (they would show in pod specs and `ps`).

`fetch_steps` is the restore side, shared by a new cluster's restore init container and
the in-place restore: shell lines that download and verify a copy into a directory.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

from raftkv_operator.models import BucketArchive, BucketLocation

CA_MOUNT = "/etc/raftkv/bucket-ca"
CA_VOLUME = "bucket-ca"
ACCESS_KEY_ID_KEY = "accessKeyId"
SECRET_ACCESS_KEY_KEY = "secretAccessKey"
SESSION_TOKEN_KEY = "sessionToken"
SECRET_FILE_MODE = 0o440


@dataclass(frozen=True)
class BucketAccess:
    """What a container needs to reach a bucket: flags for `raftkv archive`, env, volumes."""

    flags: list[str]
    env: list[dict[str, Any]]
    volumes: list[dict[str, Any]] = field(default_factory=list)
    mounts: list[dict[str, Any]] = field(default_factory=list)


def access(location: BucketLocation) -> BucketAccess:
    """Flags, credential env and CA volume for `location`."""
    flags = [
        "--endpoint",
        location.endpoint.rstrip("/"),
        "--bucket",
        location.bucket,
        "--region",
        location.region,
    ]
    if location.prefix:
        flags += ["--prefix", location.prefix]
    if location.path_style:
        flags.append("--path-style")
    if location.allow_insecure_http:
        flags.append("--allow-http")
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    if location.ca_bundle is not None:
        flags += ["--cacert", f"{CA_MOUNT}/{location.ca_bundle.key}"]
        volumes.append(
            {
                "name": CA_VOLUME,
                "secret": {
                    "secretName": location.ca_bundle.name,
                    "defaultMode": SECRET_FILE_MODE,
                    "items": [{"key": location.ca_bundle.key, "path": location.ca_bundle.key}],
                },
            }
        )
        mounts.append({"name": CA_VOLUME, "mountPath": CA_MOUNT, "readOnly": True})

    def secret_env(name: str, key: str, optional: bool = False) -> dict[str, Any]:
        ref: dict[str, Any] = {"name": location.credentials_secret, "key": key}
        if optional:
            ref["optional"] = True
        return {"name": name, "valueFrom": {"secretKeyRef": ref}}

    env = [
        secret_env("RAFTKV_S3_ACCESS_KEY_ID", ACCESS_KEY_ID_KEY),
        secret_env("RAFTKV_S3_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY_KEY),
        secret_env("RAFTKV_S3_SESSION_TOKEN", SESSION_TOKEN_KEY, optional=True),
    ]
    return BucketAccess(flags=flags, env=env, volumes=volumes, mounts=mounts)


def copy_path(cluster_name: str, checkpoint_id: str) -> str:
    """`<cluster>/<id>`: a copy's place under the prefix (status.archivePath, restore path)."""
    return f"{cluster_name}/{checkpoint_id}"


def upload_steps(
    location: BucketArchive, *, cluster_name: str, checkpoint_dir: str, keep: int
) -> list[str]:
    """Shell lines: upload a downloaded checkpoint directory, then apply retention."""
    flags = access(location).flags
    prune = ["raftkv", "archive", "prune", "--cluster", cluster_name, "--keep", str(keep)]
    if location.max_age_hours is not None:
        prune += ["--max-age-hours", str(location.max_age_hours)]
    return [
        shlex.join(
            ["raftkv", "archive", "upload", checkpoint_dir, "--cluster", cluster_name, *flags]
        ),
        shlex.join([*prune, *flags]),
    ]


def fetch_steps(location: BucketLocation, path: str, out_dir: str) -> list[str]:
    """Shell lines: download the copy `path` (`<cluster>/<id>`) into `out_dir` (data +
    manifest.json), sha256 verified; nothing unverified is left in `out_dir` on failure.
    For the restore init container and the in-place restore (with `access(location)`'s
    env, volumes and mounts on the same container)."""
    return [
        shlex.join(
            ["raftkv", "archive", "download", path, "--out", out_dir, *access(location).flags]
        )
    ]
