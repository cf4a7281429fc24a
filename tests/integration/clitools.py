"""Running the real `raftkv` CLI as a subprocess in integration tests."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass


@dataclass
class CliResult:
    code: int
    out: str
    err: str


async def raftkv(
    *args: str, stdin: bytes | None = None, timeout: float = 60.0, env: dict[str, str] | None = None
) -> CliResult:
    """`raftkv ARGS` in a fresh interpreter, as a user would run it."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "raftkv.cli",
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(os.environ, **(env or {})),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"raftkv {' '.join(args)} did not finish in {timeout}s") from None
    assert proc.returncode is not None
    return CliResult(proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))
