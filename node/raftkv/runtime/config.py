"""`raftkv serve` configuration: flags, their `RAFTKV_*` environment twins, validation.

Every flag also reads env `RAFTKV_<FLAG>` (upper-cased, `-` -> `_`); a flag given
on the command line wins over the environment (docs/contracts.md).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from raftkv.consensus import ENGINES
from raftkv.runtime.identity import member_id

CLUSTER_STATES = ("new", "existing")
METRICS_ACCESS = ("open", "authenticated")
# Stages of migrating a running plain-text cluster to peer TLS (docs/security.md
# "Migrating a pre-TLS cluster"), both INSECURE while they last: "accept-both" accepts
# TLS or plain text and dials plain; "dial-tls" accepts both and dials TLS.
PEER_TLS_MIGRATION_STAGES = ("accept-both", "dial-tls")
DEFAULT_QUOTA_BACKEND_BYTES = 128 << 20
# Where Kubernetes mounts a pod's service account token and the cluster CA.
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


@dataclass(slots=True)
class InitialMember:
    name: str
    peer_url: str  # host:port

    @property
    def id(self) -> int:
        return member_id(self.name)


@dataclass(slots=True)
class NodeConfig:
    name: str
    data_dir: Path
    listen_host: str = "0.0.0.0"
    client_port: int = 7379
    peer_port: int = 7380
    advertise_client_url: str = ""
    advertise_peer_url: str = ""
    initial_cluster: list[InitialMember] = field(default_factory=list)
    initial_cluster_state: str = "new"
    # The consensus engine (raftkv.consensus.ENGINES), recorded in the data directory
    # at first start; a directory made by the other engine is refused.
    consensus: str = "raft"
    resolve: dict[str, str] = field(default_factory=dict)
    tick_ms: int = 100
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    snapshot_entries: int = 10000
    snapshot_catchup_entries: int = 5000
    checkpoint_retain: int = 5
    restore_from: Path | None = None
    max_key_bytes: int = 4096
    max_value_bytes: int = 1 << 20
    max_request_bytes: int = 2 << 20
    max_txn_ops: int = 128
    # Limits of a shared store (runtime/limits.py; 0 turns one off). The quota's
    # default fits the default 1 GiB volume: a member keeps the state up to
    # --checkpoint-retain + 2 times on disk (checkpoints, two snapshots) plus the WAL.
    quota_backend_bytes: int = DEFAULT_QUOTA_BACKEND_BYTES
    max_leases: int = 100_000
    max_lock_waiters: int = 1000
    max_watches: int = 10_000
    max_watches_per_client: int = 1000
    max_json_depth: int = 64
    request_timeout: float = 10.0
    # The client plane (docs/security.md): TLS on the client port, identities and roles.
    client_cert_file: Path | None = None
    client_key_file: Path | None = None
    client_trusted_ca_file: Path | None = None
    client_insecure: bool = False
    auth_file: Path | None = None
    metrics_access: str = "open"
    # The client port's connection limits (runtime/fasthttp.py; docs/api.md "Limits").
    # 0 connections = derived from the open-file limit at start (client_connection_cap).
    client_max_connections: int = 0
    client_header_timeout: float = 10.0
    client_body_timeout: float = 30.0
    client_idle_timeout: float = 75.0
    unsafe_no_fsync: bool = False
    # Peer TLS (docs/security.md "Peer plane"): all three files, or peer_insecure.
    peer_cert_file: Path | None = None
    peer_key_file: Path | None = None
    peer_trusted_ca_file: Path | None = None
    peer_insecure: bool = False
    # "" (none), or a PEER_TLS_MIGRATION_STAGES stage: with the three files, the peer
    # port also accepts plain text, unauthenticated (INSECURE while it is set).
    peer_tls_migration: str = ""
    # Leader routing on Kubernetes (runtime/podlabel.py): this pod's raftkv.dev/role label.
    pod_role_label: bool = False
    pod_name: str = ""  # default: --name
    pod_namespace: str = ""
    kube_api_url: str = ""  # default: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT
    kube_token_file: Path = Path(SERVICE_ACCOUNT_DIR, "token")
    kube_ca_file: Path = Path(SERVICE_ACCOUNT_DIR, "ca.crt")
    # Test-only switches for the fault-injection harness (tests/chaos): never in production.
    unsafe_crash_test_ledger: bool = False
    unsafe_local_reads: bool = False
    # The Raft id once resolved from the data directory (runtime.identity); 0 = not yet.
    node_id: int = 0

    @property
    def id(self) -> int:
        """The resolved id; before resolution, the founder id member_id(name)."""
        return self.node_id or member_id(self.name)

    @property
    def is_founder(self) -> bool:
        """Bootstraps a new cluster when its data directory is empty."""
        return self.initial_cluster_state == "new" and any(
            m.name == self.name for m in self.initial_cluster
        )

    def validate(self) -> None:
        if not self.name:
            raise ValueError("--name is required")
        if self.initial_cluster_state not in CLUSTER_STATES:
            raise ValueError(f"--initial-cluster-state must be one of {CLUSTER_STATES}")
        if self.consensus not in ENGINES:
            raise ValueError(f"--consensus must be one of {', '.join(ENGINES)}")
        if self.heartbeat_ticks <= 0 or self.election_ticks <= self.heartbeat_ticks:
            raise ValueError("need 0 < --heartbeat-ticks < --election-ticks")
        if self.tick_ms <= 0:
            raise ValueError("--tick-ms must be > 0")
        if self.snapshot_entries <= 0:
            raise ValueError("--snapshot-entries must be > 0")
        if self.checkpoint_retain <= 0:
            raise ValueError("--checkpoint-retain must be > 0")
        for flag, value in (
            ("--max-key-bytes", self.max_key_bytes),
            ("--max-value-bytes", self.max_value_bytes),
            ("--max-request-bytes", self.max_request_bytes),
            ("--max-txn-ops", self.max_txn_ops),
        ):
            if value <= 0:
                raise ValueError(f"{flag} must be > 0")
        for flag, value in (
            ("--quota-backend-bytes", self.quota_backend_bytes),
            ("--max-leases", self.max_leases),
            ("--max-lock-waiters", self.max_lock_waiters),
            ("--max-watches", self.max_watches),
            ("--max-watches-per-client", self.max_watches_per_client),
        ):
            if value < 0:
                raise ValueError(f"{flag} must be >= 0 (0: no limit)")
        if not 1 <= self.max_json_depth <= 500:
            # The stdlib parser recurses: past ~900 levels it fails, so 500 is the top.
            raise ValueError("--max-json-depth must be in [1, 500]")
        if self.client_max_connections < 0:
            raise ValueError("--client-max-connections must be >= 0 (0: from the fd limit)")
        for flag, seconds in (
            ("--client-header-timeout", self.client_header_timeout),
            ("--client-body-timeout", self.client_body_timeout),
            ("--client-idle-timeout", self.client_idle_timeout),
        ):
            if not seconds > 0:
                raise ValueError(f"{flag} must be > 0 seconds")
        names = [m.name for m in self.initial_cluster]
        if len(set(names)) != len(names):
            raise ValueError("--initial-cluster names a member twice")
        ids = {m.id for m in self.initial_cluster}
        if len(ids) != len(names):
            raise ValueError("--initial-cluster: two names map to the same member id")
        self.validate_peer_tls()
        if self.restore_from is not None and self.initial_cluster_state != "new":
            raise ValueError("--restore-from only applies with --initial-cluster-state new")
        self.validate_client_plane()

    def validate_client_plane(self) -> None:
        """Secure unless explicitly not: TLS and an auth file, or --client-insecure."""
        if self.metrics_access not in METRICS_ACCESS:
            raise ValueError(f"--metrics-access must be one of {METRICS_ACCESS}")
        tls = self.client_cert_file is not None or self.client_key_file is not None
        if self.client_insecure:
            if tls or self.client_trusted_ca_file is not None:
                raise ValueError(
                    "--client-insecure serves plain HTTP: drop the --client-cert/"
                    "key/trusted-ca flags, or drop --client-insecure"
                )
            return
        if self.client_cert_file is None or self.client_key_file is None:
            raise ValueError(
                "the client port needs TLS: give --client-cert-file and "
                "--client-key-file (and --auth-file), or serve plain HTTP "
                "without authentication with --client-insecure"
            )
        if self.auth_file is None:
            raise ValueError(
                "with TLS, give --auth-file (tokens and certificate identities: "
                "docs/security.md), or --client-insecure for an open port"
            )

    def client_connection_cap(self) -> int:
        """--client-max-connections, or with 0 the open-file limit less a reserve for
        the WAL, snapshots and peers (past the fd limit, accept() fails and new
        clients see resets instead of a clear 503)."""
        if self.client_max_connections:
            return self.client_max_connections
        try:
            import resource

            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        except (ImportError, ValueError, OSError):  # pragma: no cover - not POSIX
            return 1024
        if soft == resource.RLIM_INFINITY:
            return 10000
        return max(16, min(10000, soft - 256))

    @property
    def peer_tls(self) -> bool:
        return self.peer_cert_file is not None

    @property
    def peer_accepts_plain(self) -> bool:
        """The peer port takes plain-text connections too (a migration stage)."""
        return bool(self.peer_tls_migration)

    @property
    def peer_dials_tls(self) -> bool:
        return self.peer_tls and self.peer_tls_migration != "accept-both"

    def validate_peer_tls(self) -> None:
        files = (self.peer_cert_file, self.peer_key_file, self.peer_trusted_ca_file)
        given = sum(f is not None for f in files)
        if given and self.peer_insecure:
            raise ValueError(
                "--peer-insecure contradicts --peer-cert-file/--peer-key-file/"
                "--peer-trusted-ca-file: choose one"
            )
        if given not in (0, 3):
            raise ValueError(
                "peer TLS needs all of --peer-cert-file, --peer-key-file and --peer-trusted-ca-file"
            )
        if not given and not self.peer_insecure:
            raise ValueError(
                "no peer TLS: give --peer-cert-file, --peer-key-file and "
                "--peer-trusted-ca-file, or --peer-insecure to run the peer port "
                "without TLS (then it must be isolated: docs/security.md)"
            )
        if self.peer_tls_migration:
            if self.peer_tls_migration not in PEER_TLS_MIGRATION_STAGES:
                raise ValueError(
                    f"--peer-tls-migration must be one of {', '.join(PEER_TLS_MIGRATION_STAGES)}"
                )
            if not given:
                raise ValueError(
                    "--peer-tls-migration needs the peer TLS files (--peer-cert-file, "
                    "--peer-key-file, --peer-trusted-ca-file) instead of --peer-insecure"
                )

    @property
    def tick_seconds(self) -> float:
        return self.tick_ms / 1000.0

    @property
    def election_timeout(self) -> float:
        return self.tick_seconds * self.election_ticks


def _path(text: str) -> Path | None:
    return Path(text) if text else None


def parse_initial_cluster(text: str) -> list[InitialMember]:
    """`name=host:port,name=host:port` -> members (empty text -> [])."""
    members: list[InitialMember] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, url = part.partition("=")
        if not sep or not name or not url:
            raise ValueError(f"--initial-cluster: expected name=host:port, got {part!r}")
        split_host_port(url)
        members.append(InitialMember(name, url))
    return members


def parse_resolve(text: str) -> dict[str, str]:
    """`host=ip,host=ip` -> {host: ip}: a static map applied before DNS."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        host, sep, ip = part.partition("=")
        if not sep or not host or not ip:
            raise ValueError(f"--resolve: expected host=ip, got {part!r}")
        out[host] = ip
    return out


def split_host_port(url: str) -> tuple[str, int]:
    """`host:port` (a scheme, if any, is ignored) -> (host, port)."""
    if "://" in url:
        url = url.split("://", 1)[1]
    url = url.rstrip("/")
    host, sep, port = url.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"expected host:port, got {url!r}")
    return host.strip("[]"), int(port)


def _env_name(flag: str) -> str:
    return "RAFTKV_" + flag.lstrip("-").upper().replace("-", "_")


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--name", help="node name (required; Raft id: docs/contracts.md)")
    add("--data-dir", help="data directory (WAL, snapshots, checkpoints); default ./<name>.data")
    add("--listen-host", default="0.0.0.0", help="bind address")
    add("--client-port", type=int, default=7379)
    add("--peer-port", type=int, default=7380)
    add("--advertise-client-url", default="", help="URL clients reach this node at")
    add("--advertise-peer-url", default="", help="host:port peers reach this node at")
    add("--initial-cluster", default="", help="name=peerhost:port,... the bootstrap voters")
    add("--initial-cluster-state", default="new", choices=CLUSTER_STATES)
    add(
        "--consensus",
        default="raft",
        choices=ENGINES,
        help="consensus engine (default raft); recorded in the data directory at first "
        "start, which the other engine then refuses (docs/consensus.md)",
    )
    add("--resolve", default="", help="host=ip[,host=ip...]: applied before DNS")
    add("--tick-ms", type=int, default=100)
    add("--election-ticks", type=int, default=10)
    add("--heartbeat-ticks", type=int, default=1)
    add("--snapshot-entries", type=int, default=10000)
    add("--checkpoint-retain", type=int, default=5)
    add("--restore-from", default="", help="checkpoint directory to bootstrap from")
    add("--max-key-bytes", type=int, default=4096)
    add("--max-value-bytes", type=int, default=1 << 20)
    add("--max-request-bytes", type=int, default=2 << 20)
    add("--max-txn-ops", type=int, default=128)
    add(
        "--quota-backend-bytes",
        type=int,
        default=DEFAULT_QUOTA_BACKEND_BYTES,
        help="refuse writes that grow the store (507 quota_exceeded) once its state "
        "reaches this many bytes; reads, deletes, revokes and checkpoints go on "
        "(0: no quota)",
    )
    add(
        "--max-leases",
        type=int,
        default=100_000,
        help="leases the cluster may hold; one more grant gets 429 (0: no cap)",
    )
    add(
        "--max-lock-waiters",
        type=int,
        default=1000,
        help="leases that may queue for one lock; one more gets 429 (0: no cap)",
    )
    add(
        "--max-watches",
        type=int,
        default=10_000,
        help="watch streams this node serves at once; one more gets 429 (0: no cap)",
    )
    add(
        "--max-watches-per-client",
        type=int,
        default=1000,
        help="watch streams one client address may hold on this node (0: no cap)",
    )
    add(
        "--max-json-depth",
        type=int,
        default=64,
        help="nesting levels a JSON request body may have; deeper gets 400",
    )
    add(
        "--request-timeout",
        type=float,
        default=10.0,
        help="seconds a write or linearizable read may wait for the cluster",
    )
    add(
        "--client-cert-file",
        default="",
        help="PEM certificate (chain) served on the client port (TLS)",
    )
    add("--client-key-file", default="", help="PEM private key of --client-cert-file")
    add(
        "--client-trusted-ca-file",
        default="",
        help="PEM CA bundle: client certificates that chain to it are identities "
        "(--auth-file maps their names to roles); also the CA a follower checks "
        "the leader's certificate against when it forwards a write",
    )
    add(
        "--client-insecure",
        action="store_true",
        help="INSECURE: serve the client port as plain HTTP with no authentication "
        "(every caller is an admin); for tests and isolated networks only",
    )
    add(
        "--auth-file",
        default="",
        help="JSON file of identities and roles (tokens stored as SHA-256, client "
        "certificate names); reloaded when it changes (docs/security.md)",
    )
    add(
        "--metrics-access",
        default="open",
        choices=METRICS_ACCESS,
        help="/metrics open to anyone who reaches the port (default), or authenticated (any role)",
    )
    add(
        "--client-max-connections",
        type=int,
        default=0,
        help="open client connections at most; more are answered 503 and closed "
        "(0: the open-file limit less 256, at most 10000)",
    )
    add(
        "--client-header-timeout",
        type=float,
        default=10.0,
        help="seconds a client may take to send a request head (then closed)",
    )
    add(
        "--client-body-timeout",
        type=float,
        default=30.0,
        help="seconds a client may take to send a request body (then closed)",
    )
    add(
        "--client-idle-timeout",
        type=float,
        default=75.0,
        help="seconds an idle client connection is kept open",
    )
    add(
        "--peer-cert-file",
        default="",
        help="PEM certificate this node presents to its peers (mutual TLS); it must name "
        "this member: --name as a DNS SAN, or the host of its peer URL (docs/security.md)",
    )
    add("--peer-key-file", default="", help="PEM private key of --peer-cert-file")
    add(
        "--peer-trusted-ca-file",
        default="",
        help="PEM CA bundle that peers' certificates must chain to",
    )
    add(
        "--peer-insecure",
        action="store_true",
        help="INSECURE: no TLS on the peer port (anyone who can reach it can act as a "
        "member); cluster id, membership checks and frame validation still apply",
    )
    add(
        "--peer-tls-migration",
        default="",
        choices=["", *PEER_TLS_MIGRATION_STAGES],
        help="INSECURE while set: a stage of moving a running --peer-insecure cluster to "
        "peer TLS, one member at a time (docs/security.md). With the peer TLS files, the "
        "peer port accepts mutual TLS (fully checked) AND unauthenticated plain text; "
        "accept-both dials peers in plain text, dial-tls dials them with TLS. Drop the "
        "flag once every member runs dial-tls",
    )
    add(
        "--pod-role-label",
        action="store_true",
        help="on Kubernetes: keep this pod's raftkv.dev/role label equal to the node's role "
        "(leader/follower/learner) through the API server, so a Service selecting "
        "the leader follows it without the operator (needs patch on the pod)",
    )
    add("--pod-name", default="", help="this pod's name (default: --name)")
    add(
        "--pod-namespace", default="", help="this pod's namespace (downward API metadata.namespace)"
    )
    add(
        "--kube-api-url",
        default="",
        help="https URL of the Kubernetes API server (default: "
        "https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT)",
    )
    add(
        "--kube-token-file",
        default=f"{SERVICE_ACCOUNT_DIR}/token",
        help="service account token (re-read when it changes)",
    )
    add(
        "--kube-ca-file",
        default=f"{SERVICE_ACCOUNT_DIR}/ca.crt",
        help="PEM CA bundle the API server's certificate must chain to",
    )
    add(
        "--unsafe-no-fsync",
        action="store_true",
        help="UNSAFE: acknowledge writes before they are on disk (benchmarks only)",
    )
    add(
        "--unsafe-crash-test-ledger",
        action="store_true",
        help="TEST ONLY: keep the WAL's record of fsynced bytes (wal/SYNCED.json) so a "
        "test can simulate a power cut after kill -9",
    )
    add(
        "--unsafe-local-reads",
        action="store_true",
        help="UNSAFE, TEST ONLY: serve linearizable reads from local state without "
        "ReadIndex (stale reads; proves the chaos checker catches them)",
    )


def _apply_env(
    parser: argparse.ArgumentParser, argv: Sequence[str], env: Mapping[str, str]
) -> None:
    """Turn RAFTKV_* variables into defaults; explicit flags still win."""
    given = {a.split("=", 1)[0] for a in argv if a.startswith("--")}
    defaults: dict[str, object] = {}
    for action in parser._actions:  # argparse has no public iterator over actions
        flag = next((o for o in action.option_strings if o.startswith("--")), None)
        if flag is None or flag in given or flag == "--help":
            continue
        raw = env.get(_env_name(flag))
        if raw is None:
            continue
        if isinstance(action, argparse._StoreTrueAction):
            defaults[action.dest] = raw.strip().lower() in ("1", "true", "yes", "on")
        elif action.type is not None:
            try:
                defaults[action.dest] = action.type(raw)  # type: ignore[operator]
            except ValueError:
                parser.error(f"{_env_name(flag)}: invalid value {raw!r}")
        else:
            defaults[action.dest] = raw
    parser.set_defaults(**defaults)


def config_from_args(
    parser: argparse.ArgumentParser, argv: Sequence[str], env: Mapping[str, str] | None = None
) -> NodeConfig:
    _apply_env(parser, argv, os.environ if env is None else env)
    ns = parser.parse_args(list(argv))
    return config_from_namespace(ns)


def config_from_namespace(ns: argparse.Namespace) -> NodeConfig:
    if not ns.name:
        raise ValueError("--name is required (or RAFTKV_NAME)")
    cfg = NodeConfig(
        name=ns.name,
        data_dir=Path(ns.data_dir or f"./{ns.name}.data"),
        listen_host=ns.listen_host,
        client_port=ns.client_port,
        peer_port=ns.peer_port,
        advertise_client_url=ns.advertise_client_url,
        advertise_peer_url=ns.advertise_peer_url,
        initial_cluster=parse_initial_cluster(ns.initial_cluster),
        initial_cluster_state=ns.initial_cluster_state,
        consensus=ns.consensus,
        resolve=parse_resolve(ns.resolve),
        tick_ms=ns.tick_ms,
        election_ticks=ns.election_ticks,
        heartbeat_ticks=ns.heartbeat_ticks,
        snapshot_entries=ns.snapshot_entries,
        snapshot_catchup_entries=max(1, min(5000, ns.snapshot_entries // 2)),
        checkpoint_retain=ns.checkpoint_retain,
        restore_from=Path(ns.restore_from) if ns.restore_from else None,
        max_key_bytes=ns.max_key_bytes,
        max_value_bytes=ns.max_value_bytes,
        max_request_bytes=ns.max_request_bytes,
        max_txn_ops=ns.max_txn_ops,
        quota_backend_bytes=ns.quota_backend_bytes,
        max_leases=ns.max_leases,
        max_lock_waiters=ns.max_lock_waiters,
        max_watches=ns.max_watches,
        max_watches_per_client=ns.max_watches_per_client,
        max_json_depth=ns.max_json_depth,
        request_timeout=ns.request_timeout,
        client_cert_file=_path(ns.client_cert_file),
        client_key_file=_path(ns.client_key_file),
        client_trusted_ca_file=_path(ns.client_trusted_ca_file),
        client_insecure=ns.client_insecure,
        auth_file=_path(ns.auth_file),
        metrics_access=ns.metrics_access,
        client_max_connections=ns.client_max_connections,
        client_header_timeout=ns.client_header_timeout,
        client_body_timeout=ns.client_body_timeout,
        client_idle_timeout=ns.client_idle_timeout,
        unsafe_no_fsync=ns.unsafe_no_fsync,
        peer_cert_file=Path(ns.peer_cert_file) if ns.peer_cert_file else None,
        peer_key_file=Path(ns.peer_key_file) if ns.peer_key_file else None,
        peer_trusted_ca_file=Path(ns.peer_trusted_ca_file) if ns.peer_trusted_ca_file else None,
        peer_insecure=ns.peer_insecure,
        peer_tls_migration=ns.peer_tls_migration,
        pod_role_label=ns.pod_role_label,
        pod_name=ns.pod_name or ns.name,
        pod_namespace=ns.pod_namespace,
        kube_api_url=ns.kube_api_url,
        kube_token_file=Path(ns.kube_token_file),
        kube_ca_file=Path(ns.kube_ca_file),
        unsafe_crash_test_ledger=ns.unsafe_crash_test_ledger,
        unsafe_local_reads=ns.unsafe_local_reads,
    )
    host = "127.0.0.1" if cfg.listen_host in ("0.0.0.0", "::", "") else cfg.listen_host
    if not cfg.advertise_client_url:
        scheme = "http" if cfg.client_insecure else "https"
        cfg.advertise_client_url = f"{scheme}://{host}:{cfg.client_port}"
    if not cfg.advertise_peer_url:
        mine = next((m for m in cfg.initial_cluster if m.name == cfg.name), None)
        cfg.advertise_peer_url = mine.peer_url if mine else f"{host}:{cfg.peer_port}"
    cfg.validate()
    return cfg
