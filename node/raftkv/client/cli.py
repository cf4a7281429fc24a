"""The client subcommands of `raftkv` (put, get, del, txn, lock, lease, watch,
status, members, leader, checkpoint). `raftkv.cli` calls `register`.

Every subcommand takes:
  --endpoints URLS   comma-separated client URLs (env RAFTKV_ENDPOINTS;
                     default http://127.0.0.1:7379); --endpoint is the same
  -o, --output       human (default) or json
  --strategy         leader (default), random or round-robin: where reads go
  --timeout          seconds for the whole command, retries included (default 30)
  --cacert FILE      CA bundle that signs the cluster's certificates (env RAFTKV_CACERT)
  --cert/--key FILE  a client certificate and its key (env RAFTKV_CERT, RAFTKV_KEY)
  --token TOKEN      a bearer token (env RAFTKV_TOKEN; --token-file / RAFTKV_TOKEN_FILE)

Exit codes: 0 ok; 1 not found, condition failed or conflict (txn FAILURE, lock
held...); 2 usage or invalid request; 3 cluster unavailable, unreachable or
server error; 4 checkpoint verification failed; 5 not authenticated or not
permitted (401/403); 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import sys
from functools import partial
from typing import Any

from raftkv.client import commands as cmds
from raftkv.client.aio import AsyncClient
from raftkv.client.commands import (
    EXIT_DENIED,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_UNAVAILABLE,
    EXIT_UNKNOWN,
    EXIT_USAGE,
    EXIT_VERIFY,
    Command,
    Output,
    UsageError,
)
from raftkv.client.credentials import Credentials, read_token_file
from raftkv.client.endpoints import DEFAULT_ENDPOINT, STRATEGIES, parse_endpoints
from raftkv.client.errors import (
    AuthError,
    BadRequestError,
    CheckpointVerifyError,
    CompactedError,
    ConflictError,
    NotFoundError,
    RaftkvError,
    ServerError,
    UnavailableError,
)
from raftkv.client.retry import RetryPolicy

SubParsers = argparse._SubParsersAction

EXIT_CODES_HELP = """exit codes:
  0  ok
  1  not found, condition failed or conflict (txn FAILURE, lock held, ...)
  2  usage error, or a request the server rejects as invalid (400, 413)
  3  cluster unavailable: no leader, unreachable, timed out, server error
  4  checkpoint download does not match its manifest
  5  not authenticated (no or unknown token/certificate) or not permitted (role)
  6  a write's outcome is unknown: it may or may not have applied (check, then retry)
  130 interrupted"""

# One or more example lines per subcommand, shown first in its --help (like etcdctl and
# kubectl); tests/unit/client/test_help_examples.py checks that each one parses.
EXAMPLES: dict[str, tuple[str, ...]] = {
    "put": (
        "raftkv put greeting hello",
        "raftkv put config/limits - < limits.json        # the value from stdin",
        "raftkv put greeting hi --if-version 1           # compare-and-set",
    ),
    "get": (
        "raftkv get greeting",
        "raftkv get --prefix config/ -o json",
        "raftkv get greeting --serializable             # local, possibly stale",
    ),
    "del": ("raftkv del greeting", "raftkv del --prefix config/"),
    "txn": (
        "raftkv txn --if 'version(greeting) == 1' --then 'put greeting hi' --else 'get greeting'",
    ),
    "lock": ("raftkv lock acquire jobs -- ./run-job.sh", "raftkv lock show jobs"),
    "lock acquire": (
        "raftkv lock acquire jobs -- ./run-job.sh   # $RAFTKV_LOCK_TOKEN is set",
        "raftkv lock acquire jobs --no-wait -- make deploy",
        "raftkv lock acquire jobs --lease 7587   # for your lease; prints the token",
    ),
    "lock release": ("raftkv lock release jobs --lease 7587",),
    "lock show": ("raftkv lock show jobs -o json",),
    "lock list": ("raftkv lock list",),
    "lease": ("raftkv lease grant 30", "raftkv lease keepalive 7587"),
    "lease grant": ("raftkv lease grant 30",),
    "lease revoke": ("raftkv lease revoke 7587",),
    "lease keepalive": ("raftkv lease keepalive 7587", "raftkv lease keepalive 7587 --once"),
    "lease show": ("raftkv lease show 7587",),
    "lease list": ("raftkv lease list -o json",),
    "watch": ("raftkv watch --prefix app/", "raftkv watch greeting --start-revision 1 --count 3"),
    "status": (
        "raftkv status",
        "raftkv status -o json --endpoints http://10.0.0.1:7379,http://10.0.0.2:7379",
    ),
    "members": (
        "raftkv members list",
        "raftkv members add node4 10.0.0.4:7380 --client-url http://10.0.0.4:7379",
    ),
    "members list": ("raftkv members list -o json",),
    "members add": ("raftkv members add node4 10.0.0.4:7380 --client-url http://10.0.0.4:7379",),
    "members promote": ("raftkv members promote node4",),
    "members remove": ("raftkv members remove node4",),
    "leader": ("raftkv leader transfer --to node2",),
    "leader transfer": ("raftkv leader transfer", "raftkv leader transfer --to node2"),
    "checkpoint": ("raftkv checkpoint create", "raftkv checkpoint list"),
    "checkpoint create": ("raftkv checkpoint create --id nightly-1",),
    "checkpoint list": ("raftkv checkpoint list -o json",),
    "checkpoint show": ("raftkv checkpoint show nightly-1",),
    "checkpoint download": ("raftkv checkpoint download nightly-1 --out ./backup",),
}


def examples_help(command: str) -> str:
    """The `examples:` block of a command's --help (tests/unit/client/test_help_examples.py
    fails for a command without one; the CLI itself does not)."""
    lines = EXAMPLES.get(command, ())
    return "examples:\n" + "\n".join("  " + line for line in lines) if lines else ""


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("connection and output")
    group.add_argument(
        "--endpoints",
        "--endpoint",
        dest="endpoints",
        metavar="URLS",
        default=os.environ.get("RAFTKV_ENDPOINTS", DEFAULT_ENDPOINT),
        help=f"comma-separated client URLs (env RAFTKV_ENDPOINTS; default {DEFAULT_ENDPOINT})",
    )
    group.add_argument(
        "-o",
        "--output",
        choices=("human", "json"),
        default=os.environ.get("RAFTKV_OUTPUT", "human"),
        help="output format (default human; env RAFTKV_OUTPUT)",
    )
    group.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default=os.environ.get("RAFTKV_STRATEGY", "leader"),
        help="where reads go: the leader, a random or the next endpoint",
    )
    group.add_argument(
        "--timeout",
        type=_positive_float,
        default=30.0,
        metavar="SECONDS",
        help="give up after this long, retries included (default 30)",
    )
    sec = common.add_argument_group("security (docs/security.md)")
    sec.add_argument(
        "--cacert",
        metavar="FILE",
        default=os.environ.get("RAFTKV_CACERT"),
        help="CA bundle that signs the cluster's certificates (env "
        "RAFTKV_CACERT; default: the system's trust store)",
    )
    sec.add_argument(
        "--cert",
        metavar="FILE",
        default=os.environ.get("RAFTKV_CERT"),
        help="client certificate (env RAFTKV_CERT)",
    )
    sec.add_argument(
        "--key",
        dest="cert_key",
        metavar="FILE",
        default=os.environ.get("RAFTKV_KEY"),
        help="private key of --cert (env RAFTKV_KEY)",
    )
    sec.add_argument(
        "--token",
        metavar="TOKEN",
        default=os.environ.get("RAFTKV_TOKEN"),
        help="bearer token (env RAFTKV_TOKEN; prefer --token-file: a flag is "
        "visible to other local users in the process list)",
    )
    sec.add_argument(
        "--token-file",
        metavar="FILE",
        default=os.environ.get("RAFTKV_TOKEN_FILE"),
        help="file holding the bearer token (env RAFTKV_TOKEN_FILE)",
    )
    return common


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def _bool_word(text: str) -> bool:
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError("expected true or false")


def _add(
    sub: SubParsers, name: str, command: Command, help_text: str, common: Any, **kwargs: Any
) -> argparse.ArgumentParser:
    # The full command name ("lock acquire") from the parent's prog ("raftkv lock").
    path = " ".join(sub._prog_prefix.split()[1:] + [name])
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help_text,
        description=help_text[:1].upper() + help_text[1:] + ".",
        parents=[common],
        epilog="\n\n".join(filter(None, (examples_help(path), EXIT_CODES_HELP))),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        **kwargs,
    )
    parser.set_defaults(func=partial(run_command, command))
    return parser


def _add_conditions(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("conditions (all must hold, else exit 1)")
    group.add_argument(
        "--if-version",
        type=_non_negative_int,
        metavar="N",
        help="the key's version is N (0: it does not exist)",
    )
    group.add_argument(
        "--if-mod-revision",
        type=_non_negative_int,
        metavar="N",
        help="the key was last modified at revision N",
    )
    group.add_argument(
        "--if-exists",
        type=_bool_word,
        metavar="true|false",
        help="the key exists (true) or not (false)",
    )
    group.add_argument("--if-value", metavar="TEXT", help="the key's value is TEXT")


def register(sub: SubParsers) -> None:
    """Add the client subcommands to `raftkv`'s subparsers."""
    common = _common()

    p = _add(sub, "put", cmds.cmd_put, "write a key", common)
    p.add_argument("key")
    p.add_argument("value", nargs="?", help="the value; omit or '-' to read stdin")
    p.add_argument(
        "--lease", type=_non_negative_int, default=0, metavar="ID", help="attach the key to a lease"
    )
    p.add_argument("--prev-kv", action="store_true", help="also show the previous value")
    _add_conditions(p)

    p = _add(sub, "get", cmds.cmd_get, "read a key or a prefix", common)
    p.add_argument("key", help="the key (with --prefix: the prefix; '' for every key)")
    p.add_argument("--prefix", action="store_true", help="every key starting with KEY")
    p.add_argument("--limit", type=_non_negative_int, default=0, help="at most N keys")
    p.add_argument("--keys-only", action="store_true")
    p.add_argument("--count-only", action="store_true")
    p.add_argument(
        "--serializable",
        action="store_true",
        help="read the node's local state (faster, possibly stale)",
    )
    p.add_argument("--raw", action="store_true", help="the value's exact bytes, no newline")

    p = _add(sub, "del", cmds.cmd_del, "delete a key or a prefix", common)
    p.add_argument("key")
    p.add_argument("--prefix", action="store_true", help="every key starting with KEY")
    p.add_argument("--prev-kv", action="store_true", help="also show what was deleted")
    _add_conditions(p)

    p = _add(
        sub,
        "txn",
        cmds.cmd_txn,
        "compare-and-set transaction (exit 1 if the compares failed)",
        common,
    )
    p.add_argument(
        "--if",
        dest="compare",
        action="append",
        default=[],
        metavar="COMPARE",
        help="TARGET(KEY) OP VALUE, e.g. 'version(a) == 0', 'value(a) != x'",
    )
    p.add_argument(
        "--then",
        dest="success",
        action="append",
        default=[],
        metavar="OP",
        help="'put KEY VALUE [--lease N]', 'del KEY [--prefix]', 'get KEY [--prefix]'",
    )
    p.add_argument(
        "--else",
        dest="failure",
        action="append",
        default=[],
        metavar="OP",
        help="ops when a compare fails",
    )
    p.add_argument("--file", metavar="PATH", help="the txn as JSON (docs/api.md); - for stdin")

    _register_lock(sub, common)
    _register_lease(sub, common)

    p = _add(sub, "watch", cmds.cmd_watch, "print changes of a key or a prefix", common)
    p.add_argument("key", help="the key (with --prefix: the prefix; '' for every key)")
    p.add_argument("--prefix", action="store_true")
    p.add_argument(
        "--start-revision",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help="replay history from revision N",
    )
    p.add_argument(
        "--count", type=_non_negative_int, default=0, metavar="N", help="exit after N events"
    )
    p.add_argument("--progress", action="store_true", help="also print progress lines")

    _add(
        sub,
        "status",
        cmds.cmd_status,
        "each endpoint's role, term, leader and indexes (exit 3 unless all answer and "
        "agree on a leader)",
        common,
    )

    _register_members(sub, common)
    _register_checkpoint(sub, common)


def _group(sub: SubParsers, name: str, help_text: str) -> SubParsers:
    parser = sub.add_parser(
        name,
        help=help_text,
        description=help_text + ".",
        epilog=examples_help(name),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions: SubParsers = parser.add_subparsers(
        dest=f"{name}_action", metavar="ACTION", required=True
    )
    return actions


def _register_lock(sub: SubParsers, common: Any) -> None:
    actions = _group(sub, "lock", "distributed locks with fencing tokens")
    p = _add(
        actions,
        "acquire",
        cmds.cmd_lock_acquire,
        "acquire a lock; without --lease hold it (keeping a new lease alive) until "
        "interrupted, or while COMMAND runs (env RAFTKV_LOCK_TOKEN holds the fencing "
        "token; the exit code is COMMAND's, 128+N if signal N killed it; SIGTERM, "
        "SIGHUP and SIGINT to the CLI are passed on to COMMAND, and the lock is "
        "released once it exits)",
        common,
        usage="%(prog)s NAME [options] [-- COMMAND [ARGS...]]",
    )
    p.add_argument("name")
    # The command comes after `--` and is split off before argparse sees the line
    # (`split_exec_command`): argparse would swallow the `--` itself.
    p.add_argument("stray", nargs="*", help=argparse.SUPPRESS)
    p.set_defaults(exec_command=None)
    _lock_acquire_options(p)
    p.set_defaults(func=_lock_acquire_entry)

    p = _add(actions, "release", cmds.cmd_lock_release, "release a lock held by a lease", common)
    p.add_argument("name")
    p.add_argument("--lease", type=_positive_int, required=True, metavar="ID")

    p = _add(
        actions,
        "show",
        cmds.cmd_lock_show,
        "a lock's holder, fencing token and waiters (exit 1 if free)",
        common,
    )
    p.add_argument("name")
    _add(actions, "list", cmds.cmd_lock_list, "every held lock", common)


def _lock_acquire_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--lease",
        type=_non_negative_int,
        default=0,
        metavar="ID",
        help="acquire for this existing lease, print the token and exit",
    )
    p.add_argument(
        "--ttl",
        type=_positive_int,
        default=10,
        metavar="SECONDS",
        help="TTL of the lease the CLI grants (default 10)",
    )
    p.add_argument(
        "--wait-timeout",
        type=_positive_float,
        default=30.0,
        metavar="SECONDS",
        help="wait this long for the lock (default 30)",
    )
    p.add_argument("--no-wait", action="store_true", help="fail at once if it is held")


def split_exec_command(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """`raftkv lock acquire NAME [OPTIONS] -- COMMAND [ARGS...]`: the words after the
    first `--` are the command, passed on untouched (its own `--` and options
    included). Split before parsing: argparse drops a `--` it sees. Any other
    subcommand keeps its `--` (e.g. `raftkv get -- -key`)."""
    if argv[:2] == ["lock", "acquire"] and "--" in argv:
        split = argv.index("--")
        return argv[:split], argv[split + 1 :]
    return argv, None


def _lock_acquire_entry(args: argparse.Namespace) -> int:
    if args.stray:
        print(
            f"raftkv lock acquire: put the command after '--': raftkv lock acquire "
            f"{args.name} -- {' '.join(args.stray)}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.exec_command == []:
        print("raftkv lock acquire: no command after '--'", file=sys.stderr)
        return EXIT_USAGE
    return run_command(cmds.cmd_lock_acquire, args)


def _register_lease(sub: SubParsers, common: Any) -> None:
    actions = _group(sub, "lease", "leases (keys and locks that expire with a client)")
    p = _add(actions, "grant", cmds.cmd_lease_grant, "grant a lease", common)
    p.add_argument("ttl", type=_positive_int, help="seconds")
    p.add_argument("--id", type=_non_negative_int, default=0, help="choose the lease id")
    p = _add(
        actions,
        "revoke",
        cmds.cmd_lease_revoke,
        "revoke a lease: delete its keys, release its locks",
        common,
    )
    p.add_argument("id", type=_positive_int)
    p = _add(
        actions,
        "keepalive",
        cmds.cmd_lease_keepalive,
        "keep a lease alive until interrupted",
        common,
    )
    p.add_argument("id", type=_positive_int)
    p.add_argument("--once", action="store_true", help="one keep-alive, then exit")
    p = _add(actions, "show", cmds.cmd_lease_show, "a lease's TTL, keys and locks", common)
    p.add_argument("id", type=_positive_int)
    _add(actions, "list", cmds.cmd_lease_list, "every lease", common)


def _register_members(sub: SubParsers, common: Any) -> None:
    actions = _group(sub, "members", "cluster membership")
    _add(actions, "list", cmds.cmd_members_list, "the members (from the leader)", common)
    p = _add(actions, "add", cmds.cmd_members_add, "add a node as a learner", common)
    p.add_argument("name")
    p.add_argument("peer_url", metavar="PEER_HOST:PORT")
    p.add_argument(
        "--client-url",
        help="the node's client URL (its id and consensus engine are read from there; "
        "a node of another engine than the cluster's is refused)",
    )
    p.add_argument(
        "--id",
        type=int,
        default=None,
        help="the node's member id (default: ask --client-url, else the founder id; "
        "with --client-url it must be the node's own)",
    )
    p = _add(
        actions, "promote", cmds.cmd_members_promote, "make a caught-up learner a voter", common
    )
    p.add_argument("member", help="name or id")
    p = _add(actions, "remove", cmds.cmd_members_remove, "remove a member", common)
    p.add_argument("member", help="name or id")

    actions = _group(sub, "leader", "leadership")
    p = _add(
        actions,
        "transfer",
        cmds.cmd_leader_transfer,
        "move leadership (default: to the most caught-up voter)",
        common,
    )
    p.add_argument("--to", metavar="MEMBER", help="name or id of the new leader")


def _register_checkpoint(sub: SubParsers, common: Any) -> None:
    actions = _group(sub, "checkpoint", "consistent checkpoints of the state machine")
    p = _add(
        actions, "create", cmds.cmd_checkpoint_create, "write a checkpoint on every member", common
    )
    p.add_argument("--id", help="checkpoint id (default ckpt-<UTC time>-<random>)")
    _add(actions, "list", cmds.cmd_checkpoint_list, "the checkpoints, oldest first", common)
    p = _add(actions, "show", cmds.cmd_checkpoint_show, "a checkpoint's manifest", common)
    p.add_argument("id")
    p = _add(
        actions,
        "download",
        cmds.cmd_checkpoint_download,
        "download a checkpoint to DIR/data and DIR/manifest.json and verify its size "
        "and sha256 (exit 4 on a mismatch)",
        common,
    )
    p.add_argument("id")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument(
        "--progress",
        action="store_true",
        help="show the progress bar even when stderr is not a terminal",
    )
    p.add_argument("--no-progress", action="store_true")


# --- running a command ---------------------------------------------------------------
def exit_code_for(exc: BaseException) -> int:
    if isinstance(exc, UsageError | BadRequestError):
        return EXIT_USAGE
    if isinstance(exc, CheckpointVerifyError):
        return EXIT_VERIFY
    if isinstance(exc, AuthError):
        return EXIT_DENIED
    if isinstance(exc, NotFoundError | ConflictError | CompactedError):
        return EXIT_FAILED
    if isinstance(exc, UnavailableError) and exc.outcome_unknown:
        return EXIT_UNKNOWN  # not "unavailable": the write may have applied
    if isinstance(exc, UnavailableError | ServerError):
        return EXIT_UNAVAILABLE
    return EXIT_UNAVAILABLE


def error_line(command: str, exc: BaseException) -> str:
    text = (
        str(exc) if isinstance(exc, RaftkvError | UsageError) else (f"{type(exc).__name__}: {exc}")
    )
    if isinstance(exc, UnavailableError) and exc.outcome_unknown:
        text += " (the write may or may not have been applied)"
    return f"raftkv {command}: {text}"


def _command_name(args: argparse.Namespace) -> str:
    parts = [str(getattr(args, "command", "") or "")]
    action = getattr(args, f"{parts[0]}_action", None)
    if action:
        parts.append(str(action))
    return " ".join(p for p in parts if p)


def _credentials(args: argparse.Namespace) -> Credentials:
    token = args.token or None
    if token is None and args.token_file:
        token = read_token_file(args.token_file)
    if args.cert_key and not args.cert:
        raise ValueError("--key needs --cert")
    creds = Credentials(args.cacert or None, args.cert or None, args.cert_key or None, token)
    creds.ssl_context()  # the files load now, or the command stops with a clear message
    return creds


def run_command(command: Command, args: argparse.Namespace) -> int:
    """Run one client command: build the client, map errors to one stderr line and
    an exit code (never a traceback for a server or network failure)."""
    name = _command_name(args)
    try:
        endpoints = parse_endpoints(args.endpoints)
    except ValueError as exc:
        print(f"raftkv {name}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    out = Output(args.output)
    try:
        credentials = _credentials(args)
    except (OSError, ValueError, ssl.SSLError) as exc:
        print(f"raftkv {name}: credentials: {exc}", file=sys.stderr)
        return EXIT_USAGE

    async def main() -> int:
        retry = RetryPolicy(deadline=args.timeout)
        async with AsyncClient(
            endpoints,
            strategy=args.strategy,
            retry=retry,
            attempt_timeout=min(15.0, args.timeout),
            credentials=credentials,
        ) as client:
            return await command(client, args, out)

    try:
        code = asyncio.run(main())
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # Output closed early (`| head`): not an error; keep Python quiet at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except (RaftkvError, UsageError) as exc:
        print(error_line(name, exc), file=sys.stderr)
        return exit_code_for(exc)
    except OSError as exc:  # local files: txn --file, checkpoint --out
        print(
            f"raftkv {name}: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "),
            file=sys.stderr,
        )
        return EXIT_USAGE if exc.filename else EXIT_UNAVAILABLE
    if code == EXIT_UNAVAILABLE and name == "status":
        print("raftkv status: not every endpoint answered with the same leader", file=sys.stderr)
    return code
