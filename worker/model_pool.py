"""The process's model threads, and how many of them are free.

Every process_items task takes free threads before it claims items, as many as it has
items for, so an item is claimed only when a thread is there to send it to the model at
once: a cancel still stops every image not yet sent, and a lease starts when the work does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class ModelPool:
    def __init__(self, size: int) -> None:
        self.size = size
        self._free = size
        self._changed = threading.Condition()
        self._executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="model")

    def reserve(
        self, most: int, timeout: float | None, *, least: int = 1, gather: float = 0.0
    ) -> int:
        """Take up to ``most`` free threads, waiting at most ``timeout`` s for the first one;
        returns how many were taken (0 when the wait ran out).

        With fewer than ``least`` free, it waits up to ``gather`` s more for others to free
        up: one claim of several images costs the database far less than several claims.
        """
        now = time.monotonic()
        deadline = None if timeout is None else now + timeout
        with self._changed:
            while self._free == 0:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return 0
                self._changed.wait(remaining)
            enough = time.monotonic() + gather
            while self._free < least and (remaining := enough - time.monotonic()) > 0:
                self._changed.wait(remaining)
            taken = min(most, self._free)
            self._free -= taken
            return taken

    def release(self, count: int = 1) -> None:
        if count <= 0:
            return
        with self._changed:
            self._free += count
            self._changed.notify_all()

    def run(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Run ``function`` on a reserved thread, which is released when it returns."""

        def call() -> T:
            try:
                return function(*args, **kwargs)
            finally:
                self.release()

        return self._executor.submit(call)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
