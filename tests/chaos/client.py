"""One HTTP request to a node, classified for the history: ok, fail or info.

A write is a definite failure only when the node certainly did not apply it:
the connection was refused (nothing was sent), a 4xx (validation happens
before proposing), or a 503 whose code is raised before anything is proposed.
Everything else that is not a success is indeterminate (`info`): a timeout, a
dropped connection, `503 timeout`, `not_leader` (a proposal in flight when
leadership moved may still commit), `leader_unreachable`, `proposal_lost`, and
any 500 (which is also counted as a node bug).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import aiohttp

DEFINITE_503 = {"no_leader", "not_ready", "proposal_dropped"}

Outcome = Literal["ok", "fail", "info"]


@dataclass
class Reply:
    outcome: Outcome
    status: int  # 0: no HTTP answer
    body: bytes
    error: str | None = None
    headers: dict[str, str] | None = None

    def json(self) -> Any:
        import json

        return json.loads(self.body)


async def call(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    data: bytes | None = None,
    json_body: Any = None,
    params: dict[str, str] | None = None,
    timeout: float = 5.0,
    ok_codes: tuple[int, ...] = (200,),
) -> Reply:
    try:
        async with session.request(
            method,
            url,
            data=data,
            json=json_body,
            params=params,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as r:
            body = await r.read()
            headers = {k: v for k, v in r.headers.items()}
    except aiohttp.ClientConnectorError as exc:
        return Reply("fail", 0, b"", f"connect: {exc.os_error!r}")
    except TimeoutError:
        return Reply("info", 0, b"", "client timeout")
    except (aiohttp.ClientError, OSError) as exc:
        return Reply("info", 0, b"", f"connection: {type(exc).__name__}")
    if r.status in ok_codes:
        return Reply("ok", r.status, body, None, headers)
    code = _error_code(body)
    if 400 <= r.status < 500:
        return Reply("fail", r.status, body, code, headers)
    if r.status == 503 and code in DEFINITE_503:
        return Reply("fail", r.status, body, code, headers)
    return Reply("info", r.status, body, code or f"http {r.status}", headers)


def _error_code(body: bytes) -> str:
    import json

    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return ""
    return str(parsed.get("error", "")) if isinstance(parsed, dict) else ""
