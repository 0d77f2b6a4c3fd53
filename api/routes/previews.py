"""Pictures of a PDF's pages, for clients that cannot draw a PDF themselves (the web page
shows a document's pages with each value's evidence box drawn on its page).

The PDF comes with the request, is read in memory and forgotten: nothing is stored, charged
or queued. Requests are authenticated and count against the key's rate limit like any other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool

from api.dependencies import StateDep, get_account_short
from api.intake import MAX_PART_HEADER_BYTES
from api.json_body import size_text
from api.schemas.openapi import request_body
from api.schemas.previews import PreviewForm
from core.errors import (
    CorruptImage,
    FieldTooLarge,
    ImageTooLarge,
    InvalidRequest,
    MissingField,
    UnsupportedImageFormat,
)
from core.image_formats import sniff
from extraction.pdf import count_pages, is_pdf, render_pages

router = APIRouter(prefix="/v1/previews", tags=["previews"])

# Sharp enough to read a letter page's small print on a large screen, a few hundred KB.
PREVIEW_SIDE = 1600
PAGE_COUNT_HEADER = "X-Page-Count"
# Everything besides the file's bytes (part headers, `page`) together: a few hundred bytes
# in practice.
MAX_FORM_BYTES = MAX_PART_HEADER_BYTES

PREVIEW_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The page as a JPEG picture, its longer side 1600 pixels (less for a "
        "small page, which is never drawn finer than 300 dpi).",
        "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}},
        "headers": {
            PAGE_COUNT_HEADER: {
                "description": "How many pages the PDF has.",
                "schema": {"type": "integer"},
            }
        },
    }
}


@dataclass(slots=True)
class PreviewUpload:
    """A preview request's body: the file and the other (small) fields."""

    name: str | None = None
    data: bytes = b""
    fields: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return "file" + (f" ({self.name})" if self.name else "")


@router.post(
    "",
    response_class=Response,
    responses=PREVIEW_RESPONSES,
    openapi_extra=request_body({"multipart/form-data": PreviewForm}),
    # Authenticates (and counts the call against the key's rate limit) in a session of its
    # own: none stays open while the page is drawn.
    dependencies=[Depends(get_account_short)],
)
async def create_preview(request: Request, state: StateDep) -> Response:
    """One page of a PDF drawn as a JPEG picture; `X-Page-Count` says how many it has.

    The PDF is not kept and nothing is charged. Refused as POST /v1/jobs refuses it:
    encrypted (encrypted_pdf), damaged (corrupt_image), over the size limit per file
    (image_too_large); anything but a PDF is unsupported_image_format.
    """
    upload = await read_preview_form(request, state.settings.max_image_bytes)
    page = _page_number(upload.fields.get("page"))
    picture, count = await run_in_threadpool(_draw_page, upload, page)
    return Response(
        picture,
        media_type="image/jpeg",
        # The picture is the caller's document: no cache keeps it.
        headers={PAGE_COUNT_HEADER: str(count), "Cache-Control": "no-store"},
    )


def _page_number(text: str | None) -> int:
    if text is None or not text.strip():
        return 1
    text = text.strip()
    # ASCII digits only: "²" is a digit to str.isdigit, not to int().
    if not (text.isascii() and text.isdigit() and len(text) <= 9) or int(text) < 1:
        raise InvalidRequest(f"page must be a page number from 1, not {text[:20]!r}", input="page")
    return int(text)


def _draw_page(upload: PreviewUpload, page: int) -> tuple[bytes, int]:
    """The JPEG of ``page`` and the document's page count (blocking: PDFium renders)."""
    label = upload.label
    if not upload.data:
        raise CorruptImage(f"{label} is empty (0 bytes)", input="file")
    if not is_pdf(upload.data):
        fmt = sniff(upload.data)
        what = f"a {fmt.value.upper()} image" if fmt is not None else "not a PDF"
        raise UnsupportedImageFormat(
            f"{label} is {what}: previews are drawn of PDFs only", input="file"
        )
    count = count_pages(upload.data, name=label, input="file")
    if page > count:
        pages = "one page" if count == 1 else f"{count} pages"
        raise InvalidRequest(
            f"page {page} is past the end: {label} has {pages}",
            input="page",
            details={"page_count": count},
        )
    try:
        (drawn,) = render_pages(
            upload.data, max_side=PREVIEW_SIDE, name=label, text_layer=False, first=page, last=page
        )
    except CorruptImage as error:
        # render_pages names the document; this API's inputs are its fields.
        raise CorruptImage(error.message, input="file") from error
    return drawn.image.data, count


async def read_preview_form(request: Request, limit: int) -> PreviewUpload:
    """The multipart body, read as it arrives: the part named ``file`` (at most ``limit``
    bytes, refused as soon as it is over) and the other fields (MAX_FORM_BYTES in all,
    headers included)."""
    kind, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise InvalidRequest(
            "send the PDF as multipart/form-data, in a part named file", input="Content-Type"
        )
    upload = PreviewUpload()
    received = bytearray()
    part: dict[str, Any] = {}
    state = {"form_bytes": 0, "ended": False, "files": 0}

    def count(size: int) -> None:
        state["form_bytes"] += size
        if state["form_bytes"] > MAX_FORM_BYTES:
            raise FieldTooLarge(
                f"the form besides the file is over the limit of {size_text(MAX_FORM_BYTES)}",
                input=part.get("name"),
                details={"limit_bytes": MAX_FORM_BYTES},
            )

    def on_part_begin() -> None:
        part.clear()
        part.update(headers={}, field=b"", value=b"", name=None, is_file=False, text=b"")

    def on_header_field(data: bytes, start: int, end: int) -> None:
        count(end - start)
        part["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        count(end - start)
        part["value"] += data[start:end]

    def on_header_end() -> None:
        part["headers"][part["field"].decode("latin-1").lower()] = part["value"]
        part["field"], part["value"] = b"", b""

    def on_headers_finished() -> None:
        _, disposition = parse_options_header(part["headers"].get("content-disposition", b""))
        part["name"] = disposition.get(b"name", b"").decode("utf-8", "replace")
        if part["name"] == "file":
            state["files"] += 1
            if state["files"] > 1:
                raise InvalidRequest("send one file per preview", input="file")
            part["is_file"] = True
            filename = disposition.get(b"filename")
            upload.name = filename.decode("utf-8", "replace") if filename else None

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if not part["is_file"]:
            count(end - start)
            part["text"] += data[start:end]
            return
        received.extend(data[start:end])
        if len(received) > limit:
            raise ImageTooLarge(
                f"{upload.label} is larger than the {size_text(limit)} limit per file",
                input="file",
                details={"limit_bytes": limit},
            )

    def on_part_end() -> None:
        if not part["is_file"] and part["name"]:
            upload.fields[part["name"]] = part["text"].decode("utf-8", "replace")

    def on_end() -> None:
        state["ended"] = True

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
            "on_end": on_end,
        },
    )
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except ValueError as error:
        # python-multipart reports a malformed body as ValueError subclasses.
        raise InvalidRequest(f"malformed multipart body: {error}") from error
    if not state["ended"]:
        raise InvalidRequest("the multipart body ends before its closing boundary")
    if not state["files"]:
        raise MissingField("file is required: the PDF to draw a page of", input="file")
    upload.data = bytes(received)
    return upload
