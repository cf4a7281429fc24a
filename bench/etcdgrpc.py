"""etcd through its native gRPC client: builds and runs bench/etcdload (Go, clientv3).

The JSON gateway costs etcd 20-45% of its throughput, so ratios against the
gateway alone flatter raftkv. The load generator is built offline in GOPATH mode
from Debian's `golang-go` and `golang-etcd-server-dev` (etcd 3.4's clientv3 and
its dependencies under /usr/share/gocode), once per source change, into
bench/.bin/ (ignored by git).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "etcdload" / "main.go"
BIN_DIR = HERE / ".bin"
GOPATH = Path("/usr/share/gocode")


def available() -> str | None:
    """None when the generator can be built here, else what is missing."""
    if shutil.which("go") is None:
        return "go (Debian golang-go)"
    if not (GOPATH / "src" / "go.etcd.io" / "etcd" / "clientv3").is_dir():
        return "etcd's clientv3 sources (Debian golang-etcd-server-dev)"
    return None


def build() -> Path:
    """The etcdload binary for the current source (built when missing)."""
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
    binary = BIN_DIR / f"etcdload-{digest}"
    if binary.exists():
        return binary
    BIN_DIR.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "GOPATH": str(GOPATH),
        "GO111MODULE": "off",
        "GOCACHE": str(BIN_DIR / "gocache"),
        "GOFLAGS": "",
    }
    subprocess.run(
        ["go", "build", "-o", str(binary), str(SOURCE)], env=env, check=True, timeout=600
    )
    return binary


def run(
    binary: Path,
    endpoint: str,
    op: str,
    clients: int,
    duration: int,
    extra: list[str] | None = None,
) -> dict[str, Any]:
    """One closed-loop run; `endpoint` is host:port of the member to drive."""
    out = subprocess.run(
        [
            str(binary),
            "-endpoints",
            endpoint,
            "-op",
            op,
            "-clients",
            str(clients),
            "-duration",
            f"{duration}s",
            *(extra or []),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=duration + 60,
    ).stdout
    result: dict[str, Any] = json.loads(out)
    return result
