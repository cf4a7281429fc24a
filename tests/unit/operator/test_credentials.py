"""The cluster's Secrets: what is made, what is kept, what is renewed (credentials.plan)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from raftkv.security import pki
from raftkv_operator import credentials
from raftkv_operator.models import RaftCluster

from .conftest import example_cluster

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _cluster(spec: dict[str, Any] | None = None) -> RaftCluster:
    cluster = example_cluster("minimal.yaml")
    if spec:
        body = cluster.to_k8s()
        body["spec"].update(spec)
        cluster = RaftCluster.model_validate(body)
    return cluster


def _apply(live: dict[str, Any], plan: credentials.Plan) -> dict[str, Any]:
    out = dict(live)
    for manifest, _why in plan.writes:
        out[manifest["metadata"]["name"]] = manifest
    return out


def test_first_round_makes_every_secret_and_the_second_writes_nothing() -> None:
    cluster = _cluster()
    first = credentials.plan(cluster, {}, NOW)
    names = [m["metadata"]["name"] for m, _ in first.writes]
    assert sorted(names) == sorted(credentials.secret_names(cluster))
    live = _apply({}, first)
    assert credentials.plan(cluster, live, NOW).writes == []
    # Still nothing a little before the renewal point, a renewal just after it.
    peer = credentials.secret_data(live["demo-peer-tls"])
    lifetime = timedelta(days=cluster.spec.tls.certificate_days)
    renew = credentials.renew_at(peer["tls.crt"], lifetime)
    assert credentials.plan(cluster, live, renew - timedelta(hours=1)).writes == []
    later = credentials.plan(cluster, live, renew + timedelta(hours=1))
    assert sorted(m["metadata"]["name"] for m, _ in later.writes) == [
        "demo-client-tls",
        "demo-peer-tls",
    ]
    # Renewal keeps the CA and the tokens.
    renewed = _apply(live, later)
    for kept in ("demo-ca", "demo-admin", "demo-auth"):
        assert renewed[kept] == live[kept]
    assert credentials.secret_data(renewed["demo-peer-tls"])["tls.crt"] != peer["tls.crt"]


def test_the_auth_file_holds_digests_of_the_admin_and_operator_tokens_only() -> None:
    cluster = _cluster()
    live = _apply({}, credentials.plan(cluster, {}, NOW))
    admin = credentials.secret_data(live["demo-admin"])["token"].decode()
    operator = credentials.secret_data(live["demo-ca"])["operator-token"].decode()
    assert len(admin) >= 43 and admin != operator
    auth = json.loads(credentials.secret_data(live["demo-auth"])["auth.json"])
    assert auth["tokens"] == [
        {"name": "admin", "role": "admin", "sha256": hashlib.sha256(admin.encode()).hexdigest()},
        {
            "name": "raftkv-operator",
            "role": "admin",
            "sha256": hashlib.sha256(operator.encode()).hexdigest(),
        },
    ]
    raw = credentials.secret_data(live["demo-auth"])["auth.json"]
    assert admin.encode() not in raw and operator.encode() not in raw
    creds = credentials.node_credentials(cluster, live)
    assert creds is not None and creds.token == operator
    assert creds.ca_pem == credentials.secret_data(live["demo-admin"])["ca.crt"]


def test_certificates_name_every_member_and_chain_to_the_cluster_ca(tmp_path: Path) -> None:
    cluster = _cluster()
    live = _apply({}, credentials.plan(cluster, {}, NOW))
    ca_pem = credentials.secret_data(live["demo-ca"])["ca.crt"]
    peer = credentials.secret_data(live["demo-peer-tls"])
    _cn, names, _ips = pki.cert_names(pki.CertKey(peer["tls.crt"], peer["tls.key"]).cert)
    for i in range(credentials.MAX_REPLICAS):
        assert {
            f"demo-{i}",
            f"demo-{i}.demo-peers.prod.svc",
            f"demo-{i}.demo-peers.prod.svc.cluster.local",
        } <= set(names)
    client = credentials.secret_data(live["demo-client-tls"])
    _cn, names, _ips = pki.cert_names(pki.CertKey(client["tls.crt"], client["tls.key"]).cert)
    assert {
        "demo",
        "demo.prod.svc",
        "demo.prod.svc.cluster.local",
        "demo-read.prod.svc",
        "demo-0.demo-peers.prod.svc",
        "localhost",
    } <= set(names)
    # A real TLS client accepts the client certificate for the Service name.
    (tmp_path / "ca.crt").write_bytes(ca_pem)
    ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    pki.CertKey(client["tls.crt"], client["tls.key"]).write(tmp_path / "c.crt", tmp_path / "c.key")
    server.load_cert_chain(tmp_path / "c.crt", tmp_path / "c.key")
    inbound, outbound = ssl.MemoryBIO(), ssl.MemoryBIO()
    c = ctx.wrap_bio(inbound, outbound, server_hostname="demo.prod.svc")
    s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    s = server.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):  # drive the handshake in memory
        for side in (c, s):
            with contextlib.suppress(ssl.SSLWantReadError):
                side.do_handshake()
        s_in.write(outbound.read())
        inbound.write(s_out.read())
    c.do_handshake()  # raises if the certificate did not verify for demo.prod.svc


def test_a_certificate_from_another_ca_or_for_other_names_is_reissued() -> None:
    cluster = _cluster()
    live = _apply({}, credentials.plan(cluster, {}, NOW))
    stranger = pki.make_ca("someone else")
    forged = pki.issue_cert(stranger, "x", dns_names=credentials.peer_dns_names(cluster))
    tampered = dict(live)
    tampered["demo-peer-tls"] = credentials.secret(
        cluster,
        "demo-peer-tls",
        {
            "tls.crt": forged.cert_pem,
            "tls.key": forged.key_pem,
            "ca.crt": credentials.secret_data(live["demo-ca"])["ca.crt"],
        },
    )
    writes = credentials.plan(cluster, tampered, NOW).writes
    assert [m["metadata"]["name"] for m, _ in writes] == ["demo-peer-tls"]
    # Another namespace's cluster of the same name gets other names.
    other = example_cluster("minimal.yaml")
    body = other.to_k8s()
    body["metadata"]["namespace"] = "staging"
    moved = RaftCluster.model_validate(body)
    writes = credentials.plan(moved, live, NOW).writes
    assert {"demo-peer-tls", "demo-client-tls"} <= {m["metadata"]["name"] for m, _ in writes}


def test_a_deleted_admin_secret_comes_back_with_a_new_token_and_the_auth_file_follows() -> None:
    cluster = _cluster()
    live = _apply({}, credentials.plan(cluster, {}, NOW))
    del live["demo-admin"]
    writes = credentials.plan(cluster, live, NOW).writes
    assert sorted(m["metadata"]["name"] for m, _ in writes) == ["demo-admin", "demo-auth"]


def test_cert_manager_mode_builds_certificates_and_makes_no_ca() -> None:
    cluster = _cluster(
        {
            "tls": {
                "mode": "certManager",
                "issuerRef": {"name": "ca-issuer", "kind": "ClusterIssuer"},
            }
        }
    )
    certs = credentials.certificates(cluster)
    assert [c["spec"]["secretName"] for c in certs] == ["demo-peer-tls", "demo-client-tls"]
    peer = certs[0]["spec"]
    assert peer["issuerRef"] == {
        "name": "ca-issuer",
        "kind": "ClusterIssuer",
        "group": "cert-manager.io",
    }
    assert set(credentials.peer_dns_names(cluster)) == set(peer["dnsNames"])
    assert peer["duration"] == "2160h" and peer["renewBefore"] == "720h"
    assert {"server auth", "client auth"} <= set(peer["usages"])
    writes = credentials.plan(cluster, {}, NOW).writes
    made = {m["metadata"]["name"]: m for m, _ in writes}
    assert sorted(made) == ["demo-admin", "demo-auth", "demo-ca"]
    assert set(credentials.secret_data(made["demo-ca"])) == {"operator-token"}
    # The admin Secret picks up cert-manager's CA once its Secret exists.
    issuer = pki.make_ca()
    leaf = pki.issue_cert(issuer, "demo", dns_names=["demo"])
    live = _apply({}, credentials.plan(cluster, {}, NOW))
    live["demo-client-tls"] = credentials.secret(
        cluster,
        "demo-client-tls",
        {"tls.crt": leaf.cert_pem, "tls.key": leaf.key_pem, "ca.crt": issuer.cert_pem},
    )
    writes = credentials.plan(cluster, live, NOW).writes
    assert [m["metadata"]["name"] for m, _ in writes] == ["demo-admin"]
    assert credentials.secret_data(writes[0][0])["ca.crt"] == issuer.cert_pem
    assert credentials.certificates(_cluster()) == []
