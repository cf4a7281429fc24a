"""Debian's `prometheus` package (prometheus + promtool) for the monitoring tests.

`make install-system` installs it; a test that finds it missing installs it itself when it
runs as root (apt-get update once, then install), and otherwise skips with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

PACKAGE = "prometheus"
_apt_attempted = False


def _apt_install() -> str | None:
    """Install the package; the reason it could not, or None."""
    global _apt_attempted
    if _apt_attempted:
        return "apt-get install prometheus already failed in this run"
    _apt_attempted = True
    if os.geteuid() != 0:
        return "not root: cannot apt-get install prometheus (run `make install-system`)"
    if shutil.which("apt-get") is None:
        return "no apt-get: install Prometheus 2.x (prometheus and promtool) by hand"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", PACKAGE],
    ):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            return f"{' '.join(command)} failed: {done.stderr.strip()[-500:]}"
    return None


def binary(name: str) -> str:
    """Path of `prometheus` or `promtool`, installing the Debian package if needed, or skip."""
    found = shutil.which(name)
    if found is None:
        reason = _apt_install()
        found = shutil.which(name)
        if found is None:
            pytest.skip(reason or f"{name} not found after installing {PACKAGE}")
    return found
