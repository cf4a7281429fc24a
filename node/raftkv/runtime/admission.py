"""Who may talk to this node on the peer port (docs/contracts.md "Peer plane").

Every peer connection starts with a handshake (HELLO from the dialer, WELCOME from
the acceptor). Before any frame of it reaches the Raft core, `PeerGate` checks:

- the protocol version and the cluster id (another cluster is refused; a node that
  has no cluster id yet adopts a member's and persists it);
- the consensus engine: a peer that runs the other one is refused (`wrong_consensus`)
  before a node without a cluster id adopts its id, so a joiner started with the wrong
  `--consensus` joins nothing and says so (`engine_mismatch`, shown in `/v1/status`);
- membership: the claimed id is a current member (voter or learner) under the name
  the replicated membership gives it, was never removed, and (for a HELLO) the
  connection is meant for this node;
- with peer TLS, the verified certificate names the claimed member: the member's
  name is one of its DNS subjectAltNames, or the host of the member's replicated
  peer URL is one of its DNS or IP subjectAltNames (exact match, no wildcards).
  During a migration to TLS (`accept_plain`, --peer-tls-migration) a connection that
  arrived in plain text skips this check: it is NOT authenticated, as under
  --peer-insecure; one that arrived over TLS is held to it in full.

Only a node that knows no membership at all (a joiner whose data directory is empty)
accepts any member id: that is how the leader reaches a new learner. Likewise a node
whose log is behind a membership change (it was down while a member was added) may
hear from a member it does not know yet, and when that member leads, only it can
bring the log up to date. So a node that has no leader, or whose leader is that
member, admits an id it does not know, authenticated as any other member (the same
cluster id, never removed, with peer TLS a certificate naming it), as Raft expects
servers to take messages from outside their configuration. A node that follows or
is a leader it knows learns new members from the log and admits no stranger.
Refusals raise `codec.FrameError` with a bounded reason (the metric label).
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from raftkv.runtime import codec
from raftkv.runtime.config import split_host_port
from raftkv.runtime.identity import save_cluster_id

log = logging.getLogger("raftkv.admission")

PeerCert = dict[str, Any] | None  # ssl's getpeercert() of a verified certificate


class MembershipView(Protocol):
    """What the gate needs to know about the cluster (the node implements it)."""

    def current_members(self) -> frozenset[int]:
        """Voters and learners of the latest configuration known to this node."""
        ...

    def known_name(self, member: int) -> str:
        """The replicated name of a member ("" if unknown)."""
        ...

    def member_peer_url(self, member: int) -> str:
        """The replicated peer URL of a member ("" if unknown)."""
        ...

    def is_removed(self, member: int) -> bool: ...

    def current_leader(self) -> int:
        """The leader this node follows (its own id when it leads), 0 if none."""
        ...


class ClusterId:
    """This node's cluster id: "" until known, then persisted in the data directory."""

    def __init__(self, value: str | None, data_dir: Path | None, *, fsync: bool = True) -> None:
        self.value = value or ""
        self._data_dir = data_dir
        self._fsync = fsync
        self.on_adopted: Callable[[str], None] = lambda cid: None

    def adopt(self, value: str) -> None:
        """Learn the id from a member (we had none): persisted before it is used."""
        assert not self.value and value
        if self._data_dir is not None:
            save_cluster_id(self._data_dir, value, fsync=self._fsync)
        self.value = value
        log.info("joined cluster %s", value)
        self.on_adopted(value)


def _ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text.strip().strip("[]")))
    except ValueError:
        return None


def certificate_names_member(cert: PeerCert, name: str, peer_url: str) -> bool:
    """The binding rule: `name` among the DNS SANs, or the host of `peer_url` among
    the DNS or IP SANs. The common name does not count (RFC 6125)."""
    if not cert:
        return False
    dns: set[str] = set()
    ips: set[str] = set()
    for kind, value in cert.get("subjectAltName", ()):
        if kind == "DNS":
            dns.add(str(value).lower().rstrip("."))
        elif kind == "IP Address":
            ip = _ip(str(value))
            if ip is not None:
                ips.add(ip)
    if name and name.lower() in dns:
        return True
    if peer_url:
        try:
            host, _ = split_host_port(peer_url)
        except ValueError:
            return False
        ip = _ip(host)
        return ip in ips if ip is not None else host.lower().rstrip(".") in dns
    return False


# How long `/v1/status` shows the last peer refused for its engine: far longer than a
# dial loop's backoff (1 s), so a mismatch that lasts stays shown, and one that ended
# (the peer removed, or restarted with the right engine) goes away.
ENGINE_MISMATCH_SHOWN_SECONDS = 60.0


class EngineMismatch(NamedTuple):
    """The last peer refused for running another consensus engine."""

    member: int
    name: str
    engine: str | None  # theirs; None when they refused our HELLO (they did not say)
    message: str
    at: float  # time.monotonic()


class PeerGate:
    def __init__(
        self,
        my_id: int,
        my_name: str,
        view: MembershipView,
        cluster: ClusterId,
        *,
        engine: str,
        tls: bool,
        accept_plain: bool = False,
    ) -> None:
        self.my_id = my_id
        self.my_name = my_name
        self.view = view
        self.cluster = cluster
        self.engine = engine  # this node's consensus engine: a peer must run the same
        self.tls = tls
        self.accept_plain = accept_plain  # INSECURE: a TLS migration stage
        self.engine_mismatch: EngineMismatch | None = None

    def check_hello(self, hello: codec.Hello, cert: PeerCert, *, plain: bool = False) -> None:
        """An inbound connection's HELLO: raises FrameError unless admitted."""
        if hello.to != self.my_id:
            raise codec.FrameError("not_member", f"HELLO meant for member {hello.to}")
        if hello.frm == self.my_id:
            raise codec.FrameError("not_member", "HELLO claims to be this node")
        if self._unknown_but_maybe_ahead(hello.frm):
            if hello.cluster_id != self.cluster.value:
                raise codec.FrameError(
                    "wrong_cluster" if hello.cluster_id else "not_member",
                    f"{hello.frm} is not a member of cluster {self.cluster.value}",
                )
            self._check_certificate(hello.frm, hello.name, cert, plain)
            self._check_engine(hello.frm, hello.name, hello.engine)
            return
        self._check_member(hello.frm, hello.name)
        self._check_certificate(hello.frm, hello.name, cert, plain)
        self._check_engine(hello.frm, hello.name, hello.engine)
        self._check_cluster(hello.cluster_id)

    def _unknown_but_maybe_ahead(self, member: int) -> bool:
        """A member our log may not name yet (see the module doc): not one we know,
        never removed, we know our cluster id (never adopted from it), and we have no
        leader or it is our leader."""
        view = self.view
        members = view.current_members()
        return (
            bool(members)
            and member not in members
            and not view.is_removed(member)
            and bool(self.cluster.value)
            and view.current_leader() in (0, member)
        )

    def check_welcome(
        self,
        expected: int,
        cluster_id: str,
        member: int,
        name: str,
        engine: str,
        cert: PeerCert,
        *,
        plain: bool = False,
    ) -> None:
        """The answer on a connection we dialed to member `expected` (`plain`: we dialed
        it without TLS)."""
        if member != expected:
            raise codec.FrameError("not_member", f"dialed member {expected}, {member} answered")
        self._check_member(member, name)
        self._check_certificate(member, name, cert, plain)
        self._check_engine(member, name, engine)
        self._check_cluster(cluster_id)

    def refused_for_engine(self, member: int) -> codec.FrameError:
        """Member `member` answered our HELLO with REFUSED `wrong_consensus`: it runs
        another engine (REFUSED does not say which). Noted as a mismatch; like any
        REFUSED it is unauthenticated, so it only ever reports, and the dial fails."""
        name = self.view.known_name(member)
        message = (
            f"member {member} ({name!r}) refused this node's HELLO: it runs another "
            f"consensus engine than this node's {self.engine}"
        )
        self._note_mismatch(member, name, None, message)
        return codec.FrameError("wrong_consensus", message)

    def mismatch_status(self) -> dict[str, Any] | None:
        """`/v1/status` `engine_mismatch`: the last peer refused for its engine, while
        recent (ENGINE_MISMATCH_SHOWN_SECONDS); else None."""
        seen = self.engine_mismatch
        if seen is None:
            return None
        ago = time.monotonic() - seen.at
        if ago > ENGINE_MISMATCH_SHOWN_SECONDS:
            return None
        return {
            "member": seen.member,
            "name": seen.name,
            "engine": seen.engine,
            "message": seen.message,
            "seconds_ago": round(ago, 1),
        }

    def _check_engine(self, member: int, name: str, engine: str) -> None:
        """A cluster runs one engine (docs/consensus.md): the other engine's frames mean
        nothing here. Checked before a node without a cluster id adopts the peer's."""
        if engine == self.engine:
            return
        message = f"member {member} ({name!r}) runs {engine}; this node runs {self.engine}"
        if not self.view.current_members():
            message += (
                f": this node cannot join that cluster; start it with --consensus {engine}"
                " and an empty data directory"
            )
        self._note_mismatch(member, name, engine, message)
        raise codec.FrameError("wrong_consensus", message)

    def _note_mismatch(self, member: int, name: str, engine: str | None, message: str) -> None:
        self.engine_mismatch = EngineMismatch(member, name, engine, message, time.monotonic())

    def _check_member(self, member: int, name: str) -> None:
        view = self.view
        if view.is_removed(member):
            raise codec.FrameError("removed", f"member {member} was removed")
        members = view.current_members()
        if not members:
            return  # a joiner that knows nobody yet: the leader is about to reach it
        if member not in members:
            raise codec.FrameError("not_member", f"{member} is not a member")
        known = view.known_name(member)
        if known != name:
            raise codec.FrameError("not_member", f"member {member} is {known!r}, not {name!r}")

    def _check_certificate(self, member: int, name: str, cert: PeerCert, plain: bool) -> None:
        if not self.tls:
            return
        if plain:
            if self.accept_plain:
                return  # INSECURE migration stage: a plain connection proves nothing
            raise codec.FrameError("certificate", "plain text on a TLS peer port")
        if not certificate_names_member(cert, name, self.view.member_peer_url(member)):
            raise codec.FrameError("certificate", f"the certificate does not name member {name!r}")

    def _check_cluster(self, theirs: str) -> None:
        ours = self.cluster.value
        if ours and theirs and ours != theirs:
            raise codec.FrameError("wrong_cluster", f"cluster {theirs}, not {ours}")
        if not ours and theirs:
            self.cluster.adopt(theirs)
