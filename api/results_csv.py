"""Results as CSV: the template's keys become columns (``GET /v1/jobs/{id}/results.csv``
and ``imageextract submit --csv``).

Nested objects flatten with dots (``address.city``). The template's first list of objects
gives one row per element (``items.name``, ``items.total``), the image's other columns
repeated on each; an image whose list is empty still gets one row. Any other list goes into
its cell as JSON. Without JSON mode the answer is in ``content``.

A text cell that starts with ``= + - @``, a tab or a carriage return gets a leading ``'``
(OWASP's advice against CSV injection), the header's too: a spreadsheet would otherwise run
it as a formula, and file names, error messages, template keys and model answers all come
from outside.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from typing import Any, TextIO

from extraction.schema import schema_of_prompt

# The columns before the template's: what identifies the image, then how it ended.
ENDING = ["status", "error_code", "error_message"]
# How a cell that a spreadsheet reads as a formula begins.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _walk(schema: dict[str, Any], prefix: str, columns: list[str], rows_from: list[str]) -> None:
    for key, sub in (schema.get("properties") or {}).items():
        path = f"{prefix}{key}"
        kinds = sub.get("type")
        kinds = kinds if isinstance(kinds, list) else [kinds]
        items = sub.get("items") if isinstance(sub.get("items"), dict) else None
        if "object" in kinds and sub.get("properties"):
            _walk(sub, f"{path}.", columns, rows_from)
        elif "array" in kinds and items and items.get("properties") and not rows_from:
            rows_from.append(path)
            _walk(items, f"{path}.", columns, rows_from)
        else:
            columns.append(path)


class CsvResults:
    """Writes records (an item as the API gives it, with ``base`` keys of its own before
    it) as rows."""

    def __init__(
        self,
        stream: TextIO,
        prompt: str,
        json_mode: bool,
        base: Sequence[str] = (),
        *,
        by_page: bool = False,
    ) -> None:
        # A job in document_mode pages has a list of results per PDF: a row (or rows) per
        # page, numbered in a "page" column.
        self.by_page = by_page and json_mode
        self.base = [*base, "page"] if self.by_page else list(base)
        schema = schema_of_prompt(prompt) if json_mode else None
        self.columns: list[str] = []
        rows_from: list[str] = []
        if schema is not None and schema.get("type") == "object":
            _walk(schema, "", self.columns, rows_from)
        else:
            self.columns = ["content"]
        self.rows_from = rows_from[0] if rows_from else None
        fieldnames = self.base + ENDING + self.columns
        self.writer = csv.DictWriter(stream, fieldnames=fieldnames)
        self._writerow({name: name for name in fieldnames})

    def write(self, record: dict[str, Any]) -> None:
        error = record.get("error") or {}
        base = {column: record.get(column) for column in self.base}
        base |= {"status": record.get("status"), "error_code": error.get("code"),
                 "error_message": error.get("message")}  # fmt: skip
        parsed = record.get("parsed")
        if self.columns == ["content"]:
            self._writerow({**base, "content": record.get("content")})
            return
        if self.by_page and isinstance(parsed, list):
            for number, page in enumerate(parsed, start=1):
                self._rows({**base, "page": number}, page)
            return
        self._rows(base, parsed)

    def _rows(self, base: dict[str, Any], parsed: Any) -> None:
        values = parsed if isinstance(parsed, dict) else {}
        elements = _get(values, self.rows_from) if self.rows_from else None
        if not isinstance(elements, list) or not elements:
            elements = [None]
        for element in elements:
            row = dict(base)
            for column in self.columns:
                if self.rows_from and column.startswith(f"{self.rows_from}."):
                    value = _get(element, column[len(self.rows_from) + 1 :])
                else:
                    value = _get(values, column)
                row[column] = _cell(value)
            self._writerow(row)

    def _writerow(self, row: dict[str, Any]) -> None:
        self.writer.writerow({column: _as_text(value) for column, value in row.items()})


def _get(value: Any, path: str | None) -> Any:
    for key in (path or "").split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _as_text(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula, as plain text; numbers as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return f"'{value}"
    return value


def _cell(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return value
