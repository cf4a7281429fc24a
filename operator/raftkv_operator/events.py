"""Kubernetes Events on our objects and kopf's logger type (kopf posts Events in the
background)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, cast

import kopf

KopfLogger = logging.Logger | logging.LoggerAdapter[Any]


def namespaced(namespace: str | None) -> str:
    if not namespace:
        raise kopf.PermanentError("raftkv resources are namespaced")
    return namespace


def info(body: Mapping[str, Any], *, reason: str, message: str) -> None:
    """A Normal Event on the object (kopf posts it in the background)."""
    kopf.info(cast(kopf.Body, body), reason=reason, message=message)


def warn(body: Mapping[str, Any], *, reason: str, message: str) -> None:
    kopf.warn(cast(kopf.Body, body), reason=reason, message=message)
