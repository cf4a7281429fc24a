"""How the client proves who it is and checks whom it talks to: a CA bundle to
verify the cluster's certificates, an optional client certificate, an optional
bearer token. The CLI fills them from flags or `RAFTKV_CACERT`, `RAFTKV_CERT`,
`RAFTKV_KEY`, `RAFTKV_TOKEN` (or `RAFTKV_TOKEN_FILE`); `raftkv local env`
prints those for a local cluster."""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Credentials:
    cacert: str | None = None  # PEM CA bundle; None: the system's trust store
    cert: str | None = None  # PEM client certificate (chain)
    key: str | None = None  # its private key (default: in `cert`)
    token: str | None = None  # bearer token

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for https endpoints (None: aiohttp's default, which
        verifies against the system's trust store)."""
        if self.cacert is None and self.cert is None:
            return None
        ctx = ssl.create_default_context(cafile=self.cacert)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert is not None:
            ctx.load_cert_chain(self.cert, self.key)
        return ctx

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


def read_token_file(path: str) -> str:
    token = Path(path).read_text().strip()
    if not token:
        raise ValueError(f"{path}: the token file is empty")
    return token


def credentials_from_env(env: Mapping[str, str] | None = None) -> Credentials:
    """Credentials from RAFTKV_CACERT/CERT/KEY/TOKEN (or TOKEN_FILE)."""
    env = os.environ if env is None else env
    token = env.get("RAFTKV_TOKEN") or None
    if token is None and env.get("RAFTKV_TOKEN_FILE"):
        token = read_token_file(env["RAFTKV_TOKEN_FILE"])
    return Credentials(
        env.get("RAFTKV_CACERT") or None,
        env.get("RAFTKV_CERT") or None,
        env.get("RAFTKV_KEY") or None,
        token,
    )
