"""Emulated Kubernetes: the CA of a live 3-member cluster is rotated with no downtime.

Asked for with the `raftkv.dev/rotate-ca` annotation while a client writes continuously
(through the Service, with the admin Secret re-read for every request, as a pod mounting it
would). The operator is restarted in the middle of the rotation (it must resume from the CA
Secret, not start over or skip a step), and a member is killed while member certificates move
to the new CA (its new peer connections meet members in every state of the rotation). At the
end no write failed beyond its retries, every member reports the new CA alone and a
certificate from it, and certificates of the old CA are refused on both ports.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import ssl
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from raftkv.security import pki
from raftkv_operator.carotation import ROTATE_ANNOTATION
from raftkv_operator.models import DEFAULT_CLIENT_PORT, DEFAULT_PEER_PORT
from tests.k8s.harness.cluster import EmulatedCluster
from tests.k8s.harness_ext import (
    CLUSTERS,
    NAMESPACE,
    Operator,
    cluster_manifest,
    cluster_tls,
    emulated_fixture,  # noqa: F401 - the `emulated` fixture
    event_reasons,
    get_via_service,
    http,
    operator_fixture,  # noqa: F401 - the `operator` fixture
    pods,
    put_retrying,
    put_via_service,
    role_of,
    status,
    wait_available,
    wait_for,
)

NAME = "carot"
pytestmark = pytest.mark.timeout(300)
# The kubelet brings a Secret's new content into a pod's volume about a minute after the
# change, each pod on its own schedule. Slower than the harness's default, and slower than
# an operator round: a rotation that moved on before every member had loaded the files
# would be caught by the TrustMonitor (with the steps ignoring the members' reports and a
# 4 s period, 5 handshakes were refused; at the default 1 s period such a rotation could pass).
EMULATED_OPTIONS = {"volume_sync_seconds": 8.0}
WRITE_RETRY_SECONDS = 10.0
"""How long one write is retried before it counts as failed (elections, a member restart)."""


def secret_data(emulated: EmulatedCluster, name: str) -> dict[str, bytes]:
    secret = emulated.get("v1/secrets", NAMESPACE, name)
    assert secret is not None, name
    return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def rotation_phase(emulated: EmulatedCluster) -> str | None:
    return (status(emulated, NAME).get("caRotation") or {}).get("phase")


class Writer:
    """Writes continuously, each write retried for up to WRITE_RETRY_SECONDS."""

    def __init__(self, emulated: EmulatedCluster) -> None:
        self.emulated = emulated
        self.stop = threading.Event()
        self.acknowledged: dict[str, str] = {}
        self.failed: list[str] = []  # writes that were never acknowledged
        self.retries = 0  # attempts that failed and were retried
        self.longest_retry = 0.0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            key, value = f"carot-{i}", f"v{i}"
            started = time.monotonic()
            while True:
                if put_via_service(self.emulated, NAME, key, value) is not None:
                    self.acknowledged[key] = value
                    break
                if time.monotonic() - started > WRITE_RETRY_SECONDS:
                    self.failed.append(key)
                    break
                self.retries += 1
                self.stop.wait(0.05)
            self.longest_retry = max(self.longest_retry, time.monotonic() - started)
            i += 1
            self.stop.wait(0.02)

    def __enter__(self) -> Writer:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(WRITE_RETRY_SECONDS + 5)


def member_tls(emulated: EmulatedCluster, pod: str) -> dict[str, Any] | None:
    """A member's own report of the TLS files it loaded (None: it did not answer)."""
    tls = cluster_tls(emulated, NAME)
    ip = emulated.pod_ip(NAMESPACE, pod)
    if tls is None or ip is None:
        return None
    try:
        code, body = http("GET", f"https://{ip}:{DEFAULT_CLIENT_PORT}/v1/status", tls=tls)
    except (OSError, ssl.SSLError):
        return None
    if code != 200:
        return None
    report: dict[str, Any] = json.loads(body)["tls"]
    return report


def handshake(
    host: str,
    port: int,
    trust: bytes,
    cert: pki.CertKey | None,
    tmp: Path,
    server_name: str | None = None,
) -> str | None:
    """One TLS handshake with a member: None when both sides accepted the other, else why
    not. TLS 1.2, so the server's verdict on our certificate is part of the handshake (under
    1.3 it would reach us only on a later read)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = server_name is not None
    ctx.load_verify_locations(cadata=trust.decode())
    if cert is not None:
        tmp.mkdir(parents=True, exist_ok=True)
        cert.write(tmp / "c.crt", tmp / "c.key")
        ctx.load_cert_chain(tmp / "c.crt", tmp / "c.key")
    with socket.create_connection((host, port), timeout=3) as sock:
        try:
            ctx.wrap_socket(sock, server_hostname=server_name).close()
        except ssl.SSLError as e:
            return str(e)
    return None


class TrustMonitor:
    """While the rotation runs: a new connection made with what the Secrets hold *now* is
    accepted by every member, on both planes. The admin Secret's CA must accept each
    member's client certificate (a client mounting the Secret); the peer Secret's
    certificate and CA must be accepted by, and accept, each member's peer port (a member
    that restarts now). A rotation that moved trust before every member had loaded what it
    needs fails here, even though persistent connections and retries would hide it."""

    def __init__(self, emulated: EmulatedCluster, tmp: Path) -> None:
        self.emulated = emulated
        self.tmp = tmp
        self.stop = threading.Event()
        self.failures: list[tuple[str, str, str]] = []
        self.checks = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            admin = secret_data(self.emulated, f"{NAME}-admin")
            peer = secret_data(self.emulated, f"{NAME}-peer-tls")
            member_cert = pki.CertKey(peer["tls.crt"], peer["tls.key"])
            for pod in sorted(pods(self.emulated, NAME)):
                ip = self.emulated.pod_ip(NAMESPACE, pod)
                if ip is None:
                    continue
                for plane, port, trust, cert, server_name in (
                    (
                        "client",
                        DEFAULT_CLIENT_PORT,
                        admin["ca.crt"],
                        None,
                        f"{NAME}.{NAMESPACE}.svc",
                    ),
                    ("peer", DEFAULT_PEER_PORT, peer["ca.crt"], member_cert, None),
                ):
                    try:
                        why = handshake(ip, port, trust, cert, self.tmp, server_name)
                    except OSError:
                        continue  # not listening (the killed member): not a trust failure
                    self.checks += 1
                    if why is not None:
                        self.failures.append((pod, plane, why))
            self.stop.wait(0.05)

    def __enter__(self) -> TrustMonitor:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(10)


def test_ca_rotation_under_writes_with_an_operator_restart_and_a_member_crash(
    emulated: EmulatedCluster, operator: Operator, tmp_path: Path
) -> None:
    emulated.create(CLUSTERS, cluster_manifest(NAME, 3), NAMESPACE)
    wait_available(emulated, NAME, 3, timeout=90)
    put_retrying(emulated, NAME, "before", "1", 10)
    old_ca_secret = secret_data(emulated, f"{NAME}-ca")
    old_ca = pki.CertKey(old_ca_secret["ca.crt"], old_ca_secret["ca.key"])
    peer_names = pki.cert_names(
        pki.CertKey(secret_data(emulated, f"{NAME}-peer-tls")["tls.crt"], b"").cert
    )[1]
    before = {n: p["metadata"]["uid"] for n, p in pods(emulated, NAME).items()}
    seen: list[str] = []
    timeline: list[str] = []
    started = time.monotonic()

    def reached(phase: str) -> bool:
        current = rotation_phase(emulated)
        if current and (not seen or seen[-1] != current):
            seen.append(current)
            timeline.append(f"{current} at {time.monotonic() - started:.1f} s")
        return phase in seen

    with Writer(emulated) as writer, TrustMonitor(emulated, tmp_path / "monitor") as monitor:
        emulated.patch(
            CLUSTERS, NAMESPACE, NAME, {"metadata": {"annotations": {ROTATE_ANNOTATION: "r1"}}}
        )
        wait_for(emulated, lambda: reached("TrustBoth"), 60, "the rotation starts")
        # kopf posts Events from a queue that a stopping operator drops: wait for this one
        # (Events are best effort; the step itself is in the CA Secret).
        wait_for(
            emulated,
            lambda: "CARotationStarted" in event_reasons(emulated, NAME),
            15,
            "the CARotationStarted Event",
        )
        # Mid-rotation: a new operator process must resume from the CA Secret.
        operator.restart()
        wait_for(emulated, lambda: reached("IssueNew"), 90, "member certificates from the new CA")
        # A crash while certificates move: the restarted member dials and is dialled anew.
        follower = next(n for n, p in pods(emulated, NAME).items() if role_of(p) != "leader")
        emulated.kill_pod_process(NAMESPACE, follower)
        wait_for(emulated, lambda: reached("Succeeded"), 120, "the rotation completes")
        put_retrying(emulated, NAME, "after", "2", 20)
    elapsed = time.monotonic() - started

    # Every step, in order, each once (a resumed operator neither repeats nor skips one).
    assert seen == ["TrustBoth", "IssueNew", "DropOld", "Succeeded"] or seen == [
        "TrustBoth",
        "IssueNew",
        "Succeeded",  # DropOld may pass between two samples
    ], seen
    # Events are posted in the background (kopf), so the last may trail the status.
    steps = {"CARotationStarted", "CARotationIssuing", "CARotationDroppingOld", "CARotated"}
    try:
        wait_for(emulated, lambda: steps <= event_reasons(emulated, NAME), 15, "an Event per step")
    except TimeoutError:
        raise AssertionError(f"no Event for {steps - event_reasons(emulated, NAME)}") from None
    assert writer.failed == [], f"writes never acknowledged: {writer.failed[:5]}"
    assert monitor.checks > 30
    assert monitor.failures == [], monitor.failures[:5]
    assert len(writer.acknowledged) > 20
    for key, value in list(writer.acknowledged.items())[:: max(1, len(writer.acknowledged) // 50)]:
        assert get_via_service(emulated, NAME, key) == value, key
    assert get_via_service(emulated, NAME, "before") == "1"

    # One CA everywhere: the new one, in the CA Secret, both planes and the admin Secret.
    ca_secret = secret_data(emulated, f"{NAME}-ca")
    new_ca = ca_secret["ca.crt"]
    assert new_ca != old_ca.cert_pem and old_ca.cert_pem not in new_ca
    assert {"next-ca.crt", "previous-ca.crt", "rotation-phase"}.isdisjoint(ca_secret)
    assert ca_secret["operator-token"] == old_ca_secret["operator-token"]
    leaves = {}
    for kind in ("peer-tls", "client-tls", "admin"):
        data = secret_data(emulated, f"{NAME}-{kind}")
        assert data["ca.crt"] == new_ca, kind
        if "tls.crt" in data:
            pki.CertKey(data["tls.crt"], b"").cert.verify_directly_issued_by(
                pki.CertKey(new_ca, b"").cert
            )
            leaves[kind] = data["tls.crt"]
    # Every member says it loaded exactly these (its own report, /v1/status).
    for pod in before:
        wait_for(
            emulated,
            lambda p=pod: (
                member_tls(emulated, p)
                == {
                    "peer": {
                        "cert_sha256": sha256(leaves["peer-tls"]),
                        "ca_sha256": sha256(new_ca),
                    },
                    "client": {
                        "cert_sha256": sha256(leaves["client-tls"]),
                        "ca_sha256": sha256(new_ca),
                    },
                }
            ),
            30,
            f"{pod} reports the new files",
        )

    # The old CA is trusted nowhere: its certificates are refused on both ports of every
    # member; the same certificates from the new CA are accepted (the control).
    new_signer = pki.CertKey(new_ca, ca_secret["ca.key"])
    probe = tmp_path / "probe"
    for pod in before:
        ip = emulated.pod_ip(NAMESPACE, pod)
        assert ip is not None
        for port, names in ((DEFAULT_PEER_PORT, peer_names), (DEFAULT_CLIENT_PORT, [])):
            stale = pki.issue_cert(old_ca, "stale", dns_names=names)
            fresh = pki.issue_cert(new_signer, "fresh", dns_names=names)
            assert handshake(ip, port, new_ca, stale, probe) is not None, (pod, port)
            assert handshake(ip, port, new_ca, fresh, probe) is None, (pod, port)
        # A client that trusts only the old CA no longer accepts the member.
        why = handshake(ip, DEFAULT_CLIENT_PORT, old_ca.cert_pem, None, probe)
        assert why is not None and "CERTIFICATE_VERIFY_FAILED" in why, why

    # Nothing restarted but the member that was killed (and it came back in place).
    after = {n: p["metadata"]["uid"] for n, p in pods(emulated, NAME).items()}
    assert after == before
    print(
        f"\nCA rotation of 3 members: {elapsed:.1f} s (with an operator restart and a member "
        f"crash); {len(writer.acknowledged)} writes acknowledged, {len(writer.failed)} failed, "
        f"{writer.retries} retried attempts, longest write {writer.longest_retry:.2f} s; "
        f"{monitor.checks} handshakes with the Secrets' current files, "
        f"{len(monitor.failures)} refused; steps: {', '.join(timeline)}",
        file=sys.__stderr__,
    )
