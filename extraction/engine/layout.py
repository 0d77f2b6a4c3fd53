"""Layout of recognised text: fragments grouped into rows, rows in reading order.

OCR returns fragments (a word run with a box). Documents put a label and its value on one
row or one above the other, and tables in aligned rows, so everything downstream works on
``Row`` objects and on the geometry between fragments. Photos are often slightly rotated;
coordinates are deskewed by the median text angle first so rows stay rows. A document of
several pages is laid out as one tall page, its pages stacked top to bottom.
"""

from __future__ import annotations

import bisect
import math
import statistics
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

from extraction.engine.ocr import OcrLine

# Below this skew (radians, about 0.6 degrees) rotating coordinates changes nothing useful.
_MIN_SKEW = 0.01
# Space between stacked pages, in line heights: more than any distance across which a rule
# joins two lines (a row, a value under its label, a table's next row), so none joins the
# last line of a page with the first of the next.
_PAGE_GAP = 4.0


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
    # Index of each page's first fragment (fragments are numbered page after page).
    page_starts: tuple[int, ...] = (0,)

    def page_index(self, fragment: Fragment) -> int:
        """Which of the document's pages (0-based) ``fragment`` was read from."""
        return max(0, bisect.bisect_right(self.page_starts, fragment.index) - 1)

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
        column after the other, page by page.
        """
        by_page: dict[int, list[Row]] = {}
        for row in self.rows:
            by_page.setdefault(self.page_index(row.fragments[0]), []).append(row)
        return "\n".join(
            row.text
            for _, rows in sorted(by_page.items())
            for row in _reading_rows(rows, self.line_height)
        )


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


@dataclass(frozen=True, slots=True)
class PageText:
    """One page's text lines, in pixels of the page the right way up, and the page's size.

    ``recognised`` is false for lines taken from a PDF's text layer: their letters are
    exact, so no accent on them is taken for an OCR slip.
    """

    lines: list[OcrLine]
    width: float
    height: float
    recognised: bool = True


def build_page(lines: list[OcrLine], width: float, height: float) -> Page:
    """Group OCR fragments into rows (after deskewing) and sort rows top to bottom."""
    return build_pages([PageText(lines, width, height)])


def build_pages(pages: Sequence[PageText]) -> Page:
    """A document's pages laid out as one tall page, so every rule that reads a page reads
    the whole document: each page deskewed on its own (scans of one document lean each
    their own way), scaled to the first page's width and set ``_PAGE_GAP`` line heights
    under the page above. Fragments are numbered page after page; no row holds fragments
    of two pages.
    """
    width = pages[0].width if pages else 0.0
    placed: list[tuple[list[OcrLine], list[tuple[float, float, float, float]], float]] = []
    for page in pages:
        lines = _fold_stray_accents(page.lines) if page.recognised else page.lines
        scale = width / page.width if page.width > 0 else 1.0
        boxes = [
            (a * scale, b * scale, c * scale, d * scale) for a, b, c, d in _deskewed_boxes(lines)
        ]
        placed.append((lines, boxes, page.height * scale))
    heights = [max(1.0, box[3] - box[1]) for _, boxes, _ in placed for box in boxes]
    gap = _PAGE_GAP * (statistics.median(heights) if heights else 10.0)
    fragments: list[Fragment] = []
    page_starts: list[int] = []
    bottom = end = 0.0
    for lines, boxes, height in placed:
        offset = 0.0
        if page_starts:
            # Deskewing turns a page about its corner, which can lift its text above the
            # page's top edge: the page goes under the one above by where its text starts.
            offset = bottom + gap - min([0.0, *(box[1] for box in boxes)])
        page_starts.append(len(fragments))
        for line, (left, top, right, low) in zip(lines, boxes, strict=True):
            fragments.append(
                Fragment(
                    text=line.text,
                    left=left,
                    top=top + offset,
                    right=right,
                    bottom=low + offset,
                    confidence=line.confidence,
                    index=len(fragments),
                )
            )
        end = offset + height
        bottom = max([end, *(offset + box[3] for box in boxes)])
    rows = _group_rows(fragments)
    row_of = {f.index: row for row in rows for f in row.fragments}
    return Page(
        width=width,
        height=end,
        fragments=fragments,
        rows=rows,
        row_of=row_of,
        page_starts=tuple(page_starts) or (0,),
    )


def _deskewed_boxes(lines: list[OcrLine]) -> list[tuple[float, float, float, float]]:
    """Each line's box (left, top, right, bottom) with the page's median text angle turned
    out of it."""
    angle = _skew(lines)
    cos_a, sin_a = math.cos(-angle), math.sin(-angle)
    boxes = []
    for line in lines:
        if abs(angle) >= _MIN_SKEW:
            points = [(x * cos_a - y * sin_a, x * sin_a + y * cos_a) for x, y in line.quad]
        else:
            points = list(line.quad)
        xs = [p[0] for p in points]
        ys = [p[1] for p in points]
        boxes.append((min(xs), min(ys), max(xs), max(ys)))
    return boxes


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


def _reading_rows(rows: list[Row], unit: float) -> list[Row]:
    """Rows (of one page) in reading order, splitting at a vertical gutter between
    unaligned columns; ``unit`` is the line height."""
    fragments = sorted((f for row in rows for f in row.fragments), key=lambda f: f.index)
    if len(fragments) < 12:
        return rows
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
        return rows
    middle = (best_gap[0] + best_gap[1]) / 2
    left_block = [f for f in fragments if f.right <= middle]
    right_block = [f for f in fragments if f.left >= middle]
    if (
        min(len(left_block), len(right_block)) < 4
        or middle - page_left < 0.2 * (page_right - page_left)
        or page_right - middle < 0.2 * (page_right - page_left)
        or _aligned_share(left_block, right_block) > 0.5
    ):
        return rows
    left_rows = _group_rows(left_block)
    right_rows = _group_rows(right_block)
    return left_rows + right_rows
