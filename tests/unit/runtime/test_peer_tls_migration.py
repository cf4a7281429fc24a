"""The peer port during a migration of a plain-text cluster to TLS (docs/security.md
"Migrating a pre-TLS cluster"): which stage can talk to which, the first-byte
classifier, and what hostile bytes at it do (nothing but close the connection)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

from raftkv.raft.types import Message, MsgType
from raftkv.runtime import codec
from raftkv.runtime import transport as transport_mod
from raftkv.runtime.admission import ClusterId, PeerGate
from raftkv.runtime.metrics import NodeMetrics
from raftkv.runtime.server import PeerTLSFiles
from raftkv.runtime.transport import PeerTransport, is_tls_start
from raftkv.security.pki import make_ca
from tests.unit.runtime.test_peer_transport import NAMES, A, B, _free_port_on, _issue, _View

CID = "ab" * 16
IP = "127.0.0.45"


@dataclass(frozen=True)
class Stage:
    """P0..P3 of the design: what a member accepts and how it dials."""

    name: str
    tls: bool
    accept_plain: bool
    dial_tls: bool

    def accepts(self) -> set[str]:
        if not self.tls:
            return {"plain"}
        return {"tls", "plain"} if self.accept_plain else {"tls"}

    def dials(self) -> str:
        return "tls" if self.tls and self.dial_tls else "plain"


STAGES = [
    Stage("P0 --peer-insecure", tls=False, accept_plain=False, dial_tls=False),
    Stage("P1 accept-both", tls=True, accept_plain=True, dial_tls=False),
    Stage("P2 dial-tls", tls=True, accept_plain=True, dial_tls=True),
    Stage("P3 TLS only", tls=True, accept_plain=False, dial_tls=True),
]


class _Member:
    def __init__(self, my_id: int, tmp: Path, stage: Stage, urls: dict[int, str]) -> None:
        self.received: list[Message] = []
        self.metrics = NodeMetrics(NAMES[my_id])
        tls = PeerTLSFiles(_issue(_CA, tmp, NAMES[my_id])) if stage.tls else None
        self.cluster = ClusterId(CID, None)
        self.t = PeerTransport(
            my_id,
            NAMES[my_id],
            gate=PeerGate(
                my_id,
                NAMES[my_id],
                _View(urls),
                self.cluster,
                engine="raft",
                tls=stage.tls,
                accept_plain=stage.accept_plain,
            ),
            metrics=self.metrics,
            spool_dir=tmp / f"spool-{my_id}",
            on_messages=lambda frm, commit, msgs: self.received.extend(msgs),
            on_unreachable=lambda peer: None,
            on_snapshot=self._no_snapshot,
            on_snapshot_status=lambda peer, ok: None,
            snapshot_allowed=lambda m: False,
            snapshot_source=lambda: None,
            commit_hint=lambda: 0,
            resolver=_resolve,
            tls=tls,
            accept_plain=stage.accept_plain,
            dial_tls=stage.dial_tls,
        )

    @staticmethod
    async def _no_snapshot(m: Message, data: bytes) -> bool:
        return False

    def plain_admitted(self) -> float:
        return self.metrics.peer_plain_connections._value.get()


_CA = make_ca("migration test CA")


async def _resolve(host: str) -> str:
    return IP


async def _pair(
    tmp: Path, dialer: Stage, acceptor: Stage
) -> tuple[_Member, _Member, dict[int, str]]:
    urls = {A: f"a:{_free_port_on(IP)}", B: f"b:{_free_port_on(IP)}"}
    a = _Member(A, tmp / "a", dialer, urls)
    b = _Member(B, tmp / "b", acceptor, urls)
    await b.t.start(IP, int(urls[B].split(":")[1]))
    return a, b, urls


def test_the_classifier_tells_a_tls_record_from_a_hello() -> None:
    hello = codec.pack_hello(CID, A, B, "a", "raft")
    assert not is_tls_start(hello[:1])  # a length: at most 0x04 (frames are capped)
    assert hello[0] <= 0x04
    assert is_tls_start(b"\x16\x03\x01")
    assert not is_tls_start(b"")
    assert not is_tls_start(b"\x17")  # application data, not a handshake


@pytest.mark.parametrize("acceptor", STAGES, ids=[s.name for s in STAGES])
@pytest.mark.parametrize("dialer", STAGES, ids=[s.name for s in STAGES])
async def test_who_talks_to_whom(tmp_path: Path, dialer: Stage, acceptor: Stage) -> None:
    """A dial succeeds exactly when the acceptor takes what the dialer speaks: so a
    rolling stage change (each member one stage ahead of or behind the others) keeps
    every pair connected, and P3 takes nothing in plain text."""
    tmp_path.joinpath("a").mkdir()
    tmp_path.joinpath("b").mkdir()
    a, b, urls = await _pair(tmp_path, dialer, acceptor)
    try:
        should_connect = dialer.dials() in acceptor.accepts()
        if should_connect:
            reader, writer = await a.t.dial(B, urls[B])
            assert (writer.get_extra_info("ssl_object") is not None) == (dialer.dials() == "tls")
            writer.write(
                a.t.wire.pack_messages(0, [Message(MsgType.HEARTBEAT, to=B, frm=A, term=1)])
            )
            await _until(lambda: bool(b.received), "the message delivered")
            writer.close()
            expected_plain = 1.0 if acceptor.accept_plain and dialer.dials() == "plain" else 0.0
            assert b.plain_admitted() == expected_plain
        else:
            with pytest.raises(Exception):  # noqa: B017,PT011 - TLS error, reset, EOF or REFUSED
                await a.t.dial(B, urls[B])
            assert b.received == []
    finally:
        await a.t.close()
        await b.t.close()


async def _until(pred, what: str, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def _closed_by_server(reader: asyncio.StreamReader, timeout: float = 10.0) -> bytes:
    """Everything the server said until it closed the connection (fails if it does not)."""
    said = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), timeout):
            said += chunk
    except TimeoutError:  # (an OSError: caught first)
        raise AssertionError(f"the node kept the connection open, having said {said!r}") from None
    except (ConnectionError, OSError):
        pass
    return said


HOSTILE = {
    "a TLS record header then garbage": b"\x16\x03\x01\x00\x05" + bytes(range(200)),
    "a TLS-looking byte alone then EOF": b"\x16",
    "a huge frame length": b"\xff\xff\xff\xff" + b"x" * 64,
    "a length just over a HELLO": b"\x00\x00\x20\x00" + b"x" * 64,
    "a malformed HELLO": b"\x00\x00\x00\x03abc",
    "a HELLO claiming this node": codec.pack_hello(CID, B, B, "b", "raft"),
    "a HELLO from a stranger": codec.pack_hello(CID, 999, B, "evil", "raft"),
    "random bytes": random.Random(7).randbytes(300),
}


@pytest.mark.parametrize("payload", list(HOSTILE.values()), ids=list(HOSTILE))
async def test_hostile_bytes_at_the_classifier_close_and_change_nothing(
    tmp_path: Path, payload: bytes
) -> None:
    tmp_path.joinpath("a").mkdir()
    tmp_path.joinpath("b").mkdir()
    a, b, urls = await _pair(tmp_path, STAGES[2], STAGES[1])
    port = int(urls[B].split(":")[1])
    try:
        reader, writer = await asyncio.open_connection(IP, port)
        writer.write(payload)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        if payload == b"\x16":
            writer.write_eof()
        said = await _closed_by_server(reader)
        writer.close()
        assert codec.pack_welcome(CID, B, "b", "raft") not in said
        assert b.received == [] and b.t._return_paths == {}
        assert all(conn.peer_id == 0 for conn in b.t._inbound)
        assert b.cluster.value == CID and b.plain_admitted() == 0
        # The port still serves members, over TLS and in plain text.
        _, w = await a.t.dial(B, urls[B])
        w.close()
        a.t.dial_tls = False
        _, w = await a.t.dial(B, urls[B])
        w.close()
    finally:
        await a.t.close()
        await b.t.close()


async def test_a_silent_connection_is_cut(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transport_mod, "HANDSHAKE_TIMEOUT", 0.3)
    tmp_path.joinpath("a").mkdir()
    tmp_path.joinpath("b").mkdir()
    a, b, urls = await _pair(tmp_path, STAGES[2], STAGES[1])
    try:
        with socket.create_connection((IP, int(urls[B].split(":")[1]))) as sock:
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            said = await asyncio.wait_for(loop.sock_recv(sock, 100), 10)
            assert said == b""  # closed by the node, having said nothing
        assert b.t._classifying == set() or all(t.done() for t in b.t._classifying)
    finally:
        await a.t.close()
        await b.t.close()


def _open_fds() -> int:
    return len(list(Path("/proc/self/fd").iterdir()))


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="counts /proc/self/fd")
async def test_refused_connections_leave_no_descriptor_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed TLS handshake, a refused HELLO, a half TLS record left hanging (cut at
    the handshake timeout) or an early close, many times over: the socket the classifier
    handed on (or not) is closed every time."""
    monkeypatch.setattr(transport_mod, "HANDSHAKE_TIMEOUT", 0.3)
    tmp_path.joinpath("a").mkdir()
    tmp_path.joinpath("b").mkdir()
    a, b, urls = await _pair(tmp_path, STAGES[2], STAGES[1])
    port = int(urls[B].split(":")[1])
    stack = contextlib.ExitStack()
    try:
        _, w = await a.t.dial(B, urls[B])  # a first TLS handshake: contexts built
        w.close()
        await _until(lambda: not b.t._inbound, "the first connection gone")
        before = _open_fds()
        # A socket dropped unclosed is closed by the garbage collector, with a warning:
        # the descriptor count alone would not see it.
        caught = stack.enter_context(warnings.catch_warnings(record=True))
        warnings.simplefilter("always", ResourceWarning)
        for i in range(60):
            reader, writer = await asyncio.open_connection(IP, port)
            if i % 4 == 1:
                writer.write_eof()  # closed before a first byte
            elif i % 4 == 2:
                pass  # silent: cut at the deadline
            else:
                writer.write(list(HOSTILE.values())[i % len(HOSTILE)])
                if i % 3 == 0:
                    writer.write_eof()
            await _closed_by_server(reader, timeout=5)
            writer.close()
            await writer.wait_closed()
        await _until(
            lambda: not b.t._inbound and not b.t._classifying and _open_fds() <= before,
            f"descriptors back to {before} (now {_open_fds()})",
        )
        gc.collect()
        unclosed = [w for w in caught if issubclass(w.category, ResourceWarning)]
        assert not unclosed, [str(w.message) for w in unclosed]
    finally:
        stack.close()
        await a.t.close()
        await b.t.close()
