"""Reading PDFs: how many pages a document has, and its pages one at a time as pictures for a
model, each with its own text layer when it has a real one.

PDFium does the reading (through pypdfium2). It is not thread-safe, not even across
different documents, so every call into it in this process holds ``PDFIUM_LOCK``; the lock is
released between pages, and while a page's picture is encoded, so other threads' documents
take turns. Every PDFium object is closed explicitly under the lock: left to the garbage
collector, it would be freed by whichever thread collects it, outside the lock.
"""

from __future__ import annotations

import ctypes
import io
import math
import threading
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from PIL import Image

from core.errors import CorruptImage, EncryptedDocument, TooManyPages
from core.image_formats import sniff
from extraction.contract import DocumentPage, PreparedImage, PrintedLine

# Held around every PDFium call in the process, by this module and by anyone else (tests
# that make PDFs with pypdfium2 too). Reentrant: a generator's cleanup may run from the
# garbage collector in a thread that is between two PDFium calls of its own.
PDFIUM_LOCK = threading.RLock()

# How many leading bytes is_pdf() looks at: readers accept a header this far in.
PDF_SNIFF_BYTES = 1024
PDF_MEDIA_TYPE = "application/pdf"
# Pages are never rendered finer than this, so a small page is not blown up to max_side.
MAX_DPI = 300
JPEG_QUALITY = 90
# A page's text layer counts only with this many printable characters...
MIN_TEXT_CHARS = 20
# ...and at most this share of them unreadable (U+FFFD, control or private-use characters:
# fonts without a Unicode map give these).
MAX_GARBLED_SHARE = 0.1
# Pieces of text on one row further apart than this many line heights are separate lines
# (table cells, a label and its value far to the right), as OCR sees them.
SPLIT_GAP = 1.5
# A scan with a line of real text stamped on it ("Received 2024-05-01") is still a picture:
# when a picture covers this share of the page, the text's bounding box less than
# MIN_TEXT_AREA of it and none of the text is an invisible OCR layer, the text does not count.
PICTURE_SHARE = 0.5
MIN_TEXT_AREA = 0.1

_POINTS_PER_INCH = 72
# The %%EOF marker must be in a file's last 1024 bytes (PDF 1.7 reference, implementation
# note 18); PDFium reads files cut short without complaint, showing blank pages.
_EOF_WINDOW = 1024
_LOAD_ERRORS = {
    pdfium_c.FPDF_ERR_UNKNOWN: "unknown error",
    pdfium_c.FPDF_ERR_FILE: "it cannot be opened",
    pdfium_c.FPDF_ERR_FORMAT: "it is not a PDF or it is damaged",
    pdfium_c.FPDF_ERR_PAGE: "its pages cannot be found",
}
_LINE_BREAKS = {0x0A, 0x0D}
_SPACES = {0x09, 0x20, 0xA0}
# PDFium's mark for a hyphen that ends a line, where it joins the word across the break.
_LINE_END_HYPHEN = 0x02
_UNREADABLE_CATEGORIES = {"Cc", "Co", "Cs", "Cn"}
# Format characters (soft hyphens, joiners) print nothing: neither readable nor garbled.
_INVISIBLE_CATEGORY = "Cf"
_UNSEEN_TEXT = {pdfium_c.FPDF_TEXTRENDERMODE_INVISIBLE, pdfium_c.FPDF_TEXTRENDERMODE_CLIP}


def is_pdf(head: bytes) -> bool:
    """Whether ``head`` (a file's first PDF_SNIFF_BYTES bytes or more) starts a PDF: a
    ``%PDF-`` header within its first 1024 bytes, as readers accept it after some junk, and
    not an image whose first bytes happen to contain one."""
    return b"%PDF-" in head[:PDF_SNIFF_BYTES] and sniff(head) is None


def count_pages(
    data: bytes, *, name: str, input: str | None = None, limit: int | None = None
) -> int:
    """The number of pages of the PDF ``data``, without rendering any; ``name`` identifies
    the input in errors' messages, ``input`` (default: ``name``) is the field they name.

    Raises EncryptedDocument for a PDF that needs a password to open, CorruptImage for one
    that is damaged, cut short or has no pages, TooManyPages for one over ``limit`` pages.
    """
    with _opened(data, name, input or name) as document:
        count = len(document)
    if limit is not None and count > limit:
        raise TooManyPages(
            f"{name} has {count} pages; a document takes at most {limit}",
            input=input or name,
            details={"pages": count, "limit_pages": limit},
        )
    return count


def render_pages(
    data: bytes,
    *,
    max_side: int,
    name: str,
    text_layer: bool = True,
    first: int = 1,
    last: int | None = None,
) -> Iterator[DocumentPage]:
    """Pages ``first`` to ``last`` (1-based, inclusive; None: the last page) of the PDF
    ``data``, rendered one at a time as the caller asks for them.

    Each page is rendered as RGB with its longer side ``max_side`` pixels (never finer than
    MAX_DPI) and encoded as JPEG; only one page's pixels are held at a time. With
    ``text_layer``, a page with a real text layer also gives its text as lines, boxes as
    fractions of the page (top-left origin) in the rendered picture's orientation.

    Caveats: this is a generator, so nothing is read before the first page is asked for, and
    errors come from iterating: EncryptedDocument and CorruptImage as count_pages() raises
    them, and CorruptImage naming the page when one cannot be rendered. The document stays
    open until the generator is exhausted or closed. A page range outside the document is
    the caller's mistake (ValueError).
    """
    if first < 1 or (last is not None and last < first):
        raise ValueError(f"no pages {first} to {last}")
    with _opened(data, name, name) as document:
        with PDFIUM_LOCK:
            count = len(document)
            # Filled-in form fields are drawn by the form environment, and their values
            # reach the text layer once flattened (_load_page).
            document.init_forms()
        end = count if last is None else last
        if end > count:
            raise ValueError(f"{name} has {count} pages, not {end}")
        for number in range(first, end + 1):
            yield _render_page(document, number, max_side=max_side, name=name, text=text_layer)


@contextmanager
def _opened(data: bytes, name: str, input: str) -> Iterator[Any]:
    """The PDF ``data`` open as a pypdfium2 PdfDocument, closed on leaving."""
    if not data:
        raise CorruptImage(f"{name} is empty (0 bytes)", input=input)
    if b"%%EOF" not in data[-_EOF_WINDOW:]:
        raise CorruptImage(
            f"{name} claims to be PDF but cannot be read: it is cut short (no %%EOF at its end)",
            input=input,
        )
    with PDFIUM_LOCK:
        # Loaded by hand rather than by PdfDocument(data): that reads PDFium's last error
        # even when loading succeeded (a stale one), and leaks a document without pages.
        raw = pdfium_c.FPDF_LoadMemDocument64(data, len(data), None)
        error = pdfium_c.FPDF_GetLastError() if not raw else pdfium_c.FPDF_ERR_SUCCESS
        document = pdfium.PdfDocument(raw) if raw else None
    if document is None:
        raise _load_error(error, name, input)
    try:
        with PDFIUM_LOCK:
            count = len(document)
        if count < 1:
            raise CorruptImage(f"{name} claims to be PDF but has no pages", input=input)
        # PDFium reads from ``data`` as long as the document is open; this frame keeps it.
        yield document
    finally:
        with PDFIUM_LOCK:
            document.close()


def _load_error(error: int, name: str, input: str) -> Exception:
    if error in (pdfium_c.FPDF_ERR_PASSWORD, pdfium_c.FPDF_ERR_SECURITY):
        return EncryptedDocument(
            f"{name} is an encrypted PDF: it needs a password to open; send it without encryption",
            input=input,
        )
    reason = _LOAD_ERRORS.get(error, f"PDFium error {error}")
    return CorruptImage(f"{name} claims to be PDF but cannot be read: {reason}", input=input)


def _render_page(
    document: Any, number: int, *, max_side: int, name: str, text: bool
) -> DocumentPage:
    failure = f"{name} page {number} cannot be rendered"
    with PDFIUM_LOCK:
        try:
            page = _load_page(document, number - 1)
            try:
                width, height = page.get_size()
                if not min(width, height) > 0:
                    raise CorruptImage(f"{failure}: it has no size", input=name)
                # ceil() of longer * max_side / longer may come out one pixel over max_side.
                scale = min(max_side / max(width, height) * (1 - 1e-9), MAX_DPI / _POINTS_PER_INCH)
                bitmap = page.render(scale=scale, rev_byteorder=True)
                try:
                    # A copy: the bitmap's memory goes with the bitmap.
                    picture: Image.Image = bitmap.to_pil().copy()
                finally:
                    bitmap.close()
                lines = _text_lines(page, number) if text else None
            finally:
                page.close()
        except pdfium.PdfiumError as error:
            raise CorruptImage(f"{failure}: {error}", input=name) from error
    if picture.mode != "RGB":
        picture = picture.convert("RGB")
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=JPEG_QUALITY)
    image = PreparedImage(
        data=out.getvalue(), media_type="image/jpeg", width=picture.width, height=picture.height
    )
    return DocumentPage(number=number, image=image, text=lines)


def _load_page(document: Any, index: int) -> Any:
    """The page, its annotations (filled form fields, stamps, notes) flattened into its
    content so their text is in its text layer."""
    page = document[index]
    if pdfium_c.FPDFPage_GetAnnotCount(page) > 0:
        flattened = pdfium_c.FPDFPage_Flatten(page, pdfium_c.FLAT_NORMALDISPLAY)
        if flattened == pdfium_c.FLATTEN_SUCCESS:
            # PDFium sees the new content only in a page loaded afresh.
            page.close()
            page = document[index]
    return page


# --- the text layer ------------------------------------------------------------------------

_Box = tuple[float, float, float, float]


@dataclass(slots=True)
class _Run:
    """Characters read as one line, boxed in the reading frame of their orientation: ``u``
    along the text, ``v`` down across its lines (points)."""

    quarter: int
    text: list[str] = field(default_factory=list)
    u0: float = math.inf
    v0: float = math.inf
    u1: float = -math.inf
    v1: float = -math.inf

    @property
    def height(self) -> float:
        return max(self.v1 - self.v0, 1.0)

    @property
    def middle(self) -> float:
        return (self.v0 + self.v1) / 2

    def add(self, char: str, box: _Box) -> None:
        self.text.append(char)
        self.u0, self.v0 = min(self.u0, box[0]), min(self.v0, box[1])
        self.u1, self.v1 = max(self.u1, box[2]), max(self.v1, box[3])

    def absorb(self, other: _Run, space: bool) -> None:
        if space:
            self.text.append(" ")
        self.text.extend(other.text)
        self.u0, self.v0 = min(self.u0, other.u0), min(self.v0, other.v0)
        self.u1, self.v1 = max(self.u1, other.u1), max(self.v1, other.v1)

    def continues_with(self, quarter: int, box: _Box) -> bool:
        """Whether a character goes on this run: same orientation, its middle within the
        run's height (the same row), not far past its end."""
        return (
            quarter == self.quarter
            and self.v0 <= (box[1] + box[3]) / 2 <= self.v1
            and box[0] - self.u1 <= SPLIT_GAP * self.height
        )

    def page_box(self) -> _Box:
        """The run's box on the rendered page (points, top-left origin)."""
        return _unturn(self.quarter, (self.u0, self.v0, self.u1, self.v1))


def _turn(quarter: int, box: _Box) -> _Box:
    """A box on the rendered page in the reading frame of text turned ``quarter`` quarter
    turns clockwise (1: it reads downwards)."""
    x0, y0, x1, y1 = box
    if quarter == 1:
        return y0, -x1, y1, -x0
    if quarter == 2:
        return -x1, -y1, -x0, -y0
    if quarter == 3:
        return -y1, x0, -y0, x1
    return box


def _unturn(quarter: int, box: _Box) -> _Box:
    u0, v0, u1, v1 = box
    if quarter == 1:
        return -v1, u0, -v0, u1
    if quarter == 2:
        return -u1, -v1, -u0, -v0
    if quarter == 3:
        return v0, -u1, v1, -u0
    return box


@dataclass(frozen=True, slots=True)
class _PageFrame:
    """Converts PDF page coordinates (points, bottom-left origin, unrotated) to points on
    the page as rendered (top-left origin, the page's /Rotate applied), as PDFium's
    FPDF_PageToDevice does."""

    left: float
    bottom: float
    right: float
    top: float
    rotation: int  # clockwise degrees

    @property
    def size(self) -> tuple[float, float]:
        width, height = self.right - self.left, self.top - self.bottom
        return (height, width) if self.rotation in (90, 270) else (width, height)

    def point(self, x: float, y: float) -> tuple[float, float]:
        if self.rotation == 90:
            return y - self.bottom, x - self.left
        if self.rotation == 180:
            return self.right - x, y - self.bottom
        if self.rotation == 270:
            return self.top - y, self.right - x
        return x - self.left, self.top - y

    def box(self, left: float, bottom: float, right: float, top: float) -> _Box:
        (ax, ay), (bx, by) = self.point(left, bottom), self.point(right, top)
        return min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)


def _text_lines(page: Any, number: int) -> tuple[PrintedLine, ...] | None:
    """The page's text layer as lines in reading order, or None when it has no real one."""
    left, bottom, right, top = page.get_bbox()
    frame = _PageFrame(left, bottom, right, top, int(page.get_rotation()))
    try:
        textpage = page.get_textpage()
    except pdfium.PdfiumError:
        return None
    try:
        runs, readable, garbled = _read_runs(textpage, frame)
        if readable < MIN_TEXT_CHARS or garbled > MAX_GARBLED_SHARE * (readable + garbled):
            return None
        groups = [_reading_order(runs, quarter) for quarter in _by_prevalence(runs)]
        lines = [(run, run.page_box()) for group in groups for run in group]
        if _stamped_picture(page, textpage, frame, [box for _, box in lines]):
            return None
    finally:
        textpage.close()
    width, height = frame.size
    return tuple(
        PrintedLine(
            text="".join(run.text),
            box=(
                _fraction(box[0], width),
                _fraction(box[1], height),
                _fraction(box[2], width),
                _fraction(box[3], height),
            ),
            confidence=1.0,
            page=number,
        )
        for run, box in lines
    )


def _fraction(value: float, whole: float) -> float:
    return min(max(value / whole, 0.0), 1.0)


def _by_prevalence(runs: list[_Run]) -> list[int]:
    """The orientations of the page's text, the one most of it reads in first."""
    counts = dict.fromkeys(range(4), 0)
    for run in runs:
        counts[run.quarter] += len(run.text)
    return sorted((quarter for quarter in counts if counts[quarter]), key=lambda q: -counts[q])


def _read_runs(textpage: Any, frame: _PageFrame) -> tuple[list[_Run], int, int]:
    """The page's characters as runs of one row each (PDFium's lines, cut where they turn,
    change rows or leave a wide gap), with the counts of readable and unreadable characters
    on the page."""
    width, height = frame.size
    runs: list[_Run] = []
    run: _Run | None = None
    space = False
    readable = garbled = 0
    loose = pdfium_c.FS_RECTF()
    count = int(pdfium_c.FPDFText_CountChars(textpage))
    index = 0
    while index < count:
        char_index = index
        code = int(pdfium_c.FPDFText_GetUnicode(textpage, index))
        index += 1
        if code in _LINE_BREAKS:
            run, space = None, False
            continue
        if code in _SPACES:
            space = run is not None
            continue
        if 0xD800 <= code < 0xDC00 and index < count:
            low = int(pdfium_c.FPDFText_GetUnicode(textpage, index))
            if 0xDC00 <= low < 0xE000:
                code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                index += 1
        if code > 0x10FFFF:
            garbled += 1
            continue
        char = "-" if code == _LINE_END_HYPHEN else chr(code)
        category = unicodedata.category(char)
        if category == _INVISIBLE_CATEGORY:
            continue
        if code == 0xFFFD or category in _UNREADABLE_CATEGORIES:
            garbled += 1
            continue
        if not pdfium_c.FPDFText_GetLooseCharBox(textpage, char_index, loose):
            continue
        box = frame.box(loose.left, loose.bottom, loose.right, loose.top)
        if not (0 <= (box[0] + box[2]) / 2 <= width and 0 <= (box[1] + box[3]) / 2 <= height):
            continue  # outside the crop box: not on the rendered page
        readable += 1
        # PDFium's angle is clockwise, like /Rotate: their sum is the turn as rendered.
        angle = math.degrees(float(pdfium_c.FPDFText_GetCharAngle(textpage, char_index)))
        quarter = round((max(angle, 0.0) + frame.rotation) / 90) % 4
        turned = _turn(quarter, box)
        if run is not None and not run.continues_with(quarter, turned):
            run = None
        if run is None:
            run, space = _Run(quarter), False
            runs.append(run)
        elif space:
            run.text.append(" ")
            space = False
        run.add(char, turned)
    return runs, readable, garbled


def _reading_order(runs: list[_Run], quarter: int) -> list[_Run]:
    """The runs of one orientation as lines: rows top to bottom (runs whose middles are
    within half a line height), each left to right, with runs of one row that nearly touch
    joined. PDFium breaks lines where a row's text was drawn in pieces (a value typed into
    a form field beside its label, a superscript)."""
    rows: list[list[_Run]] = []
    for run in sorted((run for run in runs if run.quarter == quarter), key=lambda r: r.middle):
        if rows:
            last = rows[-1][-1]
            if abs(run.middle - last.middle) < max(run.height, last.height) / 2:
                rows[-1].append(run)
                continue
        rows.append([run])
    lines: list[_Run] = []
    for row in rows:
        row.sort(key=lambda run: run.u0)
        line = row[0]
        lines.append(line)
        for run in row[1:]:
            size = max(line.height, run.height)
            gap = run.u0 - line.u1
            if -size / 2 <= gap <= SPLIT_GAP * size:
                line.absorb(run, space=gap > 0.15 * size)
            else:
                line = run
                lines.append(line)
    return lines


def _stamped_picture(page: Any, textpage: Any, frame: _PageFrame, boxes: list[_Box]) -> bool:
    """Whether the page is a picture (a scan) with a little visible text stamped on it
    ("Received 2024-05-01"), rather than a page of text or a scan under an OCR layer."""
    width, height = frame.size
    across = (max(box[2] for box in boxes) - min(box[0] for box in boxes)) / width
    down = (max(box[3] for box in boxes) - min(box[1] for box in boxes)) / height
    if across * down >= MIN_TEXT_AREA or _largest_picture_share(page, frame) < PICTURE_SHARE:
        return False
    for index in range(int(pdfium_c.FPDFText_CountChars(textpage))):
        textobject = pdfium_c.FPDFText_GetTextObject(textpage, index)
        if textobject and pdfium_c.FPDFTextObj_GetTextRenderMode(textobject) in _UNSEEN_TEXT:
            return False  # OCR software's invisible layer: the text of the picture itself
    return True


def _largest_picture_share(page: Any, frame: _PageFrame) -> float:
    """The share of the page the largest picture on it covers (pictures inside form
    XObjects count by the form's box)."""
    width, height = frame.size
    largest = 0.0
    for index in range(max(int(pdfium_c.FPDFPage_CountObjects(page)), 0)):
        pageobject = pdfium_c.FPDFPage_GetObject(page, index)
        if not pageobject or not _holds_picture(pageobject, depth=4):
            continue
        left, bottom, right, top = (ctypes.c_float() for _ in range(4))
        if not pdfium_c.FPDFPageObj_GetBounds(pageobject, left, bottom, right, top):
            continue
        x0, y0, x1, y1 = frame.box(left.value, bottom.value, right.value, top.value)
        across = max(min(x1, width) - max(x0, 0.0), 0.0)
        down = max(min(y1, height) - max(y0, 0.0), 0.0)
        largest = max(largest, across * down / (width * height))
    return largest


def _holds_picture(pageobject: Any, depth: int) -> bool:
    kind = pdfium_c.FPDFPageObj_GetType(pageobject)
    if kind == pdfium_c.FPDF_PAGEOBJ_IMAGE:
        return True
    if kind != pdfium_c.FPDF_PAGEOBJ_FORM or depth == 0:
        return False
    return any(
        _holds_picture(pdfium_c.FPDFFormObj_GetObject(pageobject, index), depth - 1)
        for index in range(max(int(pdfium_c.FPDFFormObj_CountObjects(pageobject)), 0))
    )
