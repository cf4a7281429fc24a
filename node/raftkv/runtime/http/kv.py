"""`/v1/kv/{key}`: get, range, put, delete, and their compare-and-set forms."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from raftkv.fsm import Compare, Delete, Put, Range, Txn
from raftkv.protocol.headers import REVISION
from raftkv.runtime.errors import not_found
from raftkv.runtime.http.params import flag, int_param, path_key, read_body
from raftkv.runtime.http.routing import Route, json_response
from raftkv.runtime.http.service import KvService, result_of
from raftkv.runtime.jsonbytes import encoding_of, get_bytes, to_json


class KvResource:
    def __init__(self, service: KvService) -> None:
        self.service = service
        self.cfg = service.cfg

    def routes(self) -> list[Route]:
        return [
            Route("GET", "/v1/kv/{key:.*}", self.get, "read"),
            Route("PUT", "/v1/kv/{key:.*}", self.put, "readwrite", leader=True),
            Route("DELETE", "/v1/kv/{key:.*}", self.delete, "readwrite", leader=True),
        ]

    async def get(self, request: web.Request) -> web.Response:
        svc = self.service
        key = path_key(request.raw_path)
        prefix = flag(request, "prefix")
        encoding = encoding_of(request.query)
        if not prefix or len(key) > self.cfg.max_key_bytes:
            svc.check_key(key)
        limit = int_param(request, "limit", 0)
        keys_only = flag(request, "keys_only")
        count_only = flag(request, "count_only")
        query = (
            Range.prefix(key, limit=limit, keys_only=keys_only, count_only=count_only)
            if prefix
            else None
        )
        if query is None:
            svc.check_keys(request, key)
        else:
            svc.check_command(request, query)
        await svc.read_barrier(request)
        if query is None:
            value, headers = svc.single_get_answer(key)
            return web.Response(
                body=value, content_type="application/octet-stream", headers=headers
            )
        result = svc.node.fsm.range(query)
        return json_response(to_json(result, encoding), headers={REVISION: str(result["revision"])})

    async def put(self, request: web.Request) -> web.Response:
        svc = self.service
        key = path_key(request.raw_path)
        svc.check_key(key)
        value = await read_body(request, self.cfg.max_request_bytes)
        svc.check_value(value)
        put = Put(key, value, int_param(request, "lease", 0), flag(request, "prev_kv"))
        compares = self._cas_compares(request, key)
        if not compares:
            data, encoding = svc.plain_put(request, key, value)  # the fast path's checks
            result = result_of(await svc.propose(data))
            return json_response(to_json(result, encoding))
        encoding_of(request.query)  # checked before anything is proposed
        result = await svc.submit(request, Txn(compares, [put], [Range(key)]))
        return self._cas_answer(request, result, key)

    async def delete(self, request: web.Request) -> web.Response:
        svc = self.service
        key = path_key(request.raw_path)
        prefix = flag(request, "prefix")
        if not prefix or len(key) > self.cfg.max_key_bytes:
            svc.check_key(key)
        prev_kv = flag(request, "prev_kv")
        delete = Delete.prefix(key, prev_kv) if prefix else Delete(key, b"", prev_kv)
        compares = [] if prefix else self._cas_compares(request, key)
        if compares:
            result = await svc.submit(request, Txn(compares, [delete], [Range(key)]))
            return self._cas_answer(request, result, key)
        result = await svc.submit(request, delete)
        if not prefix and result.get("deleted", 0) == 0:
            raise not_found(f"key {key!r} not found", "key_not_found")
        return json_response(to_json(result, encoding_of(request.query)))

    @staticmethod
    def _cas_compares(request: web.Request, key: bytes) -> list[Compare]:
        compares = []
        q = request.query
        if "if_mod_revision" in q:
            compares.append(
                Compare(key, "mod_revision", "==", int_param(request, "if_mod_revision", 0))
            )
        if "if_version" in q:
            compares.append(Compare(key, "version", "==", int_param(request, "if_version", 0)))
        if "if_exists" in q:
            compares.append(Compare(key, "exists", "==", flag(request, "if_exists")))
        if "if_value" in q:
            compares.append(Compare(key, "value", "==", get_bytes(dict(q), "if_value")))
        return compares

    @staticmethod
    def _cas_answer(request: web.Request, result: dict[str, Any], key: bytes) -> web.Response:
        if result["succeeded"]:
            inner = result["responses"][0]
            inner.pop("op", None)
            return json_response(
                to_json({"revision": result["revision"], **inner}, encoding_of(request.query))
            )
        current = result["responses"][0].get("kvs") or []
        detail = to_json(current[0], "utf8") if current else None
        body = {
            "error": "compare_failed",
            "message": f"the condition on key {key!r} does not hold",
            "revision": result["revision"],
            "current": detail,
        }
        return json_response(body, 409)
