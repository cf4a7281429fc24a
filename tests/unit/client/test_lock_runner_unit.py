"""The lock runner's handling of a lost lock, in process: the command is stopped, and
killed if it ignores SIGTERM (it must not go on without the lock)."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from raftkv.client import commands
from raftkv.client.commands import EXIT_UNAVAILABLE, _run_locked

IGNORES_TERM = (
    "import signal, sys, time, pathlib\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "pathlib.Path(sys.argv[1]).write_text('started')\n"
    "time.sleep(60)\n"
)


async def _started(marker: Path) -> None:
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert time.monotonic() < deadline, "the command never started"
        await asyncio.sleep(0.02)


async def test_a_command_that_ignores_sigterm_is_killed_when_the_lock_is_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(commands, "LOST_LOCK_GRACE_SECONDS", 0.5)
    marker = tmp_path / "started"
    lost = asyncio.Event()
    lock = SimpleNamespace(name="jobs", lease=7, token=3)
    run = asyncio.ensure_future(
        _run_locked([sys.executable, "-c", IGNORES_TERM, str(marker)], lock, lost)
    )
    await _started(marker)
    lost.set()
    started = time.monotonic()
    assert await asyncio.wait_for(run, 20) == EXIT_UNAVAILABLE
    assert time.monotonic() - started < 10  # killed after the grace, not after 60 s
    assert "lost lock jobs" in capsys.readouterr().err


async def test_the_exit_status_of_a_command_killed_by_a_signal() -> None:
    lost = asyncio.Event()
    lock = SimpleNamespace(name="jobs", lease=7, token=3)
    code = await _run_locked(
        [sys.executable, "-c", "import os; os.kill(os.getpid(), 15)"], lock, lost
    )
    assert code == 128 + signal.SIGTERM
