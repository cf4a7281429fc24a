"""The `raftkv` command.

    raftkv serve --name N ...           run a node (flags: docs/contracts.md)
    raftkv local up|status|down|env     a throw-away cluster on 127.0.0.1
    raftkv auth token NAME --role R     a bearer token for the client port

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
    from raftkv.runtime import authcmd, local
    from raftkv.runtime.config import add_serve_arguments

    parser = argparse.ArgumentParser(prog="raftkv", description="raftkv node and tools")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    serve = sub.add_parser("serve", help="run a raftkv node",
                           description="Run a raftkv node. Every flag also reads env "
                                       "RAFTKV_<FLAG> (e.g. RAFTKV_DATA_DIR).")
    add_serve_arguments(serve)
    serve.set_defaults(func=_serve)
    local.add_subcommand(sub)
    authcmd.add_subcommand(sub)
    _register_client_commands(sub)
    return parser, serve


def _register_client_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    try:
        client_cli = importlib.import_module("raftkv.client.cli")
    except ModuleNotFoundError as exc:
        if exc.name != "raftkv.client.cli":
            raise
        return
    register = getattr(client_cli, "register", None)
    if register is not None:
        register(sub)


def main(argv: Sequence[str] | None = None) -> int:
    from raftkv.runtime.config import _apply_env

    args_list = list(sys.argv[1:] if argv is None else argv)
    parser, serve = build_parser()
    if args_list[:1] == ["serve"]:
        import os
        _apply_env(serve, args_list[1:], os.environ)
    args = parser.parse_args(args_list)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
