"""Line-item tables: rows of a document turned into a list of records.

With a header row (two or more column headings recognised) fragments are assigned to the
column under whose heading they sit. Without one, item rows are the rows ending in an
amount between the header block and the totals; the description is their text, the last
amount the line total. A description alone on a row joins the numbers on the next row,
the common two-line layout of till receipts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from extraction.engine.labels import similarity, squash
from extraction.engine.layout import Fragment, Page, Row
from extraction.engine.values import amount_value, find_amounts
from extraction.engine.vocabulary import COLUMN_LABELS

_SUMMARY = re.compile(
    r"(?<![a-z])(?:sub\s*-?\s*total|total|totl|grand|balance|amount\s*due|tax|gst|vat|sst|"
    r"rounding|cash|change|tender|discount|service\s*charge|payment|paid|visa|master|"
    r"qty\s*count|item\s*count|no\.?\s*of\s*items?|summe|zwischensumme|gesamt|mwst|ust|"
    r"gegeben|r[üu]ckgeld|bar|total\s*ttc|tva|esp[èe]ces|rendu|totale|iva|efectivo|cambio|"
    r"contanti|resto|troco|dinheiro|totaal|btw|contant|wisselgeld)(?![a-z])|"
    r"合计|小计|总计|价税合计|税额|找零|现金",
    re.IGNORECASE,
)
_QTY_TIMES = re.compile(r"(?<![\d.])(\d{1,4}(?:\.\d+)?)\s*[xX\u00d7@*]\s*")
_INTEGER = re.compile(r"(?<![\d.,])\d{1,4}(?![\d.,])")
_NUMERIC_ONLY = re.compile(r"^[\s\d.,\-xX\u00d7@*%RM$€£¥()]+$")


_UNREQUESTED = "\x00column-"


@dataclass(frozen=True, slots=True)
class Column:
    """A requested table field and the part it plays (name, quantity, amount, ...)."""

    key: str
    role: str
    heading: str


@dataclass(slots=True)
class Record:
    cells: dict[str, str] = field(default_factory=dict)
    numbers: bool = False


def _heading_score(fragment: Fragment, column: Column) -> float:
    variants = [column.heading, column.key.replace("_", " "), *COLUMN_LABELS.get(column.role, ())]
    text = squash(fragment.text)
    best = max((similarity(text, squash(v)) for v in variants), default=0.0)
    words = fragment.text.lower().split()
    # Headings sometimes share a box with the next one ("Total TAX"): a first word that
    # is the heading still counts, a little below an exact match.
    if best < 0.85 and len(words) > 1 and any(squash(words[0]) == squash(v) for v in variants):
        best = 0.86
    return best


def _find_header(page: Page, columns: list[Column]) -> tuple[Row, dict[str, Fragment]] | None:
    best: tuple[int, Row, dict[str, Fragment]] | None = None
    for row in page.rows:
        assigned: dict[str, Fragment] = {}
        for column in columns:
            scored = [(f, _heading_score(f, column)) for f in row.fragments]
            scored = [(f, s) for f, s in scored if s >= 0.85 and f not in assigned.values()]
            if scored:
                assigned[column.key] = max(scored, key=lambda pair: pair[1])[0]
        if len(assigned) >= min(2, len(columns)) and (best is None or len(assigned) > best[0]):
            # Headings nobody asked for still own their column, so their cells are dropped
            # rather than pushed into a neighbour.
            for fragment in row.fragments:
                if fragment not in assigned.values():
                    assigned[f"{_UNREQUESTED}{fragment.index}"] = fragment
            best = (len(assigned), row, assigned)
    return (best[1], best[2]) if best else None


def _cell_for(fragment: Fragment, headings: dict[str, Fragment]) -> str:
    """The column whose heading is horizontally closest to (or overlapping) the fragment."""

    def distance(heading: Fragment) -> float:
        overlap = min(heading.right, fragment.right) - max(heading.left, fragment.left)
        if overlap > 0:
            return -overlap
        return min(abs(heading.left - fragment.right), abs(fragment.left - heading.right))

    return min(headings, key=lambda key: distance(headings[key]))


def _has_numbers(text: str) -> bool:
    return bool(find_amounts(text, decimals_only=False))


def _records_under_header(
    page: Page, header: Row, headings: dict[str, Fragment], columns: list[Column]
) -> list[Record]:
    roles = {c.key: c.role for c in columns}
    records: list[Record] = []
    pending_name: str | None = None
    previous_bottom = header.bottom
    for row in page.rows[header.index + 1 :]:
        if _SUMMARY.search(row.text) or row.top - previous_bottom > 3 * page.line_height:
            break
        previous_bottom = row.bottom
        cells: dict[str, list[str]] = {}
        for fragment in row.fragments:
            cells.setdefault(_cell_for(fragment, headings), []).append(fragment.text)
        record = Record({k: " ".join(v) for k, v in cells.items()})
        record.numbers = any(
            roles.get(k) in ("quantity", "unit_price", "amount") and _has_numbers(v)
            for k, v in record.cells.items()
        )
        name_key = next((k for k, r in roles.items() if r == "name"), None)
        if not record.numbers and name_key and set(record.cells) <= {name_key}:
            # A description on its own line: wraps the previous item or heads the next one.
            text = record.cells[name_key]
            if pending_name is not None and records:
                records[-1].cells[name_key] = (
                    f"{records[-1].cells.get(name_key, '')} {pending_name}".strip()
                )
            pending_name = text
            continue
        if pending_name is not None and name_key:
            if name_key in record.cells:
                record.cells[name_key] = f"{pending_name} {record.cells[name_key]}"
            else:
                record.cells[name_key] = pending_name
            pending_name = None
        records.append(record)
    if pending_name is not None and records:
        name_key = next((k for k, r in roles.items() if r == "name"), None)
        if name_key:
            records[-1].cells[name_key] = (
                f"{records[-1].cells.get(name_key, '')} {pending_name}".strip()
            )
    return records


def _item_region(page: Page) -> list[Row]:
    """Rows between the document header and the first summary (total) line."""
    summary = next(
        (r.index for r in page.rows if _SUMMARY.search(r.text) and find_amounts(r.text)), None
    )
    end = summary if summary is not None else len(page.rows)
    rows = page.rows[:end]
    first_item = next(
        (
            i
            for i, r in enumerate(rows)
            if find_amounts(r.text) and re.search(r"[^\W\d_]{2,}", r.text)
        ),
        None,
    )
    if first_item is None:
        return []
    # The description row of a two-line item sits right above its first amount row.
    start = first_item
    if (
        start > 0
        and not find_amounts(rows[start - 1].text)
        and re.search(r"[^\W\d_]{3,}", rows[start - 1].text)
    ):
        if rows[start].top - rows[start - 1].bottom < page.line_height and not re.search(
            r"[^\W\d_]{3,}", re.sub(r"RM|[xX]", "", rows[start].text)
        ):
            start -= 1
    return rows[start:]


def _split_item_text(text: str) -> dict[str, str]:
    """Description, quantity, unit price and amount from one item line of free text."""
    amounts = find_amounts(text)
    parts: dict[str, str] = {}
    if amounts:
        parts["amount"] = amounts[-1]
        if len(amounts) >= 2:
            parts["unit_price"] = amounts[-2]
    times = _QTY_TIMES.search(text)
    if times:
        parts["quantity"] = times.group(1)
    description = re.split(
        r"\s(?=\d+(?:[.,]\d+)?\s*[xX\u00d7@*]|\d+[.,]\d{2}|RM\s*\d|[$€£¥]\s*\d)", text
    )[0]
    description = re.sub(r"[\s\-:]+$", "", description).strip()
    if "quantity" not in parts:
        numbers = _INTEGER.findall(text[len(description) :])
        if numbers and len(amounts) >= 1:
            parts["quantity"] = numbers[0]
    if re.search(r"[^\W\d_]", description):
        parts["name"] = description
    return parts


def _records_without_header(page: Page) -> list[dict[str, str]]:
    records: list[dict[str, str]] = []
    pending: str | None = None
    for row in _item_region(page):
        text = row.text
        if _SUMMARY.search(text):
            continue
        has_amount = bool(find_amounts(text))
        if not has_amount:
            if re.search(r"[^\W\d_]{2,}", text) and not _NUMERIC_ONLY.match(text):
                if pending is not None and records:
                    records[-1]["name"] = f"{records[-1].get('name', '')} {pending}".strip()
                pending = text
            continue
        parts = _split_item_text(text)
        if pending is not None:
            parts["name"] = f"{pending} {parts['name']}" if "name" in parts else pending
            pending = None
        if "name" in parts or records:
            records.append(parts)
    return records


def extract_table(page: Page, columns: list[Column]) -> list[dict[str, str | None]]:
    """One dict per table row, keyed by the requested column keys (missing cells are None)."""
    header = _find_header(page, columns) if len(columns) > 1 else None
    rows: list[dict[str, str | None]] = []
    if header is not None:
        row, headings = header
        for record in _records_under_header(page, row, headings, columns):
            cells: dict[str, str | None] = {}
            for column in columns:
                raw = record.cells.get(column.key)
                cells[column.key] = _typed_cell(raw, column.role) if raw else None
            if any(v for v in cells.values()):
                rows.append(cells)
        if rows:
            return rows
    for parts in _records_without_header(page):
        rows.append({c.key: parts.get(c.role) if c.role in parts else None for c in columns})
    return rows


def _typed_cell(raw: str, role: str) -> str | None:
    if role in ("amount", "unit_price"):
        amounts = find_amounts(raw) or find_amounts(raw, decimals_only=False)
        return amounts[-1] if amounts else None
    if role == "quantity":
        value = amount_value(raw)
        match = re.search(r"\d+(?:[.,]\d+)?", raw)
        return match.group(0) if match and value is not None else None
    return raw.strip() or None
