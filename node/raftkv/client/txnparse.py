"""The CLI's compact txn syntax (pure).

    raftkv txn --if 'version(a) == 0' --then 'put a 1' --else 'get a'

compare: `TARGET(KEY) OP VALUE` with TARGET one of value, version,
create_revision, mod_revision, lease, exists; OP one of == != < >; VALUE a
(shell-quoted) string for `value`, true/false for `exists`, an integer
otherwise. Append ` prefix` to make it hold for every key with that prefix:
`version(jobs/) == 0 prefix`.
ops: `put KEY VALUE [--lease N]`, `del KEY [--prefix]`,
`get KEY [--prefix] [--limit N] [--keys-only] [--count-only]`.
"""

from __future__ import annotations

import re
import shlex

from raftkv.client.models import (
    COMPARE_OPS,
    COMPARE_TARGETS,
    Compare,
    TxnDelete,
    TxnOp,
    TxnPut,
    TxnRange,
)

_COMPARE = re.compile(
    r"^\s*(?P<target>[a-z_]+)\((?P<key>.*?)\)\s*(?P<op>==|!=|<|>)\s*(?P<rest>.*)$", re.DOTALL
)


class TxnSyntaxError(ValueError):
    pass


def parse_compare(expr: str) -> Compare:
    m = _COMPARE.match(expr)
    if m is None:
        raise TxnSyntaxError(
            f"bad compare {expr!r}: expected TARGET(KEY) OP VALUE, e.g. 'version(a) == 0'"
        )
    target, key, op = m["target"], m["key"], m["op"]
    if target not in COMPARE_TARGETS:
        raise TxnSyntaxError(
            f"bad compare {expr!r}: target must be one of {', '.join(COMPARE_TARGETS)}"
        )
    assert op in COMPARE_OPS
    try:
        tokens = shlex.split(m["rest"])
    except ValueError as exc:
        raise TxnSyntaxError(f"bad compare {expr!r}: {exc}") from None
    prefix = bool(tokens) and tokens[-1] == "prefix" and len(tokens) > 1
    if prefix:
        tokens = tokens[:-1]
    if len(tokens) != 1:
        raise TxnSyntaxError(f"bad compare {expr!r}: give one value (quote it if it has spaces)")
    raw = tokens[0]
    value: str | int | bool
    if target == "value":
        value = raw
    elif target == "exists":
        if raw not in ("true", "false"):
            raise TxnSyntaxError(f"bad compare {expr!r}: exists takes true or false")
        value = raw == "true"
    else:
        try:
            value = int(raw)
        except ValueError:
            raise TxnSyntaxError(f"bad compare {expr!r}: {target} takes an integer") from None
    try:
        return Compare(key, target, op, value, prefix)
    except ValueError as exc:
        raise TxnSyntaxError(f"bad compare {expr!r}: {exc}") from None


def parse_op(expr: str) -> TxnOp:
    try:
        tokens = shlex.split(expr)
    except ValueError as exc:
        raise TxnSyntaxError(f"bad op {expr!r}: {exc}") from None
    if not tokens:
        raise TxnSyntaxError("empty txn op")
    verb, args = tokens[0], tokens[1:]
    flags, positional = _split_flags(expr, args)
    if verb == "put":
        _only(expr, flags, {"--lease"})
        if len(positional) != 2:
            raise TxnSyntaxError(f"bad op {expr!r}: expected put KEY VALUE [--lease N]")
        return TxnPut(positional[0], positional[1], _int_flag(expr, flags, "--lease"))
    if verb in ("del", "delete"):
        _only(expr, flags, {"--prefix"})
        if len(positional) != 1:
            raise TxnSyntaxError(f"bad op {expr!r}: expected del KEY [--prefix]")
        return TxnDelete(positional[0], "--prefix" in flags)
    if verb in ("get", "range"):
        _only(expr, flags, {"--prefix", "--limit", "--keys-only", "--count-only"})
        if len(positional) != 1:
            raise TxnSyntaxError(f"bad op {expr!r}: expected get KEY [--prefix] [--limit N]")
        return TxnRange(
            positional[0],
            "--prefix" in flags,
            _int_flag(expr, flags, "--limit"),
            "--keys-only" in flags,
            "--count-only" in flags,
        )
    raise TxnSyntaxError(f"bad op {expr!r}: an op starts with put, del or get")


_VALUED = {"--lease", "--limit"}


def _split_flags(expr: str, args: list[str]) -> tuple[dict[str, str], list[str]]:
    flags: dict[str, str] = {}
    positional: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--"):
            if arg in _VALUED:
                if i + 1 >= len(args):
                    raise TxnSyntaxError(f"bad op {expr!r}: {arg} needs a value")
                flags[arg] = args[i + 1]
                i += 2
                continue
            flags[arg] = ""
        else:
            positional.append(arg)
        i += 1
    return flags, positional


def _only(expr: str, flags: dict[str, str], allowed: set[str]) -> None:
    unknown = sorted(set(flags) - allowed)
    if unknown:
        raise TxnSyntaxError(f"bad op {expr!r}: unknown option {unknown[0]}")


def _int_flag(expr: str, flags: dict[str, str], name: str) -> int:
    if name not in flags:
        return 0
    try:
        value = int(flags[name])
    except ValueError:
        raise TxnSyntaxError(f"bad op {expr!r}: {name} takes an integer") from None
    if value < 0:
        raise TxnSyntaxError(f"bad op {expr!r}: {name} must be >= 0")
    return value
