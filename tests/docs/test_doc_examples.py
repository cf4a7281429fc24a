"""Every example of the documentation runs, as a reader would run it (see
tests/docs/README.md): README.md, docs/*.md, the chart's README and examples/*.yaml.

The `setup` examples (README.md's `raftkv local up ...`) run first, in a scratch
directory, and what they export (RAFTKV_ENDPOINTS, ...) is the environment of every
other example: one real local cluster for the whole module. Each example then runs in
bash with `set -euo pipefail` (a Python one with the project's `python`), in that directory (or the repository with cwd=repo);
its exit status and, where the marker says so, its output are checked. Examples
marked `skip` are reported as skipped with their reason, and listed at the end of the
run (conftest.py)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.docs.examples import REPO, Example, all_examples

pytestmark = pytest.mark.slow

SANDBOX = Path(__file__).resolve().parent / "sandbox"
EXAMPLES = all_examples()
SETUP = [e for e in EXAMPLES if e.kind == "setup"]
TEARDOWN = [e for e in EXAMPLES if e.kind == "teardown"]
CHECKED = [e for e in EXAMPLES if e.kind in ("run", "skip")]
ENV_DUMP = "DOCTEST_ENV_DUMP"
# What bash itself sets: not part of what an example exported.
SHELL_VARIABLES = {"_", "SHLVL", "PWD", "OLDPWD", ENV_DUMP}


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


def stop_clusters_left_running(directory: Path, env: dict[str, str]) -> None:
    """Whatever the examples started and did not stop (a failed run): `local down`."""
    for state in list(directory.rglob("cluster.json")):
        subprocess.run(
            ["raftkv", "local", "down", "--purge", "--dir", str(state.parent)],
            env=env,
            capture_output=True,
            timeout=60,
        )


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    directory = tmp_path_factory.mktemp("doc-session")
    shutil.copytree(SANDBOX, directory, dirs_exist_ok=True)
    start = base_env()
    env = dict(start)
    try:
        for example in SETUP:
            dump = directory / ".doctest-env"
            result = run_example(
                example,
                Session(directory, start, env),
                {**env, ENV_DUMP: str(dump)},
                trailer=f'\nenv -0 > "${ENV_DUMP}"\n',
            )
            check(example, result)
            pairs = (item.partition("=") for item in dump.read_text().split("\0") if item)
            env = {k: v for k, _, v in pairs if k not in SHELL_VARIABLES}
            dump.unlink()
        yield Session(directory, start, env)
    finally:
        stop_clusters_left_running(directory, start)


def test_the_setup_examples_give_the_others_a_cluster(session: Session) -> None:
    assert SETUP, "no example is marked `doctest: setup`: the others have no cluster"
    exported = {k for k in session.env if session.env[k] != session.base_env.get(k)}
    assert any(k.startswith("RAFTKV_") for k in exported), (
        f"the setup examples exported no RAFTKV_* setting (exported: {sorted(exported)})"
    )


@pytest.mark.parametrize("example", CHECKED, ids=[e.id for e in CHECKED])
def test_doc_example(example: Example, session: Session) -> None:
    if example.kind == "skip":
        pytest.skip(f"{example.id}: {example.reason}")
    check(example, run_example(example, session, session.env))


@pytest.mark.parametrize("example", TEARDOWN, ids=[e.id for e in TEARDOWN])
def test_teardown_example(example: Example, session: Session) -> None:
    """Last in the module: the examples that stop what the setup started."""
    check(example, run_example(example, session, session.env))
    for state in session.directory.rglob("cluster.json"):
        nodes = json.loads(state.read_text())["nodes"]
        assert all(n["pid"] is None for n in nodes), f"{state.parent} still runs after it"
