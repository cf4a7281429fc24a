"""Just enough PromQL structure for the live checks: the operands of an alert's top-level
comparisons and set operations (the signals it compares), and dashboard variables."""

from __future__ import annotations

import re

_COMPARISONS = ("==", "!=", ">=", "<=", ">", "<")
_SET_OPERATORS = ("and", "or", "unless")
_MODIFIER = re.compile(
    r"\s*(bool\b)?\s*((on|ignoring)\s*\([^)]*\))?\s*((group_left|group_right)\s*(\([^)]*\))?)?"
)
_NUMBER = re.compile(r"^[\s\d.+\-*/()eE]+$")


def top_level_operands(expr: str) -> list[str]:
    """Split `expr` at comparison and set operators outside (), {}, [] and strings.

    `a > on (x) b and c < 3` -> ["a", "b", "c", "3"]; matchers like {code!="200"} and
    anything in parentheses stay whole."""
    operands: list[str] = []
    depth = 0
    quote = ""
    start = 0
    i = 0
    while i < len(expr):
        ch = expr[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if ch == quote:
                quote = ""
            i += 1
            continue
        if ch in "\"'`":
            quote = ch
        elif ch in "({[":
            depth += 1
        elif ch in ")}]":
            depth -= 1
        elif depth == 0:
            width = _operator_at(expr, i)
            if width:
                operands.append(expr[start:i])
                end = i + width
                modifier = _MODIFIER.match(expr, end)
                start = i = modifier.end() if modifier else end
                continue
        i += 1
    operands.append(expr[start:])
    return [o.strip() for o in operands if o.strip()]


def _operator_at(expr: str, i: int) -> int:
    for op in _COMPARISONS:
        if expr.startswith(op, i):
            return len(op)
    for word in _SET_OPERATORS:
        end = i + len(word)
        if (
            expr.startswith(word, i)
            and (i == 0 or not (expr[i - 1].isalnum() or expr[i - 1] in "_:"))
            and (end >= len(expr) or not (expr[end].isalnum() or expr[end] in "_:"))
        ):
            return len(word)
    return 0


def is_number(expr: str) -> bool:
    """A literal scalar such as `0.05` or `26 * 3600`."""
    return bool(_NUMBER.match(expr))


def substitute(expr: str, variables: dict[str, str]) -> str:
    """Replace Grafana variables ($name, ${name}) by values."""
    for name in sorted(variables, key=len, reverse=True):
        expr = expr.replace("${" + name + "}", variables[name]).replace("$" + name, variables[name])
    return expr
