"""`raftkv local up|status|down` as a tool would use it."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def raftkv(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "raftkv.cli", *args],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
    )


def _exports(text: str) -> dict[str, str]:
    """The variables of `export NAME=value` lines (values quoted for a POSIX shell)."""
    out = {}
    for line in text.splitlines():
        assert line.startswith("export "), line
        name, _, value = line[len("export ") :].partition("=")
        out[name] = shlex.split(value)[0]
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_local_up_status_down(tmp_path: Path) -> None:
    directory = str(tmp_path / "local")
    up = raftkv("local", "up", "--nodes", "3", "--dir", directory)
    try:
        assert up.returncode == 0, up.stderr
        urls = up.stdout.splitlines()
        # Secure by default: https, and the credentials to use it are in the directory.
        assert len(urls) == 3 and all(re.fullmatch(r"https://127\.0\.0\.1:\d+", u) for u in urls)
        state = json.loads((Path(directory) / "cluster.json").read_text())
        pids = [n["pid"] for n in state["nodes"]]
        assert all(_alive(p) for p in pids)

        status = raftkv("local", "status", "--dir", directory)
        assert status.returncode == 0, status.stderr
        lines = [line.split() for line in status.stdout.splitlines()]
        assert [line[1] for line in lines] == urls
        roles = sorted(line[2] for line in lines)
        assert roles == ["follower", "follower", "leader"]
        assert len({line[4] for line in lines}) == 1  # everyone names the same leader

        exports = raftkv("local", "env", "--dir", directory)
        assert exports.returncode == 0, exports.stderr
        variables = _exports(exports.stdout)
        assert variables["RAFTKV_ENDPOINTS"].split(",") == urls
        assert Path(variables["RAFTKV_CACERT"]).is_file() and variables["RAFTKV_TOKEN"]
        clean = {k: v for k, v in os.environ.items() if not k.startswith("RAFTKV_")}
        put = raftkv("put", "k", "v", env={**clean, **variables})
        assert put.returncode == 0, put.stderr
        got = raftkv("get", "k", env={**clean, **variables})
        assert (got.returncode, got.stdout) == (0, "v\n"), got.stderr
        anonymous = raftkv("get", "k", env={**clean, **variables, "RAFTKV_TOKEN": ""})
        assert anonymous.returncode == 5 and "unauthenticated" in anonymous.stderr
        untrusting = raftkv("get", "k", env={**clean, **variables, "RAFTKV_CACERT": ""})
        assert untrusting.returncode == 3 and "not trusted" in untrusting.stderr

        # `up` again is idempotent: the same URLs, nothing restarted.
        again = raftkv("local", "up", "--nodes", "3", "--dir", directory)
        assert again.returncode == 0 and again.stdout.splitlines() == urls
        assert [
            n["pid"] for n in json.loads((Path(directory) / "cluster.json").read_text())["nodes"]
        ] == pids
    finally:
        down = raftkv("local", "down", "--dir", directory)
    assert down.returncode == 0, down.stderr
    assert not any(_alive(p) for p in pids)
    assert raftkv("local", "down", "--purge", "--dir", directory).returncode == 0
    assert not os.path.exists(directory)


def test_local_up_insecure_is_explicit(tmp_path: Path) -> None:
    directory = str(tmp_path / "plain")
    up = raftkv("local", "up", "--nodes", "1", "--insecure", "--dir", directory)
    try:
        assert up.returncode == 0, up.stderr
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+\n", up.stdout)
        assert "INSECURE" in up.stderr
        exports = raftkv("local", "env", "--dir", directory)
        assert exports.stdout.splitlines()[0] == f"export RAFTKV_ENDPOINTS={up.stdout.strip()}"
        assert not (Path(directory) / "credentials").exists()
    finally:
        raftkv("local", "down", "--purge", "--dir", directory)


def test_local_up_on_multipaxos(tmp_path: Path) -> None:
    directory = str(tmp_path / "paxos")
    up = raftkv(
        "local", "up", "--nodes", "3", "--insecure", "--consensus", "multipaxos", "--dir", directory
    )
    try:
        assert up.returncode == 0, up.stderr
        for i in (1, 2, 3):
            record = json.loads((Path(directory) / f"node{i}" / "consensus.json").read_text())
            assert record == {"engine": "multipaxos"}
        env = dict(os.environ, RAFTKV_ENDPOINTS=",".join(up.stdout.split()))
        assert raftkv("put", "greeting", "hello", env=env).returncode == 0
        got = raftkv("get", "greeting", env=env)
        assert (got.returncode, got.stdout.strip()) == (0, "hello")
        # Another engine for the same directory is refused by `up` itself.
        again = raftkv("local", "up", "--nodes", "3", "--consensus", "raft", "--dir", directory)
        assert again.returncode == 2 and "holds a multipaxos cluster" in again.stderr
    finally:
        raftkv("local", "down", "--purge", "--dir", directory)


def test_a_raftkv_folder_in_the_working_directory_does_not_shadow_the_nodes(tmp_path: Path) -> None:
    # `local up` run from, say, the parent of a checkout: `python -m` would put the
    # working directory first on sys.path and import this folder as `raftkv`.
    shadow = tmp_path / "raftkv"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise ImportError('the shadowing raftkv/ folder')\n")
    directory = str(tmp_path / "local")
    console_script = str(Path(sys.executable).parent / "raftkv")
    up = subprocess.run(
        [console_script, "local", "up", "--nodes", "1", "--dir", directory],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=tmp_path,
    )
    try:
        assert up.returncode == 0, up.stderr
        assert re.fullmatch(r"https://127\.0\.0\.1:\d+\n", up.stdout)
    finally:
        assert raftkv("local", "down", "--purge", "--dir", directory).returncode == 0


def test_up_reports_a_node_that_exits_at_once_with_its_own_reason(tmp_path: Path) -> None:
    directory = tmp_path / "local"
    directory.mkdir()
    (directory / "node2").write_text("a file where node2's data directory belongs")
    started = time.monotonic()
    up = raftkv("local", "up", "--nodes", "3", "--dir", str(directory), "--timeout", "60")
    elapsed = time.monotonic() - started
    assert up.returncode == 1 and up.stdout == ""
    assert "node2 exited with code" in up.stderr, up.stderr
    assert "cannot start node2" in up.stderr, up.stderr  # the node's own words, from its log
    assert elapsed < 30, f"took {elapsed:.1f}s to notice"  # not the whole --timeout
    state = json.loads((directory / "cluster.json").read_text())
    assert all(n["pid"] is None for n in state["nodes"])  # the others were stopped
    assert raftkv("local", "down", "--purge", "--dir", str(directory)).returncode == 0
