"""`raftkv archive`: checkpoint copies in an S3-compatible bucket (raftkv.archive.bucket).

    raftkv archive upload DIR --cluster C ...      DIR/data + DIR/manifest.json -> bucket
    raftkv archive download C/ID --out DIR ...     bucket -> DIR, sha256 verified
    raftkv archive prune --cluster C --keep N [--max-age-hours H] ...
    raftkv archive list --cluster C ...

The operator's archive and restore Jobs run these with the node image (docs/recovery.md).
Credentials come from RAFTKV_S3_ACCESS_KEY_ID / RAFTKV_S3_SECRET_ACCESS_KEY (and
RAFTKV_S3_SESSION_TOKEN), never from flags (they would show in `ps` and in pod specs).
Exit codes: 0 done; 1 the bucket operation failed (refused credentials, not found,
unreachable, sha256 mismatch); 2 bad arguments or configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from datetime import timedelta

from raftkv.archive.bucket import (
    ArchiveConfigError,
    ArchiveError,
    BucketArchive,
    BucketLocation,
    Credentials,
)

S3 = "--endpoint https://s3.example.com --bucket backups --prefix raftkv"
UPLOAD_EXAMPLE = f"raftkv archive upload /tmp/nightly-1 --cluster demo {S3} --path-style"
DOWNLOAD_EXAMPLE = f"raftkv archive download demo/nightly-1 --out /tmp/restore {S3}"
LIST_EXAMPLE = f"raftkv archive list --cluster demo {S3}"
PRUNE_EXAMPLE = f"raftkv archive prune --cluster demo --keep 7 --max-age-hours 720 {S3}"


# Credentials come from RAFTKV_S3_ACCESS_KEY_ID / RAFTKV_S3_SECRET_ACCESS_KEY (the
# description says so); `raftkv checkpoint download ID --out DIR` makes what upload takes.
def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


EXAMPLES = _examples(UPLOAD_EXAMPLE, LIST_EXAMPLE, DOWNLOAD_EXAMPLE, PRUNE_EXAMPLE)


def _location_arguments(parser: argparse.ArgumentParser) -> None:
    env = os.environ
    parser.add_argument(
        "--endpoint",
        default=env.get("RAFTKV_S3_ENDPOINT"),
        help="https://host[:port] of the S3-compatible service (env RAFTKV_S3_ENDPOINT)",
    )
    parser.add_argument(
        "--bucket", default=env.get("RAFTKV_S3_BUCKET"), help="bucket name (env RAFTKV_S3_BUCKET)"
    )
    parser.add_argument(
        "--prefix",
        default=env.get("RAFTKV_S3_PREFIX", ""),
        help="key prefix, e.g. raftkv/prod (env RAFTKV_S3_PREFIX)",
    )
    parser.add_argument(
        "--region",
        default=env.get("RAFTKV_S3_REGION", "us-east-1"),
        help="signing region (default us-east-1; env RAFTKV_S3_REGION)",
    )
    parser.add_argument(
        "--path-style",
        action="store_true",
        help="path-style URLs (https://host/bucket/key), as MinIO and Ceph usually need",
    )
    parser.add_argument(
        "--cacert",
        metavar="FILE",
        default=env.get("RAFTKV_S3_CACERT"),
        help="PEM CA bundle of the endpoint's certificate (default: the "
        "system's; env RAFTKV_S3_CACERT)",
    )
    parser.add_argument(
        "--allow-http",
        action="store_true",
        help="INSECURE: accept a plain http:// endpoint (data in the clear)",
    )


def _archive(args: argparse.Namespace) -> BucketArchive:
    if not args.endpoint or not args.bucket:
        raise ArchiveConfigError("--endpoint and --bucket are required")
    location = BucketLocation(
        endpoint=args.endpoint,
        bucket=args.bucket,
        prefix=args.prefix or "",
        region=args.region,
        path_style=args.path_style,
        ca_file=args.cacert,
        allow_http=args.allow_http,
    )
    return BucketArchive(location, Credentials.from_env())


def _run(command: str, action: object) -> int:
    try:
        result = action() if callable(action) else None
    except ArchiveConfigError as exc:
        print(f"raftkv archive {command}: {exc}", file=sys.stderr)
        return 2
    except ArchiveError as exc:
        print(f"raftkv archive {command}: {exc}", file=sys.stderr)
        return 1
    if result is not None:
        print(json.dumps(result, sort_keys=True))
    return 0


def _upload(args: argparse.Namespace) -> int:
    def act() -> dict[str, object]:
        archive = _archive(args)
        manifest = archive.upload(args.dir, args.cluster)
        copy = f"{args.cluster}/{manifest.id}"
        return {
            "uploaded": copy,
            "sha256": manifest.sha256,
            "size": manifest.size,
            "index": manifest.index,
            "location": archive.location.describe(),
        }

    return _run("upload", act)


def _download(args: argparse.Namespace) -> int:
    def act() -> dict[str, object]:
        manifest = _archive(args).download(args.copy, args.out)
        return {
            "downloaded": args.copy,
            "sha256": manifest.sha256,
            "size": manifest.size,
            "index": manifest.index,
            "out": os.path.abspath(args.out),
        }

    return _run("download", act)


def _prune(args: argparse.Namespace) -> int:
    def act() -> dict[str, object]:
        max_age = timedelta(hours=args.max_age_hours) if args.max_age_hours else None
        plan = _archive(args).prune(args.cluster, keep=args.keep, max_age=max_age)
        return {"kept": plan.keep, "deleted": plan.delete}

    return _run("prune", act)


def _list(args: argparse.Namespace) -> int:
    def act() -> dict[str, object]:
        copies = _archive(args).list_copies(args.cluster)
        return {
            "copies": [
                {
                    "copy": c.key,
                    "complete": c.manifest is not None,
                    "index": c.manifest.index if c.manifest else None,
                    "sha256": c.manifest.sha256 if c.manifest else None,
                    "time": c.manifest.time if c.manifest else None,
                    "modified": c.modified.isoformat(),
                }
                for c in copies
            ]
        }

    return _run("list", act)


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return number


def add_subcommand(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "archive",
        help="checkpoint copies in an S3-compatible bucket",
        description=textwrap.fill(
            "Copy checkpoints to an S3-compatible bucket and back, sha256-verified, and "
            "apply retention. Credentials: RAFTKV_S3_ACCESS_KEY_ID, "
            "RAFTKV_S3_SECRET_ACCESS_KEY (RAFTKV_S3_SESSION_TOKEN). docs/recovery.md.",
            88,
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="archive_command", metavar="ACTION", required=True)

    upload = actions.add_parser(
        "upload",
        help="upload a checkpoint directory (data + manifest)",
        epilog=_examples(UPLOAD_EXAMPLE),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    upload.add_argument(
        "dir", help="a checkpoint directory, as `raftkv checkpoint download` writes"
    )
    upload.add_argument("--cluster", required=True, help="cluster name: the copy is <cluster>/<id>")
    _location_arguments(upload)
    upload.set_defaults(func=_upload)

    download = actions.add_parser(
        "download",
        help="download and verify a copy into DIR",
        epilog=_examples(DOWNLOAD_EXAMPLE),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    download.add_argument("copy", help="<cluster>/<checkpoint id>")
    download.add_argument("--out", required=True, help="output directory (data + manifest.json)")
    _location_arguments(download)
    download.set_defaults(func=_download)

    prune = actions.add_parser(
        "prune",
        help="delete copies beyond retention (count and age)",
        epilog=_examples(PRUNE_EXAMPLE),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    prune.add_argument("--cluster", required=True)
    prune.add_argument(
        "--keep", type=_positive, required=True, help="copies kept, the newest by Raft index"
    )
    prune.add_argument(
        "--max-age-hours",
        type=_positive,
        default=None,
        help="also delete copies older than this (the newest is always kept)",
    )
    _location_arguments(prune)
    prune.set_defaults(func=_prune)

    listing = actions.add_parser(
        "list",
        help="the copies of a cluster, as JSON",
        epilog=_examples(LIST_EXAMPLE),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    listing.add_argument("--cluster", required=True)
    _location_arguments(listing)
    listing.set_defaults(func=_list)
