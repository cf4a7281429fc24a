"""The key-value calls of `AsyncClient`: get, range by prefix, put and delete,
each optionally a compare-and-swap (`if_*` conditions). Transactions are
`txn.py`."""

from __future__ import annotations

from urllib.parse import quote

from raftkv.client.errors import KeyNotFoundError
from raftkv.client.models import (
    Bytes,
    DeleteResult,
    KeyValue,
    PutResult,
    RangeResult,
    to_bytes,
)
from raftkv.client.resource import ResourceApi


def key_path(key: bytes) -> str:
    """Percent-encode every byte but [A-Za-z0-9_~-]: `.`/`..` and `/` survive any
    URL normalisation on the way (the server decodes the raw path)."""
    return quote(key, safe="").replace(".", "%2E")


class KvApi(ResourceApi):
    @staticmethod
    def _read_params(serializable: bool) -> dict[str, str]:
        params = {"encoding": "base64"}
        if serializable:
            params["consistency"] = "serializable"
        return params

    async def get(self, key: Bytes, *, serializable: bool = False) -> KeyValue | None:
        """The key's value and revisions, or None if it does not exist."""
        k = to_bytes(key)
        try:
            ans = await self.request(
                "GET", "/v1/kv/" + key_path(k), params=self._read_params(serializable)
            )
        except KeyNotFoundError:
            return None
        return KeyValue.from_headers(k, ans.body, ans.headers)

    async def get_prefix(
        self,
        prefix: Bytes = b"",
        *,
        limit: int = 0,
        keys_only: bool = False,
        count_only: bool = False,
        serializable: bool = False,
    ) -> RangeResult:
        """Every key starting with `prefix` (b"": every key), sorted by key."""
        params = self._read_params(serializable)
        params["prefix"] = "1"
        if limit:
            params["limit"] = str(limit)
        if keys_only:
            params["keys_only"] = "1"
        if count_only:
            params["count_only"] = "1"
        ans = await self.request("GET", "/v1/kv/" + key_path(to_bytes(prefix)), params=params)
        return RangeResult.from_json(ans.json())

    async def put(
        self,
        key: Bytes,
        value: Bytes,
        *,
        lease: int = 0,
        prev_kv: bool = False,
        if_version: int | None = None,
        if_mod_revision: int | None = None,
        if_exists: bool | None = None,
        if_value: Bytes | None = None,
    ) -> PutResult:
        """Write `key`. The `if_*` conditions make it a compare-and-swap: when one does
        not hold, `CompareFailedError` (with `.current`) is raised and nothing changes."""
        params = {"encoding": "base64"}
        if lease:
            params["lease"] = str(lease)
        if prev_kv:
            params["prev_kv"] = "1"
        params.update(_conditions(if_version, if_mod_revision, if_exists, if_value))
        ans = await self.request(
            "PUT",
            "/v1/kv/" + key_path(to_bytes(key)),
            target="write",
            params=params,
            data=to_bytes(value),
            session=True,
        )
        return PutResult.from_json(ans.json())

    async def delete(
        self,
        key: Bytes,
        *,
        prev_kv: bool = False,
        if_version: int | None = None,
        if_mod_revision: int | None = None,
        if_exists: bool | None = None,
        if_value: Bytes | None = None,
    ) -> DeleteResult:
        """Delete `key`; `deleted` is 0 if it did not exist."""
        params = {"encoding": "base64"}
        if prev_kv:
            params["prev_kv"] = "1"
        params.update(_conditions(if_version, if_mod_revision, if_exists, if_value))
        try:
            ans = await self.request(
                "DELETE",
                "/v1/kv/" + key_path(to_bytes(key)),
                target="write",
                params=params,
                session=True,
            )
        except KeyNotFoundError:
            return DeleteResult(0)
        return DeleteResult.from_json(ans.json())

    async def delete_prefix(self, prefix: Bytes, *, prev_kv: bool = False) -> DeleteResult:
        params = {"encoding": "base64", "prefix": "1"}
        if prev_kv:
            params["prev_kv"] = "1"
        ans = await self.request(
            "DELETE",
            "/v1/kv/" + key_path(to_bytes(prefix)),
            target="write",
            params=params,
            session=True,
        )
        return DeleteResult.from_json(ans.json())


def _conditions(
    if_version: int | None,
    if_mod_revision: int | None,
    if_exists: bool | None,
    if_value: Bytes | None,
) -> dict[str, str]:
    out: dict[str, str] = {}
    if if_version is not None:
        out["if_version"] = str(int(if_version))
    if if_mod_revision is not None:
        out["if_mod_revision"] = str(int(if_mod_revision))
    if if_exists is not None:
        out["if_exists"] = "1" if if_exists else "0"
    if if_value is not None:
        raw = to_bytes(if_value)
        try:
            out["if_value"] = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("if_value must be UTF-8 text (a query parameter)") from None
    return out
