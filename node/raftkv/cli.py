"""The `raftkv` command.

    raftkv serve --name N ...           run a node (flags: docs/contracts.md)
    raftkv local up|status|down|env     a throw-away cluster on 127.0.0.1
    raftkv auth token NAME --role R     a bearer token for the client port
    raftkv recover --data-dir DIR       a stopped member becomes the only voter (quorum lost)
    raftkv archive upload|download|...  checkpoint copies in an S3-compatible bucket

Client subcommands (put, get, ...) plug in here: if `raftkv.client.cli` exists
and has `register(subparsers)`, it is called with the subparsers object; each
subcommand it adds sets `func` (a callable taking the parsed args and returning
an exit code) with `parser.set_defaults(func=...)`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

EXAMPLES = """examples:
  raftkv local up --nodes 3 --dir ./my-cluster     # a local cluster; prints its URLs
  raftkv put greeting hello --endpoints http://127.0.0.1:7379
  raftkv get greeting
  raftkv lock acquire jobs -- ./run-job.sh"""

SERVE_EXAMPLES = """examples:
  raftkv serve --name node1 --data-dir ./node1 --initial-cluster node1=127.0.0.1:7380
  raftkv serve --name node1 --data-dir /var/lib/raftkv --listen-host 0.0.0.0 \\
      --advertise-client-url http://10.0.0.1:7379 --advertise-peer-url 10.0.0.1:7380 \\
      --initial-cluster node1=10.0.0.1:7380,node2=10.0.0.2:7380,node3=10.0.0.3:7380"""


def _serve(args: argparse.Namespace) -> int:
    from raftkv.runtime.config import config_from_namespace
    from raftkv.runtime.server import run

    try:
        cfg = config_from_namespace(args)
    except ValueError as exc:
        print(f"raftkv serve: {exc}", file=sys.stderr)
        return 2
    return run(cfg)


def build_parser() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    from raftkv.archive import cli as archive_cli
    from raftkv.runtime import recover
    from raftkv.runtime.config import add_serve_arguments
    from raftkv.tools import authcmd, local

    parser = argparse.ArgumentParser(
        prog="raftkv",
        description="raftkv node and tools",
        epilog=EXAMPLES + "\n\n`raftkv COMMAND --help` shows a command's options and examples.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    serve = sub.add_parser(
        "serve",
        help="run a raftkv node",
        description="Run a raftkv node. Every flag also reads env "
        "RAFTKV_<FLAG> (e.g. RAFTKV_DATA_DIR).",
        epilog=SERVE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_serve_arguments(serve)
    serve.set_defaults(func=_serve)
    local.add_subcommand(sub)
    authcmd.add_subcommand(sub)
    recover.add_subcommand(sub)
    archive_cli.add_subcommand(sub)
    _register_client_commands(sub)
    return parser, serve


def _client_cli() -> ModuleType | None:
    try:
        return importlib.import_module("raftkv.client.cli")
    except ModuleNotFoundError as exc:
        if exc.name != "raftkv.client.cli":
            raise
        return None


def _register_client_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    register = getattr(_client_cli(), "register", None)
    if register is not None:
        register(sub)


def main(argv: Sequence[str] | None = None) -> int:
    from raftkv.runtime.config import _apply_env

    args_list = list(sys.argv[1:] if argv is None else argv)
    parser, serve = build_parser()
    if args_list[:1] == ["serve"]:
        import os

        _apply_env(serve, args_list[1:], os.environ)
    # `lock acquire NAME -- COMMAND`: the command is split off before argparse, which
    # would drop the `--`.
    split = getattr(_client_cli(), "split_exec_command", None)
    exec_command = None
    if split is not None:
        args_list, exec_command = split(args_list)
    args = parser.parse_args(args_list)
    if exec_command is not None:
        args.exec_command = exec_command
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
