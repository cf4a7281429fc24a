"""Client-plane credentials kept in a directory: a CA, a server certificate per
node for the client port, bearer tokens and the auth file that lists them
(runtime/http/auth.py). `raftkv local up` and the test harnesses make them;
production brings its own (cert-manager, a Secret).

Layout under `<dir>/`: `ca.pem` (trusted by clients), `ca-key.pem` (0600),
`<name>.pem` + `<name>-key.pem` (0600) per node, `auth.json` (0600) and
`admin.token` (0600, the admin's bearer token).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raftkv.security.pki import CertKey, issue_cert, make_ca, write_file_atomic

CA_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"
AUTH_FILE = "auth.json"
ADMIN_TOKEN_FILE = "admin.token"
ADMIN_NAME = "admin"


def new_token() -> str:
    """A bearer token: 256 random bits (so storing its SHA-256 is safe)."""
    return "rkv_" + secrets.token_urlsafe(32)


def token_entry(
    name: str, role: str, token: str, prefixes: Iterable[str] | None = None
) -> dict[str, Any]:
    """An auth-file entry for `token` (the file keeps its SHA-256 only)."""
    entry: dict[str, Any] = {
        "name": name,
        "role": role,
        "sha256": hashlib.sha256(token.encode()).hexdigest(),
    }
    if prefixes is not None:
        entry["prefixes"] = list(prefixes)
    return entry


def write_auth_file(
    path: Path, tokens: Iterable[dict[str, Any]], certificates: Iterable[dict[str, Any]] = ()
) -> None:
    body = {"tokens": list(tokens), "certificates": list(certificates)}
    write_file_atomic(path, (json.dumps(body, indent=2) + "\n").encode(), mode=0o600)


def _split_hosts(hosts: Iterable[str]) -> tuple[list[str], list[str]]:
    dns, ips = [], []
    for host in hosts:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            dns.append(host)
        else:
            ips.append(host)
    return dns, ips


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    """The files of one directory (see the module docstring)."""

    directory: Path

    @property
    def ca_file(self) -> Path:
        return self.directory / CA_FILE

    @property
    def auth_file(self) -> Path:
        return self.directory / AUTH_FILE

    @property
    def admin_token_file(self) -> Path:
        return self.directory / ADMIN_TOKEN_FILE

    def admin_token(self) -> str:
        return self.admin_token_file.read_text().strip()

    def cert_files(self, name: str) -> tuple[Path, Path]:
        return self.directory / f"{name}.pem", self.directory / f"{name}-key.pem"

    def ca(self) -> CertKey:
        """The directory's CA, made on first use."""
        cert_path, key_path = self.ca_file, self.directory / CA_KEY_FILE
        if cert_path.exists() and key_path.exists():
            return CertKey(cert_path.read_bytes(), key_path.read_bytes())
        ca = make_ca("raftkv client CA")
        ca.write(cert_path, key_path)
        return ca

    def issue(
        self,
        name: str,
        hosts: Iterable[str],
        *,
        server: bool = True,
        client: bool = False,
        replace: bool = False,
    ) -> tuple[Path, Path]:
        """A certificate for `name` (server: for `hosts`; client: its CN `name` is the
        identity the auth file maps), kept if it exists unless `replace`."""
        cert_path, key_path = self.cert_files(name)
        if replace or not (cert_path.exists() and key_path.exists()):
            dns, ips = _split_hosts(hosts)
            issue_cert(
                self.ca(), name, dns_names=dns, ip_addresses=ips, server=server, client=client
            ).write(cert_path, key_path)
        return cert_path, key_path

    def ensure_admin(self) -> str:
        """The admin token and an auth file naming it (both made on first use)."""
        if self.admin_token_file.exists() and self.auth_file.exists():
            return self.admin_token()
        token = new_token()
        write_file_atomic(self.admin_token_file, (token + "\n").encode(), mode=0o600)
        write_auth_file(self.auth_file, [token_entry(ADMIN_NAME, "admin", token)])
        return token
