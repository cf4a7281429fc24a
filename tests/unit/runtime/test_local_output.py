"""`raftkv local` output into a pipe whose reader has gone (`raftkv local status | head`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from raftkv.tools.ports import free_port


def _closed_port() -> int:
    return free_port()  # nothing listens there


def test_status_into_a_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    # A recorded cluster whose nodes are down: status prints one line per node
    # without any server running.
    nodes = [
        {
            "name": f"node{i}",
            "client_url": f"http://127.0.0.1:{_closed_port()}",
            "data_dir": str(tmp_path / f"node{i}"),
            "pid": None,
        }
        for i in range(3)
    ]
    (tmp_path / "cluster.json").write_text(json.dumps({"host": "127.0.0.1", "nodes": nodes}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "raftkv.cli", "local", "status", "--dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the first line is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err


def test_status_prints_one_line_per_node(tmp_path: Path) -> None:
    nodes = [
        {
            "name": "node1",
            "client_url": f"http://127.0.0.1:{_closed_port()}",
            "data_dir": str(tmp_path / "node1"),
            "pid": None,
        }
    ]
    (tmp_path / "cluster.json").write_text(json.dumps({"host": "127.0.0.1", "nodes": nodes}))
    done = subprocess.run(
        [sys.executable, "-m", "raftkv.cli", "local", "status", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["node1", nodes[0]["client_url"], "down", "-", "-"]
