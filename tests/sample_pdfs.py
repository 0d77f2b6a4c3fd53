"""PDFs made on the fly: born-digital pages with a text layer, the same pages as scans
(pictures only, or pictures under an invisible OCR layer), encrypted and empty documents, and
a filled form whose values live in form fields rather than in the page.

Every page is US letter (612 x 792 points). Line ``i`` of a page is printed at
``LEFT_MARGIN`` points from the left with its top ``TOP_MARGIN + i * LINE_SPACING`` points
from the top, in 12 point type, so tests can tell where each line should be found.
"""

from __future__ import annotations

import io

import pypdfium2 as pdfium
from fpdf import FPDF
from fpdf.enums import EncryptionMethod, TextMode

from extraction.pdf import PDFIUM_LOCK
from tests.sample_images import printed_page

LETTER = (612.0, 792.0)  # points
LEFT_MARGIN = 72.0
TOP_MARGIN = 72.0
LINE_SPACING = 18.0
FONT_SIZE = 12.0
# The resolution of the pictures of scanned pages: a usual scanner setting.
SCAN_DPI = 150


def line_top(index: int) -> float:
    """The top of line ``index`` of a page, as a fraction of the page's height."""
    return (TOP_MARGIN + index * LINE_SPACING) / LETTER[1]


def _document(size: tuple[float, float] = LETTER) -> FPDF:
    pdf = FPDF(unit="pt", format=size)
    pdf.set_auto_page_break(False)
    pdf.set_font("Helvetica", size=FONT_SIZE)
    return pdf


def _print_lines(pdf: FPDF, lines: list[str]) -> None:
    for index, line in enumerate(lines):
        # text() places the baseline; Helvetica's capitals rise about 0.72 em above it.
        pdf.text(LEFT_MARGIN, TOP_MARGIN + index * LINE_SPACING + FONT_SIZE * 0.8, line)


def _output(pdf: FPDF) -> bytes:
    return bytes(pdf.output())


def text_pdf(pages: list[list[str]], size: tuple[float, float] = LETTER) -> bytes:
    """A born-digital PDF: each page's lines printed in Helvetica, with a real text layer;
    ``size`` in points."""
    pdf = _document(size)
    for lines in pages:
        pdf.add_page()
        _print_lines(pdf, lines)
    return _output(pdf)


def turned_text_pdf(lines: list[str], angle: float) -> bytes:
    """One page with ``lines`` printed turned ``angle`` degrees counterclockwise about the
    page's bottom-left margin corner, as a table's sideways headings or a landscape form
    printed on a portrait page are (at 90, they read upwards from there)."""
    pdf = _document()
    pdf.add_page()
    corner = (LEFT_MARGIN, LETTER[1] - TOP_MARGIN)
    with pdf.rotation(angle, *corner):
        for index, line in enumerate(lines):
            pdf.text(corner[0], corner[1] + index * LINE_SPACING + FONT_SIZE * 0.8, line)
    return _output(pdf)


def scan_of(lines: list[str], dpi: int = SCAN_DPI) -> bytes:
    """A letter page with ``lines`` printed where text_pdf() prints them, as a PNG picture."""
    scale = dpi / 72
    size = (round(LETTER[0] * scale), round(LETTER[1] * scale))
    placed = [
        (round(LEFT_MARGIN * scale), round((TOP_MARGIN + index * LINE_SPACING) * scale), line)
        for index, line in enumerate(lines)
    ]
    out = io.BytesIO()
    printed_page(placed, size=size, font_size=round(FONT_SIZE * scale)).save(out, "PNG")
    return out.getvalue()


def scanned_pdf(
    pages: list[list[str]], *, ocr_layer: bool = False, stamp: str | None = None
) -> bytes:
    """The pages of text_pdf() as pictures only, the way a scanner makes them.

    ``ocr_layer`` adds the lines as invisible text over the picture (render mode 3), as OCR
    software does; ``stamp`` prints one short line of real text at the foot of every page,
    as document systems stamp scans ("Received 2024-05-01").
    """
    pdf = _document()
    for lines in pages:
        pdf.add_page()
        pdf.image(io.BytesIO(scan_of(lines)), x=0, y=0, w=LETTER[0], h=LETTER[1])
        if ocr_layer:
            with pdf.local_context(text_mode=TextMode.INVISIBLE):
                _print_lines(pdf, lines)
        if stamp is not None:
            pdf.text(LEFT_MARGIN, LETTER[1] - 36, stamp)
    return _output(pdf)


def encrypted_pdf(
    pages: list[list[str]] | None = None,
    *,
    user_password: str | None = "secret",  # noqa: S107 — a test document's own
) -> bytes:
    """text_pdf() encrypted (AES-128). With ``user_password=None`` it opens without a
    password: only its permissions are protected, by the owner password."""
    pdf = _document()
    for lines in pages or [["Confidential report for the encrypted test"]]:
        pdf.add_page()
        _print_lines(pdf, lines)
    pdf.set_encryption(
        owner_password="owner-secret",  # noqa: S106 — a test document's own
        user_password=user_password,
        encryption_method=EncryptionMethod.AES_128,
    )
    return _output(pdf)


def rotated_pdf(data: bytes, degrees: int) -> bytes:
    """``data`` with every page's /Rotate set to ``degrees`` (clockwise), as a scanner sets it
    for a page fed sideways."""
    # PDFium takes one call at a time in a process, the test's own calls included.
    with PDFIUM_LOCK:
        document = pdfium.PdfDocument(data)
        try:
            for index in range(len(document)):
                page = document[index]
                page.set_rotation(degrees)
                page.close()
            out = io.BytesIO()
            document.save(out)
            return out.getvalue()
        finally:
            document.close()


def _assemble(objects: list[bytes]) -> bytes:
    """A PDF file of ``objects`` (object 1 the catalog), with a correct cross-reference table."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def empty_pdf() -> bytes:
    """A well-formed PDF without a single page."""
    return _assemble(
        [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [] /Count 0 >>"]
    )


def damaged_page_pdf(good_pages: int) -> bytes:
    """A PDF whose first ``good_pages`` pages print "Page <n>" and whose last page is no page
    at all (its entry in the page tree is a string), so it cannot be loaded."""
    font = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
    first_page = 4  # objects 1-3: catalog, page tree, font
    kids = [b"%d 0 R" % (first_page + 2 * index) for index in range(good_pages + 1)]
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(kids), len(kids)),
        font,
    ]
    for index in range(good_pages):
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
            b"/Resources << /Font << /F1 3 0 R >> >> >>" % (first_page + 2 * index + 1)
        )
        objects.append(_stream(b"BT /F1 12 Tf 72 708 Td (Page %d) Tj ET" % (index + 1)))
    objects.append(b"(not a page)")
    return _assemble(objects)


def _stream(content: bytes, entries: bytes = b"") -> bytes:
    return b"<< %s /Length %d >>\nstream\n" % (entries, len(content)) + content + b"\nendstream"


def form_pdf(label: str, value: str) -> bytes:
    """A one-page form: ``label`` printed on the page, ``value`` typed into a text field
    beside it. The value lives in the field's appearance, not in the page's own text."""
    page_text = b"BT /F1 12 Tf 72 708 Td (%s) Tj ET" % label.encode("latin-1")
    field_text = b"/Tx BMC BT /F1 12 Tf 2 6 Td (%s) Tj ET EMC" % value.encode("latin-1")
    helvetica = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
    return _assemble(
        [
            b"<< /Type /Catalog /Pages 2 0 R /AcroForm << /Fields [5 0 R] "
            b"/DR << /Font << /F1 4 0 R >> >> /DA (/F1 12 Tf 0 g) >> >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 6 0 R "
            b"/Resources << /Font << /F1 4 0 R >> >> /Annots [5 0 R] >>",
            helvetica,
            b"<< /Type /Annot /Subtype /Widget /FT /Tx /T (name) /V (%s) /F 4 /P 3 0 R "
            b"/Rect [240 700 540 722] /DA (/F1 12 Tf 0 g) /AP << /N 7 0 R >> >>"
            % value.encode("latin-1"),
            _stream(page_text),
            _stream(
                field_text,
                b"/Type /XObject /Subtype /Form /BBox [0 0 300 22] "
                b"/Resources << /Font << /F1 4 0 R >> >>",
            ),
        ]
    )
