"""The client plane with TLS and authentication on (runtime/http/auth.py): every
route refused without credentials, each role exactly its set, prefixes, client
certificates, reloads of the auth file and of the certificate, both front doors
(aiohttp and the fast path) deciding the same way."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from raftkv.runtime.config import InitialMember, NodeConfig
from raftkv.runtime.credentials import ClientCredentials, new_token, token_entry, write_auth_file
from raftkv.runtime.server import Server
from raftkv.storage import CheckpointStore, MemoryRaftStore, MemorySnapshotStore
from raftkv.tools.ports import free_port
from tests.unit.runtime.solo import solo_node

ROLES = ("read", "readwrite", "admin")
RANK = {"none": 0, "read": 1, "readwrite": 2, "admin": 3}

# What each route needs, written out independently of the route declarations: a
# route added without a line here fails test_the_table_covers_every_route.
NEEDS: dict[tuple[str, str], str] = {
    ("GET", "/healthz"): "open",
    ("GET", "/readyz"): "open",
    ("GET", "/metrics"): "open",  # --metrics-access open (the default)
    ("GET", "/v1/status"): "read",
    ("GET", "/v1/kv/{key}"): "read",
    ("PUT", "/v1/kv/{key}"): "readwrite",
    ("DELETE", "/v1/kv/{key}"): "readwrite",
    ("POST", "/v1/txn"): "readwrite",
    ("GET", "/v1/leases"): "read",
    ("POST", "/v1/leases"): "readwrite",
    ("GET", "/v1/leases/{id}"): "read",
    ("POST", "/v1/leases/{id}/keepalive"): "readwrite",
    ("DELETE", "/v1/leases/{id}"): "readwrite",
    ("GET", "/v1/locks"): "read",
    ("GET", "/v1/locks/{name}"): "read",
    ("POST", "/v1/locks/{name}"): "readwrite",
    ("DELETE", "/v1/locks/{name}"): "readwrite",
    ("GET", "/v1/watch"): "read",
    ("GET", "/v1/members"): "read",
    ("POST", "/v1/members"): "admin",
    ("POST", "/v1/members/{id}/promote"): "admin",
    ("DELETE", "/v1/members/{id}"): "admin",
    ("POST", "/v1/leader/transfer"): "admin",
    ("GET", "/v1/checkpoints"): "admin",
    ("POST", "/v1/checkpoints"): "admin",
    ("GET", "/v1/checkpoints/{id}"): "admin",
    ("GET", "/v1/checkpoints/{id}/data"): "admin",
}
# A concrete request per route (harmless: ids that do not exist, no waiting).
SAMPLE = {"{key}": "k1", "{id}": "424242", "{name}": "lk"}
BODIES = {
    ("POST", "/v1/txn"): {"success": [{"op": "range", "key": "k1"}]},
    ("POST", "/v1/leases"): {"ttl": 30},
    ("POST", "/v1/members"): {"name": "x", "peer_url": "127.0.0.1:1", "id": 5},
    ("POST", "/v1/locks/{name}"): {"lease": 424242},
    ("POST", "/v1/leader/transfer"): {"to": 424242},
}
QUERIES = {
    ("GET", "/v1/watch"): "?key=k1&start_revision=1",
    ("POST", "/v1/locks/{name}"): "?wait=0",
    ("DELETE", "/v1/locks/{name}"): "?lease=424242",
}


@dataclass
class Secured:
    server: Server
    url: str
    creds: ClientCredentials
    tokens: dict[str, str]  # role (or "scoped") -> token
    ssl: ssl.SSLContext


def _template(path: str) -> str:
    return re.sub(r"\{(\w+)(:[^}]*)?\}", r"{\1}", path)


def _concrete(path: str) -> str:
    for k, v in SAMPLE.items():
        path = path.replace(k, v)
    return path


def make_credentials(directory: Path) -> tuple[ClientCredentials, dict[str, str]]:
    creds = ClientCredentials(directory)
    creds.issue("node", ["127.0.0.1", "localhost"])
    creds.issue("cert-writer", [], server=False, client=True)
    creds.issue("cert-stranger", [], server=False, client=True)
    tokens = {role: new_token() for role in (*ROLES, "scoped")}
    write_auth_file(
        creds.auth_file,
        [token_entry(f"{role}-user", role, tokens[role]) for role in ROLES]
        + [token_entry("scoped-user", "readwrite", tokens["scoped"], ["app/"])],
        [{"name": "cert-writer", "role": "readwrite"}],
    )
    return creds, tokens


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[Secured]:
    creds, tokens = make_credentials(tmp_path / "creds")
    cert, key = creds.cert_files("node")
    async with solo_node(
        tmp_path,
        client_cert_file=cert,
        client_key_file=key,
        client_trusted_ca_file=creds.ca_file,
        auth_file=creds.auth_file,
    ) as server:
        yield Secured(
            server,
            server.cfg.advertise_client_url,
            creds,
            tokens,
            ssl.create_default_context(cafile=str(creds.ca_file)),
        )


def _session(
    s: Secured, token: str | None = None, cert: str | None = None
) -> aiohttp.ClientSession:
    ctx = ssl.create_default_context(cafile=str(s.creds.ca_file))
    if cert is not None:
        ctx.load_cert_chain(*s.creds.cert_files(cert))
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx), headers=headers)


async def _call(
    http: aiohttp.ClientSession, method: str, url: str, json_body: Any = None
) -> tuple[int, Any, dict[str, str]]:
    async with http.request(
        method, url, json=json_body, allow_redirects=False, timeout=aiohttp.ClientTimeout(total=10)
    ) as r:
        if r.content_type == "application/x-ndjson":
            return r.status, b"", dict(r.headers)  # a live watch: don't wait for it
        raw = await r.read()
        body = json.loads(raw) if r.content_type == "application/json" else raw
        return r.status, body, dict(r.headers)


def test_the_table_covers_every_route(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from raftkv.runtime.config import NodeConfig
    from raftkv.runtime.http import ClientApi
    from raftkv.runtime.metrics import NodeMetrics

    node = SimpleNamespace(cfg=NodeConfig("x", tmp_path), metrics=NodeMetrics("x"))
    app = ClientApi(node).app()  # type: ignore[arg-type]
    served = {
        (r.method, _template(r.resource.canonical))
        for r in app.router.routes()
        if r.method != "HEAD" and r.resource is not None
    }
    assert served == set(NEEDS)


async def test_without_credentials_every_route_but_health_is_refused(secured: Secured) -> None:
    assert secured.server.api is not None
    routes = [(r.method, _template(r.path)) for r in secured.server.api.routes]
    assert set(routes) == set(NEEDS)
    async with _session(secured) as http:
        for method, path in routes:
            url = secured.url + _concrete(path) + QUERIES.get((method, path), "")
            status, body, headers = await _call(http, method, url, BODIES.get((method, path)))
            if NEEDS[(method, path)] == "open":
                assert status not in (401, 403), (method, path, status, body)
                continue
            assert status == 401, (method, path, status, body)
            assert body["error"] == "unauthenticated" and body["message"]
            assert headers["WWW-Authenticate"].startswith("Bearer")
        # A token that is not in the auth file is no better, nor a malformed header.
        for auth in ("Bearer " + new_token(), "Basic YWRtaW46YWRtaW4=", "Bearer "):
            async with http.put(
                secured.url + "/v1/kv/k1", data=b"v", headers={"Authorization": auth}
            ) as r:
                assert r.status == 401 and (await r.json())["error"] == "unauthenticated"
    assert secured.server.node.fsm.get(b"k1") is None


async def test_each_role_can_do_exactly_its_set(secured: Secured) -> None:
    for role in ROLES:
        async with _session(secured, secured.tokens[role]) as http:
            for (method, path), needs in NEEDS.items():
                url = secured.url + _concrete(path) + QUERIES.get((method, path), "")
                status, body, _ = await _call(http, method, url, BODIES.get((method, path)))
                if RANK[role] >= RANK.get(needs, 0):
                    assert status not in (401, 403), (role, method, path, status, body)
                else:
                    assert status == 403, (role, method, path, status, body)
                    assert body["error"] == "permission_denied"


async def test_the_fast_path_enforces_the_same_check(secured: Secured) -> None:
    fast = secured.server.fast
    assert fast is not None
    before = fast.served
    async with _session(secured, secured.tokens["read"]) as http:
        status, body, _ = await _call(http, "PUT", secured.url + "/v1/kv/f")
        assert status == 403 and body["error"] == "permission_denied"
        status, _, _ = await _call(http, "GET", secured.url + "/v1/kv/f")
        assert status == 404
    async with _session(secured) as http:
        status, _, headers = await _call(http, "PUT", secured.url + "/v1/kv/f")
        assert status == 401 and "WWW-Authenticate" in headers
    async with _session(secured, secured.tokens["readwrite"]) as http:
        async with http.put(secured.url + "/v1/kv/f", data=b"1") as r:
            assert r.status == 200
        status, body, _ = await _call(http, "GET", secured.url + "/v1/kv/f")
        assert (status, body) == (200, b"1")
    assert fast.served - before == 5  # all of them answered by the fast path


async def test_prefixes_limit_an_identity_to_its_keys(secured: Secured) -> None:
    url = secured.url
    async with _session(secured, secured.tokens["scoped"]) as http:
        async with http.put(url + "/v1/kv/app/x", data=b"1") as r:
            assert r.status == 200
        for method, path, body in [
            ("PUT", "/v1/kv/other", None),
            ("GET", "/v1/kv/other", None),
            ("GET", "/v1/kv/?prefix=1", None),
            ("GET", "/v1/kv/ap?prefix=1", None),
            ("DELETE", "/v1/kv/other", None),
            ("GET", "/v1/watch?prefix=1", None),
            ("GET", "/v1/watch?key=other", None),
            (
                "POST",
                "/v1/txn",
                {
                    "success": [
                        {"op": "put", "key": "app/y", "value": "1"},
                        {"op": "put", "key": "zzz", "value": "1"},
                    ]
                },
            ),
            ("POST", "/v1/txn", {"compare": [{"key": "secret", "target": "version", "value": 0}]}),
            ("POST", "/v1/txn", {"success": [{"op": "range", "key": "a", "all": True}]}),
        ]:
            status, answer, _ = await _call(http, method, url + path, body)
            assert status == 403, (method, path, status, answer)
        status, answer, _ = await _call(http, "GET", url + "/v1/kv/app/?prefix=1")
        assert status == 200 and answer["count"] == 1
        status, _, _ = await _call(
            http,
            "POST",
            url + "/v1/txn",
            {
                "success": [
                    {"op": "put", "key": "app/y", "value": "2"},
                    {"op": "range", "key": "app/", "prefix": True},
                ]
            },
        )
        assert status == 200
    assert secured.server.node.fsm.get(b"zzz") is None


async def test_deleting_the_whole_keyspace_needs_admin(secured: Secured) -> None:
    url = secured.url
    async with _session(secured, secured.tokens["readwrite"]) as http:
        async with http.put(url + "/v1/kv/a", data=b"1") as r:
            assert r.status == 200
        status, _, _ = await _call(http, "DELETE", url + "/v1/kv/?prefix=1")
        assert status == 403
        status, _, _ = await _call(
            http,
            "POST",
            url + "/v1/txn",
            {"success": [{"op": "delete", "key": "", "prefix": True}]},
        )
        assert status == 403
        status, _, _ = await _call(http, "DELETE", url + "/v1/kv/a?prefix=1")
        assert status == 200  # a bounded prefix is a readwrite's
    async with _session(secured, secured.tokens["admin"]) as http:
        status, body, _ = await _call(http, "DELETE", url + "/v1/kv/?prefix=1")
        assert status == 200, body


async def test_client_certificates_are_identities(secured: Secured) -> None:
    url = secured.url
    async with _session(secured, cert="cert-writer") as http:
        async with http.put(url + "/v1/kv/c", data=b"1") as r:  # the fast path
            assert r.status == 200
        status, _, _ = await _call(http, "POST", url + "/v1/txn", {})  # aiohttp
        assert status == 200
        status, _, _ = await _call(http, "POST", url + "/v1/checkpoints", {})
        assert status == 403
    async with _session(secured, cert="cert-stranger") as http:
        status, body, _ = await _call(http, "GET", url + "/v1/kv/c")
        assert status == 403 and "cert-stranger" in body["message"]


async def test_the_auth_file_is_reloaded_when_it_changes(secured: Secured) -> None:
    url, creds = secured.url, secured.creds
    newcomer = new_token()
    old_admin = secured.tokens["admin"]
    # The newcomer replaces the admin: one is accepted, the other refused, no restart.
    write_auth_file(creds.auth_file, [token_entry("newcomer", "admin", newcomer)])
    deadline = time.monotonic() + 10
    async with _session(secured, newcomer) as http:
        while (await _call(http, "GET", url + "/v1/status"))[0] != 200:
            assert time.monotonic() < deadline, "the new token was never accepted"
            await asyncio.sleep(0.1)
    async with _session(secured, old_admin) as http:
        assert (await _call(http, "GET", url + "/v1/status"))[0] == 401
    # A broken file keeps the last good one.
    assert secured.server.api is not None
    auth = secured.server.api.auth
    creds.auth_file.write_text("{not json")
    deadline = time.monotonic() + 10
    async with _session(secured, newcomer) as http:
        while auth.reload_failures == 0:
            assert time.monotonic() < deadline, "the broken file was never looked at"
            assert (await _call(http, "GET", url + "/v1/status"))[0] == 200
            await asyncio.sleep(0.1)
        assert (await _call(http, "GET", url + "/v1/status"))[0] == 200


async def _served_serial(s: Secured) -> int:
    ctx = ssl.create_default_context(cafile=str(s.creds.ca_file))
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", s.server.cfg.client_port, ssl=ctx, server_hostname="127.0.0.1"
    )
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
    from cryptography import x509

    return x509.load_der_x509_certificate(der).serial_number


async def test_a_replaced_certificate_is_served_without_a_restart(secured: Secured) -> None:
    first = await _served_serial(secured)
    secured.creds.issue("node", ["127.0.0.1"], replace=True)
    deadline = time.monotonic() + 10
    while (serial := await _served_serial(secured)) == first:
        assert time.monotonic() < deadline, "the new certificate was never served"
        await asyncio.sleep(0.1)
    assert serial != first
    async with (
        _session(secured, secured.tokens["readwrite"]) as http,
        http.put(secured.url + "/v1/kv/after", data=b"1") as r,
    ):
        assert r.status == 200


async def test_metrics_can_require_authentication(tmp_path: Path) -> None:
    creds, tokens = make_credentials(tmp_path / "creds")
    cert, key = creds.cert_files("node")
    async with solo_node(
        tmp_path,
        client_cert_file=cert,
        client_key_file=key,
        auth_file=creds.auth_file,
        metrics_access="authenticated",
    ) as server:
        s = Secured(
            server,
            server.cfg.advertise_client_url,
            creds,
            tokens,
            ssl.create_default_context(cafile=str(creds.ca_file)),
        )
        async with _session(s) as http:
            assert (await _call(http, "GET", s.url + "/metrics"))[0] == 401
            assert (await _call(http, "GET", s.url + "/healthz"))[0] == 200
        async with _session(s, tokens["read"]) as http:
            assert (await _call(http, "GET", s.url + "/metrics"))[0] == 200


async def test_forwarded_requests_keep_the_callers_identity(tmp_path: Path) -> None:
    """A follower forwards a token caller's write with its token (the leader checks it
    again) and sends a certificate caller to the leader with a 307; the leader trusts
    no follower's word: a request marked as forwarded still needs credentials."""
    creds, tokens = make_credentials(tmp_path / "creds")
    cert, key = creds.cert_files("node")
    ports = [(free_port(), free_port()) for _ in range(3)]
    initial = [InitialMember(f"m{i}", f"127.0.0.1:{p}") for i, (_, p) in enumerate(ports)]
    servers = [
        Server(
            NodeConfig(
                f"m{i}",
                tmp_path / f"m{i}",
                listen_host="127.0.0.1",
                client_port=c,
                peer_port=p,
                advertise_client_url=f"https://127.0.0.1:{c}",
                advertise_peer_url=f"127.0.0.1:{p}",
                initial_cluster=initial,
                tick_ms=20,
                client_cert_file=cert,
                client_key_file=key,
                client_trusted_ca_file=creds.ca_file,
                auth_file=creds.auth_file,
                peer_insecure=True,
            ),
            raft_store=MemoryRaftStore(),
            snapshot_store=MemorySnapshotStore(),
            checkpoint_store=CheckpointStore(tmp_path / f"ck{i}"),
        )
        for i, (c, p) in enumerate(ports)
    ]
    try:
        for server in servers:
            await server.start()
        deadline = time.monotonic() + 15
        while len({s.node.core.leader for s in servers} - {0}) != 1 or any(
            s.node.core.leader == 0 for s in servers
        ):
            assert time.monotonic() < deadline, "no leader every node knows"
            await asyncio.sleep(0.02)
        leader = next(s for s in servers if s.node.core.leader == s.node.id)
        follower = next(s for s in servers if s is not leader)
        furl, lurl = follower.cfg.advertise_client_url, leader.cfg.advertise_client_url
        s = Secured(follower, furl, creds, tokens, ssl.create_default_context())
        async with _session(s, tokens["readwrite"]) as http:
            status, body, _ = await _call(
                http,
                "POST",
                furl + "/v1/txn",
                {"success": [{"op": "put", "key": "fwd", "value": "1"}]},
            )
            assert status == 200, body  # forwarded, with the token, over TLS
        async with _session(s, tokens["read"]) as http:
            status, body, _ = await _call(http, "POST", furl + "/v1/txn", {})
            assert status == 403, body  # refused by the follower, never forwarded
        async with _session(s) as http:
            status, _, _ = await _call(http, "POST", furl + "/v1/txn", {})
            assert status == 401
            async with http.post(
                lurl + "/v1/txn", json={}, headers={"X-Raftkv-Forwarded": follower.cfg.name}
            ) as r:
                assert r.status == 401  # "forwarded" is no credential
        async with _session(s, cert="cert-writer") as http:
            status, _, headers = await _call(http, "POST", furl + "/v1/txn", {})
            assert status == 307 and headers["Location"].startswith(lurl)
            status, _, _ = await _call(http, "POST", headers["Location"], {})
            assert status == 200
        assert leader.node.fsm.get(b"fwd") is not None
    finally:
        for server in servers:
            await server.shutdown(transfer_timeout=1.0)


async def test_plain_http_is_refused_on_a_tls_port(secured: Secured) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", secured.server.cfg.client_port)
    try:
        writer.write(b"PUT /v1/kv/plain HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nv")
        await writer.drain()
        data = await asyncio.wait_for(reader.read(100), 10)
        assert not data.startswith(b"HTTP/1.1 200")
    finally:
        writer.close()
    assert secured.server.node.fsm.get(b"plain") is None


async def test_the_python_client_and_the_cli_speak_tls_and_tokens(
    secured: Secured, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from raftkv.cli import main
    from raftkv.client import (
        AsyncClient,
        Credentials,
        PermissionDeniedError,
        UnauthenticatedError,
        credentials_from_env,
    )
    from raftkv.client.retry import RetryPolicy

    ca, url = str(secured.creds.ca_file), secured.url
    fast = RetryPolicy(deadline=2)
    async with AsyncClient(
        url, credentials=Credentials(ca, token=secured.tokens["readwrite"]), retry=fast
    ) as client:
        await client.put("py", "1")
        kv = await client.get("py")
        assert kv is not None and kv.value == b"1"
        with pytest.raises(PermissionDeniedError):
            await client.create_checkpoint()
    cert, key = (str(p) for p in secured.creds.cert_files("cert-writer"))
    async with AsyncClient(url, credentials=Credentials(ca, cert, key), retry=fast) as client:
        await client.put("py", "2")  # a client certificate instead of a token
    async with AsyncClient(url, credentials=Credentials(ca), retry=fast) as client:
        with pytest.raises(UnauthenticatedError):
            await client.get("py")
    monkeypatch.setenv("RAFTKV_CACERT", ca)
    monkeypatch.setenv("RAFTKV_TOKEN", secured.tokens["read"])
    assert credentials_from_env().token == secured.tokens["read"]

    def cli(*argv: str) -> tuple[int, str, str]:
        try:
            code = main(list(argv))
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    # The env gives the CA and a read token: reads work, a write is refused (exit 5).
    assert await asyncio.to_thread(cli, "get", "py", "--endpoints", url) == (0, "2\n", "")
    code, _, err = await asyncio.to_thread(cli, "put", "py", "3", "--endpoints", url)
    assert code == 5 and "permission_denied" in err
    # Flags win over the environment; --key (a file) and the KEY argument do not clash.
    token_file = secured.creds.directory / "rw.token"
    token_file.write_text(secured.tokens["readwrite"] + "\n")
    monkeypatch.delenv("RAFTKV_TOKEN")
    code, out, err = await asyncio.to_thread(
        cli, "put", "py", "4", "--endpoints", url, "--token-file", str(token_file)
    )
    assert code == 0, err
    code, out, err = await asyncio.to_thread(
        cli, "put", "py", "5", "--endpoints", url, "--cert", cert, "--key", key
    )
    assert code == 0, err
    code, _, err = await asyncio.to_thread(cli, "get", "py", "--endpoints", url)
    assert code == 5 and "unauthenticated" in err
    code, _, err = await asyncio.to_thread(
        cli, "get", "py", "--endpoints", url, "--cacert", "/nonexistent/ca.pem"
    )
    assert code == 2 and "credentials" in err
    assert secured.server.node.fsm.get(b"py").value == b"5"  # type: ignore[union-attr]


async def test_a_tls_connection_is_handed_from_the_fast_path_to_aiohttp(secured: Secured) -> None:
    """Pipelined over one TLS connection: a fast-path PUT, an aiohttp route, a chunked
    PUT (aiohttp's), then a GET (still aiohttp's after the hand-over)."""
    token = secured.tokens["readwrite"].encode()
    auth = b"Authorization: Bearer " + token + b"\r\n"
    payload = (
        b"PUT /v1/kv/h HTTP/1.1\r\nHost: x\r\n" + auth + b"Content-Length: 2\r\n\r\nv1"
        b"GET /v1/status HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n"
        b"PUT /v1/kv/h HTTP/1.1\r\nHost: x\r\n" + auth + b"Transfer-Encoding: chunked\r\n\r\n"
        b"2\r\nv2\r\n0\r\n\r\n"
        b"GET /v1/kv/h HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n"
    )
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", secured.server.cfg.client_port, ssl=secured.ssl, server_hostname="127.0.0.1"
    )
    answers = []
    try:
        writer.write(payload)
        for _ in range(4):
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            answers.append(head + await asyncio.wait_for(reader.readexactly(length), 10))
    finally:
        writer.close()
    assert [a.split(b" ")[1] for a in answers] == [b"200"] * 4, answers
    assert answers[3].endswith(b"\r\n\r\nv2")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_status_reports_the_tls_files_each_plane_loaded(secured: Secured) -> None:
    """The digests the operator's CA rotation waits on: they name the files the contexts
    were built from, and follow a replaced certificate without a restart."""
    cert, _key = secured.creds.cert_files("node")
    admin = secured.tokens["admin"]
    async with _session(secured, admin) as http:
        status = (await _call(http, "GET", secured.url + "/v1/status"))[1]
        assert status["tls"] == {
            "peer": None,  # this node runs --peer-insecure
            "client": {"cert_sha256": _sha256(cert), "ca_sha256": _sha256(secured.creds.ca_file)},
        }
        before = status["tls"]["client"]["cert_sha256"]
        secured.creds.issue("node", ["127.0.0.1"], replace=True)
        deadline = time.monotonic() + 10
        while True:
            status = (await _call(http, "GET", secured.url + "/v1/status"))[1]
            if status["tls"]["client"]["cert_sha256"] != before:
                break
            assert time.monotonic() < deadline, "the new certificate was never reported"
            await asyncio.sleep(0.1)
        assert status["tls"]["client"]["cert_sha256"] == _sha256(cert)
