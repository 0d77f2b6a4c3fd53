"""One answer from the answers to a long document's chunks of pages, in page order.

A remote model sees at most ``IMAGEEXTRACT_PDF_PAGES_PER_REQUEST`` pages per request, so a
longer document is asked about in chunks, each told to fill only what its pages show and
to leave the rest null. Merging them keeps what a reader expects of one document: the
header fields come from where they first appear, and the rows of a table that runs over
several pages are all there, in order.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def is_empty(value: Any) -> bool:
    """A value that says nothing: null, blank text, an empty list or object."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    return isinstance(value, list | dict) and not value


def merge_answers(answers: list[Any]) -> Any:
    """The chunks' JSON answers (in page order) merged into one.

    Objects merge key by key, recursively: the first chunk whose value for a key is not null
    or empty gives it, and later chunks only fill what earlier ones left null or empty.
    Arrays are concatenated in page order. Any other value (and values of mixed kinds) is
    the first one that is not null or empty. When every answer is empty, the first that is
    not null is kept, so an empty list stays a list.
    """
    filled = [answer for answer in answers if not is_empty(answer)]
    if not filled:
        return next((answer for answer in answers if answer is not None), None)
    if all(isinstance(answer, dict) for answer in filled):
        keys: dict[str, None] = {}
        for answer in filled:
            keys.update(dict.fromkeys(answer))
        return {
            key: merge_answers([answer[key] for answer in filled if key in answer]) for key in keys
        }
    if all(isinstance(answer, list) for answer in filled):
        return [item for answer in filled for item in answer]
    return filled[0]


def join_texts(texts: Iterable[str]) -> str:
    """Free-text answers (no JSON mode) in page order, separated by a blank line."""
    return "\n\n".join(text.strip() for text in texts if text.strip())
