"""Emulated Kubernetes: `spec.tls.mode: certManager` — the operator asks cert-manager for the
member certificates (Certificate objects) and runs the members on the Secrets it writes.

cert-manager itself does not run here: the test plays its part (a CA issuer), issuing each
Certificate's dnsNames into its secretName with `ca.crt`, as cert-manager's CA issuer does.
What is under test is the operator's side: the Certificates it asks for, making no CA of
its own, and a cluster that comes up and answers over TLS with the issuer's certificates.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from raftkv.security import pki
from tests.k8s.harness.cluster import EmulatedCluster
from tests.k8s.harness_ext import (
    CLUSTERS,
    NAMESPACE,
    Operator,
    cluster_manifest,
    emulated_fixture,  # noqa: F401 - the `emulated` fixture
    get_via_service,
    operator_fixture,  # noqa: F401 - the `operator` fixture
    put_retrying,
    wait_available,
    wait_for,
)

NAME = "cm"
CERTIFICATES = "cert-manager.io/v1/certificates"
pytestmark = pytest.mark.timeout(240)

CERTIFICATE_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "certificates.cert-manager.io"},
    "spec": {
        "group": "cert-manager.io",
        "names": {
            "plural": "certificates",
            "singular": "certificate",
            "kind": "Certificate",
            "listKind": "CertificateList",
        },
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_cert_manager_certificates_secure_the_cluster(
    emulated: EmulatedCluster, operator: Operator
) -> None:
    emulated.create("apiextensions.k8s.io/v1/customresourcedefinitions", CERTIFICATE_CRD)
    issuer = pki.make_ca("test issuer")
    manifest = cluster_manifest(NAME, 3)
    manifest["spec"]["tls"] = {
        "mode": "certManager",
        "issuerRef": {"name": "test-ca", "kind": "ClusterIssuer"},
    }
    emulated.create(CLUSTERS, manifest, NAMESPACE)

    # Play cert-manager: each Certificate the operator asks for becomes its Secret.
    def certificates() -> list[dict[str, Any]] | None:
        found = [
            c
            for c in emulated.list(CERTIFICATES, NAMESPACE)
            if c["metadata"]["name"].startswith(f"{NAME}-")
        ]
        return found if len(found) == 2 else None

    asked = wait_for(emulated, certificates, 30, "the operator creates two Certificates")
    for certificate in asked:
        spec = certificate["spec"]
        assert spec["issuerRef"] == {
            "name": "test-ca",
            "kind": "ClusterIssuer",
            "group": "cert-manager.io",
        }
        assert {"server auth", "client auth"} <= set(spec["usages"])
        issued = pki.issue_cert(issuer, spec["commonName"], dns_names=spec["dnsNames"])
        emulated.create(
            "v1/secrets",
            {
                "metadata": {"name": spec["secretName"], "namespace": NAMESPACE},
                "type": "kubernetes.io/tls",
                "data": {
                    "tls.crt": _b64(issued.cert_pem),
                    "tls.key": _b64(issued.key_pem),
                    "ca.crt": _b64(issuer.cert_pem),
                },
            },
        )
    assert {c["spec"]["secretName"] for c in asked} == {f"{NAME}-peer-tls", f"{NAME}-client-tls"}

    wait_available(emulated, NAME, 3, timeout=120)
    # No CA of the operator's own: its Secret holds only the operator's token.
    own = emulated.get("v1/secrets", NAMESPACE, f"{NAME}-ca")
    assert own is not None and set(own["data"]) == {"operator-token"}
    # The admin Secret carries the issuer's CA; clients verify the members against it.
    admin = wait_for(
        emulated, lambda: emulated.get("v1/secrets", NAMESPACE, f"{NAME}-admin"), 10, "admin Secret"
    )
    wait_for(
        emulated,
        lambda: base64.b64decode(admin_ca(emulated)) == issuer.cert_pem,
        20,
        "the admin Secret names the issuer's CA",
    )
    assert admin["data"]["token"]
    put_retrying(emulated, NAME, "via-cert-manager", "yes", 20)
    assert get_via_service(emulated, NAME, "via-cert-manager") == "yes"


def admin_ca(emulated: EmulatedCluster) -> str:
    admin = emulated.get("v1/secrets", NAMESPACE, f"{NAME}-admin") or {}
    return str((admin.get("data") or {}).get("ca.crt", ""))
