"""A small progress bar on stderr: no dependency, at most ~10 redraws a second, off when not on a terminal."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import Self, TextIO

MIN_INTERVAL_SECONDS = 0.1
BAR_WIDTH = 30


def progress_enabled(flag: bool | None, stream: TextIO) -> bool:
    """--progress forces it on, --no-progress off; otherwise only when the stream is a terminal."""
    if flag is not None:
        return flag
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Progress:
    """Counts done items against an optional total; redraws one line in place with a carriage return."""

    def __init__(
        self,
        label: str,
        total: int | None,
        *,
        stream: TextIO,
        enabled: bool,
        clock: Callable[[], float] = time.monotonic,
        min_interval: float = MIN_INTERVAL_SECONDS,
    ) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self._stream = stream
        self._enabled = enabled
        self._clock = clock
        self._min_interval = min_interval
        self._started = clock()
        self._last_draw: float | None = None
        self._last_width = 0
        self._drawn: int | None = None  # the count shown on the line now
        self._closed = False

    def advance(self, count: int = 1) -> None:
        self.done += count
        if self.total is not None and self.done > self.total:
            self.total = self.done  # the estimate was low (e.g. a queue that grew)
        now = self._clock()
        if self._last_draw is None or now - self._last_draw >= self._min_interval:
            self._draw(now)

    def render(self, now: float | None = None) -> str:
        elapsed = max((now if now is not None else self._clock()) - self._started, 1e-9)
        rate = self.done / elapsed
        if self.total:
            filled = int(BAR_WIDTH * self.done / self.total)
            bar = "#" * filled + "." * (BAR_WIDTH - filled)
            percent = int(100 * self.done / self.total)
            return f"{self.label} [{bar}] {self.done}/{self.total} {percent:3d}% {rate:,.0f}/s"
        return f"{self.label} {self.done} done {rate:,.0f}/s"

    def _draw(self, now: float) -> None:
        if not self._enabled:
            return
        self._last_draw = now
        self._drawn = self.done
        line = self.render(now)
        padding = " " * max(0, self._last_width - len(line))
        self._last_width = len(line)
        self._stream.write(f"\r{line}{padding}")
        self._stream.flush()

    def clear(self) -> None:
        """Blank the bar's line so other output can be written; the next advance() draws it again."""
        if self._enabled and self._last_width:
            self._stream.write("\r" + " " * self._last_width + "\r")
            self._stream.flush()
            self._last_width = 0
            self._last_draw = None
            self._drawn = None

    def close(self) -> None:
        """Draw the final state and end the line; calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        if self._enabled:
            if self._drawn != self.done:  # the last frame may already show the final count
                self._draw(self._clock())
            self._stream.write("\n")
            self._stream.flush()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
