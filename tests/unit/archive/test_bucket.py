"""raftkv.archive.bucket against an S3 wire-protocol server on 127.0.0.1 (moto's server,
tests/s3server.py) with request authentication on: upload and verified download, a
corrupted object refused, retention by count and age, refused credentials, TLS with a
custom CA, and the `raftkv archive` command's exit codes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from raftkv.archive.bucket import (
    ArchiveAccessDenied,
    ArchiveConfigError,
    ArchiveConnectError,
    ArchiveNotFound,
    ArchiveVerifyError,
    BucketArchive,
    BucketLocation,
    Copy,
    Credentials,
    Manifest,
    download_checkpoint,
    plan_prune,
)
from tests.s3server import S3Server

pytestmark = pytest.mark.timeout(120)
BUCKET = "raftkv-archive"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with S3Server(tmp_path_factory.mktemp("s3"), bucket=BUCKET) as server:
        yield server


def location(s3: S3Server, prefix: str, **kw: object) -> BucketLocation:
    return BucketLocation(
        endpoint=s3.endpoint,
        bucket=BUCKET,
        prefix=prefix,
        path_style=True,
        allow_http=not s3.tls,
        ca_file=str(s3.ca_file) if s3.ca_file else None,
        **kw,
    )  # type: ignore[arg-type]


def archive(s3: S3Server, prefix: str) -> BucketArchive:
    return BucketArchive(
        location(s3, prefix), Credentials(s3.keys.access_key_id, s3.keys.secret_access_key)
    )


def make_checkpoint(
    root: Path, ident: str, index: int, payload: bytes, time: str = "2026-01-01T00:00:00Z"
) -> Path:
    directory = root / ident
    directory.mkdir(parents=True)
    (directory / "data").write_bytes(payload)
    (directory / "manifest.json").write_text(
        json.dumps(
            {
                "id": ident,
                "index": index,
                "term": 2,
                "sha256": hashlib.sha256(payload).hexdigest(),
                "size": len(payload),
                "time": time,
                "members": ["n1", "n2", "n3"],
            }
        )
    )
    return directory


def test_upload_then_download_is_byte_identical_and_carries_sha256(
    s3: S3Server, tmp_path: Path
) -> None:
    payload = os.urandom(300_000)
    source = make_checkpoint(tmp_path / "src", "cp-1", 42, payload)
    store = archive(s3, "roundtrip")
    manifest = store.upload(source, "demo")
    head = s3.admin().head_object(Bucket=BUCKET, Key="roundtrip/demo/cp-1/data")
    assert head["Metadata"]["sha256"] == hashlib.sha256(payload).hexdigest()
    got = store.download("demo/cp-1", tmp_path / "out")
    assert got.sha256 == manifest.sha256
    assert (tmp_path / "out" / "data").read_bytes() == payload
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["index"] == 42
    # The helper the restores use, with credentials from the environment.
    env = {
        "RAFTKV_S3_ACCESS_KEY_ID": s3.keys.access_key_id,
        "RAFTKV_S3_SECRET_ACCESS_KEY": s3.keys.secret_access_key,
    }
    again = download_checkpoint(
        location(s3, "roundtrip"), "demo/cp-1", tmp_path / "again", Credentials.from_env(env)
    )
    assert again.index == 42 and (tmp_path / "again" / "data").read_bytes() == payload


def test_corrupted_object_is_refused_and_leaves_nothing(s3: S3Server, tmp_path: Path) -> None:
    payload = b"x" * 5000
    store = archive(s3, "corrupt")
    store.upload(make_checkpoint(tmp_path / "src", "cp-1", 7, payload), "demo")
    admin = s3.admin()
    key = "corrupt/demo/cp-1/data"
    meta = admin.head_object(Bucket=BUCKET, Key=key)["Metadata"]
    # Same size and the same metadata, one byte flipped: only the content hash can tell.
    admin.put_object(Bucket=BUCKET, Key=key, Body=b"y" + payload[1:], Metadata=meta)
    with pytest.raises(ArchiveVerifyError, match="sha256"):
        store.download("demo/cp-1", tmp_path / "out")
    assert not (tmp_path / "out" / "data").exists()
    assert not (tmp_path / "out" / "manifest.json").exists()
    assert [p.name for p in (tmp_path / "out").iterdir()] == []
    # Metadata that disagrees with the manifest is refused before any byte is written.
    admin.put_object(Bucket=BUCKET, Key=key, Body=payload, Metadata={**meta, "sha256": "0" * 64})
    with pytest.raises(ArchiveVerifyError, match="metadata sha256"):
        store.download("demo/cp-1", tmp_path / "out2")


def test_local_copy_not_matching_its_manifest_is_not_uploaded(s3: S3Server, tmp_path: Path) -> None:
    source = make_checkpoint(tmp_path / "src", "cp-bad", 3, b"original")
    (source / "data").write_bytes(b"tampered")
    store = archive(s3, "local-bad")
    with pytest.raises(ArchiveVerifyError, match="not uploaded"):
        store.upload(source, "demo")
    assert store.list_copies("demo") == []


def test_hostile_manifest_is_refused(s3: S3Server, tmp_path: Path) -> None:
    admin = s3.admin()
    admin.put_object(
        Bucket=BUCKET,
        Key="hostile/demo/cp-1/manifest.json",
        Body=b'{"id": "../../etc", "index": 1, "term": 1, "sha256": "'
        + b"a" * 64
        + b'", "size": 1}',
    )
    admin.put_object(Bucket=BUCKET, Key="hostile/demo/cp-1/data", Body=b"z")
    with pytest.raises(ArchiveVerifyError, match="no valid id"):
        archive(s3, "hostile").download("demo/cp-1", tmp_path / "out")
    with pytest.raises(ArchiveConfigError):
        archive(s3, "hostile").download("demo/../etc", tmp_path / "out")


def test_retention_by_count_and_age(s3: S3Server, tmp_path: Path) -> None:
    store = archive(s3, "retention")
    now = datetime(2026, 6, 1, tzinfo=UTC)
    ages_days = {"cp-1": 40, "cp-2": 20, "cp-3": 10, "cp-4": 2, "cp-5": 1}
    for i, (ident, days) in enumerate(ages_days.items(), start=1):
        stamp = (now - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")
        store.upload(
            make_checkpoint(tmp_path / "src", ident, i * 100, os.urandom(100), stamp), "demo"
        )
    store.upload(make_checkpoint(tmp_path / "other", "cp-1", 1, b"other cluster"), "other")
    # An interrupted upload (data, no manifest), old enough not to be one in progress.
    s3.admin().put_object(Bucket=BUCKET, Key="retention/demo/cp-0/data", Body=b"half")
    copies = store.list_copies("demo")
    assert {c.key: c.manifest is not None for c in copies} == {
        "demo/cp-0": False,
        **{f"demo/{k}": True for k in ages_days},
    }

    plan = store.prune("demo", keep=4, max_age=timedelta(days=15), now=now + timedelta(hours=2))
    assert plan.keep == ["demo/cp-5", "demo/cp-4", "demo/cp-3"]
    assert set(plan.delete) == {"demo/cp-2", "demo/cp-1"}  # cp-0 is younger than the grace
    left = {c.key for c in store.list_copies("demo")}
    assert left == {"demo/cp-0", "demo/cp-3", "demo/cp-4", "demo/cp-5"}
    # By count alone, and the leftover once it is older than the grace period.
    plan = store.prune("demo", keep=2, max_age=None, now=datetime.now(UTC) + timedelta(hours=2))
    assert plan.keep == ["demo/cp-5", "demo/cp-4"]
    assert {c.key for c in store.list_copies("demo")} == {"demo/cp-4", "demo/cp-5"}
    # Another cluster's copies are never touched.
    assert [c.key for c in store.list_copies("other")] == ["other/cp-1"]


def test_retention_keeps_the_newest_copy_however_old() -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)

    def copy(ident: str, index: int, days: int) -> Copy:
        manifest = Manifest(
            ident, index, 1, "a" * 64, 1, (now - timedelta(days=days)).isoformat(), {}
        )
        return Copy(f"c/{ident}", manifest, now)

    plan = plan_prune(
        [copy("a", 1, 100), copy("b", 2, 90)], keep=5, max_age=timedelta(days=1), now=now
    )
    assert plan.keep == ["c/b"] and plan.delete == ["c/a"]
    with pytest.raises(ArchiveConfigError):
        plan_prune([], keep=0, max_age=None, now=now)


@pytest.mark.parametrize("which", ["unknown key", "wrong secret", "no permission"])
def test_refused_credentials_are_reported_as_such(s3: S3Server, tmp_path: Path, which: str) -> None:
    credentials = {
        "unknown key": Credentials("AKIAUNKNOWNKEY000000", "nope"),
        "wrong secret": Credentials(s3.keys.access_key_id, "not-the-secret"),
        "no permission": Credentials(
            s3.denied_keys.access_key_id, s3.denied_keys.secret_access_key
        ),
    }[which]
    store = BucketArchive(location(s3, "denied"), credentials)
    with pytest.raises(ArchiveAccessDenied, match="refused the credentials"):
        store.upload(make_checkpoint(tmp_path, "cp-1", 1, b"data"), "demo")
    assert archive(s3, "denied").list_copies("demo") == []


def test_missing_copy_and_missing_bucket(s3: S3Server, tmp_path: Path) -> None:
    with pytest.raises(ArchiveNotFound):
        archive(s3, "nothing").download("demo/cp-404", tmp_path / "out")
    loc = BucketLocation(
        endpoint=s3.endpoint, bucket="no-such-bucket", path_style=True, allow_http=True
    )
    store = BucketArchive(loc, Credentials(s3.keys.access_key_id, s3.keys.secret_access_key))
    with pytest.raises((ArchiveNotFound, ArchiveAccessDenied)):
        store.list_copies("demo")


def test_locations_are_validated_before_anything_is_sent() -> None:
    with pytest.raises(ArchiveConfigError, match="plain http"):
        BucketLocation(endpoint="http://127.0.0.1:1", bucket="b-1")
    with pytest.raises(ArchiveConfigError, match="bucket name"):
        BucketLocation(endpoint="https://s3.example", bucket="Bad_Bucket")
    with pytest.raises(ArchiveConfigError, match="prefix"):
        BucketLocation(endpoint="https://s3.example", bucket="bkt", prefix="a/../b")
    with pytest.raises(ArchiveConfigError, match="no bucket credentials"):
        Credentials.from_env({})


def test_tls_with_a_custom_ca(tmp_path: Path) -> None:
    with S3Server(tmp_path / "tls", bucket=BUCKET, tls=True) as s3:
        store = archive(s3, "tls")
        store.upload(make_checkpoint(tmp_path / "src", "cp-1", 1, b"over tls"), "demo")
        assert store.download("demo/cp-1", tmp_path / "out").index == 1
        untrusted = BucketArchive(
            BucketLocation(endpoint=s3.endpoint, bucket=BUCKET, path_style=True),
            Credentials(s3.keys.access_key_id, s3.keys.secret_access_key),
        )
        with pytest.raises(ArchiveConnectError, match="TLS"):
            untrusted.list_copies("demo")


def test_command_exit_codes(s3: S3Server, tmp_path: Path) -> None:
    source = make_checkpoint(tmp_path / "src", "cp-cli", 9, b"from the command")
    flags = [
        "--endpoint",
        s3.endpoint,
        "--bucket",
        BUCKET,
        "--prefix",
        "cli",
        "--path-style",
        "--allow-http",
    ]
    env = {
        **os.environ,
        "RAFTKV_S3_ACCESS_KEY_ID": s3.keys.access_key_id,
        "RAFTKV_S3_SECRET_ACCESS_KEY": s3.keys.secret_access_key,
    }

    def run(*args: str, environ: dict[str, str] = env) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "raftkv.cli", "archive", *args],
            capture_output=True,
            text=True,
            env=environ,
            timeout=60,
        )

    up = run("upload", str(source), "--cluster", "demo", *flags)
    assert up.returncode == 0, up.stderr
    assert json.loads(up.stdout)["uploaded"] == "demo/cp-cli"
    down = run("download", "demo/cp-cli", "--out", str(tmp_path / "out"), *flags)
    assert down.returncode == 0, down.stderr
    assert (tmp_path / "out" / "data").read_bytes() == b"from the command"
    bad = {**env, "RAFTKV_S3_SECRET_ACCESS_KEY": "wrong"}
    refused = run("list", "--cluster", "demo", *flags, environ=bad)
    assert refused.returncode == 1
    assert "refused the credentials" in refused.stderr
    insecure = run("list", "--cluster", "demo", *flags[:-1])
    assert insecure.returncode == 2 and "plain http" in insecure.stderr
