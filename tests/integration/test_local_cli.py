"""`raftkv local up|status|down` as a tool would use it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def raftkv(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "raftkv.cli", *args], capture_output=True, text=True, timeout=90
    )


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
        assert len(urls) == 3 and all(re.fullmatch(r"http://127\.0\.0\.1:\d+", u) for u in urls)
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
