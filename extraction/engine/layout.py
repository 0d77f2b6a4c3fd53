"""Layout of recognised text: fragments grouped into rows, rows in reading order.

OCR returns fragments (a word run with a box). Documents put a label and its value on one
row or one above the other, and tables in aligned rows, so everything downstream works on
``Row`` objects and on the geometry between fragments. Photos are often slightly rotated;
coordinates are deskewed by the median text angle first so rows stay rows.
"""

from __future__ import annotations

import math
import statistics
import unicodedata
from dataclasses import dataclass, field

from extraction.engine.ocr import OcrLine

# Below this skew (radians, about 0.6 degrees) rotating coordinates changes nothing useful.
_MIN_SKEW = 0.01


@dataclass(frozen=True, slots=True)
class Fragment:
    """A recognised text run with its (deskewed) box."""

    text: str
    left: float
    top: float
    right: float
    bottom: float
    confidence: float
    index: int

    @property
    def height(self) -> float:
        return max(1.0, self.bottom - self.top)

    @property
    def width(self) -> float:
        return max(1.0, self.right - self.left)

    @property
    def center_y(self) -> float:
        return (self.top + self.bottom) / 2

    @property
    def center_x(self) -> float:
        return (self.left + self.right) / 2


@dataclass(slots=True)
class Row:
    """Fragments sharing a text line, left to right."""

    index: int
    fragments: list[Fragment] = field(default_factory=list)

    @property
    def top(self) -> float:
        return statistics.median(f.top for f in self.fragments)

    @property
    def bottom(self) -> float:
        return statistics.median(f.bottom for f in self.fragments)

    @property
    def left(self) -> float:
        return min(f.left for f in self.fragments)

    @property
    def right(self) -> float:
        return max(f.right for f in self.fragments)

    @property
    def height(self) -> float:
        return max(1.0, self.bottom - self.top)

    @property
    def text(self) -> str:
        return " ".join(f.text for f in self.fragments)


@dataclass(slots=True)
class Page:
    """The layout of one document image."""

    width: float
    height: float
    fragments: list[Fragment]
    rows: list[Row]
    row_of: dict[int, Row]

    @property
    def line_height(self) -> float:
        """Median fragment height: the unit for every distance on the page."""
        if not self.fragments:
            return 10.0
        return statistics.median(f.height for f in self.fragments)

    def right_of(self, fragment: Fragment) -> list[Fragment]:
        """Fragments after ``fragment`` on its row, nearest first."""
        row = self.row_of[fragment.index]
        return [
            f
            for f in row.fragments
            if f.left >= fragment.right - 0.3 * fragment.height and f.index != fragment.index
        ]

    def rows_below(self, row: Row, count: int = 3) -> list[Row]:
        return self.rows[row.index + 1 : row.index + 1 + count]

    def below(self, fragment: Fragment, *, max_gap: float = 1.6) -> list[Fragment]:
        """Fragments on the next row below ``fragment`` that overlap it horizontally.

        ``max_gap`` is in line heights; a value further away than that belongs to
        something else.
        """
        row = self.row_of[fragment.index]
        limit = fragment.bottom + max_gap * max(fragment.height, self.line_height)
        for next_row in self.rows[row.index + 1 :]:
            if next_row.top > limit:
                return []
            overlapping = [
                f
                for f in next_row.fragments
                if f.left < fragment.right + fragment.height
                and f.right > fragment.left - fragment.height
            ]
            if overlapping:
                return overlapping
        return []

    def reading_text(self) -> str:
        """The page's text in reading order: rows top to bottom, fragments left to right.

        Side-by-side blocks whose lines do not line up (two text columns) are read one
        column after the other.
        """
        return "\n".join(row.text for row in _reading_rows(self))


def _skew(lines: list[OcrLine]) -> float:
    angles = [
        line.angle
        for line in lines
        if (line.right - line.left) > 3 * (line.bottom - line.top) and abs(line.angle) < 0.35
    ]
    return statistics.median(angles) if angles else 0.0


def _fold_stray_accents(lines: list[OcrLine]) -> list[OcrLine]:
    """Strip accents when almost no letter on the page carries one.

    The multilingual recogniser now and then reads "A" as "Á" in plain English or Malay
    text; in a page of real French or German the accents are frequent and stay.
    """
    letters = [ch for line in lines for ch in line.text if ch.isalpha() and ord(ch) < 0x250]
    accented = [ch for ch in letters if ord(ch) > 0x7F]
    if not accented or len(accented) > 0.02 * len(letters):
        return lines
    folded: list[OcrLine] = []
    for line in lines:
        text = "".join(
            unicodedata.normalize("NFKD", ch)[0] if 0x7F < ord(ch) < 0x250 else ch
            for ch in line.text
        )
        folded.append(OcrLine(text=text, quad=line.quad, confidence=line.confidence))
    return folded


def build_page(lines: list[OcrLine], width: float, height: float) -> Page:
    """Group OCR fragments into rows (after deskewing) and sort rows top to bottom."""
    lines = _fold_stray_accents(lines)
    angle = _skew(lines)
    cos_a, sin_a = math.cos(-angle), math.sin(-angle)
    fragments: list[Fragment] = []
    for index, line in enumerate(lines):
        if abs(angle) >= _MIN_SKEW:
            points = [(x * cos_a - y * sin_a, x * sin_a + y * cos_a) for x, y in line.quad]
        else:
            points = list(line.quad)
        xs = [p[0] for p in points]
        ys = [p[1] for p in points]
        fragments.append(
            Fragment(
                text=line.text,
                left=min(xs),
                top=min(ys),
                right=max(xs),
                bottom=max(ys),
                confidence=line.confidence,
                index=index,
            )
        )
    rows = _group_rows(fragments)
    row_of = {f.index: row for row in rows for f in row.fragments}
    return Page(width=width, height=height, fragments=fragments, rows=rows, row_of=row_of)


def _group_rows(fragments: list[Fragment]) -> list[Row]:
    # Each open row tracks a robust centre and height; a fragment joins the row whose centre
    # line it sits on and whose fragments it does not overlap sideways.
    groups: list[list[Fragment]] = []
    for fragment in sorted(fragments, key=lambda f: (f.center_y, f.left)):
        best: tuple[float, list[Fragment]] | None = None
        for group in groups[-8:]:
            center = statistics.median(f.center_y for f in group)
            height = statistics.median(f.height for f in group)
            distance = abs(fragment.center_y - center)
            if distance > 0.5 * min(height, fragment.height):
                continue
            if any(
                min(f.right, fragment.right) - max(f.left, fragment.left)
                > 0.3 * min(f.width, fragment.width)
                for f in group
            ):
                continue
            if best is None or distance < best[0]:
                best = (distance, group)
        if best is None:
            groups.append([fragment])
        else:
            best[1].append(fragment)
    groups.sort(key=lambda g: statistics.median(f.center_y for f in g))
    return [
        Row(index=i, fragments=sorted(group, key=lambda f: f.left))
        for i, group in enumerate(groups)
    ]


def _aligned_share(left: list[Fragment], right: list[Fragment]) -> float:
    """Share of left-block fragments that have a right-block fragment on the same line."""
    if not left:
        return 0.0
    aligned = sum(
        1
        for a in left
        if any(abs(a.center_y - b.center_y) < 0.35 * min(a.height, b.height) for b in right)
    )
    return aligned / len(left)


def _reading_rows(page: Page) -> list[Row]:
    """Rows in reading order, splitting at a vertical gutter between unaligned columns."""
    fragments = page.fragments
    if len(fragments) < 12:
        return page.rows
    unit = page.line_height
    # Find the widest x-gap that most rows leave empty (a gutter).
    spans = sorted((f.left, f.right) for f in fragments)
    page_left = spans[0][0]
    page_right = max(r for _, r in spans)
    best_gap: tuple[float, float] | None = None
    reach = spans[0][1]
    for left, right in spans[1:]:
        if left - reach > 2 * unit and (
            best_gap is None or left - reach > best_gap[1] - best_gap[0]
        ):
            best_gap = (reach, left)
        reach = max(reach, right)
    if best_gap is None:
        return page.rows
    middle = (best_gap[0] + best_gap[1]) / 2
    left_block = [f for f in fragments if f.right <= middle]
    right_block = [f for f in fragments if f.left >= middle]
    if (
        min(len(left_block), len(right_block)) < 4
        or middle - page_left < 0.2 * (page_right - page_left)
        or page_right - middle < 0.2 * (page_right - page_left)
        or _aligned_share(left_block, right_block) > 0.5
    ):
        return page.rows
    left_rows = _group_rows(left_block)
    right_rows = _group_rows(right_block)
    return left_rows + right_rows
