"""Cursor pages, the same for every list endpoint.

A list fetches one row more than the page holds: if it came, the page says where the next
one starts (``next_cursor``, the last row's sort key). Cursors are opaque to clients
(base64url of the key's parts); a cursor we did not give out is a 400 naming ``cursor``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import TypeVar

from core.errors import InvalidRequest

Row = TypeVar("Row")
Key = TypeVar("Key")
_SEPARATOR = "|"


def encode_cursor(*parts: str) -> str:
    raw = _SEPARATOR.join(parts).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, parse: Callable[[list[str]], Key]) -> Key:
    """The key a cursor stands for; ``parse`` turns its parts into the key and raises
    ValueError (or TypeError) for parts that are not a key of this list."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        return parse(raw.split(_SEPARATOR))
    except (binascii.Error, ValueError, TypeError) as error:
        raise InvalidRequest("cursor is not one this API gave out", input="cursor") from error


def page(
    rows: Sequence[Row], limit: int, key: Callable[[Row], Sequence[str]]
) -> tuple[list[Row], str | None]:
    """The first ``limit`` of ``rows`` (fetched as ``limit + 1``) and the next page's cursor."""
    shown = list(rows[:limit])
    more = len(rows) > limit and bool(shown)
    return shown, encode_cursor(*key(shown[-1])) if more else None
