"""Progress of long audit work (export, import, rebuild) on a stream, usually stderr.

On a terminal: one redrawn line with a bar, the rate and the ETA. Otherwise (a log file, a
pipe): a plain line every `every` items, and one at the end, so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

BAR_WIDTH = 30
REDRAW_S = 0.1


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    whole = int(seconds)
    if whole >= 3600:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 60}m{whole % 60:02d}s" if whole >= 60 else f"{whole}s"


class ProgressReporter:
    def __init__(
        self,
        label: str,
        total: int | None = None,
        *,
        out: TextIO | None = None,
        every: int = 10_000,
        unit: str = "events",
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.total = total
        self.out = out if out is not None else sys.stderr
        self.every = max(every, 1)
        self.unit = unit
        self.tty = self.out.isatty() if tty is None else tty
        self._clock = clock
        self._started = clock()
        self._drawn = float("-inf")
        self._next_line = self.every
        self.done = 0

    def summary(self) -> str:
        elapsed = self._clock() - self._started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        text = f"{self.done:,}"
        if self.total:
            text += f"/{self.total:,}"
        text += f" {self.unit}, {rate:,.0f} {self.unit}/s"
        if self.total:
            left = max(self.total - self.done, 0)
            text += f", ETA {duration(left / rate if rate > 0 else None)}"
        return text

    def update(self, done: int) -> None:
        self.done = done
        if self.tty:
            now = self._clock()
            if now - self._drawn >= REDRAW_S:
                self._drawn = now
                self._draw()
        elif done >= self._next_line:
            self._next_line = (done // self.every + 1) * self.every
            print(f"{self.label}: {self.summary()}", file=self.out, flush=True)

    def finish(self, done: int | None = None) -> None:
        if done is not None:
            self.done = done
        if self.tty:
            self._draw()
            self.out.write("\n")
            self.out.flush()
        else:
            print(f"{self.label}: done, {self.summary()}", file=self.out, flush=True)

    def _draw(self) -> None:
        bar = ""
        if self.total:
            fraction = min(self.done / self.total, 1.0)
            filled = int(fraction * BAR_WIDTH)
            bar = f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {fraction:6.1%} "
        self.out.write(f"\r{self.label} {bar}{self.summary()}\x1b[K")
        self.out.flush()
