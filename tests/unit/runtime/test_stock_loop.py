"""`raftkv serve` without uvloop (optional: the stock asyncio loop is the documented
fallback) serves every route. It once ran its loop inside `except ImportError:`, so every
exception raised in the loop got that ImportError as its context, and the client port's
fast path, which recognises a hand-over to aiohttp by the parser error's context, answered
400 to every request that is not a single-key read or write (/healthz, /readyz...)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.unit.runtime.solo import free_port


def test_serve_on_the_stock_loop_answers_every_route(tmp_path: Path) -> None:
    blocker = tmp_path / "no-uvloop"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['uvloop'] = None\n")
    client, peer = free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": str(blocker)}
    env = {k: v for k, v in env.items() if not k.startswith("RAFTKV_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "raftkv.cli",
            "serve",
            "--name=solo",
            f"--data-dir={tmp_path / 'data'}",
            "--listen-host=127.0.0.1",
            f"--client-port={client}",
            f"--peer-port={peer}",
            f"--initial-cluster=solo=127.0.0.1:{peer}",
            "--client-insecure",
            "--peer-insecure",
            "--tick-ms=20",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{client}/healthz", timeout=2
                ) as answer:
                    assert answer.status == 200
                    break
            except urllib.error.HTTPError as e:  # the bug: 400 malformed
                raise AssertionError(f"/healthz answered {e.code}: {e.read()!r}") from e
            except OSError:
                assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
                assert time.monotonic() < deadline, "the node did not start"
                time.sleep(0.1)
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
