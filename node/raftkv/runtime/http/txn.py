"""`POST /v1/txn`: compare, then success or failure ops, atomically."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from raftkv.fsm import Compare, Delete, InvalidCommand, Put, Range, Txn, prefix_end
from raftkv.fsm.commands import ALL_KEYS_END
from raftkv.runtime.errors import bad_request
from raftkv.runtime.http.params import json_bool, json_int
from raftkv.runtime.http.routing import Route, json_response
from raftkv.runtime.http.service import KvService
from raftkv.runtime.jsonbytes import encoding_of, get_bytes, to_json


class TxnResource:
    def __init__(self, service: KvService) -> None:
        self.service = service
        self.cfg = service.cfg

    def routes(self) -> list[Route]:
        return [Route("POST", "/v1/txn", self.txn, "readwrite", leader=True)]

    async def txn(self, request: web.Request) -> web.Response:
        body = await self.service.json_body(request)
        command = self.parse(body)
        result = await self.service.submit(request, command)
        return json_response(to_json(result, encoding_of(request.query)))

    def parse(self, body: dict[str, Any]) -> Txn:
        for field in body:
            if field not in ("compare", "success", "failure"):
                raise bad_request(f"unknown txn field {field!r}")
        compares_raw = body.get("compare", [])
        success_raw = body.get("success", [])
        failure_raw = body.get("failure", [])
        for name, value in (
            ("compare", compares_raw),
            ("success", success_raw),
            ("failure", failure_raw),
        ):
            if not isinstance(value, list):
                raise bad_request(f"txn {name!r} must be a list")
        total = len(compares_raw) + len(success_raw) + len(failure_raw)
        if total > self.cfg.max_txn_ops:
            raise bad_request(
                f"txn has {total} compares and ops; --max-txn-ops is {self.cfg.max_txn_ops}",
                "too_many_ops",
            )
        try:
            return Txn(
                [self._parse_compare(c) for c in compares_raw],
                [self._parse_op(o) for o in success_raw],
                [self._parse_op(o) for o in failure_raw],
            )
        except InvalidCommand as exc:
            raise bad_request(str(exc), "invalid_txn") from None

    @staticmethod
    def _range_of(obj: dict[str, Any], key: bytes) -> bytes:
        if json_bool(obj, "prefix"):
            if "range_end" in obj or "range_end_b64" in obj:
                raise bad_request("give prefix or range_end, not both")
            return prefix_end(key)
        if obj.get("all"):
            return ALL_KEYS_END
        return get_bytes(obj, "range_end", required=False)

    def _parse_compare(self, obj: Any) -> Compare:
        if not isinstance(obj, dict):
            raise bad_request("a compare must be an object")
        key = get_bytes(obj, "key")
        self.service.check_key(key)
        target = obj.get("target", "value")
        op = obj.get("op", "==")
        if not isinstance(target, str) or not isinstance(op, str):
            raise bad_request("compare target and op must be strings")
        operand: bytes | int | bool
        if target == "value":
            operand = get_bytes(obj, "value")
        else:
            given: Any = obj.get("value")
            if target == "exists" and type(given) is not bool:
                raise bad_request("an exists compare takes a boolean value")
            if target != "exists" and type(given) is not int:
                raise bad_request(f"a {target} compare takes an integer value")
            operand = given
        range_end = self._range_of(obj, key)
        try:
            return Compare(key, target, op, operand, range_end)
        except InvalidCommand as exc:
            raise bad_request(str(exc), "invalid_txn") from None

    def _parse_op(self, obj: Any) -> Put | Delete | Range:
        if not isinstance(obj, dict):
            raise bad_request("a txn op must be an object")
        svc = self.service
        kind = obj.get("op")
        key = get_bytes(obj, "key")
        if kind == "put":
            svc.check_key(key)
            value = get_bytes(obj, "value")
            svc.check_value(value)
            return Put(key, value, json_int(obj, "lease", 0), json_bool(obj, "prev_kv"))
        if kind == "delete":
            if not json_bool(obj, "prefix"):
                svc.check_key(key)
            range_end = self._range_of(obj, key)
            return Delete(key or b"\0", range_end, json_bool(obj, "prev_kv"))
        if kind == "range":
            if not json_bool(obj, "prefix"):
                svc.check_key(key)
            range_end = self._range_of(obj, key)
            return Range(
                key or b"\0",
                range_end,
                json_int(obj, "limit", 0),
                json_bool(obj, "keys_only"),
                json_bool(obj, "count_only"),
            )
        raise bad_request("a txn op's 'op' must be put, delete or range")
