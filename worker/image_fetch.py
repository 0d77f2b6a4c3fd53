"""Fetching an image given by URL, through the SSRF guard (core.url_guard): public http(s)
addresses only, the checked address is the one connected to, at most 3 redirects each
checked again, a byte cap while streaming, and one deadline for the whole download
(``url_fetch_timeout``) that every network read honours.

An account has at most ``url_fetches_per_account`` downloads in flight per worker process:
slow servers of one account then hold a few model threads for a bounded time, not all of
them for minutes while other accounts' images wait.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

import httpx

from core import url_guard
from core.errors import ImageFetchFailed, ImageTooLarge
from core.settings import get_settings

MAX_REDIRECTS = url_guard.MAX_REDIRECTS


class FetchSlots:
    """Downloads in flight per account in this process."""

    def __init__(self) -> None:
        self._running: Counter[uuid.UUID] = Counter()
        self._changed = threading.Condition()

    def take(self, account: uuid.UUID, limit: int, deadline: float) -> bool:
        """Wait until ``account`` has fewer than ``limit`` downloads, at most until
        ``deadline`` (monotonic); True when a slot was taken (give it back with ``give``)."""
        with self._changed:
            while self._running[account] >= limit:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            self._running[account] += 1
            return True

    def give(self, account: uuid.UUID) -> None:
        with self._changed:
            self._running[account] -= 1
            if self._running[account] <= 0:
                del self._running[account]
            self._changed.notify_all()


def fetch_image(
    client: httpx.Client,
    url: str,
    *,
    max_bytes: int,
    name: str,
    guard: url_guard.UrlGuard | None = None,
    account: uuid.UUID | None = None,
    slots: FetchSlots | None = None,
) -> bytes:
    """The bytes at ``url``; ImageFetchFailed or ImageTooLarge naming the image otherwise.

    ``guard`` defaults to one built from this process's settings (its allow-list). With
    ``account`` and ``slots``, the download waits for one of the account's slots; the wait
    counts against the deadline. The deadline holds for clients made by
    ``url_guard.guarded_client`` (the worker's).
    """
    settings = get_settings()
    guard = guard or url_guard.UrlGuard.from_settings(settings)
    seconds = settings.url_fetch_timeout.total_seconds()
    shown = url_guard.display_url(url)
    too_slow = ImageFetchFailed(
        f"{name}: {shown} did not download within the {seconds:g} s limit "
        "(IMAGEEXTRACT_URL_FETCH_TIMEOUT)",
        input=name,
    )
    with url_guard.fetch_deadline(seconds) as deadline:
        holder = account if slots is not None else None
        if holder is not None and slots is not None:
            if not slots.take(holder, settings.url_fetches_per_account, deadline):
                raise too_slow
        try:
            with url_guard.open_stream(
                client, guard, "GET", url, max_redirects=MAX_REDIRECTS
            ) as response:
                if response.status_code != 200:
                    raise ImageFetchFailed(
                        f"{name}: {shown} answered HTTP {response.status_code}", input=name
                    )
                return url_guard.read_limited(response, max_bytes, seconds=seconds)
        except url_guard.ResponseTooSlow as slow:
            raise too_slow from slow
        except url_guard.UrlRefused as refused:
            raise ImageFetchFailed(f"{name}: {refused}", input=name) from refused
        except url_guard.ResponseTooLarge as too_large:
            raise ImageTooLarge(f"{name}: {shown}: {too_large}", input=name) from too_large
        except httpx.TimeoutException as error:
            # A read cut short by the deadline ends at it (the socket's clock may be a
            # little ahead of ours).
            if time.monotonic() >= deadline - 0.1:
                raise too_slow from error
            raise ImageFetchFailed(
                f"{name}: could not fetch {shown}: {error}", input=name
            ) from error
        except httpx.HTTPError as error:
            raise ImageFetchFailed(
                f"{name}: could not fetch {shown}: {error}", input=name
            ) from error
        finally:
            if holder is not None and slots is not None:
                slots.give(holder)
