"""`raftkv-operator`: `kopf run` with the raftkv handlers.

    raftkv-operator [--namespace NS ...] [--all-namespaces] [--peering NAME]
                    [--metrics-port PORT [--metrics-address ADDR]] [--liveness URL]
                    [--log-format json|plain|full] [--verbose|--debug]

Several replicas elect one active operator through kopf peering (`--peering`, which needs
the KopfPeering or ClusterKopfPeering object the Helm chart creates); without it the
operator runs standalone. Metrics are served on `--metrics-port` at /metrics.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import kopf

from raftkv_operator import metrics

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
        "--peering",
        metavar="NAME",
        help="elect one active replica through the kopf peering object NAME "
        "(default: standalone, no peering)",
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
    return args


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
    return 0


if __name__ == "__main__":
    sys.exit(main())
