"""A one-line progress bar on a terminal (stderr); silent elsewhere (Jobs, pipes)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from raftkv.client.render import human_size


class ProgressBar:
    """Call with (done, total) bytes; `finish()` ends the line. Redraws at most
    every `interval` seconds so a fast download does not flood the terminal."""

    def __init__(
        self,
        label: str,
        stream: TextIO | None = None,
        *,
        enabled: bool | None = None,
        width: int = 30,
        interval: float = 0.1,
    ) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.width = width
        self.interval = interval
        self._started = time.monotonic()
        self._last_draw = float("-inf")
        self._drawn = False

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if done < total and now - self._last_draw < self.interval:
            return
        self._last_draw = now
        self.stream.write("\r" + self.render(done, total, now - self._started))
        self.stream.flush()
        self._drawn = True

    def render(self, done: int, total: int, elapsed: float) -> str:
        fraction = 1.0 if total <= 0 else min(1.0, done / total)
        filled = int(round(fraction * self.width))
        rate = done / elapsed if elapsed > 0 else 0.0
        return (
            f"{self.label} [{'#' * filled}{'.' * (self.width - filled)}] "
            f"{fraction * 100:5.1f}% {human_size(done)}/{human_size(total)} "
            f"{human_size(rate)}/s"
        )

    def finish(self) -> None:
        if self.enabled and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
