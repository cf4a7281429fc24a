"""`raftkv auth token NAME --role ROLE`: make a bearer token and its auth-file entry.

Prints the new token (256 random bits) on stdout, and nothing else, so
`TOKEN=$(raftkv auth token ci --role readwrite --auth-file auth.json)` works. With
`--auth-file` the entry (its SHA-256, never the token) is added to that file
atomically (mode 0600; running nodes reload it within a second); without, the
entry is printed on stderr to add by hand (docs/security.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from raftkv.runtime.credentials import new_token, token_entry, write_auth_file
from raftkv.runtime.http.auth import ROLES, AuthFileError, parse_auth_file


def add_subcommand(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    examples = (
        "examples:\n"
        "  raftkv auth token ci --role readwrite --prefix ci/ --auth-file auth.json\n"
        "  raftkv auth token ops --role admin --auth-file auth.json\n"
        "  raftkv auth token dashboard --role read"
    )
    auth = sub.add_parser(
        "auth",
        help="make credentials for the client port",
        description="Make credentials for the client port (docs/security.md).",
        epilog=examples,
        formatter_class=raw,
    )
    actions = auth.add_subparsers(dest="auth_command", metavar="ACTION", required=True)
    token = actions.add_parser(
        "token",
        help="make a bearer token; print it; add its SHA-256 to an auth file",
        description=__doc__,
        epilog=examples,
        formatter_class=raw,
    )
    token.add_argument("name", help="the identity's name (shown in logs and 403s)")
    token.add_argument("--role", required=True, choices=ROLES)
    token.add_argument(
        "--prefix",
        action="append",
        default=None,
        metavar="PREFIX",
        help="limit the identity to keys under PREFIX (repeatable)",
    )
    token.add_argument(
        "--auth-file", metavar="FILE", help="add the entry to this auth file (created if missing)"
    )
    token.set_defaults(func=cmd_token)


def cmd_token(args: argparse.Namespace) -> int:
    token = new_token()
    entry = token_entry(args.name, args.role, token, args.prefix)
    if args.auth_file is None:
        print('add to the auth file\'s "tokens":\n' + json.dumps(entry), file=sys.stderr)
        print(token)
        return 0
    path = Path(args.auth_file)
    doc: dict[str, Any] = {"tokens": [], "certificates": []}
    try:
        if path.exists():
            text = path.read_text()
            parse_auth_file(text)  # refuse to extend a file the nodes could not load
            doc = {"tokens": [], "certificates": [], **json.loads(text)}
        write_auth_file(path, [*doc["tokens"], entry], doc["certificates"])
    except (OSError, AuthFileError) as exc:
        print(f"raftkv auth token: {path}: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0
