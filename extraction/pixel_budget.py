"""A budget of decoded pixels for one process.

A 100-megapixel image decodes to about 300 MB in RGB (more while it is converted), and a
worker prepares images on many threads at once: without a bound, one process could reach
tens of GB. Image preparation holds an image's pixels (width x height, read from the header)
from the budget while it decodes and prepares it; an image that would pass the budget waits
for others to let go, in arrival order, rather than failing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class PixelBudget:
    """At most ``limit`` decoded pixels held at once, first come first served.

    An image larger than the whole budget still runs, alone, once nothing else is held, so
    no image waits forever; and an image waiting is not overtaken by smaller ones coming
    later, which would otherwise keep a large one waiting for good.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held = 0
        self._next_ticket = 0
        self._serving = 0
        self._condition = threading.Condition()

    @property
    def held(self) -> int:
        """Pixels held now."""
        with self._condition:
            return self._held

    @property
    def waiting(self) -> int:
        """Threads waiting for room."""
        with self._condition:
            return self._next_ticket - self._serving

    def acquire(self, pixels: int) -> None:
        """Hold ``pixels``, waiting until they fit (or nothing else is held)."""
        with self._condition:
            ticket = self._next_ticket
            self._next_ticket += 1
            self._condition.wait_for(
                lambda: (
                    self._serving == ticket
                    and (self._held == 0 or self._held + pixels <= self.limit)
                )
            )
            self._held += pixels
            self._serving += 1
            # The next in line may fit beside this one.
            self._condition.notify_all()

    def release(self, pixels: int) -> None:
        with self._condition:
            self._held -= pixels
            self._condition.notify_all()

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        self.acquire(pixels)
        try:
            yield
        finally:
            self.release(pixels)
