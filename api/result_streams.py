"""Results streams (``GET /v1/jobs/{id}/results`` and ``results.csv``): a few open at once
per account, and none holding a database connection while its client reads.

A stream reads its job's finished items a page at a time, each page in a session of its own
that is closed before the page is sent; a client that reads slowly (or not at all) holds a
socket and one page of memory, never a connection of the pool. The count of open streams is
kept per API process: with several API processes, an account may have this many in each.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import Receive, Scope, Send

from core.errors import RateLimited
from db import jobs as jobs_repository
from db.engine import unit_of_work
from db.models import JobItem

# Items read per session: a page of the largest results (8192 tokens each) is a few MB.
PAGE_ROWS = 100
# What a refused stream is told to wait: streams of ordinary jobs end within seconds.
RETRY_AFTER_SECONDS = 5


class ResultStreams:
    """The results streams each account has open in this process."""

    def __init__(self) -> None:
        self._open: dict[uuid.UUID, int] = {}
        self._lock = threading.Lock()

    def open(self, account_id: uuid.UUID, limit: int, route: str) -> Callable[[], None]:
        """Count a new stream of the account, or raise RateLimited past ``limit``; returns
        the function that ends it (call it once)."""
        with self._lock:
            count = self._open.get(account_id, 0)
            if count >= limit:
                raise RateLimited(
                    f"{route}: this account already has {count} results streams open, the "
                    f"limit; try again when one ends",
                    retry_after=RETRY_AFTER_SECONDS,
                    input="job_id",
                )
            self._open[account_id] = count + 1

        def close() -> None:
            with self._lock:
                left = self._open[account_id] - 1
                if left:
                    self._open[account_id] = left
                else:
                    del self._open[account_id]

        return close


class CountedStream(StreamingResponse):
    """A streaming response that calls ``on_end`` when it ends, however it ends (done, the
    client gone, the connection dropped)."""

    def __init__(self, content: AsyncIterator[bytes], on_end: Callable[[], None], **kwargs: Any):
        super().__init__(content, **kwargs)
        self.on_end = on_end

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.on_end()


def _read_page(
    session_factory: sessionmaker[Session],
    job_id: uuid.UUID,
    after_index: int,
    render: Callable[[list[JobItem]], bytes],
) -> tuple[bytes, int | None]:
    with unit_of_work(session_factory) as session:
        items = jobs_repository.list_finished_items(
            session, job_id, after_index=after_index, limit=PAGE_ROWS
        )
    # Rendered after the session has closed: the items' columns are loaded.
    return render(items), items[-1].index if items else None


async def finished_pages(
    session_factory: sessionmaker[Session],
    job_id: uuid.UUID,
    render: Callable[[list[JobItem]], bytes],
) -> AsyncIterator[bytes]:
    """The job's finished items in input order, ``render``ed a page at a time (in a worker
    thread); no session is open while a page is being sent."""
    after: int | None = -1
    while after is not None:
        chunk, after = await run_in_threadpool(_read_page, session_factory, job_id, after, render)
        if chunk:
            yield chunk
