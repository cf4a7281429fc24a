"""Rotating a cluster's CA (carotation.py through credentials.plan): each step waits on what
the members report, the CA Secret is written first, and at every point a member holding
any of the Secrets' versions still talks to every other (a real TLS handshake checks it)."""

from __future__ import annotations

import contextlib
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from raftkv.protocol.status import StatusFormatError
from raftkv.security import pki
from raftkv_operator import carotation, credentials
from raftkv_operator.carotation import MemberTLS, sha256_hex
from raftkv_operator.models import CARotationPhase, RaftCluster
from raftkv_operator.nodestatus import LoadedTLS, NodeStatus

from .conftest import example_cluster

NOW = datetime.now(UTC)
MEMBERS = ("demo-0", "demo-1", "demo-2")


def _cluster(request: str | None = None) -> RaftCluster:
    body = example_cluster("minimal.yaml").to_k8s()
    if request is not None:
        body["metadata"].setdefault("annotations", {})[carotation.ROTATE_ANNOTATION] = request
    return RaftCluster.model_validate(body)


def _apply(live: dict[str, Any], plan: credentials.Plan) -> dict[str, Any]:
    out = dict(live)
    for manifest, _why in plan.writes:
        out[manifest["metadata"]["name"]] = manifest
    return out


def _data(live: dict[str, Any], name: str) -> dict[str, bytes]:
    return credentials.secret_data(live[name])


def _loaded(live: dict[str, Any]) -> MemberTLS:
    """A member that loaded the live peer and client Secrets."""
    peer, client = _data(live, "demo-peer-tls"), _data(live, "demo-client-tls")
    return MemberTLS(
        LoadedTLS(cert_sha256=sha256_hex(peer["tls.crt"]), ca_sha256=sha256_hex(peer["ca.crt"])),
        LoadedTLS(
            cert_sha256=sha256_hex(client["tls.crt"]), ca_sha256=sha256_hex(client["ca.crt"])
        ),
    )


def _all(member: MemberTLS | None) -> dict[str, MemberTLS | None]:
    return dict.fromkeys(MEMBERS, member)


def _phase(live: dict[str, Any]) -> CARotationPhase | None:
    return carotation.phase_of(_data(live, "demo-ca"))


def _handshake(tmp_path: Path, server: dict[str, bytes], client: dict[str, bytes]) -> None:
    """Mutual TLS between two members holding these peer Secrets (raises when refused)."""
    contexts = []
    for side, data, purpose in (
        ("s", server, ssl.PROTOCOL_TLS_SERVER),
        ("c", client, ssl.PROTOCOL_TLS_CLIENT),
    ):
        pki.CertKey(data["tls.crt"], data["tls.key"]).write(
            tmp_path / f"{side}.crt", tmp_path / f"{side}.key"
        )
        ctx = ssl.SSLContext(purpose)
        ctx.load_cert_chain(tmp_path / f"{side}.crt", tmp_path / f"{side}.key")
        ctx.load_verify_locations(cadata=data["ca.crt"].decode())
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_REQUIRED
        contexts.append(ctx)
    s_ctx, c_ctx = contexts
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    c = c_ctx.wrap_bio(c_in, c_out)
    s = s_ctx.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        for side in (c, s):
            with contextlib.suppress(ssl.SSLWantReadError):
                side.do_handshake()
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    c.do_handshake()
    s.do_handshake()
    s.write(b"x")  # TLS 1.3: the server's verdict on the client's certificate reaches it here
    c_in.write(s_out.read())
    assert c.read(1) == b"x"


def test_a_requested_rotation_walks_its_three_steps_on_what_members_report(
    tmp_path: Path,
) -> None:
    quiet = _cluster()
    live = _apply({}, credentials.plan(quiet, {}, NOW))
    old_peer = _data(live, "demo-peer-tls")
    old_ca = _data(live, "demo-ca")["ca.crt"]
    assert credentials.plan(quiet, live, NOW, _all(_loaded(live))).writes == []

    # Asked for: the CA Secret first (new CA + step), then the bundle everywhere; the
    # member certificates and keys are kept (only ca.crt changes).
    cluster = _cluster("2026-12-02")
    start = credentials.plan(cluster, live, NOW, None)
    names = [m["metadata"]["name"] for m, _ in start.writes]
    assert names[0] == "demo-ca"
    assert set(names) == {"demo-ca", "demo-peer-tls", "demo-client-tls", "demo-admin"}
    assert start.rotation.event is not None and start.rotation.event[0] == "CARotationStarted"
    live = _apply(live, start)
    assert _phase(live) == CARotationPhase.TRUST_BOTH
    new_ca = _data(live, "demo-ca")["next-ca.crt"]
    bundle = old_ca + new_ca
    for secret in ("demo-peer-tls", "demo-client-tls", "demo-admin"):
        assert _data(live, secret)["ca.crt"] == bundle, secret
    assert _data(live, "demo-peer-tls")["tls.crt"] == old_peer["tls.crt"]
    assert _data(live, "demo-peer-tls")["tls.key"] == old_peer["tls.key"]
    assert credentials.node_credentials(cluster, live).ca_pem == bundle  # type: ignore[union-attr]

    # Not observed, or a member still on the old files (or silent, or lying): no move.
    before = _loaded(_apply({}, credentials.plan(quiet, {}, NOW)))
    assert credentials.plan(cluster, live, NOW, None).writes == []
    stale = {**_all(_loaded(live)), "demo-1": before, "demo-2": None}
    held = credentials.plan(cluster, live, NOW, stale)
    assert held.writes == [] and held.rotation.waiting == ["demo-1", "demo-2"]
    # A report that is not a digest is no report (the whole status is refused)...
    with pytest.raises(StatusFormatError, match="tls.peer.ca_sha256"):
        NodeStatus.parse({"name": "demo-0", "id": 1, "tls": {"peer": {"ca_sha256": "x" * 64}}})
    # ...and an older node, which says nothing, holds the rotation as a silent one does.
    older = NodeStatus.parse({"name": "demo-0", "id": 1})
    assert older.peer_tls is None and older.client_tls is None
    unknown = {**_all(_loaded(live)), "demo-0": MemberTLS(older.peer_tls, older.client_tls)}
    assert credentials.plan(cluster, live, NOW, unknown).rotation.waiting == ["demo-0"]

    # Every member loaded the bundle: the new CA signs; new certificates, same bundle.
    issue = credentials.plan(cluster, live, NOW, _all(_loaded(live)))
    assert [m["metadata"]["name"] for m, _ in issue.writes] == [
        "demo-ca",
        "demo-peer-tls",
        "demo-client-tls",
    ]
    assert issue.rotation.event is not None and issue.rotation.event[0] == "CARotationIssuing"
    mixed = live
    live = _apply(live, issue)
    assert _phase(live) == CARotationPhase.ISSUE_NEW
    new_peer = _data(live, "demo-peer-tls")
    assert carotation.signed_by(new_peer["tls.crt"], new_ca)
    assert new_peer["ca.crt"] == bundle
    # A member on the new certificate and one still on the old talk, both ways.
    _handshake(tmp_path, _data(mixed, "demo-peer-tls"), new_peer)
    _handshake(tmp_path, new_peer, _data(mixed, "demo-peer-tls"))

    # Members still serving the old certificate hold the drop.
    waiting = credentials.plan(cluster, live, NOW, _all(_loaded(mixed)))
    assert waiting.writes == [] and waiting.rotation.waiting == list(MEMBERS)
    drop = credentials.plan(cluster, live, NOW, _all(_loaded(live)))
    assert drop.rotation.event is not None and drop.rotation.event[0] == "CARotationDroppingOld"
    assert [m["metadata"]["name"] for m, _ in drop.writes][0] == "demo-ca"
    served = live
    live = _apply(live, drop)
    assert _phase(live) == CARotationPhase.DROP_OLD
    for secret in ("demo-peer-tls", "demo-client-tls", "demo-admin"):
        assert _data(live, secret)["ca.crt"] == new_ca, secret
    assert _data(live, "demo-peer-tls")["tls.crt"] == new_peer["tls.crt"]
    assert "previous-ca.crt" not in _data(live, "demo-ca")
    assert "ca.key" in _data(live, "demo-ca") and carotation.signed_by(new_ca, new_ca)

    # Done once every member trusts the new CA alone; then nothing more, and the old CA's
    # certificates are refused by the new trust.
    assert credentials.plan(cluster, live, NOW, _all(_loaded(served))).rotation.waiting
    done = credentials.plan(cluster, live, NOW, _all(_loaded(live)))
    assert done.rotation.event is not None and done.rotation.event[0] == "CARotated"
    assert [m["metadata"]["name"] for m, _ in done.writes] == ["demo-ca"]
    live = _apply(live, done)
    assert _phase(live) is None
    assert credentials.plan(cluster, live, NOW, _all(_loaded(live))).writes == []
    _handshake(tmp_path, _data(live, "demo-peer-tls"), _data(live, "demo-peer-tls"))
    with pytest.raises(ssl.SSLError):
        _handshake(tmp_path, _data(live, "demo-peer-tls"), old_peer)
    with pytest.raises(ssl.SSLError):
        _handshake(tmp_path, old_peer, _data(live, "demo-peer-tls"))

    # A new annotation value asks again.
    again = credentials.plan(_cluster("2027-01-01"), live, NOW, None)
    assert again.rotation.event is not None and again.rotation.event[0] == "CARotationStarted"


def test_a_ca_in_the_last_third_of_its_life_is_rotated_without_being_asked() -> None:
    cluster = _cluster()
    live = _apply({}, credentials.plan(cluster, {}, NOW))
    ca = _data(live, "demo-ca")
    # A CA of 30 days with 9 left, as if made 21 days ago (same token, same Secret).
    young = pki.make_ca("short", days=30)
    aged = {**ca, "ca.crt": young.cert_pem, "ca.key": young.key_pem}
    step = carotation.step(cluster, aged, None, None, None, NOW + timedelta(days=19))
    assert step.ca_data is None
    step = carotation.step(cluster, aged, None, None, None, NOW + timedelta(days=21))
    assert step.ca_data is not None and step.ca_data["rotation-reason"] == b"Expiring"
    assert step.ca_data["rotation-phase"] == b"TrustBoth"
    # The new CA lives as long as the old one was made to.
    assert pki.expires_at(step.ca_data["next-ca.crt"]) - NOW > timedelta(days=29)


def test_a_request_present_when_the_cluster_is_made_does_not_rotate_its_new_ca() -> None:
    cluster = _cluster("at-birth")
    live = _apply({}, credentials.plan(cluster, {}, NOW))
    assert _data(live, "demo-ca")["rotation-request"] == b"at-birth"
    assert credentials.plan(cluster, live, NOW, None).writes == []


def test_resuming_from_any_step_repeats_no_step_and_skips_none() -> None:
    """The Secrets alone say where a rotation is: a fresh plan (a restarted operator) from
    each step's Secrets waits on the same reports and moves to the same next step."""
    cluster = _cluster("resume")
    live = _apply({}, credentials.plan(_cluster(), {}, NOW))
    seen = []
    for _ in range(4):
        first = credentials.plan(cluster, live, NOW, None)
        live = _apply(live, first)
        # Observed with stale reports: no write at all (nothing repeated).
        assert credentials.plan(cluster, live, NOW, _all(None)).writes == []
        step = credentials.plan(cluster, live, NOW, _all(_loaded(live)))
        if step.rotation.event is not None:
            seen.append(step.rotation.event[0])
        live = _apply(live, step)
    assert seen == ["CARotationIssuing", "CARotationDroppingOld", "CARotated"]
    assert _phase(live) is None


def test_an_unknown_step_in_the_secret_is_no_rotation_and_the_bundle_is_the_ca() -> None:
    cluster = _cluster()
    live = _apply({}, credentials.plan(cluster, {}, NOW))
    ca = {**_data(live, "demo-ca"), "rotation-phase": b"Sideways"}
    assert carotation.phase_of(ca) is None
    assert carotation.trust_bundle(ca) == ca["ca.crt"]


def test_a_cluster_whose_client_port_stays_plain_rotates_on_its_peer_plane_alone() -> None:
    """A pre-TLS cluster moved onto TLS keeps a plain client port (status.tlsMigration):
    its members report no client TLS, which must not hold a rotation for ever."""

    def migrated(request: str) -> RaftCluster:
        body = _cluster(request).to_k8s()
        body["status"] = {"tlsMigration": {"stage": "P3", "clientPlane": "plain"}}
        return RaftCluster.model_validate(body)

    cluster = migrated("2026-12-02")
    assert not cluster.client_port_tls
    live = _apply({}, credentials.plan(_cluster(), {}, NOW))

    def peer_only(secrets: dict[str, Any]) -> dict[str, MemberTLS | None]:
        return _all(MemberTLS(_loaded(secrets).peer, None))

    live = _apply(live, credentials.plan(cluster, live, NOW, None))
    assert _phase(live) == CARotationPhase.TRUST_BOTH
    seen = []
    for _ in range(3):
        step = credentials.plan(cluster, live, NOW, peer_only(live))
        assert step.rotation.waiting == [], step.rotation.waiting
        assert step.rotation.event is not None
        seen.append(step.rotation.event[0])
        live = _apply(live, step)
    assert seen == ["CARotationIssuing", "CARotationDroppingOld", "CARotated"]
    assert _phase(live) is None
    # The peer plane still holds it: a member on the old peer files is waited for.
    again = migrated("2027-01-01")
    live = _apply(live, credentials.plan(again, live, NOW, None))
    stale = {**peer_only(live), "demo-1": MemberTLS(None, None)}
    held = credentials.plan(again, live, NOW, stale)
    assert held.rotation.waiting == ["demo-1"]
