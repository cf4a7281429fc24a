"""Kubernetes label and field selectors: the query-string form and the API (object) form.

kmock 0.8 ignores `labelSelector`/`fieldSelector` on list and watch; the emulated API server
filters with these instead, and the controllers use them to match pods to their owners.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class SelectorError(ValueError):
    """A selector that does not parse; the API server answers 400 BadRequest with it."""


_KEY = re.compile(
    r"^([a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?/)?[a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?$"
)
_VALUE = re.compile(r"^([a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?)?$")


@dataclass(frozen=True)
class Requirement:
    """One term of a label selector: `key op values`."""

    key: str
    operator: str  # "in" | "notin" | "exists" | "!exists" ("=" is "in" with one value)
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "exists":
            return self.key in labels
        if self.operator == "!exists":
            return self.key not in labels
        if self.operator == "in":
            return self.key in labels and labels[self.key] in self.values
        # notin / != also match objects without the key, as in Kubernetes.
        return self.key not in labels or labels[self.key] not in self.values


@dataclass(frozen=True)
class LabelSelector:
    """A conjunction of requirements. No requirements matches everything."""

    requirements: tuple[Requirement, ...] = ()
    matches_nothing: bool = False

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self.matches_nothing:
            return False
        present = labels or {}
        return all(r.matches(present) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements and not self.matches_nothing

    @classmethod
    def parse(cls, text: str | None) -> LabelSelector:
        """The query-string form: `a=b,c!=d,e in (f,g),h notin (i),j,!k`."""
        if not text or not text.strip():
            return cls()
        return cls(tuple(_parse_term(term) for term in _split_terms(text)))

    @classmethod
    def from_labels(cls, labels: Mapping[str, str] | None) -> LabelSelector:
        """A Service-style selector (a plain map). An empty or absent map selects nothing."""
        if not labels:
            return cls(matches_nothing=True)
        return cls(tuple(Requirement(k, "in", frozenset([str(v)])) for k, v in labels.items()))

    @classmethod
    def from_api(cls, selector: Mapping[str, Any] | None) -> LabelSelector:
        """A metav1.LabelSelector (matchLabels + matchExpressions).

        As in Kubernetes, a nil selector selects nothing and an empty one selects everything.
        """
        if selector is None:
            return cls(matches_nothing=True)
        reqs = [
            Requirement(k, "in", frozenset([str(v)]))
            for k, v in (selector.get("matchLabels") or {}).items()
        ]
        for expr in selector.get("matchExpressions") or []:
            key, op = expr.get("key"), expr.get("operator")
            values = frozenset(str(v) for v in expr.get("values") or [])
            if not key:
                raise SelectorError(f"matchExpressions entry without a key: {expr!r}")
            if op == "In":
                reqs.append(Requirement(key, "in", values))
            elif op == "NotIn":
                reqs.append(Requirement(key, "notin", values))
            elif op == "Exists":
                reqs.append(Requirement(key, "exists"))
            elif op == "DoesNotExist":
                reqs.append(Requirement(key, "!exists"))
            else:
                raise SelectorError(f"unknown matchExpressions operator {op!r}")
        return cls(tuple(reqs))


def _split_terms(text: str) -> list[str]:
    terms: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise SelectorError(f"unbalanced parentheses in selector {text!r}")
        if ch == "," and depth == 0:
            terms.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    if depth != 0:
        raise SelectorError(f"unbalanced parentheses in selector {text!r}")
    terms.append("".join(current).strip())
    if any(not t for t in terms):
        raise SelectorError(f"empty term in selector {text!r}")
    return terms


_SET_TERM = re.compile(r"^(?P<key>\S+)\s+(?P<op>in|notin)\s*\((?P<values>[^)]*)\)$")


def _check_key(key: str, text: str) -> str:
    if not _KEY.match(key):
        raise SelectorError(f"invalid label key {key!r} in selector {text!r}")
    return key


def _check_value(value: str, text: str) -> str:
    if not _VALUE.match(value):
        raise SelectorError(f"invalid label value {value!r} in selector {text!r}")
    return value


def _parse_term(term: str) -> Requirement:
    m = _SET_TERM.match(term)
    if m:
        values = [v.strip() for v in m.group("values").split(",")]
        vals = frozenset(_check_value(v, term) for v in values if v)
        return Requirement(_check_key(m.group("key"), term), m.group("op"), vals)
    if term.startswith("!"):
        return Requirement(_check_key(term[1:].strip(), term), "!exists")
    for op, kind in (("!=", "notin"), ("==", "in"), ("=", "in")):
        if op in term:
            key, _, value = term.partition(op)
            key, value = key.strip(), value.strip()
            return Requirement(_check_key(key, term), kind, frozenset([_check_value(value, term)]))
    return Requirement(_check_key(term, term), "exists")


@dataclass(frozen=True)
class FieldRequirement:
    path: str
    equal: bool
    value: str


@dataclass(frozen=True)
class FieldSelector:
    """`metadata.name=x,status.phase!=Running`: equality on (dotted) field paths."""

    requirements: tuple[FieldRequirement, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> FieldSelector:
        if not text or not text.strip():
            return cls()
        reqs = []
        for term in _split_terms(text):
            for op, equal in (("!=", False), ("==", True), ("=", True)):
                if op in term:
                    path, _, value = term.partition(op)
                    if not path.strip():
                        raise SelectorError(f"field selector term without a field: {term!r}")
                    reqs.append(FieldRequirement(path.strip(), equal, value.strip()))
                    break
            else:
                raise SelectorError(f"field selector term needs = or !=: {term!r}")
        return cls(tuple(reqs))

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return all((field_value(obj, r.path) == r.value) == r.equal for r in self.requirements)


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """The string form of a dotted field path, '' when absent (as the API server compares)."""
    current: Any = obj
    for part in path.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return ""
        current = current[part]
    if isinstance(current, bool):
        return "true" if current else "false"
    return "" if current is None else str(current)
