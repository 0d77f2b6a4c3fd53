"""Fetching an image given by URL: http(s) only, a byte cap, timeouts, at most 3 redirects."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx

from core.errors import ImageFetchFailed, ImageTooLarge

MAX_REDIRECTS = 3


def fetch_image(client: httpx.Client, url: str, *, max_bytes: int, name: str) -> bytes:
    for _hop in range(MAX_REDIRECTS + 1):
        if urlsplit(url).scheme not in ("http", "https"):
            raise ImageFetchFailed(f"{name}: only http and https URLs are fetched", input=name)
        try:
            with client.stream("GET", url) as response:
                if response.is_redirect:
                    url = str(response.url.join(response.headers.get("Location", "")))
                    continue
                if response.status_code != 200:
                    raise ImageFetchFailed(
                        f"{name}: {url} answered HTTP {response.status_code}", input=name
                    )
                declared = response.headers.get("Content-Length")
                if declared and declared.isdigit() and int(declared) > max_bytes:
                    raise ImageTooLarge(
                        f"{name}: {url} is {int(declared)} bytes, over the {max_bytes} byte limit",
                        input=name,
                    )
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_bytes(65536):
                    size += len(chunk)
                    if size > max_bytes:
                        raise ImageTooLarge(
                            f"{name}: {url} is over the {max_bytes} byte limit", input=name
                        )
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.HTTPError as error:
            raise ImageFetchFailed(f"{name}: could not fetch {url}: {error}", input=name) from error
    raise ImageFetchFailed(f"{name}: more than {MAX_REDIRECTS} redirects", input=name)
