"""PeerTransport in one process: connections that heal (issue 10 item 5).

A member rescheduled onto a new address (a pod on a new IP, its DNS name moved)
must be reached again within 5 s: the name is resolved again on every dial, and a
connection to a peer that stopped answering is dropped even while TCP still
thinks it is fine. Sockets carry keepalive and TCP_USER_TIMEOUT."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from raftkv.raft.types import ConfState, Message, MsgType, Snapshot, SnapshotMeta
from raftkv.runtime import codec
from raftkv.runtime import transport as transport_mod
from raftkv.runtime.admission import ClusterId, PeerGate
from raftkv.runtime.metrics import NodeMetrics
from raftkv.runtime.paxoscodec import PaxosWire
from raftkv.runtime.server import PeerTLSFiles
from raftkv.runtime.transport import PeerTransport
from raftkv.security.pki import CertKey, issue_cert, make_ca
from raftkv.security.tls import TLSFiles

A, B = 101, 202
NAMES = {A: "a", B: "b"}


class _View:
    def __init__(self, urls: dict[int, str]) -> None:
        self.urls = urls

    def current_members(self) -> frozenset[int]:
        return frozenset(NAMES)

    def known_name(self, member: int) -> str:
        return NAMES.get(member, "")

    def member_peer_url(self, member: int) -> str:
        return self.urls.get(member, "")

    def is_removed(self, member: int) -> bool:
        return False

    def current_leader(self) -> int:
        return A


def _free_port_on(*hosts: str) -> int:
    while True:
        with socket.socket() as s:
            s.bind((hosts[0], 0))
            port = int(s.getsockname()[1])
        try:
            for host in hosts[1:]:
                with socket.socket() as s:
                    s.bind((host, port))
            return port
        except OSError:
            continue


class _Member:
    """A transport that answers every message from its peer with a HEARTBEAT_RESP."""

    def __init__(
        self,
        my_id: int,
        tmp: Path,
        urls: dict[int, str],
        addresses: dict[str, str],
        tls: PeerTLSFiles | None = None,
        engine: str = "raft",
        cluster_id: str = "ab" * 16,
    ) -> None:
        self.received: list[tuple[float, Message]] = []
        self.answering = True
        self.gone: list[int] = []  # peers reported gone (closed, then refused a redial)
        self.snapshot_statuses: list[tuple[int, bool]] = []  # (peer, delivered)

        async def resolver(host: str) -> str:
            return addresses[host]

        self.t = PeerTransport(
            my_id,
            NAMES[my_id],
            gate=PeerGate(
                my_id,
                NAMES[my_id],
                _View(urls),
                ClusterId(cluster_id, None),
                engine=engine,
                tls=tls is not None,
            ),
            metrics=NodeMetrics(NAMES[my_id]),
            spool_dir=tmp / f"spool-{my_id}-{id(self)}",
            on_messages=self._on_messages,
            on_unreachable=lambda peer: None,
            on_snapshot=self._no_snapshot,
            on_snapshot_status=lambda peer, ok: self.snapshot_statuses.append((peer, ok)),
            snapshot_allowed=lambda m: False,
            snapshot_source=lambda: None,
            commit_hint=lambda: 0,
            resolver=resolver,
            tls=tls,
            on_peer_gone=self.gone.append,
            wire=PaxosWire() if engine == "multipaxos" else codec.RaftWire(),
        )

    @staticmethod
    async def _no_snapshot(m: Message, data: bytes) -> bool:
        return False

    def _on_messages(self, frm: int, commit: int, msgs: list[Message]) -> None:
        self.received.append((time.monotonic(), msgs[-1]))
        if self.answering:
            self.t.send([Message(MsgType.HEARTBEAT_RESP, to=frm, frm=self.t.my_id, term=1)])


async def _wait(pred, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def test_a_member_back_on_a_new_address_is_reached_within_5s(tmp_path: Path) -> None:
    old_ip, new_ip, a_ip = "127.0.0.41", "127.0.0.42", "127.0.0.40"
    port = _free_port_on(old_ip, new_ip)
    a_port = _free_port_on(a_ip)
    addresses = {"b.peers.test": old_ip, "a.peers.test": a_ip}
    urls = {A: f"a.peers.test:{a_port}", B: f"b.peers.test:{port}"}
    a = _Member(A, tmp_path, urls, addresses)
    b_old = _Member(B, tmp_path, urls, addresses)
    b_new = _Member(B, tmp_path, urls, addresses)
    await a.t.start(a_ip, a_port)
    await b_old.t.start(old_ip, port)
    b_old.t.set_peer(A, urls[A])
    a.t.set_peer(B, urls[B])
    stop = asyncio.Event()

    async def heartbeats() -> None:  # what a leader does: talk every tick
        while not stop.is_set():
            a.t.send([Message(MsgType.HEARTBEAT, to=B, frm=A, term=1)])
            await asyncio.sleep(0.05)

    ticker = asyncio.create_task(heartbeats())
    try:
        await _wait(
            lambda: len(b_old.received) > 5 and len(a.received) > 5,
            10,
            "heartbeats and answers on the old address",
        )
        sock = a.t.peers[B].writer.get_extra_info("socket")  # type: ignore[union-attr]
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        if hasattr(socket, "TCP_USER_TIMEOUT"):
            assert (
                sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT)
                == transport_mod.USER_TIMEOUT_MS
            )
        # The member moves: the old one freezes (its sockets stay open, nothing is
        # answered: a rescheduled pod's old IP), the name now points at the new one.
        b_old.answering = False
        for conn in list(b_old.t._inbound):
            if conn.transport is not None:
                conn.transport.pause_reading()
        addresses["b.peers.test"] = new_ip
        await b_new.t.start(new_ip, port)
        b_new.t.set_peer(A, urls[A])
        moved = time.monotonic()
        await _wait(lambda: b_new.received, 10, "a message at the new address")
        elapsed = b_new.received[0][0] - moved
        assert elapsed < 5.0, f"reached the new address after {elapsed:.1f}s"
    finally:
        stop.set()
        await ticker
        for m in (a, b_old, b_new):
            await m.t.close()


async def _connected_pair(tmp: Path) -> tuple[_Member, _Member]:
    ip = "127.0.0.43"
    a_port, b_port = _free_port_on(ip), _free_port_on(ip)
    addresses = {"a.peers.test": ip, "b.peers.test": ip}
    urls = {A: f"a.peers.test:{a_port}", B: f"b.peers.test:{b_port}"}
    a, b = _Member(A, tmp, urls, addresses), _Member(B, tmp, urls, addresses)
    await a.t.start(ip, a_port)
    await b.t.start(ip, b_port)
    a.t.set_peer(B, urls[B])
    b.t.set_peer(A, urls[A])

    def answered() -> bool:  # sent before the dial completes, a message is dropped: resend
        a.t.send([Message(MsgType.HEARTBEAT, to=B, frm=A, term=1)])
        return a.t.peers[B].connected and bool(a.received)

    await _wait(answered, 10, "a connected pair")
    return a, b


async def test_a_peer_whose_process_died_is_reported_gone_at_once(tmp_path: Path) -> None:
    """kill -9 of a member: its connections close and its port refuses. The other
    side learns it within a redial (not a timeout), so a follower of a dead leader
    can campaign early (issue 15 item 2)."""
    a, b = await _connected_pair(tmp_path)
    try:
        assert a.gone == []
        died = time.monotonic()
        await b.t.close()  # listener and every connection gone, as with a dead process
        await _wait(lambda: a.gone, 5, "the dead peer reported gone")
        assert set(a.gone) == {B}  # its connection to us and ours to it may both say so
        assert time.monotonic() - died < 1.0
    finally:
        await a.t.close()


async def test_a_reset_connection_to_a_live_peer_is_not_reported_gone(tmp_path: Path) -> None:
    """The peer closes one connection but still listens (a live process): the
    redial succeeds and nothing is reported; the link heals."""
    a, b = await _connected_pair(tmp_path)
    try:
        first = a.t.peers[B].connected_at
        for conn in list(b.t._inbound):
            if conn.transport is not None:
                conn.transport.abort()
        await _wait(
            lambda: a.t.peers[B].connected and a.t.peers[B].connected_at > first, 5, "the redial"
        )
        assert a.gone == []
    finally:
        await a.t.close()
        await b.t.close()


def _rejected(m: _Member, reason: str) -> float:
    value = m.t.metrics.registry.get_sample_value(
        "raftkv_peer_frames_rejected_total", {"reason": reason}
    )
    assert value is not None
    return value


async def test_a_peer_of_the_other_engine_is_refused_by_name_in_both_directions(
    tmp_path: Path,
) -> None:
    """A Raft node and a Multi-Paxos node: the acceptor refuses the other engine's HELLO
    (REFUSED `wrong_consensus`), the dialer the other engine's WELCOME; each counts it
    and shows whom it refused, and a node without a cluster id adopts none."""
    b_ip = "127.0.0.46"
    b_port = _free_port_on(b_ip)
    addresses = {"b.peers.test": b_ip}
    urls = {A: "a.peers.test:1", B: f"b.peers.test:{b_port}"}
    a = _Member(A, tmp_path, urls, addresses, cluster_id="")  # raft, no cluster id yet
    b = _Member(B, tmp_path, urls, addresses, engine="multipaxos")
    await b.t.start(b_ip, b_port)
    fake_port = _free_port_on(b_ip)  # b's port is taken now

    # A Multi-Paxos acceptor's answer to any HELLO, as a member that does not check.
    welcome = codec.pack_welcome("ab" * 16, B, NAMES[B], "multipaxos")

    async def welcomes_anyone(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await transport_mod.read_frame(reader)
        writer.write(welcome)
        await reader.read()  # until the dialer hangs up
        writer.close()

    fake = await asyncio.start_server(welcomes_anyone, b_ip, fake_port)
    try:
        # The acceptor (b, Multi-Paxos) refuses a's Raft HELLO, by name.
        with pytest.raises(codec.FrameError) as err:
            await a.t.dial(B, urls[B])
        assert err.value.reason == "wrong_consensus", err.value
        assert "this node's raft" in str(err.value)
        assert _rejected(b, "wrong_consensus") == 1
        seen_by_b = b.t.gate.mismatch_status()
        assert seen_by_b is not None and (seen_by_b["member"], seen_by_b["engine"]) == (A, "raft")
        seen_by_a = a.t.gate.mismatch_status()
        assert seen_by_a is not None and seen_by_a["member"] == B
        # The dialer (a, Raft) refuses a Multi-Paxos WELCOME, and adopts no cluster id.
        with pytest.raises(codec.FrameError) as err:
            await a.t.dial(B, f"b.peers.test:{fake_port}")
        assert err.value.reason == "wrong_consensus"
        assert "runs multipaxos; this node runs raft" in str(err.value)
        assert a.t.gate.cluster.value == ""
        # a's dial loop to b: refused on each redial, counted on both sides, never up.
        a.t.set_peer(B, urls[B])
        await _wait(
            lambda: _rejected(a, "wrong_consensus") >= 1 and _rejected(b, "wrong_consensus") >= 3,
            10,
            "the dial loop's refusals counted",
        )
        assert not a.t.peers[B].connected and b.received == []
    finally:
        fake.close()
        await a.t.close()
        await b.t.close()


def test_tune_socket_sets_keepalive_and_user_timeout() -> None:
    with socket.socket() as s:
        transport_mod.tune_socket(s)
        assert s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        if hasattr(socket, "TCP_KEEPIDLE"):
            assert (
                s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE)
                == transport_mod.KEEPALIVE_IDLE
            )
        if not hasattr(socket, "TCP_USER_TIMEOUT"):
            pytest.skip("no TCP_USER_TIMEOUT on this system")
        assert (
            s.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT)
            == transport_mod.USER_TIMEOUT_MS
        )


def _issue(ca: CertKey, tmp: Path, name: str) -> TLSFiles:
    cert, key, ca_file = tmp / f"{name}.pem", tmp / f"{name}-key.pem", tmp / f"{name}-ca.pem"
    issue_cert(ca, name, dns_names=[name]).write(cert, key)
    (tmp / f"{name}-ca.pem.new").write_bytes(ca.cert_pem)
    (tmp / f"{name}-ca.pem.new").replace(ca_file)
    return TLSFiles(cert, key, ca_file)


def _serial(peercert: dict[str, object]) -> int:
    return int(str(peercert["serialNumber"]), 16)


async def test_rotated_certificates_are_used_without_a_restart(tmp_path: Path) -> None:
    """Kubernetes rotates a Secret under a running pod: the next connections use the
    new certificate and CA (here a new CA altogether) without a restart."""
    a_ip, b_ip = "127.0.0.43", "127.0.0.44"
    a_port, b_port = _free_port_on(a_ip), _free_port_on(b_ip)
    addresses = {"a": a_ip, "b": b_ip}
    urls = {A: f"a:{a_port}", B: f"b:{b_port}"}
    ca1 = make_ca("first CA")
    files = {n: _issue(ca1, tmp_path, n) for n in ("a", "b")}
    a = _Member(A, tmp_path, urls, addresses, PeerTLSFiles(files["a"], check_interval=0))
    b = _Member(B, tmp_path, urls, addresses, PeerTLSFiles(files["b"], check_interval=0))
    await a.t.start(a_ip, a_port)
    await b.t.start(b_ip, b_port)
    a.t.set_peer(B, urls[B])
    b.t.set_peer(A, urls[A])
    try:
        await _wait(lambda: a.t.peers[B].connected, 10, "a TLS connection a -> b")
        first = a.t.peers[B].writer.get_extra_info("peercert")  # type: ignore[union-attr]
        assert first and ("DNS", "b") in first["subjectAltName"]
        ca2 = make_ca("rotated CA")
        for n in ("a", "b"):
            _issue(ca2, tmp_path, n)
        new_serial = _serial(
            {
                "serialNumber": format(
                    CertKey((tmp_path / "b.pem").read_bytes(), b"").cert.serial_number, "X"
                )
            }
        )
        a.t.peers[B]._lost("test: drop the connection made with the old files")

        def on_new_cert() -> bool:
            peer = a.t.peers[B]
            if not peer.connected or peer.writer is None:
                return False
            cert = peer.writer.get_extra_info("peercert")
            return bool(cert) and _serial(cert) == new_serial

        await _wait(on_new_cert, 10, "a connection with the rotated certificates")
    finally:
        for m in (a, b):
            await m.t.close()


async def test_inbound_connections_are_bounded_in_number(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whoever reaches the peer port cannot use up the member's descriptors: at the cap a
    new connection pushes out the oldest one that never said HELLO, and a member keeps at
    most MAX_INBOUND_PER_MEMBER admitted connections (admitting another closes its
    oldest). Both count as `too_many_connections`; the member keeps serving."""
    monkeypatch.setattr(transport_mod, "MAX_INBOUND", 4)
    monkeypatch.setattr(transport_mod, "MAX_INBOUND_PER_MEMBER", 2)
    a_ip = "127.0.0.47"
    a_port = _free_port_on(a_ip)
    a = _Member(A, tmp_path, {A: f"{a_ip}:{a_port}"}, {})
    await a.t.start(a_ip, a_port)
    opened: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        pair = await asyncio.open_connection(a_ip, a_port)
        opened.append(pair)
        await _wait(lambda: len(a.t._inbound) >= min(len(opened), 4), 5, "the acceptor")
        return pair

    async def closed_by_a(reader: asyncio.StreamReader) -> bool:
        try:
            return await asyncio.wait_for(reader.read(1 << 16), 5) == b""
        except ConnectionError:
            return True

    async def hello(pair: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        reader, writer = pair
        writer.write(codec.pack_hello("ab" * 16, B, A, NAMES[B], "raft"))
        welcome = await asyncio.wait_for(transport_mod.read_frame(reader), 5)
        assert codec.decode_welcome(welcome)[1] == A

    try:
        silent = [await connect() for _ in range(4)]  # the cap, none says anything
        assert _rejected(a, "too_many_connections") == 0
        newest = await connect()  # one more: the oldest silent one goes
        assert await closed_by_a(silent[0][0])
        assert _rejected(a, "too_many_connections") == 1
        await hello(newest)  # the newcomer is served
        # Member B's admitted connections: a third closes the one of B's that came first.
        await hello(silent[1])
        await hello(silent[2])
        assert await closed_by_a(silent[1][0])
        assert _rejected(a, "too_many_connections") == 2
        assert len([c for c in a.t._inbound if c.peer_id == B]) == 2
        # Every slot held by an admitted member: a newcomer is closed, nothing else is.
        silent[3][1].close()
        await _wait(lambda: len(a.t._inbound) == 2, 5, "the silent one gone")
        monkeypatch.setattr(transport_mod, "MAX_INBOUND", 2)
        refused = await asyncio.open_connection(a_ip, a_port)
        opened.append(refused)
        assert await closed_by_a(refused[0])
        assert _rejected(a, "too_many_connections") == 3
        assert {c.peer_id for c in a.t._inbound} == {B} and len(a.t._inbound) == 2
        assert not silent[2][0].at_eof() and not newest[0].at_eof()
    finally:
        for _, writer in opened:
            writer.close()
        await a.t.close()


async def test_sockets_before_their_tls_handshake_are_bounded_and_members_still_connect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With peer TLS, sockets that have not finished their TLS handshake are bounded in
    number too: at the cap the oldest is cut to make room, so a flood of silent sockets
    neither uses up the member's descriptors nor keeps a member with a certificate out.
    Plain bytes on a TLS-only port are closed."""
    monkeypatch.setattr(transport_mod, "MAX_INBOUND", 3)
    a_ip, b_ip = "127.0.0.48", "127.0.0.49"
    a_port, b_port = _free_port_on(a_ip), _free_port_on(b_ip)
    addresses = {"a": a_ip, "b": b_ip}
    urls = {A: f"a:{a_port}", B: f"b:{b_port}"}
    ca = make_ca("flood CA")
    files = {n: _issue(ca, tmp_path, n) for n in ("a", "b")}
    a = _Member(A, tmp_path, urls, addresses, PeerTLSFiles(files["a"], check_interval=0))
    b = _Member(B, tmp_path, urls, addresses, PeerTLSFiles(files["b"], check_interval=0))
    await a.t.start(a_ip, a_port)
    flood: list[asyncio.StreamWriter] = []

    async def cut(reader: asyncio.StreamReader) -> bool:
        try:
            return await asyncio.wait_for(reader.read(1 << 16), 5) == b""
        except ConnectionError:
            return True

    try:
        silent = []
        for _ in range(3):
            reader, writer = await asyncio.open_connection(a_ip, a_port)
            flood.append(writer)
            silent.append(reader)
        await _wait(lambda: len(a.t._classifying) == 3, 5, "three sockets waiting")
        reader, writer = await asyncio.open_connection(a_ip, a_port)  # one more
        flood.append(writer)
        assert await cut(silent[0])  # the oldest made room
        assert _rejected(a, "too_many_connections") == 1
        assert len(a.t._classifying) == 3
        # Plain bytes on the TLS-only port: closed.
        writer.write(codec.pack_hello("ab" * 16, B, A, NAMES[B], "raft"))
        assert await cut(reader)
        # A member with a certificate still gets in while the flood goes on.
        await b.t.start(b_ip, b_port)
        b.t.set_peer(A, urls[A])
        await _wait(lambda: A in b.t.peers and b.t.peers[A].connected, 10, "b's TLS link")
    finally:
        for writer in flood:
            writer.close()
        await a.t.close()
        await b.t.close()


async def test_a_listen_name_is_served_on_every_address_it_resolves_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With peer TLS the port runs its own accept loops: a --listen-host name that
    resolves to an IPv4 and an IPv6 address is served on both, as create_server would."""
    v4 = "127.0.0.50"
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    for _ in range(20):  # a port free on both addresses
        port = _free_port_on(v4)
        with socket.socket(socket.AF_INET6) as probe:
            try:
                probe.bind(("::1", port))
                break
            except OSError:
                continue
    else:
        pytest.skip("no port free on both 127.0.0.50 and ::1 (IPv6 loopback disabled?)")
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "members.test":
            return real_getaddrinfo(host, *args, **kwargs)
        stream, tcp = socket.SOCK_STREAM, socket.IPPROTO_TCP
        return [
            (socket.AF_INET, stream, tcp, "", (v4, port)),
            (socket.AF_INET6, stream, tcp, "", ("::1", port, 0, 0)),
            (socket.AF_INET, stream, tcp, "", (v4, port)),  # a duplicate: bound once
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    files = _issue(make_ca("names CA"), tmp_path, "a")
    urls = {A: f"a:{port}", B: f"b:{port}"}
    a = _Member(A, tmp_path, urls, {"a": v4, "b": v4}, PeerTLSFiles(files, check_interval=0))
    await a.t.start("members.test", port)
    opened = []
    try:
        assert sorted(s.family for s in a.t._listeners) == [socket.AF_INET, socket.AF_INET6]
        for host in (v4, "::1"):
            opened.append(await asyncio.open_connection(host, port))
        await _wait(lambda: len(a.t._classifying) == 2, 5, "a socket from each address")
    finally:
        for _, writer in opened:
            writer.close()
        await a.t.close()
    assert all(s.fileno() == -1 for s in a.t._listeners)


async def test_a_snapshot_for_a_member_without_a_link_is_reported_not_delivered(
    tmp_path: Path,
) -> None:
    """The core waits for a snapshot's report before it sends that member anything
    again; a snapshot that cannot even be queued must be reported as not delivered, or
    the member would be left without appends until the next election."""
    a = _Member(A, tmp_path, {A: "a:1", B: "b:1"}, {})
    meta = SnapshotMeta(index=5, term=1, conf_state=ConfState(voters=frozenset({A, B})))
    a.t.send([Message(MsgType.SNAP, to=B, frm=A, term=1, snapshot=Snapshot(meta))])
    assert a.snapshot_statuses == [(B, False)]
    await a.t.close()


async def test_a_removed_member_is_not_dialed_again_even_if_the_cancel_is_lost(
    tmp_path: Path,
) -> None:
    """Python 3.11's `wait_for` can swallow a cancel when the dial it wraps completes in
    the same turn. A dial loop that relied on the cancel alone went on dialing a removed
    member forever, and `close()` never returned."""
    a = _Member(A, tmp_path, {A: "a:1", B: "b:1"}, {})
    dials = 0

    async def dial_that_loses_the_cancel(peer_id: int, url: str) -> Any:
        nonlocal dials
        dials += 1
        if dials > 1:
            await asyncio.sleep(3600)  # (the old loop got here) cancels arrive as usual
        # The connection "completed" in the same turn as the cancel: no CancelledError.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)
        raise ConnectionResetError("closed by the peer")

    a.t.dial = dial_that_loses_the_cancel  # type: ignore[method-assign]
    a.t.set_peer(B, "b:1")
    peer = a.t.peers.pop(B)
    await _wait(lambda: dials == 1, 5.0, "the first dial")
    closing = asyncio.ensure_future(peer.close())
    await asyncio.wait({closing}, timeout=transport_mod.BACKOFF_MAX + 2.0)
    assert closing.done(), "close() did not return: the dial loop lives on"
    assert peer.task.done() and dials == 1  # ended after its first dial: B is not dialed again
    await a.t.close()
