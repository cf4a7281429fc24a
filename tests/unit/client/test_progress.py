"""The download progress bar: drawn on terminals only, throttled, ends its line."""

from __future__ import annotations

import io

from raftkv.client.progress import ProgressBar


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_draws_on_a_terminal_and_ends_the_line() -> None:
    stream = Tty()
    bar = ProgressBar("ckpt", stream, interval=0.0, width=10)
    bar(0, 2048)
    bar(1024, 2048)
    bar(2048, 2048)
    bar.finish()
    text = stream.getvalue()
    assert text.count("\r") == 3 and text.endswith("\n")
    assert "[#####.....]  50.0%" in text and "[##########] 100.0% 2.0 KiB/2.0 KiB" in text


def test_progress_bar_is_silent_off_a_terminal_and_throttled() -> None:
    quiet = io.StringIO()
    bar = ProgressBar("ckpt", quiet)
    bar(1, 2)
    bar.finish()
    assert quiet.getvalue() == ""
    stream = Tty()
    slow = ProgressBar("ckpt", stream, interval=3600)
    for done in range(0, 100):
        slow(done, 100)
    slow(100, 100)  # the end is always drawn
    assert stream.getvalue().count("\r") == 2
