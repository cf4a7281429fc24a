"""Emulated Kubernetes: certificates are renewed before they expire, with no restart.

Time is moved by the certificates instead of the clock: the member certificates in the
Secrets are replaced by ones from the same cluster CA with 10 of their 90 days left (as
they would be 80 days after issue). The operator must renew them (less than a third of the
lifetime left), the harness's kubelet swaps the new files into the running pods, and the
members must serve the new certificate without a restart, still answering writes.
"""

from __future__ import annotations

import base64
import datetime
import socket
import sys
import time
from typing import Any

import pytest
from cryptography import x509

from raftkv.security import pki
from tests.k8s.harness.cluster import EmulatedCluster
from tests.k8s.harness_ext import (
    CLUSTERS,
    NAMESPACE,
    Operator,
    cluster_manifest,
    cluster_tls,
    emulated_fixture,  # noqa: F401 - the `emulated` fixture
    events,
    get_via_service,
    operator_fixture,  # noqa: F401 - the `operator` fixture
    pods,
    put_retrying,
    wait_available,
    wait_for,
)

NAME = "rot"
pytestmark = pytest.mark.timeout(240)


def secret_data(emulated: EmulatedCluster, name: str) -> dict[str, bytes]:
    secret = emulated.get("v1/secrets", NAMESPACE, name)
    assert secret is not None, name
    return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}


def served_certificate(emulated: EmulatedCluster) -> x509.Certificate:
    """The certificate the client Service's member presents to a new connection."""
    tls = cluster_tls(emulated, NAME)
    assert tls is not None
    url = emulated.service_url(NAMESPACE, NAME, "client", scheme="https")
    host, port = url.removeprefix("https://").rsplit(":", 1)
    with (
        socket.create_connection((host, int(port)), timeout=3) as sock,
        tls.context.wrap_socket(sock, server_hostname=tls.server_name) as conn,
    ):
        der = conn.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def restarts(emulated: EmulatedCluster) -> dict[str, tuple[str, int]]:
    out = {}
    for name, pod in pods(emulated, NAME).items():
        statuses: list[dict[str, Any]] = pod["status"].get("containerStatuses") or []
        out[name] = (pod["metadata"]["uid"], sum(int(s.get("restartCount", 0)) for s in statuses))
    return out


def test_certificates_are_renewed_before_expiry_without_restarts(
    emulated: EmulatedCluster, operator: Operator
) -> None:
    emulated.create(CLUSTERS, cluster_manifest(NAME, 3), NAMESPACE)
    wait_available(emulated, NAME, 3, timeout=90)
    put_retrying(emulated, NAME, "before", "1", 10)
    before = restarts(emulated)

    # 80 of 90 days gone: issued by the cluster's own CA, for the same names.
    ca_data = secret_data(emulated, f"{NAME}-ca")
    ca = pki.CertKey(ca_data["ca.crt"], ca_data["ca.key"])
    issued = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=80)
    aged: dict[str, x509.Certificate] = {}
    for kind in ("peer-tls", "client-tls"):
        current = secret_data(emulated, f"{NAME}-{kind}")
        _cn, names, _ips = pki.cert_names(x509.load_pem_x509_certificate(current["tls.crt"]))
        old = pki.issue_cert(ca, f"{NAME} aged", dns_names=names, days=90, not_before=issued)
        aged[kind] = old.cert
        emulated.patch(
            "v1/secrets",
            NAMESPACE,
            f"{NAME}-{kind}",
            {
                "data": {
                    "tls.crt": base64.b64encode(old.cert_pem).decode(),
                    "tls.key": base64.b64encode(old.key_pem).decode(),
                }
            },
        )

    def renewed(kind: str) -> x509.Certificate | None:
        cert = x509.load_pem_x509_certificate(secret_data(emulated, f"{NAME}-{kind}")["tls.crt"])
        fresh = cert.not_valid_before_utc > issued + datetime.timedelta(days=1)
        return cert if fresh and cert.serial_number != aged[kind].serial_number else None

    aged_at = time.monotonic()
    new = {
        kind: wait_for(emulated, lambda k=kind: renewed(k), 30, f"{kind} renewed")
        for kind in ("peer-tls", "client-tls")
    }
    for kind, cert in new.items():
        assert cert.issuer == ca.cert.subject, kind
        left = cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
        assert left > datetime.timedelta(days=89), kind
    renewed_after = time.monotonic() - aged_at
    # The CA and the tokens stay: clients holding the admin Secret keep working.
    assert secret_data(emulated, f"{NAME}-ca") == ca_data
    assert any("renewed" in str(e.get("message")) for e in events(emulated, NAME))

    # The running member behind the Service serves the renewed certificate.
    wait_for(
        emulated,
        lambda: served_certificate(emulated).serial_number == new["client-tls"].serial_number,
        30,
        "the member serves the renewed certificate",
    )
    served_after = time.monotonic() - aged_at
    # sys.__stderr__: the operator's runner redirects sys.stdout while it runs.
    print(
        f"\nrenewal: Secrets renewed {renewed_after:.1f} s after aging, served by the "
        f"member {served_after:.1f} s after (operator resync 3 s, volume sync 1 s)",
        file=sys.__stderr__,
    )
    put_retrying(emulated, NAME, "after", "2", 20)
    assert get_via_service(emulated, NAME, "before") == "1"
    assert restarts(emulated) == before, "a renewal must not restart members"
