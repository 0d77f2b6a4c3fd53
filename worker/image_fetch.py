"""Fetching an image given by URL, through the SSRF guard (core.url_guard): public http(s)
addresses only, the checked address is the one connected to, at most 3 redirects each
checked again, a byte cap while streaming, and the client's timeouts."""

from __future__ import annotations

import httpx

from core import url_guard
from core.errors import ImageFetchFailed, ImageTooLarge
from core.settings import get_settings

MAX_REDIRECTS = url_guard.MAX_REDIRECTS


def fetch_image(
    client: httpx.Client,
    url: str,
    *,
    max_bytes: int,
    name: str,
    guard: url_guard.UrlGuard | None = None,
) -> bytes:
    """The bytes at ``url``; ImageFetchFailed or ImageTooLarge naming the image otherwise.

    ``guard`` defaults to one built from this process's settings (its allow-list).
    """
    settings = get_settings()
    guard = guard or url_guard.UrlGuard.from_settings(settings)
    # Each read has the client's timeout; the whole download gets a few times that.
    download_seconds = 4 * settings.url_fetch_timeout.total_seconds()
    shown = url_guard.display_url(url)
    try:
        with url_guard.open_stream(
            client, guard, "GET", url, max_redirects=MAX_REDIRECTS
        ) as response:
            if response.status_code != 200:
                raise ImageFetchFailed(
                    f"{name}: {shown} answered HTTP {response.status_code}", input=name
                )
            return url_guard.read_limited(response, max_bytes, seconds=download_seconds)
    except (url_guard.UrlRefused, url_guard.ResponseTooSlow) as refused:
        raise ImageFetchFailed(f"{name}: {refused}", input=name) from refused
    except url_guard.ResponseTooLarge as too_large:
        raise ImageTooLarge(f"{name}: {shown}: {too_large}", input=name) from too_large
    except httpx.HTTPError as error:
        raise ImageFetchFailed(f"{name}: could not fetch {shown}: {error}", input=name) from error
