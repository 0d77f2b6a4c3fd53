"""Results as CSV: the template's keys become columns (``GET /v1/jobs/{id}/results.csv``
and ``imageextract submit --csv``).

Nested objects flatten with dots (``address.city``). The template's first list of objects
gives one row per element (``items.name``, ``items.total``), the image's other columns
repeated on each; an image whose list is empty still gets one row. Any other list goes into
its cell as JSON. Without JSON mode the answer is in ``content``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from typing import Any, TextIO

from extraction.schema import schema_of_prompt

# The columns before the template's: what identifies the image, then how it ended.
ENDING = ["status", "error_code", "error_message"]


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
        self, stream: TextIO, prompt: str, json_mode: bool, base: Sequence[str] = ()
    ) -> None:
        self.base = list(base)
        schema = schema_of_prompt(prompt) if json_mode else None
        self.columns: list[str] = []
        rows_from: list[str] = []
        if schema is not None and schema.get("type") == "object":
            _walk(schema, "", self.columns, rows_from)
        else:
            self.columns = ["content"]
        self.rows_from = rows_from[0] if rows_from else None
        self.writer = csv.DictWriter(stream, fieldnames=self.base + ENDING + self.columns)
        self.writer.writeheader()

    def write(self, record: dict[str, Any]) -> None:
        error = record.get("error") or {}
        base = {column: record.get(column) for column in self.base}
        base |= {"status": record.get("status"), "error_code": error.get("code"),
                 "error_message": error.get("message")}  # fmt: skip
        parsed = record.get("parsed")
        if self.columns == ["content"]:
            self.writer.writerow({**base, "content": record.get("content")})
            return
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
            self.writer.writerow(row)


def _get(value: Any, path: str | None) -> Any:
    for key in (path or "").split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _cell(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return value
