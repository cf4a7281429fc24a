"""The checkpoint calls of `AsyncClient`: create one on every member, list,
inspect, and download one to local disk (the files themselves: `download.py`)."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from urllib.parse import quote

from raftkv.client.download import ProgressCallback, download_data
from raftkv.client.errors import CheckpointNotFoundError, RaftkvError, UnavailableError
from raftkv.client.models import CheckpointManifest
from raftkv.client.resource import ResourceApi


class CheckpointApi(ResourceApi):
    async def create_checkpoint(self, checkpoint_id: str | None = None) -> CheckpointManifest:
        """Checkpoint the state machine on every member; the leader's manifest.

        The id is chosen here when not given, so a retry cannot make two."""
        cid = checkpoint_id or (
            time.strftime("ckpt-%Y%m%dT%H%M%SZ-", time.gmtime()) + secrets.token_hex(3)
        )
        ans = await self.request(
            "POST",
            "/v1/checkpoints",
            target="write",
            json_body={"id": cid},
            session=True,
            extra_wait=60.0,
        )
        return CheckpointManifest.from_json(ans.json())

    async def checkpoints(self) -> list[CheckpointManifest]:
        ans = await self.request("GET", "/v1/checkpoints", target="write")
        return [CheckpointManifest.from_json(m) for m in ans.json()["checkpoints"]]

    async def checkpoint(self, checkpoint_id: str) -> CheckpointManifest | None:
        try:
            ans = await self.request(
                "GET", f"/v1/checkpoints/{quote(checkpoint_id, safe='')}", target="write"
            )
        except CheckpointNotFoundError:
            return None
        return CheckpointManifest.from_json(ans.json())

    async def download_checkpoint(
        self,
        checkpoint_id: str,
        out_dir: str | os.PathLike[str],
        *,
        progress: ProgressCallback | None = None,
    ) -> CheckpointManifest:
        """Write `<out_dir>/data` and `<out_dir>/manifest.json` of a checkpoint and
        verify size and sha256 against the manifest (`CheckpointVerifyError`).

        Every member holds the same bytes, so the endpoints are tried in turn until
        one has it. Files appear only once verified (written to temp names, fsynced,
        renamed)."""
        cid = quote(checkpoint_id, safe="")
        last: RaftkvError | None = None
        for url in self._download_order():
            try:
                ans = await self.request("GET", f"/v1/checkpoints/{cid}", target=url)
                manifest = CheckpointManifest.from_json(ans.json())
                await download_data(self.transport, url, cid, manifest, Path(out_dir), progress)
                return manifest
            except (CheckpointNotFoundError, UnavailableError) as exc:
                last = exc
        assert last is not None
        raise last

    def _download_order(self) -> list[str]:
        leader = self.transport.selector.usable_leader()
        urls = list(self.transport.selector.endpoints)
        if leader in urls:
            urls.remove(leader)
            urls.insert(0, leader)
        return urls
