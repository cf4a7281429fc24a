"""An S3 wire-protocol server on 127.0.0.1 for the bucket-archive tests: moto's standalone
server (`moto_server`, an emulator of the S3 API, not S3 itself), as a child process.

`S3Server` starts it (optionally with TLS from a certificate of security/pki.py), creates
a bucket and an IAM user allowed to use it, then turns moto's request authentication on
(`/moto-api/reset-auth`): from then on every request must be signed with a key moto knows
and the policy must allow it, so "credentials refused" is tested against the server, not
assumed. Debian's Ceph radosgw would be the real thing; it needs monitors and OSDs to come
up first, which a test cannot do in reasonable time here (docs/recovery.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from raftkv.security import pki
from raftkv.tools.ports import free_port

START_DEADLINE = 60.0


@dataclass(frozen=True)
class Keys:
    access_key_id: str
    secret_access_key: str


def _bucket_policy(bucket: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": ["s3:*"],
                    "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                }
            ],
        }
    )


class S3Server:
    """`with S3Server(workdir, bucket="archive") as s3:` -> s3.endpoint, s3.keys, s3.client()."""

    def __init__(self, workdir: Path, *, bucket: str = "raftkv-archive", tls: bool = False) -> None:
        self.workdir = workdir
        self.bucket = bucket
        self.tls = tls
        self.port = free_port()
        self.ca_file: Path | None = None
        self.keys = Keys("", "")
        self.denied_keys = Keys("", "")
        """A key moto knows whose user has no permission on the bucket."""
        self._process: subprocess.Popen[bytes] | None = None
        self._log = workdir / "moto.log"

    @property
    def endpoint(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def __enter__(self) -> S3Server:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [
            str(Path(sys.executable).with_name("moto_server")),
            "-H",
            "127.0.0.1",
            "-p",
            str(self.port),
        ]
        if self.tls:
            ca = pki.make_ca("s3 test CA")
            server = pki.issue_cert(
                ca, "127.0.0.1", ip_addresses=["127.0.0.1"], dns_names=["localhost"], client=False
            )
            self.ca_file = self.workdir / "s3-ca.pem"
            self.ca_file.write_bytes(ca.cert_pem)
            server.write(self.workdir / "s3.pem", self.workdir / "s3.key")
            args += ["-c", str(self.workdir / "s3.pem"), "-k", str(self.workdir / "s3.key")]
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        with open(self._log, "wb") as log:
            self._process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            self._wait_up()
            self._provision()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _get(self, path: str, data: bytes | None = None) -> bytes:
        import ssl

        context = None
        if self.tls:
            context = ssl.create_default_context(cafile=str(self.ca_file))
        # text/plain: a form content type would let the server parse the body away.
        request = urllib.request.Request(
            self.endpoint + path,
            data=data,
            method="POST" if data is not None else "GET",
            headers={"Content-Type": "text/plain"},
        )
        with urllib.request.urlopen(request, timeout=5, context=context) as resp:
            return bytes(resp.read())

    def _wait_up(self) -> None:
        deadline = time.monotonic() + START_DEADLINE
        while True:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"moto_server exited: {self._log.read_text()[-2000:]}")
            try:
                self._get("/moto-api/data.json")
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"moto_server not up in {START_DEADLINE}s: {self._log.read_text()[-2000:]}"
                    ) from None
                time.sleep(0.1)  # polling a process start with a deadline, not a sync sleep

    def client(self, service: str = "s3", keys: Keys | None = None) -> Any:
        import boto3
        from botocore.config import Config

        keys = keys or Keys("bootstrap", "bootstrap")
        return boto3.session.Session(
            aws_access_key_id=keys.access_key_id,
            aws_secret_access_key=keys.secret_access_key,
            region_name="us-east-1",
        ).client(
            service,
            endpoint_url=self.endpoint,
            verify=str(self.ca_file) if self.ca_file else True,
            config=Config(s3={"addressing_style": "path"}),
        )

    def _provision(self) -> None:
        iam = self.client("iam")
        iam.create_user(UserName="archiver")
        iam.put_user_policy(
            UserName="archiver", PolicyName="bucket", PolicyDocument=_bucket_policy(self.bucket)
        )
        key = iam.create_access_key(UserName="archiver")["AccessKey"]
        self.keys = Keys(key["AccessKeyId"], key["SecretAccessKey"])
        iam.create_user(UserName="nobody")
        other = iam.create_access_key(UserName="nobody")["AccessKey"]
        self.denied_keys = Keys(other["AccessKeyId"], other["SecretAccessKey"])
        self.client().create_bucket(Bucket=self.bucket)
        # From now on every request is authenticated and authorized.
        self._get("/moto-api/reset-auth", data=b"0")

    def admin(self) -> Any:
        """An S3 client with the archiver's keys (for tests that look at or damage objects)."""
        return self.client(keys=self.keys)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._process is not None:
            self._process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(10)
            if self._process.poll() is None:
                self._process.kill()
                self._process.wait()
            self._process = None
