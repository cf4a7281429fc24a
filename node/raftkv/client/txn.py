"""The transaction call of `AsyncClient`: compares, then one list of operations
or the other, at one revision, all or nothing."""

from __future__ import annotations

from collections.abc import Sequence

from raftkv.client.models import Compare, TxnOp, TxnResult
from raftkv.client.resource import ResourceApi


class TxnApi(ResourceApi):
    async def txn(
        self,
        compare: Sequence[Compare] = (),
        success: Sequence[TxnOp] = (),
        failure: Sequence[TxnOp] = (),
    ) -> TxnResult:
        """All compares hold -> `success` ops, else `failure` ops; one revision, all or
        nothing. A failed compare is not an error: see `TxnResult.succeeded`."""
        body = {
            "compare": [c.to_json() for c in compare],
            "success": [op.to_json() for op in success],
            "failure": [op.to_json() for op in failure],
        }
        ans = await self.request(
            "POST",
            "/v1/txn",
            target="write",
            params={"encoding": "base64"},
            json_body=body,
            session=True,
        )
        return TxnResult.from_json(ans.json())
