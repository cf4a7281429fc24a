"""Who is calling, and may they? Authentication and roles of the client port.

Identities come from a bearer token (`Authorization: Bearer <token>`) or from a
verified client certificate (its subjectAltNames and common name). The auth
file (`--auth-file`, JSON, reloaded when it changes) lists them:

    {"tokens": [{"name": "ci", "role": "readwrite", "sha256": "<hex>",
                 "prefixes": ["ci/"]}],
     "certificates": [{"name": "backup.example.com", "role": "admin"}]}

Tokens are stored as the SHA-256 of the token, never the token. That is safe
because tokens are random secrets of at least 128 bits (`raftkv auth token`
makes them): a fast hash of a high-entropy secret cannot be inverted or
guessed, so a slow password hash (scrypt) would add nothing but ~50 ms per
request. Known tokens are also cached (bounded) so the per-request cost is a
dict lookup; the stored digest is compared with `hmac.compare_digest`.

Roles nest: `read` (get, range, watch, status, lease/lock info) < `readwrite`
(+ put, delete, txn, leases, locks) < `admin` (+ members, leader transfer,
checkpoints, a delete of the whole keyspace). `prefixes`, when given, limits an
identity's keys to those prefixes (admin routes are not key-scoped).

One function decides for both front doors (aiohttp's middleware and the fast
path): `Authenticator.check`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import ssl
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from raftkv.fsm import Delete, Put, Range, Txn, prefix_end
from raftkv.fsm.commands import ALL_KEYS_END
from raftkv.runtime.errors import ApiError
from raftkv.security.tls import file_stamp

log = logging.getLogger("raftkv.auth")

# What a route needs of its caller: "open" = anyone (health probes); "metrics" = open
# or any role, by --metrics-access; the rest are roles.
Access = Literal["open", "metrics", "read", "readwrite", "admin"]

ROLES = ("read", "readwrite", "admin")
_RANK = {"read": 1, "readwrite": 2, "admin": 3}
TOKEN_CACHE_SIZE = 4096
RELOAD_CHECK_SECONDS = 1.0
WWW_AUTHENTICATE = 'Bearer realm="raftkv"'


class AuthFileError(ValueError):
    """The auth file does not parse or names an unknown role."""


@dataclass(frozen=True, slots=True)
class Identity:
    name: str
    role: str
    prefixes: tuple[bytes, ...] | None = None  # None: every key
    source: str = "token"  # "token", "certificate" or "insecure"

    def may(self, access: Access) -> bool:
        if access == "open":
            return True
        if access == "metrics":
            access = "read"
        return _RANK[self.role] >= _RANK[access]

    def covers(self, key: bytes, range_end: bytes) -> bool:
        """May this identity touch `key` (range_end b"") or the fsm range
        [key, range_end) (b"\\0": every key from `key` on)?"""
        if self.prefixes is None:
            return True
        for prefix in self.prefixes:
            if not key.startswith(prefix):
                continue
            limit = prefix_end(prefix)
            if range_end == b"" or limit == ALL_KEYS_END:
                return True
            if range_end != ALL_KEYS_END and range_end <= limit:
                return True
        return False


ANONYMOUS_ADMIN = Identity("anonymous", "admin", None, "insecure")


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class AuthTable:
    tokens: tuple[tuple[bytes, Identity], ...]  # (sha256 hex digest, identity)
    certificates: Mapping[str, Identity]  # certificate name (SAN or CN) -> identity


def _identity(entry: Any, source: str, where: str) -> Identity:
    if not isinstance(entry, dict):
        raise AuthFileError(f"{where}: an entry must be an object")
    name, role = entry.get("name"), entry.get("role")
    if not isinstance(name, str) or not name:
        raise AuthFileError(f"{where}: 'name' must be a non-empty string")
    if role not in ROLES:
        raise AuthFileError(f"{where}: 'role' of {name!r} must be one of {ROLES}")
    raw = entry.get("prefixes")
    prefixes: tuple[bytes, ...] | None = None
    if raw is not None:
        if not isinstance(raw, list) or not all(isinstance(p, str) for p in raw):
            raise AuthFileError(f"{where}: 'prefixes' of {name!r} must be a list of strings")
        prefixes = tuple(p.encode("utf-8") for p in raw)
    return Identity(name, role, prefixes, source)


def parse_auth_file(text: str) -> AuthTable:
    """The auth file's identities (see the module docstring)."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise AuthFileError(f"not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or not set(doc) <= {"tokens", "certificates"}:
        raise AuthFileError("expected an object with 'tokens' and/or 'certificates'")
    tokens: dict[bytes, Identity] = {}
    for i, entry in enumerate(doc.get("tokens", [])):
        ident = _identity(entry, "token", f"tokens[{i}]")
        digest = entry.get("sha256")
        if (
            not isinstance(digest, str)
            or len(digest) != 64
            or any(c not in "0123456789abcdef" for c in digest)
        ):
            raise AuthFileError(f"tokens[{i}]: 'sha256' must be 64 lowercase hex digits")
        if digest.encode() in tokens:
            raise AuthFileError(f"tokens[{i}]: the same token is listed twice")
        tokens[digest.encode()] = ident
    certificates: dict[str, Identity] = {}
    for i, entry in enumerate(doc.get("certificates", [])):
        ident = _identity(entry, "certificate", f"certificates[{i}]")
        certificates[ident.name] = ident
    return AuthTable(tuple(tokens.items()), certificates)


def certificate_names(peercert: Mapping[str, Any] | None) -> list[str]:
    """A verified client certificate's names: DNS/URI/IP subjectAltNames, then the CN."""
    if not peercert:
        return []
    # (IPv6 addresses come with a trailing newline from some OpenSSL versions.)
    names = [
        str(value).rstrip("\n")
        for kind, value in peercert.get("subjectAltName", ())
        if kind in ("DNS", "URI", "IP Address")
    ]
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                names.append(str(value))
    return names


def unauthenticated(message: str) -> ApiError:
    return ApiError(401, "unauthenticated", message, headers={"WWW-Authenticate": WWW_AUTHENTICATE})


def permission_denied(message: str) -> ApiError:
    return ApiError(403, "permission_denied", message)


class Authenticator:
    """Checks callers against the auth file; `None` file = auth off (explicitly
    insecure deployments only: every caller is an anonymous admin)."""

    def __init__(
        self,
        path: Path | None,
        *,
        metrics_open: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.metrics_open = metrics_open
        self._clock = clock
        self._cache: dict[str, Identity] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._checked = clock()
        self.reloads = 0
        self.reload_failures = 0
        self.table = AuthTable((), {})
        if path is not None:
            self._stamp = file_stamp(path)
            self.table = parse_auth_file(path.read_text())  # bad file: refuse to start

    @property
    def enabled(self) -> bool:
        return self.path is not None

    # --- the one check ---------------------------------------------------------------
    def check(
        self,
        access: Access,
        authorization: str | None,
        peercert: Callable[[], Mapping[str, Any] | None],
    ) -> Identity:
        """The caller's identity if it may use a route needing `access`, else 401/403.
        `authorization`: the request's Authorization header; `peercert` gives the
        connection's verified client certificate (called only when the request has no
        token: decoding a certificate is not free)."""
        if self.path is None or access == "open" or (access == "metrics" and self.metrics_open):
            return ANONYMOUS_ADMIN if self.path is None else _OPEN
        identity = self.authenticate(authorization, peercert)
        if not identity.may(access):
            raise permission_denied(
                f"{identity.name!r} (role {identity.role}) may not do this: it needs "
                f"role {'read' if access == 'metrics' else access}"
            )
        return identity

    def authenticate(
        self, auth: str | None, peercert: Callable[[], Mapping[str, Any] | None]
    ) -> Identity:
        self._maybe_reload()
        if auth is not None:
            scheme, _, token = auth.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise unauthenticated("the Authorization header must be 'Bearer <token>'")
            identity = self._token_identity(token.strip())
            if identity is None:
                raise unauthenticated("the token is not valid")
            return identity
        names = certificate_names(peercert())
        for name in names:
            found = self.table.certificates.get(name)
            if found is not None:
                return found
        if names:
            raise permission_denied(
                f"the client certificate names no identity of the auth file ({', '.join(names)})"
            )
        raise unauthenticated("credentials required: a bearer token or a client certificate")

    def _token_identity(self, token: str) -> Identity | None:
        # Cached: a dict lookup keyed by the token (its SipHash is keyed per process,
        # so the lookup's timing says nothing useful about other tokens).
        found = self._cache.get(token)
        if found is not None:
            return found
        digest = token_digest(token).encode()
        identity = None
        for known, candidate in self.table.tokens:  # every entry: constant time
            if hmac.compare_digest(digest, known):
                identity = candidate
        if identity is None:
            return None  # unknown tokens are not cached: the cache holds valid ones only
        if len(self._cache) >= TOKEN_CACHE_SIZE:
            self._cache.clear()
        self._cache[token] = identity
        return identity

    # --- reload --------------------------------------------------------------------
    def _maybe_reload(self) -> None:
        if self.path is None:
            return
        now = self._clock()
        if now - self._checked < RELOAD_CHECK_SECONDS:
            return
        self._checked = now
        stamp = file_stamp(self.path)
        if stamp == self._stamp:
            return
        try:
            table = parse_auth_file(self.path.read_text())
        except (OSError, AuthFileError) as exc:
            log.warning(
                "auth file %s changed but does not load (%s); keeping the previous one",
                self.path,
                exc,
            )
            self._stamp = stamp  # retried on the next change
            self.reload_failures += 1
            return
        self.table = table
        self._cache = {}
        self._stamp = stamp
        self.reloads += 1
        log.info(
            "auth file %s reloaded: %d tokens, %d certificates",
            self.path,
            len(table.tokens),
            len(table.certificates),
        )


_OPEN = Identity("anonymous", "read", (), "open")  # open routes only: no keys at all


def peercert_of(transport: Any) -> dict[str, Any] | None:
    """The verified client certificate of a connection (None: plain or no certificate)."""
    if transport is None:
        return None
    sslobj = transport.get_extra_info("ssl_object")
    if sslobj is None:
        return None
    try:
        cert = sslobj.getpeercert()
    except (ValueError, ssl.SSLError):
        return None
    return cert or None


def command_ranges(command: object) -> list[tuple[bytes, bytes]]:
    """The fsm (key, range_end) pairs a command reads or writes."""
    if isinstance(command, Put):
        return [(command.key, b"")]
    if isinstance(command, (Delete, Range)):
        return [(command.key, command.range_end)]
    if isinstance(command, Txn):
        out = [(c.key, c.range_end) for c in command.compares]
        for op in (*command.success, *command.failure):
            out.extend(command_ranges(op))
        return out
    return []


def _deletes_everything(command: object) -> bool:
    if isinstance(command, Delete):
        return command.range_end == ALL_KEYS_END
    if isinstance(command, Txn):
        return any(_deletes_everything(op) for op in (*command.success, *command.failure))
    return False


def check_command(identity: Identity, command: object) -> None:
    """403 unless `identity` may run `command`: its keys lie under the identity's
    prefixes, and a delete of the whole keyspace (range_end b"\\0") is an admin's."""
    if _deletes_everything(command) and identity.role != "admin":
        raise permission_denied(
            "deleting every key (an unbounded range delete) needs the admin role"
        )
    check_ranges(identity, command_ranges(command))


def check_ranges(identity: Identity, ranges: Iterable[tuple[bytes, bytes]]) -> None:
    if identity.prefixes is None:
        return
    for key, range_end in ranges:
        if not identity.covers(key, range_end):
            allowed = [p.decode("utf-8", "replace") for p in identity.prefixes]
            raise permission_denied(f"{identity.name!r} may only use keys under {allowed}")
