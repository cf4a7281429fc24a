"""Running one documentation example the way a reader would (tests/docs/README.md):
shared by the local session (test_doc_examples.py) and the Kubernetes one
(test_doc_k8s_examples.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.docs.examples import REPO, Example

SANDBOX = Path(__file__).resolve().parent / "sandbox"


@dataclass
class Session:
    directory: Path
    base_env: dict[str, str]
    env: dict[str, str]


def base_env() -> dict[str, str]:
    """The caller's environment without raftkv settings, with the project's `raftkv`
    (the venv's bin/) first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAFTKV_")}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def run_example(
    example: Example, session: Session, env: dict[str, str], trailer: str = ""
) -> subprocess.CompletedProcess[str]:
    cwd = REPO if example.cwd == "repo" else session.directory
    if example.lang == "python":
        command = ["python", "-c", example.code]
    else:
        command = ["bash", "-c", "set -euo pipefail\n" + example.code + trailer, example.id]
    try:
        return subprocess.run(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=example.timeout,
        )
    except subprocess.TimeoutExpired as exc:
        out, err = (_text(exc.stdout), _text(exc.stderr))
        raise AssertionError(
            f"{example.id} did not finish in {example.timeout:g}s\n"
            f"{example.code}\nstdout:\n{out}\nstderr:\n{err}"
        ) from None


def _text(data: str | bytes | None) -> str:
    # TimeoutExpired carries bytes even with text=True.
    return data.decode(errors="replace") if isinstance(data, bytes) else data or ""


def check(example: Example, result: subprocess.CompletedProcess[str]) -> None:
    report = (
        f"\n--- {example.id}\n{example.code}--- exit {result.returncode}"
        f"\n--- stdout\n{result.stdout[-4000:]}--- stderr\n{result.stderr[-4000:]}"
    )
    assert result.returncode == example.exit, f"expected exit {example.exit}" + report
    for pattern in example.expect:
        assert re.search(pattern, result.stdout, re.MULTILINE), (
            f"stdout does not match expect={pattern!r}" + report
        )
