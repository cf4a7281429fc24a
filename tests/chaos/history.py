"""Histories of client operations, Jepsen style.

A history is a list of events. Each operation is an `invoke` event followed, on
the same process, by its completion: `ok` (it happened, with this result),
`fail` (it certainly did not happen) or `info` (unknown: it may take effect at
any time after its invocation, or never). A process has at most one operation
in flight; a process whose operation ended `info` is retired and the client
continues as a new process, so the open operation stays open forever.

Times are monotonic nanoseconds since the start of the run: real-time order is
what linearizability is judged against.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

EventType = Literal["invoke", "ok", "fail", "info"]
EVENT_TYPES = ("invoke", "ok", "fail", "info")


@dataclass(slots=True)
class Event:
    type: EventType
    process: int
    f: str
    key: str | None
    value: Any
    time: int  # monotonic ns since the start of the run
    index: int = -1  # position in the history
    node: str | None = None  # the node the request was sent to
    error: str | None = None  # why it failed / is unknown

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(slots=True)
class Operation:
    """An invoke and its completion, paired. `ret` is None for an `info` op."""

    id: int
    process: int
    f: str
    key: str | None
    input: Any  # the invoke's value
    output: Any  # the completion's value (None for info)
    call: int
    ret: int | None
    status: EventType  # ok | fail | info
    invoke_index: int = -1
    complete_index: int = -1
    node: str | None = None
    error: str | None = None

    @property
    def indeterminate(self) -> bool:
        return self.status == "info"

    def describe(self) -> str:
        out = "" if self.output is None else f" -> {self.output!r}"
        return (
            f"#{self.id} p{self.process} {self.status} {self.f}({self.key}, "
            f"{self.input!r}){out} [{self.call / 1e9:.3f}s, "
            f"{'inf' if self.ret is None else f'{self.ret / 1e9:.3f}s'}]"
        )


class HistoryError(ValueError):
    """A malformed history (a bug of the recorder, not of the system under test)."""


@dataclass
class Recorder:
    """Appends events with real-time stamps. Single event loop: not thread-safe."""

    events: list[Event] = field(default_factory=list)
    start_ns: int = field(default_factory=time.monotonic_ns)
    _open: dict[int, Event] = field(default_factory=dict)

    def now(self) -> int:
        return time.monotonic_ns() - self.start_ns

    def invoke(
        self, process: int, f: str, key: str | None, value: Any, node: str | None = None
    ) -> Event:
        if process in self._open:
            raise HistoryError(f"process {process} invoked {f} with an operation in flight")
        event = Event("invoke", process, f, key, value, self.now(), len(self.events), node)
        self.events.append(event)
        self._open[process] = event
        return event

    def complete(
        self, process: int, status: EventType, value: Any = None, error: str | None = None
    ) -> Event:
        if status == "invoke":
            raise HistoryError("complete() takes ok, fail or info")
        invoke = self._open.pop(process, None)
        if invoke is None:
            raise HistoryError(f"process {process} completed an operation it never invoked")
        event = Event(
            status,
            process,
            invoke.f,
            invoke.key,
            value,
            self.now(),
            len(self.events),
            invoke.node,
            error,
        )
        self.events.append(event)
        return event

    def close_open(self, error: str = "run ended") -> None:
        """Operations still in flight when the run ends are indeterminate."""
        for process in list(self._open):
            self.complete(process, "info", None, error)


def pair(events: Iterable[Event]) -> list[Operation]:
    """Invoke/completion pairs in invocation order; an unmatched invoke is `info`."""
    ops: list[Operation] = []
    open_ops: dict[int, Operation] = {}
    for position, event in enumerate(events):
        if event.type not in EVENT_TYPES:
            raise HistoryError(f"event {position}: unknown type {event.type!r}")
        if event.type == "invoke":
            if event.process in open_ops:
                raise HistoryError(f"event {position}: process {event.process} invoked twice")
            op = Operation(
                len(ops),
                event.process,
                event.f,
                event.key,
                event.value,
                None,
                event.time,
                None,
                "info",
                position,
                -1,
                event.node,
            )
            ops.append(op)
            open_ops[event.process] = op
            continue
        op_or_none = open_ops.pop(event.process, None)
        if op_or_none is None:
            raise HistoryError(f"event {position}: process {event.process} completes nothing")
        if event.f != op_or_none.f or event.key != op_or_none.key:
            raise HistoryError(f"event {position}: completion does not match its invoke")
        if event.time < op_or_none.call:
            raise HistoryError(f"event {position}: completes before it was invoked")
        op_or_none.status = event.type
        op_or_none.complete_index = position
        op_or_none.error = event.error
        if event.type != "info":
            op_or_none.ret = event.time
            op_or_none.output = event.value
    return ops


def write_jsonl(path: Path, events: Iterable[Event]) -> None:
    with path.open("w") as f:
        for event in events:
            f.write(json.dumps(event.to_json(), sort_keys=True) + "\n")


def read_jsonl(path: Path) -> list[Event]:
    return list(_parse_lines(path.read_text().splitlines(), str(path)))


def _parse_lines(lines: list[str], where: str) -> Iterator[Event]:
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            yield Event(
                raw["type"],
                int(raw["process"]),
                raw["f"],
                raw.get("key"),
                raw.get("value"),
                int(raw["time"]),
                int(raw.get("index", -1)),
                raw.get("node"),
                raw.get("error"),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise HistoryError(f"{where}:{number}: not an event: {exc}") from None
