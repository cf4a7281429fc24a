"""`raftkv local up` runs its members over mutual TLS by default (certificates made
in DIR/pki), and without only when asked (`--insecure` -> `--peer-insecure`); a
bare `raftkv serve` with neither refuses to start."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from raftkv.runtime.credentials import ClientCredentials
from raftkv.security.tls import TLSFiles, build_client_context

pytestmark = pytest.mark.slow


def raftkv(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "raftkv.cli", *args], capture_output=True, text=True, timeout=90
    )


def _status(url: str, directory: Path, secure: bool) -> dict[str, object]:
    """A member's status, with the client credentials `local up` made when secure."""
    import urllib.request

    request = urllib.request.Request(url + "/v1/status")
    context = None
    if secure:
        creds = ClientCredentials(directory / "credentials")
        context = build_client_context(TLSFiles(ca_file=creds.ca_file))
        request.add_header("Authorization", f"Bearer {creds.admin_token()}")
    with urllib.request.urlopen(request, timeout=5, context=context) as r:
        return json.loads(r.read())  # type: ignore[no-any-return]


def _peer_handshake(host: str, port: int, ctx: ssl.SSLContext | None) -> str:
    """What a peer port does with a TLS client: "tls" if the handshake completes."""
    import socket

    with socket.create_connection((host, port), timeout=5) as raw:
        if ctx is None:
            return "plain"
        try:
            with ctx.wrap_socket(raw, server_hostname=host) as tls:
                # A frame the node answers (REFUSED: not a HELLO) only if it admitted
                # the TLS client; a refused client certificate ends in an alert or EOF.
                tls.sendall(b"\0\0\0\1\x90")
                return "tls" if tls.recv(1) else "refused"
        except (ssl.SSLError, ConnectionError, OSError):
            return "refused"


@pytest.mark.parametrize("insecure", [False, True])
def test_local_up_peer_tls_by_default(tmp_path: Path, insecure: bool) -> None:
    directory = tmp_path / "local"
    up = raftkv(
        "local",
        "up",
        "--nodes",
        "3",
        "--dir",
        str(directory),
        *(["--insecure"] if insecure else []),
    )
    try:
        assert up.returncode == 0, up.stderr
        state = json.loads((directory / "cluster.json").read_text())
        urls = up.stdout.split()
        statuses = [_status(u, directory, not insecure) for u in urls]
        ids = {s["cluster_id"] for s in statuses}
        assert len(ids) == 1 and len(str(ids.pop())) == 32  # one cluster id, everywhere
        node = state["nodes"][0]
        host, port = node["peer_url"].rsplit(":", 1)
        pki = directory / "pki"
        if insecure:
            assert not pki.exists()
            return
        assert (pki / "ca.pem").exists()
        # A client with the cluster's CA but no certificate of its own is refused.
        bare = build_client_context(TLSFiles(ca_file=pki / "ca.pem"), check_hostname=False)
        assert _peer_handshake(host, int(port), bare) == "refused"
        # With a member's certificate the TLS handshake completes.
        name = state["nodes"][1]["name"]
        member = build_client_context(
            TLSFiles(pki / f"{name}-peer.pem", pki / f"{name}-peer-key.pem", pki / "ca.pem"),
            check_hostname=False,
        )
        assert _peer_handshake(host, int(port), member) == "tls"
    finally:
        raftkv("local", "down", "--purge", "--dir", str(directory))


def test_serve_without_peer_tls_or_peer_insecure_refuses_to_start(tmp_path: Path) -> None:
    run = raftkv(
        "serve",
        "--name",
        "n1",
        "--data-dir",
        str(tmp_path / "n1"),
        "--listen-host",
        "127.0.0.1",
        "--initial-cluster",
        "n1=127.0.0.1:1",
    )
    assert run.returncode != 0
    assert "--peer-insecure" in run.stderr
