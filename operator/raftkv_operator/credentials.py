"""A cluster's TLS and token material as Kubernetes objects: pure builders and decisions.

Per RaftCluster (spec.tls.mode `operator`, the default):

- `<name>-ca`: the cluster's CA (`ca.crt`, `ca.key`) and the operator's own token
  (`operator-token`). Kept by the operator, never mounted into a pod.
- `<name>-peer-tls`, `<name>-client-tls` (type kubernetes.io/tls: `tls.crt`, `tls.key`,
  `ca.crt`): one certificate for the peer port, one for the client port, mounted by every
  member. With `certManager` these two Secrets are written by cert-manager from the
  `Certificate`s built here instead.
- `<name>-auth`: `auth.json`, the members' auth file: SHA-256 digests of the admin and
  operator tokens only (a member never holds a token it could replay).
- `<name>-admin`: `token` (role admin) and `ca.crt`, for people and clients.

Why one peer certificate naming every possible member rather than one per member: a
StatefulSet gives all its pods the same volumes, so every member would hold every member's
key anyway. The certificate names pods 0..MAX_REPLICAS-1, so scaling never re-issues it.

Only the certificate generation draws randomness (raftkv.security.pki); which Secrets to
create or renew is decided from the live Secrets and the clock (`plan`).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from raftkv.security import pki
from raftkv_operator import carotation
from raftkv_operator.models import RaftCluster, TLSMode

Manifest = dict[str, Any]

MAX_REPLICAS = 9
"""spec.replicas' upper bound (models.RaftClusterSpec): the peer certificate names them all."""
CA_DAYS = 3650
ADMIN_IDENTITY = "admin"
OPERATOR_IDENTITY = "raftkv-operator"

CA_CERT_KEY = "ca.crt"
CA_KEY_KEY = "ca.key"
OPERATOR_TOKEN_KEY = "operator-token"
TLS_CERT_KEY = "tls.crt"
TLS_KEY_KEY = "tls.key"
AUTH_FILE_KEY = "auth.json"
ADMIN_TOKEN_KEY = "token"

RENEW_FRACTION = 3
"""Renew a certificate when less than 1/RENEW_FRACTION of its lifetime remains."""


def ca_secret_name(cluster_name: str) -> str:
    return f"{cluster_name}-ca"


def peer_secret_name(cluster_name: str) -> str:
    return f"{cluster_name}-peer-tls"


def client_secret_name(cluster_name: str) -> str:
    return f"{cluster_name}-client-tls"


def auth_secret_name(cluster_name: str) -> str:
    return f"{cluster_name}-auth"


def admin_secret_name(cluster_name: str) -> str:
    return f"{cluster_name}-admin"


def _pod(cluster_name: str, ordinal: int) -> str:
    return f"{cluster_name}-{ordinal}"


def _service_forms(service: str, namespace: str) -> list[str]:
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
    ]


def peer_dns_names(cluster: RaftCluster) -> list[str]:
    """Every possible member's name and its host under the headless peers Service (the
    peer identity rule in docs/security.md: the member name, or its peer URL's host)."""
    ns, peers = cluster.namespace, f"{cluster.name}-peers"
    names: list[str] = []
    for i in range(MAX_REPLICAS):
        pod = _pod(cluster.name, i)
        names += [pod, f"{pod}.{peers}.{ns}.svc", f"{pod}.{peers}.{ns}.svc.cluster.local"]
    return names


def client_dns_names(cluster: RaftCluster) -> list[str]:
    """The client Services in all their forms, each member's advertised client host, and
    `localhost` (for `kubectl port-forward`)."""
    ns, peers = cluster.namespace, f"{cluster.name}-peers"
    names = _service_forms(cluster.name, ns) + _service_forms(f"{cluster.name}-read", ns)
    for i in range(MAX_REPLICAS):
        pod = _pod(cluster.name, i)
        names += [pod, f"{pod}.{peers}.{ns}.svc", f"{pod}.{peers}.{ns}.svc.cluster.local"]
    return [*names, "localhost"]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def secret_data(secret: Mapping[str, Any] | None) -> dict[str, bytes]:
    """A live Secret's decoded data ({} when absent or unreadable)."""
    if not secret:
        return {}
    out: dict[str, bytes] = {}
    for key, value in (secret.get("data") or {}).items():
        try:
            out[key] = base64.b64decode(value or "", validate=True)
        except ValueError:
            continue
    return out


def _labels(cluster: RaftCluster) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "raftkv",
        "app.kubernetes.io/instance": cluster.name,
        "app.kubernetes.io/component": "credentials",
        "app.kubernetes.io/managed-by": "raftkv-operator",
    }


def secret(
    cluster: RaftCluster, name: str, data: Mapping[str, bytes], *, type_: str = "Opaque"
) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": cluster.namespace, "labels": _labels(cluster)},
        "type": type_,
        "data": {k: _b64(v) for k, v in sorted(data.items())},
    }


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def auth_file(admin_token: str, operator_token: str) -> bytes:
    """The members' auth file (runtime/http/auth.py's format): digests, never tokens."""
    doc = {
        "tokens": [
            {"name": ADMIN_IDENTITY, "role": "admin", "sha256": token_digest(admin_token)},
            {"name": OPERATOR_IDENTITY, "role": "admin", "sha256": token_digest(operator_token)},
        ],
        "certificates": [],
    }
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def new_token() -> str:
    """256 random bits, URL-safe (as `raftkv auth token` makes them)."""
    return secrets.token_urlsafe(32)


# ---- certificate decisions ----------------------------------------------------------------------


def leaf_current(
    data: Mapping[str, bytes],
    ca_pem: bytes,
    dns_names: list[str],
    lifetime: datetime.timedelta,
    now: datetime.datetime,
) -> bool:
    """The Secret holds a certificate and key signed by `ca_pem`, naming exactly
    `dns_names`, with at least a third of `lifetime` left (its ca.crt, the trust bundle,
    is judged apart: a bundle-only change keeps the certificate)."""
    cert_pem, key_pem = data.get(TLS_CERT_KEY), data.get(TLS_KEY_KEY)
    if not cert_pem or not key_pem:
        return False
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        ca = x509.load_pem_x509_certificate(ca_pem)
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    _cn, names, _ips = pki.cert_names(cert)
    if sorted(names) != sorted(dns_names):
        return False
    return cert.not_valid_after_utc - now > lifetime / RENEW_FRACTION


def renew_at(cert_pem: bytes, lifetime: datetime.timedelta) -> datetime.datetime:
    """When `leaf_current` turns false by the clock alone."""
    return pki.expires_at(cert_pem) - lifetime / RENEW_FRACTION


def ca_usable(data: Mapping[str, bytes], now: datetime.datetime) -> bool:
    cert_pem, key_pem = data.get(CA_CERT_KEY), data.get(CA_KEY_KEY)
    if not cert_pem or not key_pem or not data.get(OPERATOR_TOKEN_KEY):
        return False
    try:
        ca = pki.CertKey(cert_pem, key_pem)
        return ca.cert.not_valid_after_utc > now and ca.private_key() is not None
    except (ValueError, TypeError):
        return False


@dataclass(frozen=True)
class Plan:
    """Secrets to write (create, or replace the live one), and why (for events/logs); the
    CA Secret's data once they are written, and the CA rotation's decision this round."""

    writes: list[tuple[Manifest, str]]
    ca_data: Mapping[str, bytes] = field(default_factory=dict)
    rotation: carotation.Step = carotation.NOTHING


def plan(
    cluster: RaftCluster,
    live: Mapping[str, Mapping[str, Any] | None],
    now: datetime.datetime,
    members: Mapping[str, carotation.MemberTLS | None] | None = None,
) -> Plan:
    """What to create or renew, given the live Secrets by name (None: missing) and, when
    observed this round, what every member loaded (`members`; carotation.py).

    Idempotent: a round with every Secret present and current writes nothing. The CA is
    made once and rotated in three observed steps (carotation.py), the CA Secret written
    first; tokens are made once and kept; certificates are re-issued when missing, not
    signed by the signing CA, naming other hosts, or within the last third of their
    lifetime; a certificate that is current but holds another trust bundle is rewritten
    with the bundle only (the same certificate and key).
    """
    name = cluster.name
    writes: list[tuple[Manifest, str]] = []
    ca_data = secret_data(live.get(ca_secret_name(name)))
    rotation = carotation.NOTHING
    if cluster.spec.tls.mode == TLSMode.OPERATOR:
        if not ca_usable(ca_data, now):
            ca = pki.make_ca(f"raftkv {cluster.namespace}/{name} CA", days=CA_DAYS)
            ca_data = {
                CA_CERT_KEY: ca.cert_pem,
                CA_KEY_KEY: ca.key_pem,
                OPERATOR_TOKEN_KEY: (ca_data.get(OPERATOR_TOKEN_KEY) or new_token().encode()),
            }
            # A request already on a new cluster is not one to rotate its brand-new CA.
            if carotation.requested(cluster):
                ca_data[carotation.REQUEST_KEY] = carotation.requested(cluster).encode()
            writes.append((secret(cluster, ca_secret_name(name), ca_data), "CA created"))
        else:
            rotation = carotation.step(
                cluster,
                ca_data,
                members,
                secret_data(live.get(peer_secret_name(name))).get(TLS_CERT_KEY),
                secret_data(live.get(client_secret_name(name))).get(TLS_CERT_KEY),
                now,
            )
            if rotation.ca_data is not None:
                # First: what the other Secrets now say follows from this one.
                ca_data = rotation.ca_data
                phase = carotation.phase_of(ca_data)
                writes.append(
                    (
                        secret(cluster, ca_secret_name(name), ca_data),
                        f"CA rotation: {phase.value if phase else 'done'}",
                    )
                )
        ca = pki.CertKey(ca_data[CA_CERT_KEY], ca_data[CA_KEY_KEY])
        bundle = carotation.trust_bundle(ca_data)
        lifetime = datetime.timedelta(days=cluster.spec.tls.certificate_days)
        for secret_name, names, common in (
            (peer_secret_name(name), peer_dns_names(cluster), f"{name} peers"),
            (client_secret_name(name), client_dns_names(cluster), f"{name} client port"),
        ):
            data = secret_data(live.get(secret_name))
            if leaf_current(data, ca.cert_pem, names, lifetime, now):
                if data.get(CA_CERT_KEY) == bundle:
                    continue
                issued = pki.CertKey(data[TLS_CERT_KEY], data[TLS_KEY_KEY])
                why = "trust bundle updated"
            else:
                issued = pki.issue_cert(
                    ca, common, dns_names=names, days=cluster.spec.tls.certificate_days
                )
                why = "renewed" if data else "created"
            writes.append(
                (
                    secret(
                        cluster,
                        secret_name,
                        {
                            TLS_CERT_KEY: issued.cert_pem,
                            TLS_KEY_KEY: issued.key_pem,
                            CA_CERT_KEY: bundle,
                        },
                        type_="kubernetes.io/tls",
                    ),
                    f"certificate {secret_name} {why}",
                )
            )
        ca_pem: bytes | None = bundle
    else:
        # cert-manager writes the TLS Secrets; the CA it signs with comes in their ca.crt.
        if not ca_data.get(OPERATOR_TOKEN_KEY):
            ca_data = {OPERATOR_TOKEN_KEY: new_token().encode()}
            writes.append((secret(cluster, ca_secret_name(name), ca_data), "operator token"))
        ca_pem = secret_data(live.get(client_secret_name(name))).get(CA_CERT_KEY)
    operator_token = ca_data[OPERATOR_TOKEN_KEY].decode()

    admin = secret_data(live.get(admin_secret_name(name)))
    admin_token = admin.get(ADMIN_TOKEN_KEY, b"").decode() or new_token()
    wanted_admin = {ADMIN_TOKEN_KEY: admin_token.encode()}
    if ca_pem:
        wanted_admin[CA_CERT_KEY] = ca_pem
    if admin != wanted_admin:
        writes.append((secret(cluster, admin_secret_name(name), wanted_admin), "admin credentials"))
    wanted_auth = {AUTH_FILE_KEY: auth_file(admin_token, operator_token)}
    if secret_data(live.get(auth_secret_name(name))) != wanted_auth:
        writes.append((secret(cluster, auth_secret_name(name), wanted_auth), "auth file"))
    return Plan(writes, ca_data, rotation)


def secret_names(cluster: RaftCluster) -> list[str]:
    """The Secrets `plan` reads and writes."""
    return [
        ca_secret_name(cluster.name),
        peer_secret_name(cluster.name),
        client_secret_name(cluster.name),
        auth_secret_name(cluster.name),
        admin_secret_name(cluster.name),
    ]


# ---- cert-manager -------------------------------------------------------------------------------


def certificates(cluster: RaftCluster) -> list[Manifest]:
    """cert-manager `Certificate`s for the peer and client Secrets (mode certManager)."""
    ref = cluster.spec.tls.issuer_ref
    if cluster.spec.tls.mode != TLSMode.CERT_MANAGER or ref is None:
        return []
    days = cluster.spec.tls.certificate_days
    hours = days * 24
    out = []
    for secret_name, names, usages in (
        (
            peer_secret_name(cluster.name),
            peer_dns_names(cluster),
            ["digital signature", "key agreement", "server auth", "client auth"],
        ),
        (
            client_secret_name(cluster.name),
            client_dns_names(cluster),
            ["digital signature", "key agreement", "server auth", "client auth"],
        ),
    ):
        out.append(
            {
                "apiVersion": "cert-manager.io/v1",
                "kind": "Certificate",
                "metadata": {
                    "name": secret_name,
                    "namespace": cluster.namespace,
                    "labels": _labels(cluster),
                },
                "spec": {
                    "secretName": secret_name,
                    "commonName": names[0],
                    "dnsNames": names,
                    "duration": f"{hours}h",
                    "renewBefore": f"{hours // RENEW_FRACTION}h",
                    "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
                    "usages": usages,
                    "issuerRef": {"name": ref.name, "kind": ref.kind, "group": ref.group},
                },
            }
        )
    return out


@dataclass(frozen=True)
class NodeCredentials:
    """What the operator presents to a cluster's members: their CA and its own token."""

    ca_pem: bytes
    token: str


def node_credentials(
    cluster: RaftCluster, live: Mapping[str, Mapping[str, Any] | None]
) -> NodeCredentials | None:
    """The operator's credentials for `cluster`, from the live Secrets (None: not yet)."""
    token = secret_data(live.get(ca_secret_name(cluster.name))).get(OPERATOR_TOKEN_KEY)
    ca_pem = secret_data(live.get(client_secret_name(cluster.name))).get(CA_CERT_KEY)
    if not token or not ca_pem:
        return None
    return NodeCredentials(ca_pem, token.decode())
