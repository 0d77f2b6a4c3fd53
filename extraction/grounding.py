"""Evidence per field: where on the image each value of a result is printed.

The image's printed text (OCR lines with their boxes) is matched against every leaf of the
result. A value is compared with each line, with each line and its right-hand neighbour on
the same row, and with up to four consecutive lines in reading order (an address over
three lines), by its type: an amount matches a printed number of the same value in any
layout ("1,234.50", "1.234,50", "RM 1234.5"); a date matches a printed date of the same day
in any layout ("2020-01-13", "13/01/2020", "Jan 13, 2020", "13.01.20"); text matches by
fuzzy similarity (case, spacing and punctuation aside), also as a run inside a longer line
or as words spread over several lines. The best candidate's box (narrowed to the matched
run inside a line), its text as printed, the OCR confidence and the match score make the
evidence; ``grounded`` is false when nothing on the image supports the value (a value the
model made up, or read from a part OCR could not read).

In a document of several pages each line carries its page: lines of different pages are
never joined into one candidate, and the evidence names the page its box is on (the box
is in fractions of that page).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal, InvalidOperation
from itertools import groupby
from typing import Any

from rapidfuzz import fuzz

from extraction import confidence
from extraction.contract import PrintedLine
from extraction.engine.values import find_date_ranges

# A match scores at least this (0 to 1) to count as printed.
GROUNDED_AT = 0.8
# Consecutive lines in reading order joined into one candidate, at most.
WINDOW_LINES = 4


Box = tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class Evidence:
    bbox: Box | None
    text: str | None
    ocr_confidence: float | None
    match: float
    grounded: bool
    # The page (1-based) the box is on, for a document of several pages.
    page: int | None = None
    # The probability that the value is right, when the provider said how it found it
    # (extraction.confidence); None for a remote model's values.
    confidence: float | None = None

    def as_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "bbox": [round(v, 4) for v in self.bbox] if self.bbox is not None else None,
            "text": self.text,
            "ocr_confidence": round(self.ocr_confidence, 3)
            if self.ocr_confidence is not None
            else None,
            "match": round(self.match, 3),
            "grounded": self.grounded,
            "confidence": round(self.confidence, 3) if self.confidence is not None else None,
        }
        # A single image's evidence stays as it always was: no page key.
        if self.page is not None:
            found["page"] = self.page
        return found


def leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every non-empty leaf with its path: ``total``, ``items[0].name``."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield from leaves(child, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from leaves(child, f"{path}[{index}]")
    elif value is not None and not isinstance(value, bool) and str(value).strip():
        yield path, value


# --- reading values ------------------------------------------------------------------------

# A printed number: thousands grouped by , . ' or a space (groups of three), then decimals
# after . or ,; or plain digits with decimals. "20, 2020" is two numbers, not one.
_NUMBER_CORE = r"\d{1,3}(?:[.,'\u00a0 ]\d{3})+(?:[.,]\d{1,3})?(?!\d)|\d+(?:[.,]\d+)?"
_NUMBER = re.compile(rf"(?<![\w.,])[-+]?(?:{_NUMBER_CORE})(?![\w])")
# An amount alone: a number with at most a currency sign or code before or after it.
_AMOUNT = re.compile(
    rf"^\s*(?:[A-Za-z]{{1,3}}\.?\s+|[^\w\s]{{1,2}}\s*)?(?P<number>[-+]?(?:{_NUMBER_CORE}))"
    r"\s*(?:[A-Za-z]{1,3}|[^\w\s]{1,2})?\s*$"
)
_DIGIT_RUN = re.compile(r"\d{3,}")
_MONTHS = {
    name: number
    for number, names in enumerate(
        [
            "jan january janv janvier januar enero gennaio janeiro januari",
            "feb february fev fevr fevrier februar febrero febbraio fevereiro februari",
            "mar march mars marz maerz marzo marco maart",
            "apr april avr avril abril aprile",
            "may mai mayo maggio maio mei",
            "jun june juin juni junio giugno junho",
            "jul july juil juillet juli julio luglio julho",
            "aug august aout agosto augustus",
            "sep sept september septembre settembre setembro",
            "oct october octobre oktober octubre ottobre outubro",
            "nov november novembre noviembre novembro",
            "dec december decembre dezember diciembre dicembre dezembro",
        ],
        start=1,
    )
    for name in names.split()
}
_NUMERIC_DATE = re.compile(r"(?<!\d)(\d{1,4})\s*[./\-]\s*(\d{1,2})\s*[./\-]\s*(\d{2,4})(?!\d)")
_COMPACT_DATE = re.compile(r"(?<!\d)(\d{4})(\d{2})(\d{2})(?!\d)")
_WORD_DATE = re.compile(
    r"(?:(\d{1,2})(?:st|nd|rd|th)?[\s.\-/]*([a-z]{3,9})\.?[\s.,\-/]*(\d{2,4}))"
    r"|(?:([a-z]{3,9})\.?[\s.\-/]*(\d{1,2})(?:st|nd|rd|th)?[\s,.\-/]*(\d{2,4}))"
)


def _plain(text: str) -> str:
    """Lower case, accents and punctuation off, spaces collapsed."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return " ".join(re.sub(r"[^\w]+", " ", stripped).split())


def _decimal(text: str) -> Decimal | None:
    """A printed number in any layout: 1,234.50 / 1.234,50 / 1 234,5 / 1234."""
    digits = re.sub(r"[ '\u00a0]", "", text.strip())
    if digits.count(",") and digits.count("."):
        decimal_mark = "," if digits.rfind(",") > digits.rfind(".") else "."
    elif digits.count(",") == 1 and len(digits) - digits.rfind(",") - 1 != 3:
        decimal_mark = ","
    elif digits.count(".") == 1 and len(digits) - digits.rfind(".") - 1 == 3 and len(digits) > 5:
        decimal_mark = ","  # 1.234 with a longer integer part reads as thousands
    else:
        decimal_mark = "."
    thousands = "." if decimal_mark == "," else ","
    normal = digits.replace(thousands, "").replace(decimal_mark, ".")
    try:
        return Decimal(normal)
    except InvalidOperation:
        return None


def amounts_in(text: str) -> set[Decimal]:
    found = set()
    for match in _NUMBER.finditer(text):
        number = _decimal(match.group(0))
        if number is not None:
            found.add(number.normalize())
    return found


def amount_of(value: Any) -> Decimal | None:
    """The number a value states, if that is all it states (currency aside)."""
    if isinstance(value, int | float):
        return Decimal(str(value)).normalize()
    match = _AMOUNT.match(str(value))
    return _decimal(match.group("number")) if match else None


def _year(text: str) -> int:
    year = int(text)
    return year + 2000 if year < 70 else year + 1900 if year < 100 else year


def _day(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def dates_in(text: str) -> set[date]:
    """Every day a text may print, in either order where the order is ambiguous; both ends
    of a printed range, also the first when it leaves its year or month to the second
    ("March 2 - 8, 2020", "01.03.-31.03.2020")."""
    found = _dates_printed(text)
    if _RANGE_HINT.search(text):
        for _at, first, second in find_date_ranges(text):
            found |= _dates_printed(first) | _dates_printed(second)
    return found


# A dash or a word between two figures: where a range may be printed.
_RANGE_HINT = re.compile(r"\d\W*\s*(?:[-\u2013\u2014~]|to|au|al|bis|a|tot)\s*\W*\d", re.IGNORECASE)


def _dates_printed(text: str) -> set[date]:
    found: set[date | None] = set()
    lowered = _plain(text)
    for first, second, third in _NUMERIC_DATE.findall(text):
        if len(first) == 4:
            found.add(_day(int(first), int(second), int(third)))
            continue
        year = _year(third)
        found.add(_day(year, int(second), int(first)))
        found.add(_day(year, int(first), int(second)))
    for year, month, day in _COMPACT_DATE.findall(text):
        found.add(_day(int(year), int(month), int(day)))
    for groups in _WORD_DATE.findall(lowered):
        day_text, month_text, year_text = (
            (groups[0], groups[1], groups[2]) if groups[0] else (groups[4], groups[3], groups[5])
        )
        month = _MONTHS.get(month_text)
        if month:
            found.add(_day(_year(year_text), month, int(day_text)))
    found.discard(None)
    return {d for d in found if d is not None}


# --- candidates ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Candidate:
    """Lines matched as one: their text, its plain form and their box, made once and
    compared with every value."""

    lines: tuple[PrintedLine, ...]
    text: str
    plain: str
    box: Box

    @classmethod
    def of(cls, lines: tuple[PrintedLine, ...]) -> _Candidate:
        text = " ".join(line.text for line in lines)
        box = (
            min(line.box[0] for line in lines),
            min(line.box[1] for line in lines),
            max(line.box[2] for line in lines),
            max(line.box[3] for line in lines),
        )
        return cls(lines, text, _plain(text), box)

    @property
    def confidence(self) -> float:
        return min(line.confidence for line in self.lines)


def _reading_order(lines: Sequence[PrintedLine]) -> list[PrintedLine]:
    """Rows top to bottom (lines whose middles are within half a line height), each left to
    right."""
    ordered = sorted(lines, key=lambda line: (line.box[1] + line.box[3]) / 2)
    rows: list[list[PrintedLine]] = []
    for line in ordered:
        middle = (line.box[1] + line.box[3]) / 2
        if rows:
            last = rows[-1][-1]
            height = max(last.box[3] - last.box[1], line.box[3] - line.box[1])
            if abs(middle - (last.box[1] + last.box[3]) / 2) < height / 2:
                rows[-1].append(line)
                continue
        rows.append([line])
    return [line for row in rows for line in sorted(row, key=lambda line: line.box[0])]


def candidates(lines: Sequence[PrintedLine]) -> list[_Candidate]:
    """Every run of one to WINDOW_LINES consecutive lines in reading order, within one
    page, the single lines first: of two candidates that match as well, the smaller one is
    the evidence (and the earlier page's)."""
    by_page = sorted(lines, key=lambda line: line.page or 0)
    pages = [
        _reading_order(list(on_page))
        for _, on_page in groupby(by_page, key=lambda line: line.page or 0)
    ]
    found = []
    for size in range(1, WINDOW_LINES + 1):
        for ordered in pages:
            for start in range(len(ordered) - size + 1):
                window = tuple(ordered[start : start + size])
                found.append(_Candidate.of(window))
    return found


# --- matching --------------------------------------------------------------------------------


def _text_match(wanted: str, candidate: _Candidate) -> tuple[float, str, Box]:
    """Similarity (0 to 1) of a text value (plain) to a candidate, the run as printed and
    its box."""
    printed = candidate.plain
    if not wanted or not printed:
        return 0.0, candidate.text, candidate.box
    whole = fuzz.ratio(wanted, printed) / 100
    best, text, box = whole, candidate.text, candidate.box
    if len(candidate.lines) == 1 and len(wanted) >= 3 and len(wanted) < len(printed):
        aligned = fuzz.partial_ratio_alignment(wanted, printed)
        # A run inside a longer line counts for a little less than the whole line.
        score = aligned.score / 100 * 0.98 if aligned is not None else 0.0
        if aligned is not None and score > best:
            best = score
            text, box = _narrowed(candidate, aligned.dest_start, aligned.dest_end)
    elif len(candidate.lines) > 1:
        # Words spread over lines: the share of the value's characters found, in order.
        score = fuzz.partial_ratio(wanted, printed) / 100 * 0.97
        if score > best and len(wanted) >= 0.6 * len(printed):
            best = score
    return best, text, box


def _narrowed(candidate: _Candidate, start: int, end: int) -> tuple[str, Box]:
    """The printed words of a one-line candidate that the plain-text run ``start:end``
    covers, and their part of the box (by character position)."""
    original = candidate.text
    plain, where = _plain_map(original)
    if not plain or start >= len(where):
        return original, candidate.box
    first, last = where[start], where[min(end, len(where)) - 1]
    # Out to the whole words the run touches.
    while first > 0 and not original[first - 1].isspace():
        first -= 1
    while last + 1 < len(original) and not original[last + 1].isspace():
        last += 1
    x0, y0, x1, y1 = candidate.box
    length = max(len(original), 1)
    left = x0 + (x1 - x0) * first / length
    right = x0 + (x1 - x0) * (last + 1) / length
    return original[first : last + 1], (left, y0, right, y1)


def _plain_map(text: str) -> tuple[str, list[int]]:
    """``_plain(text)`` and, for each of its characters, its position in ``text``."""
    chars: list[str] = []
    where: list[int] = []
    for index, char in enumerate(text):
        folded = "".join(
            c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c)
        ).casefold()
        if folded and all(c.isalnum() or c == "_" for c in folded):
            chars.extend(folded)
            where.extend([index] * len(folded))
        elif chars and chars[-1] != " ":
            chars.append(" ")
            where.append(index)
    while chars and chars[-1] == " ":
        chars.pop()
        where.pop()
    return "".join(chars), where


@dataclass(frozen=True, slots=True)
class _Value:
    """What a value is, read once and compared with every candidate."""

    text: str
    plain: str
    days: frozenset[date]
    amount: Decimal | None
    # Digit runs of a short text, which must be printed exactly.
    digit_runs: tuple[str, ...]

    @classmethod
    def of(cls, value: Any) -> _Value:
        text = str(value)
        # Numbers inside a short text (an invoice number, a phone) are matched exactly: a
        # fuzzy match would take INV-20415 for INV-20451. In a long one (an address) an OCR
        # slip in a postcode weighs as any other character.
        runs = tuple(_DIGIT_RUN.findall(text)) if len(text.split()) <= 3 else ()
        return cls(text, _plain(text), frozenset(dates_in(text)), amount_of(value), runs)


def _score(value: _Value, candidate: _Candidate) -> tuple[float, str, Box]:
    # A typed value (a day, an amount; "20200113" may be either) is found by its value.
    days, amount = value.days, value.amount
    if days and len(candidate.lines) <= 2 and days & dates_in(candidate.text):
        return 1.0, candidate.text, candidate.box
    if amount is not None and len(candidate.lines) == 1:
        numbers = amounts_in(candidate.text)
        if amount in numbers:
            return 1.0, candidate.text, candidate.box
        if amount.copy_abs() in {a.copy_abs() for a in numbers}:
            return 0.95, candidate.text, candidate.box
    if days or amount is not None:
        return 0.0, candidate.text, candidate.box
    score, printed, box = _text_match(value.plain, candidate)
    if value.digit_runs:
        runs = "|".join(_DIGIT_RUN.findall(printed))
        if not all(run in runs for run in value.digit_runs):
            score *= 0.5
    return score, printed, box


def ground_value(value: Any, pool: Sequence[_Candidate]) -> Evidence:
    read = _Value.of(value)
    best: tuple[float, str, Box, _Candidate] | None = None
    for candidate in pool:
        score, text, box = _score(read, candidate)
        if best is None or score > best[0] + 1e-9:
            best = (score, text, box, candidate)
            if score >= 1.0:
                break
    if best is None or best[0] <= 0:
        return Evidence(bbox=None, text=None, ocr_confidence=None, match=0.0, grounded=False)
    score, text, box, candidate = best
    x0, y0, x1, y1 = box
    return Evidence(
        bbox=(x0, y0, x1, y1),
        text=text,
        ocr_confidence=candidate.confidence,
        match=score,
        grounded=score >= GROUNDED_AT,
        page=candidate.lines[0].page,
    )


def page_confidence(lines: Sequence[PrintedLine]) -> float | None:
    """How well a page was read: its lines' mean OCR confidence (None without lines)."""
    return sum(line.confidence for line in lines) / len(lines) if lines else None


def with_confidence(
    evidence: Evidence, value: Any, how: str | None, page: float | None
) -> Evidence:
    """``evidence`` with the value's calibrated confidence, when ``how`` says how it was
    found (see extraction.confidence); ``page`` is the page's ``page_confidence``."""
    if how is None:
        return evidence
    named = confidence.features(
        how,
        ocr_confidence=evidence.ocr_confidence,
        match=evidence.match,
        grounded=evidence.grounded,
        value=value,
        page_confidence=page,
    )
    model = confidence.calibration()
    if not model.knows(named):
        return evidence
    return replace(evidence, confidence=model.probability(named))


def ground(
    result: Any, lines: Sequence[PrintedLine], how: Mapping[str, str] | None = None
) -> dict[str, dict[str, Any]]:
    """Evidence for every non-empty leaf of ``result``, by its path; with ``how`` (how the
    provider found each value, by path) each also gets its confidence."""
    pool = candidates(lines)
    how = how or {}
    page = page_confidence(lines)
    return {
        path: with_confidence(ground_value(value, pool), value, how.get(path), page).as_json()
        for path, value in leaves(result)
    }


def ground_pages(
    results: Any, lines: Sequence[PrintedLine], how: Mapping[str, str] | None = None
) -> dict[str, dict[str, Any]]:
    """Evidence for a document read page by page: ``results[i]`` is page i + 1's result,
    and its values are looked for on that page only (paths ``[0].total``, ``[1].date``,
    which ``how`` uses too)."""
    by_page: dict[int | None, list[PrintedLine]] = {}
    for line in lines:
        by_page.setdefault(line.page, []).append(line)
    how = how or {}
    evidence = {}
    for index, result in enumerate(results if isinstance(results, list) else []):
        on_page = by_page.get(index + 1, [])
        pool, page = candidates(on_page), page_confidence(on_page)
        for path, value in leaves(result, f"[{index}]"):
            found = with_confidence(ground_value(value, pool), value, how.get(path), page)
            evidence[path] = found.as_json()
    return evidence
