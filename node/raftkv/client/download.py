"""A checkpoint's files on local disk: the data streamed from a member, checked
against its manifest (size and sha256), and both files made durable before they
appear under their names (temp name, fsync, rename, fsync the directory)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from raftkv.client.errors import CheckpointVerifyError, ConnectError, error_from_response
from raftkv.client.models import CheckpointManifest
from raftkv.client.transport import Transport, describe, parse_json
from raftkv.protocol.headers import CHECKPOINT_SHA256

DOWNLOAD_CHUNK = 1 << 16

ProgressCallback = Callable[[int, int], None]  # (bytes so far, total bytes)


async def download_data(
    transport: Transport,
    url: str,
    cid: str,
    manifest: CheckpointManifest,
    out_dir: Path,
    progress: ProgressCallback | None,
) -> None:
    """Fetch checkpoint `cid`'s data from `url` into `out_dir`, verified."""
    out_dir.mkdir(parents=True, exist_ok=True)
    part = out_dir / f".data.{secrets.token_hex(4)}.part"
    digest = hashlib.sha256()
    size = 0
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=5.0, sock_read=transport.attempt_timeout
    )
    try:
        try:
            async with transport.session().get(
                f"{url}/v1/checkpoints/{cid}/data", timeout=timeout
            ) as resp:
                if resp.status != 200:
                    raise error_from_response(
                        resp.status, parse_json(await resp.read()), endpoint=url
                    )
                header_sum = resp.headers.get(CHECKPOINT_SHA256)
                if header_sum and header_sum != manifest.sha256:
                    raise CheckpointVerifyError(
                        f"{url} serves checkpoint {manifest.id} with sha256 {header_sum}, "
                        f"its manifest says {manifest.sha256}",
                        endpoint=url,
                    )
                with open(part, "wb") as f:
                    if progress is not None:
                        progress(0, manifest.size)
                    async for chunk in resp.content.iter_chunked(DOWNLOAD_CHUNK):
                        f.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
                        if progress is not None:
                            progress(size, manifest.size)
                    f.flush()
                    os.fsync(f.fileno())
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ConnectError(f"{url}: download failed: {describe(exc)}", endpoint=url) from None
        if size != manifest.size:
            raise CheckpointVerifyError(
                f"checkpoint {manifest.id}: downloaded {size} bytes, the manifest says size "
                f"{manifest.size}",
                endpoint=url,
            )
        if digest.hexdigest() != manifest.sha256:
            raise CheckpointVerifyError(
                f"checkpoint {manifest.id}: sha256 {digest.hexdigest()} does not match "
                f"the manifest's {manifest.sha256}",
                endpoint=url,
            )
        os.replace(part, out_dir / "data")
        write_durably(
            out_dir / "manifest.json",
            json.dumps(manifest.raw or manifest_json(manifest), indent=2).encode(),
        )
        fsync_dir(out_dir)
    finally:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()


def manifest_json(m: CheckpointManifest) -> dict[str, Any]:
    return {
        "id": m.id,
        "index": m.index,
        "term": m.term,
        "sha256": m.sha256,
        "size": m.size,
        "time": m.time,
        "members": m.members,
    }


def write_durably(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
