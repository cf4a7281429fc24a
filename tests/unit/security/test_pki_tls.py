"""Certificates from `security.pki` and TLS contexts that follow their files."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
from cryptography import x509

from raftkv.runtime.server import agreed
from raftkv.security import pki
from raftkv.security.tls import (
    LoadedMaterial,
    ReloadingTLS,
    TLSFiles,
    build_client_context,
    peer_certificate_names,
    read_material,
)


def test_issued_certificate_carries_its_names_and_chains_to_the_ca() -> None:
    ca = pki.make_ca("test CA")
    leaf = pki.issue_cert(
        ca, "node1", dns_names=["node1", "node1.peers"], ip_addresses=["127.0.0.1"], client=False
    )
    cn, dns, ips = pki.cert_names(leaf.cert)
    assert (cn, dns, ips) == ("node1", ["node1", "node1.peers"], ["127.0.0.1"])
    assert leaf.cert.issuer == ca.cert.subject
    leaf.cert.verify_directly_issued_by(ca.cert)
    other = pki.make_ca("other CA")
    with pytest.raises(ValueError):
        leaf.cert.verify_directly_issued_by(other.cert)
    usages = leaf.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert [u.dotted_string for u in usages] == ["1.3.6.1.5.5.7.3.1"]  # server only
    ca_constraints = ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert (
        ca_constraints.ca
        and not leaf.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    )


def test_key_files_are_private(tmp_path: Path) -> None:
    ca = pki.make_ca()
    ca.write(tmp_path / "ca.crt", tmp_path / "ca.key")
    assert (tmp_path / "ca.key").stat().st_mode & 0o077 == 0
    assert (
        pki.CertKey((tmp_path / "ca.crt").read_bytes(), (tmp_path / "ca.key").read_bytes()).cert
        == ca.cert
    )


class _Fixture:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.ca = pki.make_ca("CA 1")
        self.ca.write(root / "ca.crt", root / "ca.key")
        self.server_files = TLSFiles(root / "server.crt", root / "server.key", root / "ca.crt")
        self.issue_server(self.ca)

    def issue_server(self, ca: pki.CertKey) -> pki.CertKey:
        pair = pki.issue_cert(ca, "server", dns_names=["localhost"], ip_addresses=["127.0.0.1"])
        pair.write(self.root / "server.crt", self.root / "server.key")
        return pair

    def client_files(self, ca: pki.CertKey, name: str) -> TLSFiles:
        ca.write(self.root / f"{name}-ca.crt", self.root / f"{name}-ca.key")
        pki.issue_cert(ca, name, server=False).write(
            self.root / f"{name}.crt", self.root / f"{name}.key"
        )
        return TLSFiles(
            self.root / f"{name}.crt", self.root / f"{name}.key", self.root / f"{name}-ca.crt"
        )


async def _serve(tls: ReloadingTLS) -> tuple[asyncio.AbstractServer, int, list[set[str]]]:
    seen: list[set[str]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(peer_certificate_names(writer.get_extra_info("peercert")))
        writer.write(b"hi")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=tls.server_context())
    return server, server.sockets[0].getsockname()[1], seen


async def _handshake(port: int, ctx: ssl.SSLContext) -> x509.Certificate:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=ctx, server_hostname="localhost"
    )
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    assert await reader.read() == b"hi"
    writer.close()
    return x509.load_der_x509_certificate(der)


async def _refused(port: int, ctx: ssl.SSLContext) -> bool:
    """True when the server will not talk: with TLS 1.3 a client learns that its
    certificate was refused only when it reads (an alert, or the connection closed)."""
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=ctx, server_hostname="localhost"
        )
        data = await reader.read()
        writer.close()
    except (ssl.SSLError, ConnectionError):
        return True
    return data != b"hi"


async def test_server_serves_a_rotated_certificate_without_restart(tmp_path: Path) -> None:
    f = _Fixture(tmp_path)
    tls = ReloadingTLS.server(f.server_files, check_interval=0.0)
    server, port, _ = await _serve(tls)
    trust = build_client_context(TLSFiles(ca_file=tmp_path / "ca.crt"))
    try:
        first = await _handshake(port, trust)
        rotated = f.issue_server(f.ca)
        second = await _handshake(port, trust)
        assert first.serial_number != second.serial_number
        assert second == rotated.cert
        assert tls.reloads == 1
    finally:
        server.close()
        await server.wait_closed()


async def test_half_rotated_files_keep_the_previous_context(tmp_path: Path) -> None:
    f = _Fixture(tmp_path)
    tls = ReloadingTLS.server(f.server_files, check_interval=0.0)
    server, port, _ = await _serve(tls)
    trust = build_client_context(TLSFiles(ca_file=tmp_path / "ca.crt"))
    try:
        before = await _handshake(port, trust)
        # A new certificate whose key has not been written yet: does not load.
        other = pki.issue_cert(f.ca, "server", dns_names=["localhost"])
        pki.write_file_atomic(tmp_path / "server.crt", other.cert_pem)
        after = await _handshake(port, trust)
        assert after == before and tls.reload_failures == 1 and tls.reloads == 0
    finally:
        server.close()
        await server.wait_closed()


async def test_client_certificates_follow_a_rotated_ca(tmp_path: Path) -> None:
    f = _Fixture(tmp_path)
    tls = ReloadingTLS.server(f.server_files, "required", check_interval=0.0)
    server, port, seen = await _serve(tls)
    try:
        old_client = f.client_files(f.ca, "alice")
        await _handshake(port, build_client_context(old_client))
        assert "alice" in seen[-1]
        # Rotate the trusted CA: certificates of the new CA only.
        ca2 = pki.make_ca("CA 2")
        ca2.write(tmp_path / "ca.crt", tmp_path / "ca.key")
        f.issue_server(ca2)
        new_client = f.client_files(ca2, "bob")
        await _handshake(port, build_client_context(new_client))
        assert "bob" in seen[-1]
        refused = build_client_context(
            TLSFiles(old_client.cert_file, old_client.key_file, tmp_path / "ca.crt")
        )
        assert await _refused(port, refused)
        assert "alice" not in seen[-1]
    finally:
        server.close()
        await server.wait_closed()


async def test_a_client_without_a_certificate_is_refused(tmp_path: Path) -> None:
    f = _Fixture(tmp_path)
    server, port, seen = await _serve(ReloadingTLS.server(f.server_files, "required"))
    try:
        assert await _refused(port, build_client_context(TLSFiles(ca_file=tmp_path / "ca.crt")))
        assert seen == []
    finally:
        server.close()
        await server.wait_closed()


def test_reload_is_checked_at_most_once_per_interval(tmp_path: Path) -> None:
    f = _Fixture(tmp_path)
    now = [0.0]
    tls = ReloadingTLS.server(f.server_files, check_interval=5.0, clock=lambda: now[0])
    first = tls.current()
    f.issue_server(f.ca)
    now[0] = 4.9
    assert tls.current() is first
    now[0] = 5.0
    assert tls.current() is not first and tls.reloads == 1


def test_loaded_names_the_files_the_context_was_built_from(tmp_path: Path) -> None:
    f = _Fixture(tmp_path)
    now = [0.0]
    tls = ReloadingTLS.server(f.server_files, "required", check_interval=1.0, clock=lambda: now[0])
    digest = read_material(f.server_files)
    assert tls.loaded() == digest and digest.cert_sha256 and digest.ca_sha256
    # A trust bundle (old + new CA) and a new certificate: reported once loaded, not before.
    ca2 = pki.make_ca("CA 2")
    pki.write_file_atomic(tmp_path / "ca.crt", f.ca.cert_pem + ca2.cert_pem)
    f.issue_server(ca2)
    assert tls.loaded() == digest  # not re-checked yet
    now[0] = 1.0
    after = tls.loaded()
    assert after == read_material(f.server_files) != digest
    # Files that do not load are not reported: the context still holds the last good ones.
    pki.write_file_atomic(tmp_path / "server.crt", pki.issue_cert(ca2, "x").cert_pem)
    now[0] = 2.0
    assert tls.loaded() == after and tls.reload_failures == 1


def test_a_plane_reports_only_what_all_its_contexts_agree_on() -> None:
    old, new = LoadedMaterial("c1", "a1"), LoadedMaterial("c2", "a1")
    assert agreed(old, old) == old
    assert agreed(old, new) == LoadedMaterial(None, "a1")
