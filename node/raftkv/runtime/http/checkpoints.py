"""`/v1/checkpoints`: create (as a log entry), list, manifest, download."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

from aiohttp import web

from raftkv.fsm import Checkpoint, InvalidCommand
from raftkv.protocol.headers import CHECKPOINT_INDEX, CHECKPOINT_SHA256
from raftkv.runtime.errors import bad_request, conflict, not_found, unavailable
from raftkv.runtime.http.routing import Route, json_response
from raftkv.runtime.http.service import KvService


class CheckpointResource:
    def __init__(self, service: KvService) -> None:
        self.service = service
        self.node = service.node
        self.cfg = service.cfg

    def routes(self) -> list[Route]:
        return [
            Route("GET", "/v1/checkpoints", self.list, "admin"),
            Route("POST", "/v1/checkpoints", self.create, "admin", leader=True),
            Route("GET", "/v1/checkpoints/{id}", self.get, "admin"),
            Route("GET", "/v1/checkpoints/{id}/data", self.data, "admin"),
        ]

    def _store(self) -> Any:
        store = self.node.checkpoint_store
        if store is None:
            raise unavailable("no_checkpoints", "this node keeps no checkpoints")
        return store

    @staticmethod
    def _id(request: web.Request) -> str:
        cid = request.match_info["id"]
        try:
            Checkpoint(cid)
        except InvalidCommand as exc:
            raise bad_request(str(exc), "invalid_checkpoint_id") from None
        return cid

    async def create(self, request: web.Request) -> web.Response:
        store = self._store()
        body = await self.service.json_body(request, optional=True)
        cid = body.get("id") or (
            time.strftime("ckpt-%Y%m%dT%H%M%SZ-", time.gmtime()) + secrets.token_hex(3)
        )
        if not isinstance(cid, str):
            raise bad_request("'id' must be a string")
        try:
            command = Checkpoint(cid)
        except InvalidCommand as exc:
            raise bad_request(str(exc), "invalid_checkpoint_id") from None
        existing = store.get(cid)
        if existing is not None:
            return json_response(existing)
        written = self.node.wait_checkpoint(cid)
        try:
            result = await self.service.submit(request, command)
            recorded = result.get("checkpoint")
            if recorded != cid:
                # A retry (same session headers): the log answered the first attempt's
                # result, and no new checkpoint is written. Answer the first one.
                written.cancel()
                if not isinstance(recorded, str):
                    raise conflict(
                        "session_reused",
                        "this request's session (client id, seq) "
                        "was already used by a request of another kind",
                    )
                cid = recorded
                written = self.node.wait_checkpoint(cid)  # before looking: never miss it
                existing = store.get(cid)
                if existing is not None:
                    return json_response(existing)
            manifest = await asyncio.wait_for(
                asyncio.shield(written), self.cfg.request_timeout + 60
            )
        except TimeoutError:
            raise unavailable(
                "timeout",
                f"checkpoint {cid} was not written in time (or was already removed by retention)",
            ) from None
        finally:
            written.cancel()
        return json_response(manifest)

    async def list(self, request: web.Request) -> web.Response:
        store = self._store()
        manifests = await asyncio.get_running_loop().run_in_executor(None, store.list)
        return json_response({"checkpoints": manifests})

    async def get(self, request: web.Request) -> web.Response:
        cid = self._id(request)
        manifest = self._store().get(cid)
        if manifest is None:
            raise not_found(f"checkpoint {cid!r} not found", "checkpoint_not_found")
        return json_response(manifest)

    async def data(self, request: web.Request) -> web.StreamResponse:
        cid = self._id(request)
        store = self._store()
        manifest = store.get(cid)
        path = store.data_path(cid)
        if manifest is None or path is None:
            raise not_found(f"checkpoint {cid!r} not found", "checkpoint_not_found")
        return web.FileResponse(
            path,
            headers={
                "Content-Type": "application/octet-stream",
                CHECKPOINT_SHA256: manifest["sha256"],
                CHECKPOINT_INDEX: str(manifest["index"]),
            },
        )
