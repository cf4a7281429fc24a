"""`raftkv-operator`: `kopf run` with the raftkv handlers.

    raftkv-operator [--namespace NS ...] [--all-namespaces] [--no-cluster-scan]
                    [--leader-election-lease NAME [--leader-election-namespace NS]
                     [--identity ID] [--lease-duration S] [--renew-deadline S]
                     [--retry-period S]] [--peering NAME]
                    [--metrics-port PORT [--metrics-address ADDR]] [--liveness URL]
                    [--log-format json|plain|full] [--verbose|--debug]

Several replicas elect one active operator through a coordination.k8s.io Lease
(`--leader-election-lease`, leadership.py): the others stand by (serving /healthz and
metrics, `raftkv_operator_active 0`) and one takes over within the lease duration plus a
retry period once the holder is gone. Without it the operator runs standalone. Metrics
are served on `--metrics-port` at /metrics.
"""

from __future__ import annotations

import argparse
import http.server
import logging
import os
import signal
import socket
import sys
import threading
import urllib.parse
from collections.abc import Sequence

import kopf

from raftkv_operator import kube, leadership, metrics

SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

LOG_FORMATS = {
    "json": kopf.LogFormat.JSON,
    "plain": kopf.LogFormat.PLAIN,
    "full": kopf.LogFormat.FULL,
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="raftkv-operator", description="The raftkv Kubernetes operator (kopf)."
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch this namespace (repeatable; glob patterns as kopf takes them)",
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    parser.add_argument(
        "--no-cluster-scan",
        action="store_true",
        help="do not watch CRDs and namespaces cluster-wide (kopf scanning off): for an "
        "install with a namespaced Role only; needs exact --namespace names",
    )
    election = parser.add_argument_group("leader election (one active replica)")
    election.add_argument(
        "--leader-election-lease",
        metavar="NAME",
        help="act only while holding the coordination.k8s.io Lease NAME",
    )
    election.add_argument(
        "--leader-election-namespace",
        metavar="NS",
        default=None,
        help="namespace of the Lease (default: $OPERATOR_NAMESPACE, else the pod's own)",
    )
    election.add_argument(
        "--identity", default=None, help="this replica's name in the Lease (default: $POD_ID)"
    )
    defaults = leadership.LeaseTimings()
    election.add_argument(
        "--lease-duration",
        type=float,
        default=defaults.duration,
        help="seconds a silent holder keeps the Lease (a standby then takes over)",
    )
    election.add_argument(
        "--renew-deadline",
        type=float,
        default=defaults.renew_deadline,
        help="the holder exits when it could not renew for this long (< lease duration)",
    )
    election.add_argument(
        "--retry-period",
        type=float,
        default=defaults.retry_period,
        help="seconds between renewals, and between a standby's looks",
    )
    parser.add_argument(
        "--peering",
        metavar="NAME",
        help="elect one active replica through the kopf peering object NAME (prefer "
        "--leader-election-lease: peering freezes replicas of equal priority)",
    )
    parser.add_argument(
        "--priority", type=int, default=None, help="peering priority of this replica"
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve Prometheus metrics on this port (/metrics); off when unset",
    )
    parser.add_argument(
        "--metrics-address", default="0.0.0.0", help="address the metrics server binds"
    )
    parser.add_argument(
        "--liveness",
        metavar="URL",
        default=None,
        help="kopf liveness endpoint, e.g. http://0.0.0.0:8080/healthz",
    )
    parser.add_argument("--log-format", choices=sorted(LOG_FORMATS), default="json")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="store_true")
    verbosity.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)
    if not args.namespace and not args.all_namespaces:
        parser.error("give --namespace NS (repeatable) or --all-namespaces")
    if args.metrics_port is not None and not 0 < args.metrics_port < 65536:
        parser.error("--metrics-port must be in 1..65535")
    if args.leader_election_lease and args.peering:
        parser.error("give --leader-election-lease or --peering, not both")
    if args.no_cluster_scan and (args.all_namespaces or any("*" in n for n in args.namespace)):
        parser.error("--no-cluster-scan needs exact --namespace names")
    if args.leader_election_lease:
        try:
            args.lease_timings = leadership.LeaseTimings(
                args.lease_duration, args.renew_deadline, args.retry_period
            )
        except ValueError as e:
            parser.error(str(e))
        args.leader_election_namespace = args.leader_election_namespace or _own_namespace()
        args.identity = args.identity or os.environ.get("POD_ID") or socket.gethostname()
        if not args.leader_election_namespace:
            parser.error("--leader-election-namespace is needed outside a pod")
    return args


def _own_namespace() -> str | None:
    if os.environ.get("OPERATOR_NAMESPACE"):
        return os.environ["OPERATOR_NAMESPACE"]
    try:
        with open(SERVICE_ACCOUNT_NAMESPACE) as f:
            return f.read().strip() or None
    except OSError:
        return None


class _StandbyHealth:
    """/healthz while standing by: kopf's liveness endpoint only exists once it runs, and a
    standby must not be restarted for waiting."""

    def __init__(self, url: str | None) -> None:
        self.server: http.server.ThreadingHTTPServer | None = None
        if url is None:
            return
        parsed = urllib.parse.urlsplit(url)
        path = parsed.path or "/"

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                ok = self.path.split("?", 1)[0] == path
                self.send_response(200 if ok else 404)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"standby": true}' if ok else b"{}")

            def log_message(self, *_: object) -> None:
                pass

        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self.server = http.server.ThreadingHTTPServer(
            (parsed.hostname or "0.0.0.0", parsed.port or 80), Handler
        )
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    kopf.configure(
        debug=args.debug,
        verbose=args.verbose,
        log_format=LOG_FORMATS[args.log_format],
        log_refkey="object",
    )
    # Import registers the handlers with kopf's default registry.
    from raftkv_operator import handlers  # noqa: F401

    if args.metrics_port is not None:
        metrics.serve(args.metrics_port, args.metrics_address)
        logging.getLogger(__name__).info(
            "metrics on %s:%d/metrics", args.metrics_address, args.metrics_port
        )
    handlers.CLUSTER_SCAN = not args.no_cluster_scan
    elector: leadership.LeaderElector | None = None
    if args.leader_election_lease:
        kube.configure()
        elector = leadership.LeaderElector(
            args.leader_election_lease,
            args.leader_election_namespace,
            args.identity,
            args.lease_timings,
        )
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: elector.stop.set() if elector else None)
        standby = _StandbyHealth(args.liveness)
        try:
            if not elector.acquire():
                return 0  # asked to stop while standing by
        finally:
            standby.close()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
    try:
        kopf.run(
            standalone=args.peering is None,
            peering_name=args.peering,
            priority=args.priority,
            namespaces=args.namespace,
            clusterwide=args.all_namespaces,
            liveness_endpoint=args.liveness,
        )
    except KeyboardInterrupt:
        return 130
    finally:
        if elector is not None:
            elector.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
