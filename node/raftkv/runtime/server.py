"""`raftkv serve`: wire storage, state machine, node loop, peer transport and the
HTTP API together, run until SIGTERM/SIGINT, shut down gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from pathlib import Path

from aiohttp import web

from raftkv.fsm import StateMachine
from raftkv.raft import StateRole
from raftkv.runtime.api import ClientApi
from raftkv.runtime.config import NodeConfig
from raftkv.runtime.fasthttp import FastHttp
from raftkv.runtime.identity import IDENTITY_FILE, IdentityError, resolve_identity
from raftkv.runtime.metrics import NodeMetrics
from raftkv.runtime.node import RaftNode
from raftkv.runtime.transport import PeerInfo, PeerTransport
from raftkv.storage.checkpoints import CheckpointStore
from raftkv.storage.errors import StorageError
from raftkv.storage.protocols import RaftStore, SnapshotStore
from raftkv.storage.snapshots import FileSnapshotStore
from raftkv.storage.wal import WriteAheadLog

log = logging.getLogger("raftkv.server")

EXIT_STORAGE = 2  # the data directory cannot be trusted or used: refuse to start


class Server:
    """One node process: storage + fsm + RaftNode + PeerTransport + ClientApi."""

    def __init__(self, cfg: NodeConfig, *, raft_store: RaftStore | None = None,
                 snapshot_store: SnapshotStore | None = None,
                 checkpoint_store: CheckpointStore | None = None,
                 fast_path: bool = True) -> None:
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
        identity = resolve_identity(data, cfg.name, founder=cfg.is_founder, fsync=fsync)
        cfg.node_id = identity.id
        if identity.source == "fresh":
            log.info("%s joins with a fresh member id %d", cfg.name, identity.id)
        # Files that prove this data directory held a node with a log: with no WAL
        # segment beside them the start is refused (storage.recovery). Only about
        # the WAL in this directory, not about a store the caller passes in.
        self.prior_state: list[str] = []
        if raft_store is None:
            self.prior_state = _prior_state(data, identity.source)
            raft_store = WriteAheadLog(data / "wal", fsync=fsync,
                                       crash_test_ledger=cfg.unsafe_crash_test_ledger)
        self.node = RaftNode(
            cfg, raft_store=raft_store,
            snapshot_store=snapshot_store or FileSnapshotStore(data / "snapshots", fsync=fsync),
            checkpoint_store=checkpoint_store or CheckpointStore(
                data / "checkpoints", retain=cfg.checkpoint_retain),
            fsm=StateMachine(), metrics=self.metrics)
        self.transport: PeerTransport | None = None
        self.runner: web.AppRunner | None = None
        self.fast: FastHttp | None = None
        self.client_server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        cfg, node = self.cfg, self.node
        node.open(self.prior_state)
        loop = asyncio.get_running_loop()
        me = PeerInfo(node.id, cfg.name, cfg.advertise_peer_url, cfg.advertise_client_url)
        transport = self.transport = PeerTransport(
            me, resolve=cfg.resolve, metrics=self.metrics,
            spool_dir=Path(cfg.data_dir) / "snapshots-incoming",
            on_messages=node.deliver, on_hello=node.peer_hello,
            on_unreachable=node.peer_unreachable, on_snapshot=node.deliver_snapshot,
            on_snapshot_status=node.snapshot_status,
            snapshot_source=node.snapshot_store.open_latest,
            commit_hint=lambda: node.core.commit)
        node.send = transport.send
        # Conf changes reach the core in advance(), after the fsm saw them: sync after.
        node.on_members_changed = lambda: None if loop.call_soon(self._sync_peers) else None
        await transport.start(cfg.listen_host, cfg.peer_port)
        api = ClientApi(node)
        self.runner = web.AppRunner(api.app(), access_log=None,
                                    handle_signals=False, shutdown_timeout=2.0)
        await self.runner.setup()
        if self.fast_path:
            assert self.runner.server is not None
            # The hot single-key requests skip aiohttp; the rest are handed to it.
            self.fast = FastHttp(api, self.runner.server)
            self.client_server = await loop.create_server(
                self.fast, cfg.listen_host, cfg.client_port, backlog=1024, reuse_address=True)
        else:
            await web.TCPSite(self.runner, cfg.listen_host, cfg.client_port, backlog=1024,
                              reuse_address=True).start()
        node.start()
        self._sync_peers()
        log.info("raftkv %s (id %d): clients on %s, peers on %s", cfg.name, node.id,
                 cfg.advertise_client_url, cfg.advertise_peer_url)

    def _sync_peers(self) -> None:
        transport, node = self.transport, self.node
        if transport is None:
            return
        # Peers that introduced themselves count too: a new learner knows nobody until
        # the leader's log reaches it, yet must answer the leader.
        members = node.core.conf.members() | set(node.fsm.members) | set(node.hello)
        for member in members:
            if member != node.id:
                transport.set_peer(member, node.member_info(member)["peer_url"])
        for member in list(transport.peers):
            if member not in members:
                transport.remove_peer(member)

    async def shutdown(self, transfer_timeout: float | None = None) -> None:
        """A leader hands over leadership first (bounded), then everything closes."""
        node = self.node
        if transfer_timeout is None:
            transfer_timeout = 3 * self.cfg.election_timeout + 1
        if node.core.role == StateRole.LEADER and len(node.core.conf.voters) > 1:
            target = node.transfer_target()
            if target is not None:
                started = time.monotonic()
                new = await node.transfer_leadership(target, transfer_timeout)
                log.info("shutdown: leadership %s after %.2fs",
                         f"moved to {new}" if new else "transfer timed out",
                         time.monotonic() - started)
        if self.client_server is not None:
            self.client_server.close()
        if self.fast is not None:
            self.fast.close()
        if self.runner is not None:
            await self.runner.cleanup()
        if self.transport is not None:
            await self.transport.close()
        await node.stop()


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
    except (StorageError, IdentityError) as exc:
        print(f"raftkv: cannot start {cfg.name}: {exc}", file=sys.stderr)
        return EXIT_STORAGE
    except OSError as exc:
        print(f"raftkv: cannot start {cfg.name}: {exc}", file=sys.stderr)
        return 1
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
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        import uvloop
    except ImportError:  # optional: the stock loop works, just slower
        return asyncio.run(serve(cfg))
    return uvloop.run(serve(cfg))
