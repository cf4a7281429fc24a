"""`raftkv serve`: wire storage, state machine, node loop, peer transport and the
HTTP API together, run until SIGTERM/SIGINT, shut down gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiohttp import web

from raftkv.consensus import StateRole
from raftkv.fsm import StateMachine
from raftkv.runtime import codec
from raftkv.runtime.admission import ClusterId, PeerGate
from raftkv.runtime.config import NodeConfig
from raftkv.runtime.fasthttp import ClientLimits, FastHttp
from raftkv.runtime.http import ClientApi
from raftkv.runtime.http.auth import AuthFileError
from raftkv.runtime.identity import (
    IDENTITY_FILE,
    IdentityError,
    creates_cluster_id,
    load_cluster_id,
    new_cluster_id,
    resolve_engine,
    resolve_identity,
    save_cluster_id,
)
from raftkv.runtime.metrics import NodeMetrics
from raftkv.runtime.node import RaftNode
from raftkv.runtime.pauses import GcPauses, LoopLag, tune_collector
from raftkv.runtime.paxoscodec import PaxosWire
from raftkv.runtime.podlabel import PodLabeler, pod_labeler
from raftkv.runtime.transport import PeerTransport
from raftkv.security.tls import LoadedMaterial, ReloadingTLS, TLSFiles, build_client_context
from raftkv.storage.ballots import BallotLog
from raftkv.storage.checkpoints import CheckpointStore
from raftkv.storage.errors import StorageError
from raftkv.storage.protocols import RaftStore, SnapshotStore
from raftkv.storage.snapshots import FileSnapshotStore
from raftkv.storage.wal import WriteAheadLog

log = logging.getLogger("raftkv.server")

# How often a leader handing over on shutdown checks that its target is still there.
TRANSFER_CHECK_SECONDS = 0.05
POD_LABEL_FLUSH_SECONDS = 1.0  # at shutdown, the last role label write may take this long
POD_LABEL_START_SECONDS = 3.0  # at start, the first one (the client port opens after it)
EXIT_STORAGE = 2  # the data directory cannot be trusted or used: refuse to start


class Server:
    """One node process: storage + fsm + RaftNode + PeerTransport + ClientApi."""

    def __init__(
        self,
        cfg: NodeConfig,
        *,
        raft_store: RaftStore | None = None,
        snapshot_store: SnapshotStore | None = None,
        checkpoint_store: CheckpointStore | None = None,
        fast_path: bool = True,
    ) -> None:
        """The durable stores under `cfg.data_dir` unless given (tests pass the
        in-memory twins to run several nodes in one process). `fast_path=False`
        serves every request through aiohttp (tests compare the two paths)."""
        self.cfg = cfg
        self.fast_path = fast_path
        self.metrics = NodeMetrics(cfg.name)
        data = Path(cfg.data_dir)
        data.mkdir(parents=True, exist_ok=True)
        fsync = not cfg.unsafe_no_fsync
        # Decided (and persisted) before any store opens or any peer hears from us.
        resolve_engine(data, cfg.consensus, fsync=fsync)
        identity = resolve_identity(data, cfg.name, founder=cfg.is_founder, fsync=fsync)
        cfg.node_id = identity.id
        if identity.source == "fresh":
            log.info("%s joins with a fresh member id %d", cfg.name, identity.id)
        cfg.validate_peer_tls()
        cluster_id = load_cluster_id(data)
        if cluster_id is None and creates_cluster_id(
            cfg.name,
            [m.name for m in cfg.initial_cluster],
            new_cluster=cfg.initial_cluster_state == "new",
        ):
            cluster_id = new_cluster_id()
            save_cluster_id(data, cluster_id, fsync=fsync)
            log.info("created cluster id %s", cluster_id)
        self.cluster = ClusterId(cluster_id, data, fsync=fsync)
        self.peer_tls = self._peer_tls(cfg)
        # Files that prove this data directory held a node with a log: with no WAL
        # segment beside them the start is refused (storage.recovery). Only about
        # the WAL in this directory, not about a store the caller passes in.
        self.prior_state: list[str] = []
        if raft_store is None:
            self.prior_state = _prior_state(data, identity.source)
            raft_store = WriteAheadLog(
                data / "wal", fsync=fsync, crash_test_ledger=cfg.unsafe_crash_test_ledger
            )
        if cfg.consensus == "multipaxos" and not isinstance(raft_store, BallotLog):
            raft_store = BallotLog(raft_store)  # ballots and slot overwrites on the WAL
        self.node = RaftNode(
            cfg,
            raft_store=raft_store,
            snapshot_store=snapshot_store or FileSnapshotStore(data / "snapshots", fsync=fsync),
            checkpoint_store=checkpoint_store
            or CheckpointStore(data / "checkpoints", retain=cfg.checkpoint_retain),
            fsm=StateMachine(),
            metrics=self.metrics,
        )
        self.node.cluster = self.cluster
        # Leader routing on Kubernetes: this pod's role label (--pod-role-label).
        self.pod_labeler: PodLabeler | None = pod_labeler(
            cfg, lambda: (self.node.role_name(), self.node.core.term), self.metrics
        )
        self.transport: PeerTransport | None = None
        self.runner: web.AppRunner | None = None
        self.api: ClientApi | None = None
        self.fast: FastHttp | None = None
        self.client_server: asyncio.AbstractServer | None = None
        self.gc_pauses: GcPauses | None = None
        self.loop_lag = LoopLag(self.metrics.loop_lag)
        self.client_tls: ReloadingTLS | None = None  # the client port's certificate
        self.forward_tls: ReloadingTLS | None = None  # follower -> leader forwarding
        self.node.tls_material = self.tls_material
        self.node.peer_modes = self.peer_modes

    def tls_material(self) -> dict[str, Any]:
        """Per plane, the SHA-256 of the certificate and CA files its contexts use now
        (None: that plane has no TLS). An operator rotating the CA waits on these."""
        client = None
        if self.client_tls is not None:
            served = self.client_tls.loaded()
            # The forwarding context trusts the same CA file and has no certificate.
            forward = self.forward_tls.loaded() if self.forward_tls is not None else served
            client = agreed(served, replace(forward, cert_sha256=served.cert_sha256)).to_json()
        peer = self.peer_tls.loaded().to_json() if self.peer_tls is not None else None
        return {"peer": peer, "client": client}

    async def start(self) -> None:
        cfg, node = self.cfg, self.node
        node.open(self.prior_state)
        if self.pod_labeler is not None:
            node.on_role_changed = self.pod_labeler.changed
            self.pod_labeler.start()
            # Before the client port opens, so before the pod can turn Ready: a restarted
            # leader's pod must not be routed to on its old `leader` label (bounded: an
            # unreachable API server delays the start, it does not stop it).
            await self.pod_labeler.flush(POD_LABEL_START_SECONDS)
        loop = asyncio.get_running_loop()
        gate = PeerGate(
            node.id,
            cfg.name,
            node,
            self.cluster,
            engine=cfg.consensus,
            tls=self.peer_tls is not None,
            accept_plain=cfg.peer_accepts_plain,
        )
        transport = self.transport = PeerTransport(
            node.id,
            cfg.name,
            gate=gate,
            resolve=cfg.resolve,
            tls=self.peer_tls,
            accept_plain=cfg.peer_accepts_plain,
            dial_tls=cfg.peer_dials_tls,
            metrics=self.metrics,
            spool_dir=Path(cfg.data_dir) / "snapshots-incoming",
            on_messages=node.deliver,
            on_unreachable=node.peer_unreachable,
            on_peer_gone=node.peer_gone,
            on_snapshot=node.deliver_snapshot,
            on_snapshot_status=node.snapshot_status,
            snapshot_allowed=node.snapshot_allowed,
            snapshot_source=node.snapshot_store.open_latest,
            commit_hint=lambda: node.core.commit,
            wire=_WIRES[cfg.consensus](),
        )
        node.send = transport.send
        node.engine_mismatch = gate.mismatch_status
        # Conf changes reach the core in advance(), after the fsm saw them: sync after.
        node.on_members_changed = lambda: None if loop.call_soon(self._on_members) else None
        await transport.start(cfg.listen_host, cfg.peer_port)
        server_ssl = self._client_tls()
        api = self.api = ClientApi(node, forward_tls=self.forward_tls)
        limits = ClientLimits(
            max_connections=cfg.client_connection_cap(),
            header_timeout=cfg.client_header_timeout,
            body_timeout=cfg.client_body_timeout,
            idle_timeout=cfg.client_idle_timeout,
        )
        # aiohttp's keep-alive timeout is its idle timeout (its default is an hour).
        self.runner = web.AppRunner(
            api.app(),
            access_log=None,
            handle_signals=False,
            shutdown_timeout=2.0,
            keepalive_timeout=limits.idle_timeout,
        )
        await self.runner.setup()
        assert self.runner.server is not None
        # Every connection enters through FastHttp (TLS, connection cap, timeouts). With
        # the fast path, the hot single-key requests skip aiohttp and the rest are handed
        # to it; without (tests compare the two), every connection goes to aiohttp at once.
        self.fast = FastHttp(api.service, self.runner.server, limits, serve_fast=self.fast_path)
        self.client_server = await loop.create_server(
            self.fast,
            cfg.listen_host,
            cfg.client_port,
            backlog=1024,
            reuse_address=True,
            ssl=server_ssl,
        )
        node.start()
        self._sync_peers()
        self.gc_pauses = GcPauses(self.metrics.gc_pause)
        self.loop_lag.start()
        log.info(
            "raftkv %s (id %d): clients on %s, peers on %s (%s), cluster %s",
            cfg.name,
            node.id,
            cfg.advertise_client_url,
            cfg.advertise_peer_url,
            self._peer_mode_text(),
            self.cluster.value or "not known yet",
        )
        if self.peer_tls is None:
            log.warning(
                "--peer-insecure: the peer port has no TLS; anyone who can reach it "
                "can act as a member. Isolate it (docs/security.md)."
            )
        elif cfg.peer_accepts_plain:
            log.warning(
                "--peer-tls-migration %s: INSECURE while it lasts: the peer port also "
                "accepts plain text, and a plain connection is not authenticated (anyone "
                "who can reach the port can act as a member). Isolate it, and finish the "
                "migration (docs/security.md).",
                cfg.peer_tls_migration,
            )

    def _peer_mode_text(self) -> str:
        if self.peer_tls is None:
            return "NO TLS"
        if self.cfg.peer_accepts_plain:
            dials = "TLS" if self.cfg.peer_dials_tls else "plain text"
            return f"mutual TLS or plain text, dialing {dials}: INSECURE migration"
        return "mutual TLS"

    def peer_modes(self) -> dict[str, Any]:
        """What the peer port accepts and how this node dials (`/v1/status` `modes`):
        what an operator migrating a cluster to TLS waits on."""
        cfg = self.cfg
        tls = self.peer_tls is not None
        accepts = ["tls", "plain"] if cfg.peer_accepts_plain else ["tls"] if tls else ["plain"]
        return {
            "peer": {
                "accepts": accepts,
                "dials": "tls" if cfg.peer_dials_tls else "plain",
                "migration": cfg.peer_tls_migration or None,
            }
        }

    @staticmethod
    def _peer_tls(cfg: NodeConfig) -> PeerTLSFiles | None:
        if not cfg.peer_tls:
            return None
        return PeerTLSFiles(
            TLSFiles(cfg.peer_cert_file, cfg.peer_key_file, cfg.peer_trusted_ca_file)
        )

    def _client_tls(self) -> ssl.SSLContext | None:
        """The client port's server context (None: --client-insecure). Both follow their
        files: new connections see a replaced certificate without a restart."""
        cfg = self.cfg
        if cfg.client_cert_file is None or cfg.client_key_file is None:
            if not cfg.client_insecure:
                raise ValueError(
                    "the client port needs TLS (--client-cert-file, "
                    "--client-key-file) or --client-insecure"
                )
            return None
        files = TLSFiles(cfg.client_cert_file, cfg.client_key_file, cfg.client_trusted_ca_file)
        # Client certificates are optional: token clients connect without one.
        self.client_tls = ReloadingTLS.server(
            files, "optional" if cfg.client_trusted_ca_file is not None else "none"
        )
        self.forward_tls = ReloadingTLS.client(TLSFiles(ca_file=cfg.client_trusted_ca_file))
        return self.client_tls.server_context()

    def _on_members(self) -> None:
        self._sync_peers()
        if self.pod_labeler is not None:
            self.pod_labeler.changed()  # promoted, added or removed: another label

    def _sync_peers(self) -> None:
        transport, node = self.transport, self.node
        if transport is None:
            return
        # Dial loops exist only for current members (the configuration, and the
        # replicated directory, which may be a step behind or ahead of it); their URLs
        # come only from the replicated membership. A new learner that knows nobody
        # yet answers the leader over the leader's own connection.
        members = node.core.conf.members() | set(node.fsm.members)
        for member in members:
            if member != node.id:
                transport.set_peer(member, node.member_info(member)["peer_url"])
        for member in list(transport.peers):
            if member not in members:
                transport.remove_peer(member)

    async def _hand_over(self, timeout: float) -> int | None:
        """Transfer leadership to the most caught-up voter that is connected and heard
        from lately; if it goes away meanwhile (the whole cluster being stopped at once),
        to the next one. The new leader's id, or None if none took it in `timeout`."""
        node = self.node
        deadline = time.monotonic() + timeout
        tried: set[int] = set()
        while True:
            target = node.transfer_target(lambda m: m not in tried and self._reachable(m))
            left = deadline - time.monotonic()
            if target is None or left <= 0:
                return None
            tried.add(target)
            moving = asyncio.ensure_future(node.transfer_leadership(target, left))
            while not moving.done() and self._reachable(target):
                await asyncio.wait({moving}, timeout=TRANSFER_CHECK_SECONDS)
            if not moving.done():  # the target stopped answering: not worth waiting for
                moving.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await moving
                continue
            if moving.result() is not None:
                return moving.result()

    def _reachable(self, member: int) -> bool:
        peer = self.transport.peers.get(member) if self.transport is not None else None
        heard = self.node.peer_seen.get(member)
        return (
            peer is not None
            and peer.connected
            and heard is not None
            and time.monotonic() - heard < self.cfg.election_timeout
        )

    async def shutdown(self, transfer_timeout: float | None = None) -> None:
        """A leader hands over leadership first (bounded), then everything closes."""
        node = self.node
        if transfer_timeout is None:
            transfer_timeout = 3 * self.cfg.election_timeout + 1
        if node.core.role == StateRole.LEADER and len(node.core.conf.voters) > 1:
            started = time.monotonic()
            new = await self._hand_over(transfer_timeout)
            log.info(
                "shutdown: leadership %s after %.2fs",
                f"moved to {new}" if new else "not handed over (no reachable voter took it)",
                time.monotonic() - started,
            )
        if self.client_server is not None:
            self.client_server.close()
        if self.fast is not None:
            self.fast.close()
        # Requests that wait (watch streams, lock waits, status long-polls) end now, or
        # aiohttp waits its whole shutdown_timeout for each handler, then as long again
        # for the cancelled one. Their clients retry on another member.
        node.watch.close_all("shutting_down")
        node.end_long_polls()
        if self.runner is not None:
            await self.runner.cleanup()
        if self.transport is not None:
            await self.transport.close()
        await node.stop()
        await self.loop_lag.stop()
        if self.gc_pauses is not None:
            self.gc_pauses.close()
        if self.pod_labeler is not None:
            # A leader that handed over says so on its pod before it goes (bounded).
            await self.pod_labeler.flush(POD_LABEL_FLUSH_SECONDS)
            await self.pod_labeler.close()


class PeerTLSFiles:
    """Mutual TLS on the peer port: both sides present a certificate of the trusted
    CA; the member binding is checked by the gate (not hostnames). Both contexts
    follow their files (a rotated Secret is used by the next connections)."""

    def __init__(self, files: TLSFiles, *, check_interval: float = 1.0) -> None:
        self._server = ReloadingTLS.server(
            files, client_auth="required", check_interval=check_interval
        )
        self._client = ReloadingTLS(
            files,
            lambda f: build_client_context(f, check_hostname=False),
            check_interval=check_interval,
        )

    def server_context(self) -> ssl.SSLContext:
        return self._server.server_context()

    def client_context(self) -> ssl.SSLContext:
        return self._client.client_context()

    def loaded(self) -> LoadedMaterial:
        return agreed(self._server.loaded(), self._client.loaded())


def agreed(*loaded: LoadedMaterial) -> LoadedMaterial:
    """What all of a plane's contexts were built from: a digest on which they disagree
    (one reloaded, the other not yet) is reported as None, never as the newer one."""
    first = loaded[0]
    return LoadedMaterial(
        first.cert_sha256 if all(m.cert_sha256 == first.cert_sha256 for m in loaded) else None,
        first.ca_sha256 if all(m.ca_sha256 == first.ca_sha256 for m in loaded) else None,
    )


# Each engine's messages on the peer transport.
_WIRES: dict[str, type[codec.Wire]] = {"raft": codec.RaftWire, "multipaxos": PaxosWire}


def _prior_state(data: Path, identity_source: str) -> list[str]:
    """identity.json from an earlier start, and any checkpoint this node wrote."""
    found = []
    if identity_source == "persisted":
        found.append(str(data / IDENTITY_FILE))
    checkpoints = data / "checkpoints"
    if checkpoints.is_dir():
        found.extend(str(p) for p in sorted(checkpoints.iterdir())[:3])
    return found


async def serve(cfg: NodeConfig) -> int:
    try:
        server = Server(cfg)
        await server.start()
    except (StorageError, IdentityError, AuthFileError, ssl.SSLError, ValueError) as exc:
        print(f"raftkv: cannot start {cfg.name}: {exc}", file=sys.stderr)
        return EXIT_STORAGE
    except OSError as exc:
        print(f"raftkv: cannot start {cfg.name}: {exc}", file=sys.stderr)
        return 1
    tune_collector()  # this process's own: in-process test clusters do not freeze
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await server.shutdown()
    return 0


def run(cfg: NodeConfig) -> int:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        import uvloop
    except ImportError:  # optional: the stock loop works, just slower
        have_uvloop = False
    else:
        have_uvloop = True
    # Outside the except clause: a loop run inside it would see that ImportError as the
    # exception being handled, the context of every exception raised in it.
    if not have_uvloop:
        return asyncio.run(serve(cfg))
    return uvloop.run(serve(cfg))
