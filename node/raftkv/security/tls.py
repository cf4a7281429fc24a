"""TLS contexts that follow their files.

Kubernetes rotates a mounted Secret by swapping a symlink, and cert-manager
renews certificates before they expire: a context built once at start would
serve the old certificate (and trust the old CA) until a restart. A
`ReloadingTLS` rebuilds its `ssl.SSLContext` when one of its files changes
(checked on use, at most once per `check_interval`), and keeps the last good
context when the new files do not load (a half-finished rotation, a key that
does not match its certificate), logging why.

- Servers hand `server_context()` to `create_server` once. Its SNI callback runs
  in every handshake and switches the connection to the newest context, so new
  connections get the new certificate, key and CA while open ones keep theirs.
- Clients call `client_context()` for every new connection.

Settings are the `ssl` module's modern defaults (TLS 1.2 minimum, the
library's cipher list, hostname checks on the client side); nothing is
hand-rolled.
"""

from __future__ import annotations

import hashlib
import logging
import os
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

log = logging.getLogger("raftkv.tls")

ClientAuth = Literal["none", "optional", "required"]


@dataclass(frozen=True, slots=True)
class TLSFiles:
    """PEM files: our certificate chain and key, and the CA bundle we trust."""

    cert_file: Path | None = None
    key_file: Path | None = None
    ca_file: Path | None = None

    def paths(self) -> list[Path]:
        return [p for p in (self.cert_file, self.key_file, self.ca_file) if p is not None]


def build_server_context(files: TLSFiles, client_auth: ClientAuth = "none") -> ssl.SSLContext:
    """A server context: our certificate, and (with `client_auth`) the CA that
    client certificates must chain to."""
    if files.cert_file is None or files.key_file is None:
        raise ValueError("a TLS server needs a certificate and a key file")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(files.cert_file, files.key_file)
    if client_auth != "none":
        if files.ca_file is None:
            raise ValueError("client certificate checks need a trusted CA file")
        ctx.load_verify_locations(cafile=files.ca_file)
        ctx.verify_mode = ssl.CERT_REQUIRED if client_auth == "required" else ssl.CERT_OPTIONAL
    return ctx


def build_client_context(files: TLSFiles, *, check_hostname: bool = True) -> ssl.SSLContext:
    """A client context: trusts `ca_file` (the system store when None) and
    presents our certificate when one is given."""
    ctx = ssl.create_default_context(
        cafile=str(files.ca_file) if files.ca_file is not None else None
    )
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = check_hostname
    if files.cert_file is not None:
        if files.key_file is None:
            raise ValueError("a client certificate needs its key file")
        ctx.load_cert_chain(files.cert_file, files.key_file)
    return ctx


_Stamp = tuple[tuple[int, int, int], ...]


@dataclass(frozen=True, slots=True)
class LoadedMaterial:
    """SHA-256 (hex) of the certificate and CA files a context was built from: what
    `/v1/status` reports, so that an operator rotating a CA sees what each member has
    loaded instead of guessing from the clock (None: no such file configured)."""

    cert_sha256: str | None
    ca_sha256: str | None

    def to_json(self) -> dict[str, str | None]:
        return {"cert_sha256": self.cert_sha256, "ca_sha256": self.ca_sha256}


def _digest(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def read_material(files: TLSFiles) -> LoadedMaterial:
    return LoadedMaterial(_digest(files.cert_file), _digest(files.ca_file))


def file_stamp(path: Path) -> tuple[int, int, int]:
    """(mtime, size, inode) of a file that is re-read when it changes; (-1, -1, -1) when
    it cannot be stat'ed. Follows symlinks: a Kubernetes Secret's ..data swap changes it."""
    try:
        st = os.stat(path)
    except OSError:
        return (-1, -1, -1)
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _stamp(paths: list[Path]) -> _Stamp:
    return tuple(file_stamp(p) for p in paths)


class ReloadingTLS:
    """An SSLContext rebuilt from `files` whenever they change."""

    def __init__(
        self,
        files: TLSFiles,
        build: Callable[[TLSFiles], ssl.SSLContext],
        *,
        check_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.files = files
        self._build = build
        self._check_interval = check_interval
        self._clock = clock
        self._stamp = _stamp(files.paths())
        # Read before the build: files only move forward (a Secret swap), so the context
        # is at least as new as what this reports; a change in between reloads again.
        material = read_material(files)
        self._context = build(files)  # the first build must succeed: bad files fail start
        self.material = material
        self._checked = clock()
        self._front: ssl.SSLContext | None = None
        self.reloads = 0
        self.reload_failures = 0

    @classmethod
    def server(
        cls, files: TLSFiles, client_auth: ClientAuth = "none", **kwargs: object
    ) -> ReloadingTLS:
        return cls(files, lambda f: build_server_context(f, client_auth), **kwargs)  # type: ignore[arg-type]

    @classmethod
    def client(
        cls, files: TLSFiles, *, check_hostname: bool = True, **kwargs: object
    ) -> ReloadingTLS:
        return cls(
            files,
            lambda f: build_client_context(f, check_hostname=check_hostname),
            **kwargs,  # type: ignore[arg-type]
        )

    def current(self) -> ssl.SSLContext:
        """The newest context that loaded (files re-checked at most once per interval)."""
        now = self._clock()
        if now - self._checked >= self._check_interval:
            self._checked = now
            stamp = _stamp(self.files.paths())
            if stamp != self._stamp:
                self._reload(stamp)
        return self._context

    def loaded(self) -> LoadedMaterial:
        """What the newest context was built from (files re-checked first, as on use: a
        member whose peer connections all stay open would otherwise never look)."""
        self.current()
        return self.material

    def _reload(self, stamp: _Stamp) -> None:
        material = read_material(self.files)
        try:
            context = self._build(self.files)
        except (OSError, ssl.SSLError, ValueError) as exc:
            # Keep serving with the old files' context; try again on the next change.
            self.reload_failures += 1
            log.warning("TLS files changed but did not load (%s); keeping the previous ones", exc)
            return
        self._stamp = stamp
        self._context = context
        self.material = material
        self.reloads += 1
        log.info("TLS files reloaded: %s", ", ".join(str(p) for p in self.files.paths()))

    def client_context(self) -> ssl.SSLContext:
        return self.current()

    def server_context(self) -> ssl.SSLContext:
        """One context for `create_server`: every handshake switches to the newest."""
        if self._front is None:
            front = self._build(self.files)

            def switch(sslobj: ssl.SSLObject, server_name: str | None, ctx: ssl.SSLContext) -> None:
                newest = self.current()
                if newest is not ctx:
                    sslobj.context = newest

            front.sni_callback = switch
            self._front = front
        return self._front


def peer_certificate_names(peercert: dict[str, object] | None) -> set[str]:
    """DNS and IP subjectAltNames of a verified peer certificate (as returned by
    `SSLObject.getpeercert()`), plus its common name."""
    names: set[str] = set()
    if not peercert:
        return names
    for kind, value in peercert.get("subjectAltName", ()):  # type: ignore[attr-defined]
        if kind in ("DNS", "IP Address"):
            names.add(str(value).rstrip("\n"))
    for rdn in peercert.get("subject", ()):  # type: ignore[attr-defined]
        for key, value in rdn:
            if key == "commonName":
                names.add(str(value))
    return names
