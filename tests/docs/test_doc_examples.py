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
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docs.examples import Example, all_examples
from tests.docs.runner import SANDBOX, Session, base_env, check, run_example

pytestmark = pytest.mark.slow

EXAMPLES = all_examples()
SETUP = [e for e in EXAMPLES if e.kind == "setup"]
TEARDOWN = [e for e in EXAMPLES if e.kind == "teardown"]
CHECKED = [e for e in EXAMPLES if e.kind in ("run", "skip")]
ENV_DUMP = "DOCTEST_ENV_DUMP"
# What bash itself sets: not part of what an example exported.
SHELL_VARIABLES = {"_", "SHLVL", "PWD", "OLDPWD", ENV_DUMP}


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
