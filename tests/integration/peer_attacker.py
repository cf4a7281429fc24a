"""An outsider on the peer port (issue 10): how it connects and what it sends.

Credentials an attacker may hold:
- "plain": none (a TCP connection; on a TLS cluster its bytes are not TLS);
- "no_cert": TLS that trusts the cluster's CA but presents no certificate;
- "other_ca": TLS with a certificate of another cluster's CA;
- "stolen": a valid certificate of the cluster's CA, for a member other than the
  one it claims to be (a compromised member, or a cert issued for something else).

Every attack frame is what the issue found to work before the fix."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raftkv.fsm import Put, StateMachine, encode
from raftkv.raft.types import (
    ConfState,
    Entry,
    EntryType,
    Message,
    MsgType,
    Snapshot,
    SnapshotMeta,
)
from raftkv.runtime import codec
from raftkv.security.pki import CertKey, issue_cert, make_ca
from raftkv.security.tls import TLSFiles, build_client_context

CREDENTIALS = ("plain", "no_cert", "other_ca", "stolen")


@dataclass
class Target:
    host: str
    port: int
    id: int  # the member attacked
    name: str


@dataclass
class Claim:
    """Who the attacker says it is, and what it knows of the cluster."""

    id: int
    name: str
    cluster_id: str
    term: int
    last_index: int
    last_term: int
    engine: str  # the cluster's consensus engine (`/v1/status` `consensus`), as a member says


def client_context(
    credentials: str, pki_dir: Path, ca: CertKey | None, stolen_name: str = ""
) -> ssl.SSLContext | None:
    if credentials == "plain" or ca is None:
        return None
    ca_file = pki_dir / "ca.pem"
    if credentials == "no_cert":
        return build_client_context(TLSFiles(ca_file=ca_file), check_hostname=False)
    if credentials == "other_ca":
        other = make_ca("another cluster's CA")
        cert = issue_cert(other, stolen_name, dns_names=[stolen_name])
        files = _write(pki_dir / "attacker-other", cert, other)
        ctx = build_client_context(files, check_hostname=False)
        ctx.verify_mode = ssl.CERT_NONE  # the attacker trusts anyone
        return ctx
    if credentials == "stolen":
        files = TLSFiles(
            pki_dir / f"{stolen_name}.pem", pki_dir / f"{stolen_name}-key.pem", ca_file
        )
        return build_client_context(files, check_hostname=False)
    raise ValueError(credentials)


def _write(prefix: Path, cert: CertKey, ca: CertKey) -> TLSFiles:
    prefix.mkdir(parents=True, exist_ok=True)
    cert.write(prefix / "cert.pem", prefix / "key.pem")
    (prefix / "ca.pem").write_bytes(ca.cert_pem)
    return TLSFiles(prefix / "cert.pem", prefix / "key.pem", prefix / "ca.pem")


async def send_and_watch(
    target: Target, ctx: ssl.SSLContext | None, frames: list[bytes], timeout: float = 8.0
) -> str:
    """Send the HELLO `frames[0]`, read the answer, send the rest if admitted, then
    read until the node closes the connection. Returns how it ended: "tls" (the TLS
    handshake or the first read failed), "refused" (a REFUSED answer), "closed"
    (admitted, then closed on the attack frames). Raises AssertionError if the node
    keeps the connection open."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                target.host, target.port, ssl=ctx, server_hostname=target.host if ctx else None
            ),
            timeout,
        )
    except (ssl.SSLError, ConnectionError, OSError):
        return "tls"
    try:
        try:
            writer.write(frames[0])
            await writer.drain()
            header = await asyncio.wait_for(reader.readexactly(4), timeout)
            (length,) = codec.HEADER.unpack(header)
            answer = codec.unpack_payload(await reader.readexactly(length))
        except ssl.SSLError:
            return "tls"
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            return "tls" if ctx is not None else "closed"
        except TimeoutError:
            raise AssertionError(f"{target.name} did not answer a HELLO") from None
        if answer[0] == codec.REFUSED:
            await _until_closed(reader, target, timeout)
            return "refused"
        with contextlib.suppress(ConnectionError, ssl.SSLError, OSError):
            for frame in frames[1:]:
                writer.write(frame)
            await writer.drain()
        await _until_closed(reader, target, timeout)
        return "closed"
    finally:
        writer.close()


async def _until_closed(reader: asyncio.StreamReader, target: Target, timeout: float) -> None:
    try:
        while await asyncio.wait_for(reader.read(65536), timeout):
            pass
    except TimeoutError:
        raise AssertionError(f"{target.name} kept an attacker's connection open") from None
    except (ConnectionError, OSError, ssl.SSLError):
        pass


def hello(claim: Claim, target: Target) -> bytes:
    return codec.pack_hello(claim.cluster_id, claim.id, target.id, claim.name, claim.engine)


def _msgs(messages: list[Any]) -> bytes:
    return codec.pack_frame([codec.MSGS, 0, messages])


def forged_append(claim: Claim, target: Target) -> list[bytes]:
    """One append 'from the leader' at its term, right after the last entry."""
    entry = Entry(
        claim.term,
        claim.last_index + 1,
        EntryType.NORMAL,
        encode(Put(b"attack/forged-append", b"evil")),
    )
    m = Message(
        MsgType.APP,
        target.id,
        claim.id,
        claim.term,
        claim.last_term,
        claim.last_index,
        [entry],
        commit=claim.last_index + 1,
    )
    return [_msgs([codec.encode_message(m)])]


def forged_snapshot(claim: Claim, target: Target) -> list[bytes]:
    """A whole fake keyspace, streamed as the leader would."""
    fake = StateMachine()
    fake.apply(claim.last_index + 100, claim.term, encode(Put(b"attack/snapshot", b"evil")))
    data = fake.snapshot_bytes()
    meta = SnapshotMeta(
        claim.last_index + 100, claim.term, ConfState(frozenset({claim.id}), frozenset())
    )
    m = Message(MsgType.SNAP, target.id, claim.id, claim.term, snapshot=Snapshot(meta))
    return [
        codec.pack_frame([codec.SNAP_BEGIN, codec.encode_message(m), len(data)]),
        codec.pack_frame([codec.SNAP_CHUNK, data]),
        codec.pack_frame([codec.SNAP_END, hashlib.sha256(data).hexdigest()]),
    ]


def string_term(claim: Claim, target: Target) -> list[bytes]:
    """The 31-byte frame whose term is a string (it killed the Raft loop)."""
    raw = [int(MsgType.HEARTBEAT), target.id, claim.id, "7", 0, 0, 0, False, 0, b"", [], None]
    return [_msgs([raw])]


def huge_term(claim: Claim, target: Target) -> list[bytes]:
    """term = 2**64-1: persisted, then OverflowError at the next campaign."""
    raw = [int(MsgType.HEARTBEAT), target.id, claim.id, 2**64 - 1, 0, 0, 0, False, 0, b"", [], None]
    return [_msgs([raw])]


def term0_transfer(claim: Claim, target: Target) -> list[bytes]:
    raw = [
        int(MsgType.TRANSFER_LEADER),
        target.id,
        claim.id,
        0,
        0,
        claim.id,
        0,
        False,
        0,
        b"",
        [],
        None,
    ]
    return [_msgs([raw])]


def forged_timeout_now(claim: Claim, target: Target) -> list[bytes]:
    m = Message(MsgType.TIMEOUT_NOW, target.id, claim.id, claim.term)
    return [_msgs([codec.encode_message(m)])]


ATTACKS = {
    "forged_append": forged_append,
    "forged_snapshot": forged_snapshot,
    "string_term": string_term,
    "huge_term": huge_term,
    "term0_transfer": term0_transfer,
    "forged_timeout_now": forged_timeout_now,
}


def url_override_hello(claim: Claim, target: Target, evil_url: str) -> bytes:
    """The old HELLO that rewrote a member's URLs: [HELLO, id, name, peer, client]."""
    return codec.pack_frame([codec.HELLO, claim.id, claim.name, evil_url, evil_url])


async def plain_hello(host: str, port: int, frame: bytes) -> bytes:
    """Send one plain-text frame (a HELLO) to a peer port; what came back before the
    connection closed or within 3 s."""
    reader, writer = await asyncio.open_connection(host, port)
    said = b""
    try:
        writer.write(frame)
        with contextlib.suppress(ConnectionError, OSError, TimeoutError):
            while chunk := await asyncio.wait_for(reader.read(65536), 3):
                said += chunk
    finally:
        writer.close()
    return said
