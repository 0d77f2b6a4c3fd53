"""A progress bar per phase on a terminal; plain lines (at most every few seconds) elsewhere."""

from __future__ import annotations

import sys
import time
from typing import TextIO

BAR_WIDTH = 24
# Without a terminal: a line when this much time has passed, or at 10 % steps.
PLAIN_EVERY = 5.0


def _size(value: float, unit: str) -> str:
    if unit == "B":
        return f"{value / 2**20:.1f} MB"
    return f"{value:.0f}"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Phase:
    """One phase (``upload`` in bytes, ``images`` done): its bar, rate and ETA."""

    def __init__(self, label: str, total: int, unit: str, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = max(total, 0)
        self.unit = unit
        self.stream = stream or sys.stderr
        self.terminal = self.stream.isatty()
        self.started = time.monotonic()
        self.done = 0
        self.last_line = 0.0
        self.last_step = -1

    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def update(self, done: int) -> None:
        self.done = min(done, self.total) if self.total else done
        now = time.monotonic()
        share = self.done / self.total if self.total else 1.0
        rate = self.rate()
        left = (self.total - self.done) / rate if rate > 0 else None
        per = "/s" if self.unit == "B" else " images/s"
        text = (
            f"{_size(self.done, self.unit)} of {_size(self.total, self.unit)}, "
            f"{_size(rate, self.unit)}{per}, ETA {_duration(left) if left is not None else '?'}"
        )
        if self.terminal:
            filled = int(BAR_WIDTH * share)
            bar = "#" * filled + "-" * (BAR_WIDTH - filled)
            self.stream.write(f"\r{self.label:7} [{bar}] {share:4.0%}  {text}\x1b[K")
            self.stream.flush()
            return
        step = int(share * 10)
        if step != self.last_step or now - self.last_line >= PLAIN_EVERY:
            self.stream.write(f"{self.label}: {share:.0%} ({text})\n")
            self.stream.flush()
            self.last_line, self.last_step = now, step

    def finish(self) -> None:
        elapsed = time.monotonic() - self.started
        summary = f"{_size(self.done, self.unit)} in {_duration(elapsed)}"
        if self.terminal:
            self.stream.write(f"\r{self.label:7} [{'#' * BAR_WIDTH}] 100%  {summary}\x1b[K\n")
        else:
            self.stream.write(f"{self.label}: done, {summary}\n")
        self.stream.flush()
