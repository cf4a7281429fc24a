"""One attempt of a container probe (httpGet, tcpSocket, exec) against a pod's address."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

Obj = dict[str, Any]


def resolve_port(port: Any, container: Obj) -> int:
    """A probe or Service targetPort: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    if isinstance(port, str) and port.isdigit():
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ValueError(f"container {container.get('name')!r} has no port named {port!r}")


async def probe_once(
    probe: Obj,
    container: Obj,
    pod_ip: str,
    timeout: float,
    session: aiohttp.ClientSession,
    exec_env: Mapping[str, str],
    exec_argv: Sequence[str] | None,
    cwd: str,
) -> tuple[bool, str]:
    """(success, message) of one attempt."""
    try:
        if "httpGet" in probe:
            get = probe["httpGet"]
            scheme = str(get.get("scheme", "HTTP")).upper()
            if scheme not in ("HTTP", "HTTPS"):
                return False, f"unknown probe scheme {scheme!r}"
            port = resolve_port(get.get("port"), container)
            host = get.get("host") or pod_ip
            path = get.get("path", "/")
            headers = {h["name"]: h["value"] for h in get.get("httpHeaders") or []}
            async with session.get(
                f"{scheme.lower()}://{host}:{port}{path}",
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
                allow_redirects=False,
                # Like the kubelet: an HTTPS probe does not verify the certificate.
                ssl=scheme != "HTTPS",
            ) as resp:
                await resp.read()
                ok = 200 <= resp.status < 400
                return ok, f"HTTP probe failed with statuscode: {resp.status}" if not ok else ""
        if "tcpSocket" in probe:
            port = resolve_port(probe["tcpSocket"].get("port"), container)
            host = probe["tcpSocket"].get("host") or pod_ip
            async with asyncio.timeout(timeout):
                _, writer = await asyncio.open_connection(host, port)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return True, ""
        if "exec" in probe:
            if not exec_argv:
                return False, "exec probe without a command"
            proc = await asyncio.create_subprocess_exec(
                *exec_argv,
                env=dict(exec_env),
                cwd=cwd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                start_new_session=True,
            )
            try:
                async with asyncio.timeout(timeout):
                    code = await proc.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
                return False, "exec probe timed out"
            return code == 0, f"exec probe exited with {code}" if code else ""
        return False, f"unsupported probe {sorted(probe)}"
    except (OSError, aiohttp.ClientError, TimeoutError, ValueError) as e:
        return False, f"probe failed: {e!r}"
