"""How the client is put together: `AsyncClient` is one mixin per resource over
`ResourceApi`, and the blocking `Client` mirrors it call by call. Both rules are
checked here, each checker with a case it must catch."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Iterator

from raftkv.client import AsyncClient, Client
from raftkv.client.resource import ResourceApi

# What only the async client shows: its transport and what that holds. The blocking
# client exposes the async one as `aio` instead.
ASYNC_ONLY = {"request", "credentials", "selector", "retry", "attempt_timeout", "sessions"}
SYNC_ONLY = {"aio"}


def shadowed_calls(client: type) -> list[str]:
    """Names defined by more than one resource mixin of `client`: the MRO would
    silently pick one of them."""
    owner: dict[str, str] = {}
    problems = []
    for cls in client.__mro__:
        if cls in (client, ResourceApi) or not issubclass(cls, ResourceApi):
            continue
        for name in vars(cls):
            if name.startswith("__"):
                continue
            if name in owner:
                problems.append(f"{name}: {owner[name]} and {cls.__name__}")
            owner[name] = cls.__name__
    return problems


def _public(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_")}


def _signature(cls: type, name: str) -> str:
    # The blocking twin of `AsyncIterator[X]` (a watch, an async context manager)
    # is `Iterator[X]`; a coroutine's result is the blocking call's return value.
    return str(inspect.signature(getattr(cls, name))).replace("AsyncIterator[", "Iterator[")


def sync_drift(
    async_cls: type, sync_cls: type, async_only: set[str], sync_only: set[str]
) -> list[str]:
    """Where the blocking client no longer mirrors the async one."""
    problems = []
    async_names, sync_names = _public(async_cls), _public(sync_cls)
    problems += [
        f"{n}: not in {sync_cls.__name__}" for n in sorted(async_names - sync_names - async_only)
    ]
    problems += [
        f"{n}: not in {async_cls.__name__}" for n in sorted(sync_names - async_names - sync_only)
    ]
    for name in sorted(async_names & sync_names):
        is_property = isinstance(inspect.getattr_static(async_cls, name), property)
        if is_property != isinstance(inspect.getattr_static(sync_cls, name), property):
            problems.append(f"{name}: a property in one client only")
        elif not is_property and _signature(async_cls, name) != _signature(sync_cls, name):
            problems.append(
                f"{name}: {_signature(async_cls, name)} != {_signature(sync_cls, name)}"
            )
    return problems


def test_every_call_of_the_async_client_has_one_resource() -> None:
    assert shadowed_calls(AsyncClient) == []


def test_the_shadow_check_catches_two_resources_defining_one_call() -> None:
    class First(ResourceApi):
        async def get(self) -> None: ...

    class Second(ResourceApi):
        async def get(self) -> None: ...

        async def put(self) -> None: ...

    class Both(First, Second):
        pass

    assert shadowed_calls(Both) == ["get: First and Second"]
    assert shadowed_calls(First) == []


def test_the_blocking_client_mirrors_every_call_of_the_async_one() -> None:
    assert sync_drift(AsyncClient, Client, ASYNC_ONLY, SYNC_ONLY) == []


def test_the_mirror_check_catches_a_missing_call_and_a_drifted_signature() -> None:
    class Async:
        async def get(self, key: bytes, *, serializable: bool = False) -> int: ...

        async def put(self, key: bytes) -> None: ...

        @contextlib.asynccontextmanager
        async def held(self) -> AsyncIterator[int]:
            yield 1

    class Blocking:
        def get(self, key: bytes, *, serializable: bool = True) -> int: ...

        @contextlib.contextmanager
        def held(self) -> Iterator[int]:
            yield 1

    assert sync_drift(Async, Blocking, set(), set()) == [
        "put: not in Blocking",
        "get: (self, key: 'bytes', *, serializable: 'bool' = False) -> 'int' != "
        "(self, key: 'bytes', *, serializable: 'bool' = True) -> 'int'",
    ]
    assert sync_drift(Async, Blocking, {"put"}, set())[0].startswith("get: ")
