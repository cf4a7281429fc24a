"""Rotating a cluster's CA with no downtime: the pure decisions (tls.mode operator).

The way operators rotate a CA without a moment in which two parties disagree on trust:

1. **TrustBoth**: a new CA is made. Every place that trusts (the members' `ca.crt` in both
   planes, the admin Secret, the operator's own client) gets a bundle of old + new. Member
   certificates stay as they are (old CA).
2. **IssueNew**: once every member reports (`/v1/status` `tls`) that both its planes loaded
   that bundle, member certificates are re-issued by the new CA. A member that already serves
   the new one is trusted by one that does not yet, and the other way round.
3. **DropOld**: once every member serves the new certificate in both planes, the old CA is
   dropped from every bundle. Done once every member loaded the new CA alone.

Each step is observed, never assumed from the clock: a member that has not loaded what the
step needs holds the rotation where it is (status.caRotation.waitingFor names it).

The state lives in the `<name>-ca` Secret, written before anything acts on it (the new CA's
key can live nowhere else, and one write makes key and step durable together), so a
restarted operator resumes at the step it left:

| key | holds |
|---|---|
| `ca.crt`, `ca.key` | the CA that signs member certificates now |
| `next-ca.crt`, `next-ca.key` | TrustBoth: the new CA, trusted but not yet signing |
| `previous-ca.crt` | IssueNew: the old CA, still trusted, no longer signing (its key is gone) |
| `rotation-phase` | TrustBoth, IssueNew or DropOld; absent when none is in flight |
| `rotation-request` | the `raftkv.dev/rotate-ca` annotation value last acted on |
| `rotation-started`, `rotation-reason` | when and why the rotation in flight started |

Only making the new CA draws randomness (raftkv.security.pki); the rest is a function of the
Secrets, the members' reports and the clock.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from raftkv.security import pki
from raftkv_operator.models import CARotationPhase, RaftCluster
from raftkv_operator.nodestatus import LoadedTLS

ROTATE_ANNOTATION = "raftkv.dev/rotate-ca"
"""On a RaftCluster: a new value asks for a CA rotation (any string; acted on once)."""

CA_CERT_KEY = "ca.crt"
CA_KEY_KEY = "ca.key"
NEXT_CA_CERT_KEY = "next-ca.crt"
NEXT_CA_KEY_KEY = "next-ca.key"
PREVIOUS_CA_CERT_KEY = "previous-ca.crt"
PHASE_KEY = "rotation-phase"
REQUEST_KEY = "rotation-request"
STARTED_KEY = "rotation-started"
REASON_KEY = "rotation-reason"

CA_RENEW_FRACTION = 3
"""Rotate the CA when less than 1/CA_RENEW_FRACTION of its lifetime remains."""

STEPS = (CARotationPhase.TRUST_BOTH, CARotationPhase.ISSUE_NEW, CARotationPhase.DROP_OLD)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def phase_of(ca_data: Mapping[str, bytes]) -> CARotationPhase | None:
    """The step in flight (None: none; an unknown value reads as none, and is replaced)."""
    raw = ca_data.get(PHASE_KEY, b"").decode(errors="replace")
    return next((p for p in STEPS if p.value == raw), None)


def trust_bundle(ca_data: Mapping[str, bytes]) -> bytes:
    """What every party trusts now: the old CA then the new one during a rotation, the
    signing CA alone otherwise. TrustBoth and IssueNew give the same bytes, so members
    that loaded the bundle in TrustBoth need not load anything again in IssueNew."""
    phase = phase_of(ca_data)
    signing = ca_data[CA_CERT_KEY]
    if phase == CARotationPhase.TRUST_BOTH:
        return signing + ca_data[NEXT_CA_CERT_KEY]
    if phase == CARotationPhase.ISSUE_NEW:
        return ca_data[PREVIOUS_CA_CERT_KEY] + signing
    return signing


def requested(cluster: RaftCluster) -> str:
    return cluster.metadata.annotations.get(ROTATE_ANNOTATION, "")


def rotation_due(
    cluster: RaftCluster, ca_data: Mapping[str, bytes], now: datetime.datetime
) -> str | None:
    """Why a rotation should start now (None: it should not): `Requested` for an annotation
    value not acted on yet, `Expiring` for a CA in the last third of its lifetime."""
    request = requested(cluster)
    if request and request != ca_data.get(REQUEST_KEY, b"").decode(errors="replace"):
        return "Requested"
    ca = x509.load_pem_x509_certificate(ca_data[CA_CERT_KEY])
    lifetime = ca.not_valid_after_utc - ca.not_valid_before_utc
    if ca.not_valid_after_utc - now < lifetime / CA_RENEW_FRACTION:
        return "Expiring"
    return None


@dataclass(frozen=True)
class MemberTLS:
    """What a member's two planes loaded (None: it did not answer, or has no TLS there)."""

    peer: LoadedTLS | None
    client: LoadedTLS | None


def _planes(tls: MemberTLS, client_plane: bool) -> tuple[LoadedTLS | None, ...]:
    """The planes a member's report must cover: the client plane only where the client
    port has TLS (a pre-TLS cluster moved onto TLS keeps it plain: RaftCluster.client_port_tls)."""
    return (tls.peer, tls.client) if client_plane else (tls.peer,)


def waiting_for_trust(
    members: Mapping[str, MemberTLS | None], bundle: bytes, *, client_plane: bool = True
) -> list[str]:
    """Members whose peer or (with `client_plane`) client plane has not loaded `bundle` as
    its trusted CAs."""
    digest = sha256_hex(bundle)
    return sorted(
        name
        for name, tls in members.items()
        if tls is None
        or any(plane is None or plane.ca_sha256 != digest for plane in _planes(tls, client_plane))
    )


def waiting_for_certificates(
    members: Mapping[str, MemberTLS | None],
    peer_cert: bytes,
    client_cert: bytes | None,
    *,
    client_plane: bool = True,
) -> list[str]:
    """Members that do not serve `peer_cert` on the peer plane and (with `client_plane`)
    `client_cert` on the client plane yet."""
    wanted = (sha256_hex(peer_cert), sha256_hex(client_cert) if client_cert else None)
    return sorted(
        name
        for name, tls in members.items()
        if tls is None
        or any(
            plane is None or plane.cert_sha256 != want
            for plane, want in zip(_planes(tls, client_plane), wanted, strict=False)
        )
    )


def signed_by(cert_pem: bytes | None, ca_pem: bytes) -> bool:
    if not cert_pem:
        return False
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_pem))
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


@dataclass(frozen=True)
class Step:
    """One decision: the CA Secret's new data (None: unchanged), the event to post for it
    (reason, message), and the members the rotation waits for."""

    ca_data: dict[str, bytes] | None
    event: tuple[str, str] | None
    waiting: list[str]


NOTHING = Step(None, None, [])


def _without(data: Mapping[str, bytes], *keys: str) -> dict[str, bytes]:
    return {k: v for k, v in data.items() if k not in keys}


def step(
    cluster: RaftCluster,
    ca_data: Mapping[str, bytes],
    members: Mapping[str, MemberTLS | None] | None,
    peer_cert: bytes | None,
    client_cert: bytes | None,
    now: datetime.datetime,
) -> Step:
    """The rotation's next move, from the live CA Secret (a usable one), every member's
    report (None: not observed this round, so only a start can happen), and the member
    certificates in the live peer and client Secrets."""
    phase = phase_of(ca_data)
    if phase is None:
        why = rotation_due(cluster, ca_data, now)
        if why is None:
            return NOTHING
        # A subject of its own: two CAs of one name in a trust store make chain building
        # depend on which the library tries first.
        new = pki.make_ca(
            f"raftkv {cluster.namespace}/{cluster.name} CA {now:%Y%m%dT%H%M%SZ}",
            days=_ca_days(ca_data),
        )
        data = {
            **_without(ca_data, PREVIOUS_CA_CERT_KEY),
            NEXT_CA_CERT_KEY: new.cert_pem,
            NEXT_CA_KEY_KEY: new.key_pem,
            PHASE_KEY: CARotationPhase.TRUST_BOTH.value.encode(),
            REQUEST_KEY: requested(cluster).encode() or ca_data.get(REQUEST_KEY, b""),
            STARTED_KEY: now.isoformat().encode(),
            REASON_KEY: why.encode(),
        }
        return Step(
            data,
            (
                "CARotationStarted",
                f"CA rotation ({why}): a new CA is trusted alongside the old one by every "
                "member, the admin Secret and the operator; member certificates follow once "
                "every member has loaded both",
            ),
            [],
        )
    if members is None:
        return NOTHING
    client_plane = cluster.client_port_tls
    if phase == CARotationPhase.TRUST_BOTH:
        waiting = waiting_for_trust(members, trust_bundle(ca_data), client_plane=client_plane)
        if waiting:
            return Step(None, None, waiting)
        data = {
            **_without(ca_data, NEXT_CA_CERT_KEY, NEXT_CA_KEY_KEY),
            CA_CERT_KEY: ca_data[NEXT_CA_CERT_KEY],
            CA_KEY_KEY: ca_data[NEXT_CA_KEY_KEY],
            PREVIOUS_CA_CERT_KEY: ca_data[CA_CERT_KEY],
            PHASE_KEY: CARotationPhase.ISSUE_NEW.value.encode(),
        }
        return Step(
            data,
            (
                "CARotationIssuing",
                f"every member ({len(members)}) trusts the old and the new CA: member "
                "certificates are issued by the new CA",
            ),
            [],
        )
    if phase == CARotationPhase.ISSUE_NEW:
        signing = ca_data[CA_CERT_KEY]
        if not (
            signed_by(peer_cert, signing) and (not client_plane or signed_by(client_cert, signing))
        ):
            return Step(None, None, sorted(members))  # the Secrets are re-issued this round
        assert peer_cert is not None
        waiting = waiting_for_certificates(
            members, peer_cert, client_cert, client_plane=client_plane
        )
        if waiting:
            return Step(None, None, waiting)
        data = {
            **_without(ca_data, PREVIOUS_CA_CERT_KEY),
            PHASE_KEY: CARotationPhase.DROP_OLD.value.encode(),
        }
        return Step(
            data,
            (
                "CARotationDroppingOld",
                f"every member ({len(members)}) serves a certificate of the new CA: the old "
                "CA is dropped from every trust bundle",
            ),
            [],
        )
    waiting = waiting_for_trust(members, ca_data[CA_CERT_KEY], client_plane=client_plane)
    if waiting:
        return Step(None, None, waiting)
    return Step(
        _without(ca_data, PHASE_KEY, STARTED_KEY, REASON_KEY),
        (
            "CARotated",
            f"every member ({len(members)}) trusts the new CA only: the old CA is trusted "
            "nowhere any more",
        ),
        [],
    )


def _ca_days(ca_data: Mapping[str, bytes]) -> int:
    """The new CA lives as long as the old one was made to (at least a day)."""
    ca = x509.load_pem_x509_certificate(ca_data[CA_CERT_KEY])
    return max(1, (ca.not_valid_after_utc - ca.not_valid_before_utc).days)


def started_at(ca_data: Mapping[str, bytes]) -> datetime.datetime | None:
    raw = ca_data.get(STARTED_KEY)
    if not raw:
        return None
    try:
        return datetime.datetime.fromisoformat(raw.decode())
    except ValueError:
        return None
