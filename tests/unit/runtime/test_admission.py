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
    def __init__(
        self, members: dict[int, tuple[str, str]], removed: set[int] | None = None, leader: int = 2
    ) -> None:
        self.members = members
        self.removed = removed or set()
        self.leader = leader

    def current_leader(self) -> int:
        return self.leader

    def current_members(self) -> frozenset[int]:
        return frozenset(self.members)

    def known_name(self, member: int) -> str:
        return self.members.get(member, ("", ""))[0]

    def member_peer_url(self, member: int) -> str:
        return self.members.get(member, ("", ""))[1]

    def is_removed(self, member: int) -> bool:
        return member in self.removed


def cert(dns: list[str] = [], ips: list[str] = []) -> dict[str, object]:  # noqa: B006
    return {
        "subject": ((("commonName", "n2"),),),
        "subjectAltName": tuple([("DNS", d) for d in dns] + [("IP Address", i) for i in ips]),
    }


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


def _gate(
    tmp_path: Path,
    cluster: str | None = CID,
    tls: bool = False,
    removed: set[int] | None = None,
    members: dict[int, tuple[str, str]] | None = None,
    leader: int = 2,
) -> PeerGate:
    view = View(
        {1: ("n1", "127.0.0.11:7380"), 2: ("n2", "127.0.0.12:7380")}
        if members is None
        else members,
        removed,
        leader,
    )
    return PeerGate(1, "n1", view, ClusterId(cluster, tmp_path), engine="raft", tls=tls)


def _refused(gate: PeerGate, hello: codec.Hello, peercert: object = None) -> str:
    with pytest.raises(codec.FrameError) as err:
        gate.check_hello(hello, peercert)  # type: ignore[arg-type]
    return err.value.reason


def test_a_member_is_admitted_and_everyone_else_refused(tmp_path: Path) -> None:
    gate = _gate(tmp_path)
    gate.check_hello(codec.Hello(CID, 2, 1, "n2", "raft"), None)
    gate.check_hello(codec.Hello("", 2, 1, "n2", "raft"), None)  # it learns ours from the WELCOME
    assert _refused(gate, codec.Hello("ab" * 16, 2, 1, "n2", "raft")) == "wrong_cluster"
    assert _refused(gate, codec.Hello(CID, 9, 1, "n9", "raft")) == "not_member"
    assert _refused(gate, codec.Hello(CID, 2, 1, "n3", "raft")) == "not_member"  # name of another
    assert _refused(gate, codec.Hello(CID, 2, 7, "n2", "raft")) == "not_member"  # meant for another
    assert _refused(gate, codec.Hello(CID, 1, 1, "n1", "raft")) == "not_member"  # claims to be us
    gone = _gate(tmp_path, removed={2})
    assert _refused(gone, codec.Hello(CID, 2, 1, "n2", "raft")) == "removed"


def test_with_tls_the_certificate_must_name_the_claimed_member(tmp_path: Path) -> None:
    gate = _gate(tmp_path, tls=True)
    gate.check_hello(codec.Hello(CID, 2, 1, "n2", "raft"), cert(["n2"]))
    gate.check_hello(codec.Hello(CID, 2, 1, "n2", "raft"), cert(ips=["127.0.0.12"]))
    assert _refused(gate, codec.Hello(CID, 2, 1, "n2", "raft"), cert(["n3"])) == "certificate"
    assert _refused(gate, codec.Hello(CID, 2, 1, "n2", "raft"), None) == "certificate"


def test_a_node_without_a_cluster_id_adopts_and_persists_a_members(tmp_path: Path) -> None:
    gate = _gate(tmp_path, cluster=None)
    gate.check_hello(codec.Hello("", 2, 1, "n2", "raft"), None)  # neither knows one yet
    assert gate.cluster.value == "" and load_cluster_id(tmp_path) is None
    assert _refused(gate, codec.Hello("ab" * 16, 9, 1, "x", "raft")) == "not_member"
    assert gate.cluster.value == "", "a refused peer must not set the cluster id"
    gate.check_hello(codec.Hello(CID, 2, 1, "n2", "raft"), None)
    assert gate.cluster.value == CID and load_cluster_id(tmp_path) == CID
    assert _refused(gate, codec.Hello("ab" * 16, 2, 1, "n2", "raft")) == "wrong_cluster"


def test_a_joiner_that_knows_nobody_admits_the_leader(tmp_path: Path) -> None:
    gate = _gate(tmp_path, cluster=None, members={})
    gate.check_hello(codec.Hello(CID, 77, 1, "leader", "raft"), None)
    assert gate.cluster.value == CID


def test_a_node_without_a_leader_admits_a_member_its_log_does_not_name_yet(tmp_path: Path) -> None:
    # Down while n9 was added, then n9 became leader: this node's log does not name
    # n9 yet, and only n9 can bring it up to date (the chaos runs, seed 58724).
    gate = _gate(tmp_path, tls=True, leader=0)
    gate.check_hello(codec.Hello(CID, 9, 1, "n9", "raft"), cert(["n9"]))
    _gate(tmp_path, leader=0).check_hello(codec.Hello(CID, 9, 1, "n9", "raft"), None)  # insecure
    # Authenticated as any member would be: the certificate names it, same cluster,
    # never removed.
    assert _refused(gate, codec.Hello(CID, 9, 1, "n9", "raft"), cert(["n2"])) == "certificate"
    assert _refused(gate, codec.Hello(CID, 9, 1, "n9", "raft"), None) == "certificate"
    assert (
        _refused(gate, codec.Hello("ab" * 16, 9, 1, "n9", "raft"), cert(["n9"])) == "wrong_cluster"
    )
    assert _refused(gate, codec.Hello("", 9, 1, "n9", "raft"), cert(["n9"])) == "not_member"
    gone = _gate(tmp_path, tls=True, leader=0, removed={9})
    assert _refused(gone, codec.Hello(CID, 9, 1, "n9", "raft"), cert(["n9"])) == "removed"
    # A known member's id is still held to its replicated name.
    assert _refused(gate, codec.Hello(CID, 2, 1, "n9", "raft"), cert(["n9"])) == "not_member"
    # It may also be our leader already (its appends reached us on the first
    # connection; a snapshot or a reconnect comes on a new one).
    following = _gate(tmp_path, tls=True, leader=9)
    following.check_hello(codec.Hello(CID, 9, 1, "n9", "raft"), cert(["n9"]))
    # Following a leader we know, this node will learn of new members from it: an
    # id it does not know is refused, with or without TLS.
    assert (
        _refused(_gate(tmp_path, tls=True), codec.Hello(CID, 9, 1, "n9", "raft"), cert(["n9"]))
        == "not_member"
    )
    assert (
        _refused(
            _gate(tmp_path, tls=True, leader=1), codec.Hello(CID, 9, 1, "n9", "raft"), cert(["n9"])
        )
        == "not_member"
    )  # we lead: every member is in our log
    assert _refused(_gate(tmp_path), codec.Hello(CID, 9, 1, "n9", "raft")) == "not_member"
    # A node without a cluster id learns it only from a member it knows.
    assert (
        _refused(_gate(tmp_path, cluster=None, leader=0), codec.Hello(CID, 9, 1, "n9", "raft"))
        == "not_member"
    )


def test_welcome_must_come_from_the_member_dialed(tmp_path: Path) -> None:
    gate = _gate(tmp_path, tls=True)
    gate.check_welcome(2, CID, 2, "n2", "raft", cert(["n2"]))
    for args, reason in [
        ((2, CID, 3, "n3", "raft", cert(["n3"])), "not_member"),
        ((2, "ab" * 16, 2, "n2", "raft", cert(["n2"])), "wrong_cluster"),
        ((2, CID, 2, "n2", "raft", cert(["n3"])), "certificate"),
    ]:
        with pytest.raises(codec.FrameError) as err:
            gate.check_welcome(*args)  # type: ignore[arg-type]
        assert err.value.reason == reason


def _gate_of(engine: str, tmp_path: Path, **kwargs: object) -> PeerGate:
    gate = _gate(tmp_path, **kwargs)  # type: ignore[arg-type]
    return PeerGate(1, "n1", gate.view, gate.cluster, engine=engine, tls=gate.tls)


@pytest.mark.parametrize(("mine", "theirs"), [("raft", "multipaxos"), ("multipaxos", "raft")])
def test_a_peer_of_the_other_engine_is_refused_by_name_both_ways(
    tmp_path: Path, mine: str, theirs: str
) -> None:
    gate = _gate_of(mine, tmp_path, tls=True)
    gate.check_hello(codec.Hello(CID, 2, 1, "n2", mine), cert(["n2"]))
    gate.check_welcome(2, CID, 2, "n2", mine, cert(["n2"]))
    assert gate.mismatch_status() is None
    # The acceptor refuses the other engine's HELLO, the dialer its WELCOME, by name.
    with pytest.raises(codec.FrameError) as err:
        gate.check_hello(codec.Hello(CID, 2, 1, "n2", theirs), cert(["n2"]))
    assert err.value.reason == "wrong_consensus"
    assert f"runs {theirs}; this node runs {mine}" in str(err.value)
    with pytest.raises(codec.FrameError) as err:
        gate.check_welcome(2, CID, 2, "n2", theirs, cert(["n2"]))
    assert err.value.reason == "wrong_consensus"
    seen = gate.mismatch_status()
    assert seen is not None and (seen["member"], seen["name"], seen["engine"]) == (2, "n2", theirs)
    # Who the peer is comes first: a stranger or a bad certificate is refused as such.
    assert _refused(gate, codec.Hello(CID, 9, 1, "n9", theirs), cert(["n9"])) == "not_member"
    assert _refused(gate, codec.Hello(CID, 2, 1, "n2", theirs), cert(["n3"])) == "certificate"
    # Our HELLO refused by the peer for its engine: it did not say which.
    refused = gate.refused_for_engine(2)
    assert refused.reason == "wrong_consensus" and mine in str(refused)
    seen = gate.mismatch_status()
    assert seen is not None and (seen["member"], seen["engine"]) == (2, None)


def test_a_joiner_of_the_other_engine_adopts_no_cluster_id_and_says_why(tmp_path: Path) -> None:
    joiner = _gate_of("raft", tmp_path, cluster=None, members={})
    with pytest.raises(codec.FrameError) as err:
        joiner.check_hello(codec.Hello(CID, 77, 1, "leader", "multipaxos"), None)
    assert err.value.reason == "wrong_consensus"
    assert joiner.cluster.value == "" and load_cluster_id(tmp_path) is None
    seen = joiner.mismatch_status()
    assert seen is not None and "cannot join" in seen["message"]
    assert "--consensus multipaxos" in seen["message"]
    # A member of its own engine is admitted (and its cluster id adopted).
    joiner.check_hello(codec.Hello(CID, 77, 1, "leader", "raft"), None)
    assert joiner.cluster.value == CID
    # The dialer's side: a WELCOME of the other engine adopts nothing either.
    dialer = _gate_of("multipaxos", tmp_path / "d", cluster=None)
    with pytest.raises(codec.FrameError) as err:
        dialer.check_welcome(2, CID, 2, "n2", "raft", None)
    assert err.value.reason == "wrong_consensus" and dialer.cluster.value == ""


def test_an_engine_mismatch_is_shown_while_recent(tmp_path: Path) -> None:
    from raftkv.runtime.admission import ENGINE_MISMATCH_SHOWN_SECONDS

    gate = _gate_of("raft", tmp_path)
    with pytest.raises(codec.FrameError):
        gate.check_hello(codec.Hello(CID, 2, 1, "n2", "multipaxos"), None)
    assert gate.mismatch_status() is not None and gate.engine_mismatch is not None
    seen = gate.engine_mismatch
    gate.engine_mismatch = seen._replace(at=seen.at - ENGINE_MISMATCH_SHOWN_SECONDS - 1)
    assert gate.mismatch_status() is None  # over: the peer left or was fixed


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


def test_a_migrating_gate_checks_tls_connections_in_full_and_plain_ones_not_at_all(
    tmp_path: Path,
) -> None:
    """--peer-tls-migration: a connection over TLS is held to the certificate rule; one
    in plain text skips it (INSECURE, as under --peer-insecure); a gate outside a
    migration refuses plain text on a TLS port."""
    view = View({1: ("n1", "127.0.0.11:7380"), 2: ("n2", "127.0.0.12:7380")})
    migrating = PeerGate(
        1, "n1", view, ClusterId(CID, tmp_path), engine="raft", tls=True, accept_plain=True
    )
    hello = codec.Hello(CID, 2, 1, "n2", "raft")
    migrating.check_hello(hello, cert(["n2"]))
    migrating.check_hello(hello, None, plain=True)
    with pytest.raises(codec.FrameError, match="does not name"):
        migrating.check_hello(hello, cert(["n3"]))  # over TLS: the rule holds
    with pytest.raises(codec.FrameError, match="does not name"):
        migrating.check_welcome(2, CID, 2, "n2", "raft", cert(["n3"]))
    migrating.check_welcome(2, CID, 2, "n2", "raft", None, plain=True)
    # Membership and the cluster id still apply to a plain connection.
    with pytest.raises(codec.FrameError, match="not a member"):
        migrating.check_hello(codec.Hello(CID, 7, 1, "n7", "raft"), None, plain=True)
    with pytest.raises(codec.FrameError, match="cluster"):
        migrating.check_hello(codec.Hello("1e" * 16, 2, 1, "n2", "raft"), None, plain=True)
    tls_only = PeerGate(1, "n1", view, ClusterId(CID, tmp_path), engine="raft", tls=True)
    with pytest.raises(codec.FrameError, match="plain text"):
        tls_only.check_hello(hello, cert(["n2"]), plain=True)
