"""The peer gate's rules (docs/contracts.md "Peer plane"): who is admitted, and the
certificate binding."""

from __future__ import annotations

from pathlib import Path

import pytest

from raftkv.runtime import codec
from raftkv.runtime.admission import ClusterId, PeerGate, certificate_names_member
from raftkv.runtime.identity import load_cluster_id

CID = "0f" * 16


class View:
    def __init__(self, members: dict[int, tuple[str, str]], removed: set[int] | None = None
                 ) -> None:
        self.members = members
        self.removed = removed or set()

    def current_members(self) -> frozenset[int]:
        return frozenset(self.members)

    def known_name(self, member: int) -> str:
        return self.members.get(member, ("", ""))[0]

    def member_peer_url(self, member: int) -> str:
        return self.members.get(member, ("", ""))[1]

    def is_removed(self, member: int) -> bool:
        return member in self.removed


def cert(dns: list[str] = [], ips: list[str] = []) -> dict[str, object]:  # noqa: B006
    return {"subject": ((("commonName", "n2"),),),
            "subjectAltName": tuple([("DNS", d) for d in dns] + [("IP Address", i) for i in ips])}


def test_the_binding_rule() -> None:
    assert certificate_names_member(cert(["n2"]), "n2", "other:7380")
    assert certificate_names_member(cert(["N2"]), "n2", "")
    assert certificate_names_member(cert(["n2.peers.ns.svc"]), "n2", "n2.peers.ns.svc:7380")
    assert certificate_names_member(cert(ips=["127.0.0.12"]), "n2", "127.0.0.12:7380")
    assert certificate_names_member(cert(ips=["::1"]), "n2", "[::1]:7380")
    # Not: another member's name, a wildcard, the CN, an IP given as a DNS name.
    assert not certificate_names_member(cert(["n3"]), "n2", "127.0.0.12:7380")
    assert not certificate_names_member(cert(["*.peers.ns.svc"]), "n2", "n2.peers.ns.svc:7380")
    assert not certificate_names_member(cert([]), "n2", "")
    assert not certificate_names_member(cert(["127.0.0.12"]), "x", "127.0.0.12:7380")
    assert not certificate_names_member(None, "n2", "n2:1")


def _gate(tmp_path: Path, cluster: str | None = CID, tls: bool = False,
          removed: set[int] | None = None, members: dict[int, tuple[str, str]] | None = None
          ) -> PeerGate:
    view = View({1: ("n1", "127.0.0.11:7380"), 2: ("n2", "127.0.0.12:7380")}
                if members is None else members, removed)
    return PeerGate(1, "n1", view, ClusterId(cluster, tmp_path), tls=tls)


def _refused(gate: PeerGate, hello: codec.Hello, peercert: object = None) -> str:
    with pytest.raises(codec.FrameError) as err:
        gate.check_hello(hello, peercert)  # type: ignore[arg-type]
    return err.value.reason


def test_a_member_is_admitted_and_everyone_else_refused(tmp_path: Path) -> None:
    gate = _gate(tmp_path)
    gate.check_hello(codec.Hello(CID, 2, 1, "n2"), None)
    gate.check_hello(codec.Hello("", 2, 1, "n2"), None)  # it learns ours from the WELCOME
    assert _refused(gate, codec.Hello("ab" * 16, 2, 1, "n2")) == "wrong_cluster"
    assert _refused(gate, codec.Hello(CID, 9, 1, "n9")) == "not_member"
    assert _refused(gate, codec.Hello(CID, 2, 1, "n3")) == "not_member"  # name of another
    assert _refused(gate, codec.Hello(CID, 2, 7, "n2")) == "not_member"  # meant for another
    assert _refused(gate, codec.Hello(CID, 1, 1, "n1")) == "not_member"  # claims to be us
    gone = _gate(tmp_path, removed={2})
    assert _refused(gone, codec.Hello(CID, 2, 1, "n2")) == "removed"


def test_with_tls_the_certificate_must_name_the_claimed_member(tmp_path: Path) -> None:
    gate = _gate(tmp_path, tls=True)
    gate.check_hello(codec.Hello(CID, 2, 1, "n2"), cert(["n2"]))
    gate.check_hello(codec.Hello(CID, 2, 1, "n2"), cert(ips=["127.0.0.12"]))
    assert _refused(gate, codec.Hello(CID, 2, 1, "n2"), cert(["n3"])) == "certificate"
    assert _refused(gate, codec.Hello(CID, 2, 1, "n2"), None) == "certificate"


def test_a_node_without_a_cluster_id_adopts_and_persists_a_members(tmp_path: Path) -> None:
    gate = _gate(tmp_path, cluster=None)
    gate.check_hello(codec.Hello("", 2, 1, "n2"), None)  # neither knows one yet
    assert gate.cluster.value == "" and load_cluster_id(tmp_path) is None
    assert _refused(gate, codec.Hello("ab" * 16, 9, 1, "x")) == "not_member"
    assert gate.cluster.value == "", "a refused peer must not set the cluster id"
    gate.check_hello(codec.Hello(CID, 2, 1, "n2"), None)
    assert gate.cluster.value == CID and load_cluster_id(tmp_path) == CID
    assert _refused(gate, codec.Hello("ab" * 16, 2, 1, "n2")) == "wrong_cluster"


def test_a_joiner_that_knows_nobody_admits_the_leader(tmp_path: Path) -> None:
    gate = _gate(tmp_path, cluster=None, members={})
    gate.check_hello(codec.Hello(CID, 77, 1, "leader"), None)
    assert gate.cluster.value == CID


def test_welcome_must_come_from_the_member_dialed(tmp_path: Path) -> None:
    gate = _gate(tmp_path, tls=True)
    gate.check_welcome(2, CID, 2, "n2", cert(["n2"]))
    for args, reason in [((2, CID, 3, "n3", cert(["n3"])), "not_member"),
                         ((2, "ab" * 16, 2, "n2", cert(["n2"])), "wrong_cluster"),
                         ((2, CID, 2, "n2", cert(["n3"])), "certificate")]:
        with pytest.raises(codec.FrameError) as err:
            gate.check_welcome(*args)  # type: ignore[arg-type]
        assert err.value.reason == reason


def test_one_founder_draws_the_cluster_id(tmp_path: Path) -> None:
    from raftkv.runtime.identity import (
        IdentityError,
        creates_cluster_id,
        member_id,
        new_cluster_id,
        save_cluster_id,
    )

    names = ["n1", "n2", "n3"]
    lowest = min(names, key=member_id)
    assert [n for n in names if creates_cluster_id(n, names, new_cluster=True)] == [lowest]
    assert not creates_cluster_id(lowest, names, new_cluster=False)
    assert not creates_cluster_id("joiner", names, new_cluster=True)
    cid = new_cluster_id()
    assert len(cid) == 32 and cid != new_cluster_id()
    save_cluster_id(tmp_path, cid)
    assert load_cluster_id(tmp_path) == cid
    (tmp_path / "cluster.json").write_text('{"cluster_id": "nothex"}')
    with pytest.raises(IdentityError):
        load_cluster_id(tmp_path)
