"""Reading a job's images from the request stream straight into temporary storage.

The body is never held in memory: multipart parts and JSON strings are written to storage
as they arrive, hashed and sniffed on the way, and every limit is checked as soon as it can
be broken. An object store gets each image once it is complete, while the request goes on
(``stored`` waits for them all). On any error the caller discards what was written, so
nothing is left behind.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import hashlib
import re
import unicodedata
import uuid
import warnings
from collections.abc import AsyncIterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from PIL import Image, UnidentifiedImageError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool

from api.json_body import JsonObjectReader, size_text
from core import url_guard
from core.errors import (
    CorruptImage,
    FieldTooLarge,
    ImageTooLarge,
    InvalidRequest,
    JobTooLarge,
    TooManyImages,
    UnsupportedImageFormat,
)
from core.image_formats import (
    HEADER_BYTES,
    SNIFF_BYTES,
    SUPPORTED_FORMATS,
    ImageFormat,
    declared_size,
    sniff,
)
from core.jobs import StagedImage
from core.settings import MB, Settings
from core.storage import ImageStore, key_for
from extraction.pdf import PDF_MEDIA_TYPE, count_pages, is_pdf

MAX_URL_CHARS = 4096
# "data:image/png;base64," and the like, before an image's base64.
MAX_DATA_PREFIX_BYTES = 256
_URL_SCHEME = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://")
# What \s matches in bytes; bytes.translate drops it at C speed, a regex took 0.7 s per 20 MB.
_WHITESPACE = b" \t\n\r\x0b\x0c"


def _label(index: int, name: str | None) -> str:
    return f"images[{index}]" + (f" ({name})" if name else "")


# Characters that reorder the text around them: a name such as "invoice\u202egnp.exe"
# shows as "invoiceexe.png" in results, CSV files and web pages.
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f"  # Arabic letter mark, left-to-right and right-to-left marks
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"  # embeddings, overrides, isolates
)


def _check_file_name(index: int, name: str) -> None:
    """Refuse a file name with a control character (NUL cannot even be stored) or a
    bidirectional override: they are refused, not cleaned, so that the name in the results
    is always the one the client sent."""
    for char in name:
        if unicodedata.category(char) == "Cc" or char in _BIDI_CONTROLS:
            kind = "bidirectional control" if char in _BIDI_CONTROLS else "control"
            raise InvalidRequest(
                f"images[{index}]: the file name {name[:200]!r} contains the {kind} character "
                f"U+{ord(char):04X}; rename the file",
                input=f"images[{index}]",
            )


@dataclass(frozen=True, slots=True)
class IntakeRules:
    """What one API style takes, where it is stricter than the job limits in settings.

    The defaults (None, False) are the native API's: the limits from settings and every
    format ``sniff`` knows.
    """

    max_image_bytes: int | None = None
    max_images: int | None = None
    formats: frozenset[ImageFormat] | None = None
    # DumplingAI promises that any other format Pillow decodes is converted to PNG. Here
    # their header is read (format, size: never pixels); the worker decodes and converts.
    other_pillow_formats: bool = False
    # PDFs (and their pages) are ours: the compatible APIs keep their documented formats.
    documents: bool = True

    def formats_text(self) -> str:
        chosen = self.formats or frozenset(SUPPORTED_FORMATS)
        return ", ".join(fmt.value.upper() for fmt in SUPPORTED_FORMATS if fmt in chosen)


class ImageWriter:
    """One image on its way to storage."""

    def __init__(self, intake: JobIntake, index: int, source_kind: str, name: str | None) -> None:
        self.intake = intake
        self.index = index
        self.source_kind = source_kind
        self.name = name
        self.key = key_for(intake.job_id, index)
        self.size = 0
        self.head = b""
        # The first HEADER_BYTES, where the header gives the image's size.
        self.header = bytearray()
        self.digest = hashlib.sha256()
        self.upload = intake.store.open_for_write(self.key)

    @property
    def label(self) -> str:
        return _label(self.index, self.name)

    def write(self, chunk: bytes) -> None:
        settings = self.intake.settings
        self.size += len(chunk)
        self.intake.total_bytes += len(chunk)
        if self.size > self.intake.max_image_bytes:
            limit = self.intake.max_image_bytes // MB
            raise ImageTooLarge(
                f"{self.label} is larger than the {limit} MB limit per image",
                input=f"images[{self.index}]",
            )
        if self.intake.total_bytes > settings.max_job_bytes:
            raise JobTooLarge(
                f"the images add up to more than the {settings.max_job_bytes // MB} MB limit per "
                f"job (reached at {self.label})",
                input=f"images[{self.index}]",
            )
        if len(self.head) < SNIFF_BYTES:
            self.head += chunk[: SNIFF_BYTES - len(self.head)]
        if len(self.header) < HEADER_BYTES:
            self.header += chunk[: HEADER_BYTES - len(self.header)]
        self.digest.update(chunk)
        self.upload.write(chunk)

    def finish(self) -> StagedImage:
        """Check the complete image and send it to storage (``JobIntake.stored`` waits)."""
        try:
            staged = self._checked()
        except BaseException:
            self.upload.abort()
            raise
        self.intake.uploads.append(self.upload.finish())
        return staged

    def _checked(self) -> StagedImage:
        where = f"images[{self.index}]"
        if self.size == 0:
            raise CorruptImage(f"{self.label} is empty (0 bytes)", input=where)
        rules = self.intake.rules
        fmt = sniff(self.head)
        if fmt is None and rules.documents and is_pdf(self.head):
            # Its pages are counted once it is stored (count_document_pages).
            self.intake.documents.append(self.index)
            return self._staged(PDF_MEDIA_TYPE)
        if fmt is None and not rules.other_pillow_formats:
            raise UnsupportedImageFormat(
                f"{self.label} is not an image format we read ({rules.formats_text()})",
                input=where,
            )
        if fmt is not None and rules.formats is not None and fmt not in rules.formats:
            raise UnsupportedImageFormat(
                f"{self.label} is {fmt.value.upper()}; only {rules.formats_text()} are accepted",
                input=where,
            )
        if fmt is None:
            self.intake.to_identify.append(self.index)
        else:
            self._check_pixels(fmt)
        return self._staged(fmt.media_type if fmt is not None else None)

    def _check_pixels(self, fmt: ImageFormat) -> None:
        """Refuse an image whose header claims more pixels than the limit, before anything
        is charged (the worker checks again as it decodes, also what this cannot read)."""
        size = declared_size(fmt, bytes(self.header))
        self.header = bytearray()
        limit = self.intake.settings.max_image_pixels
        if size is not None and size[0] * size[1] > limit:
            raise ImageTooLarge(
                f"{self.label} is {size[0]}x{size[1]} pixels, more than the limit of "
                f"{limit} pixels",
                input=f"images[{self.index}]",
            )

    def _staged(self, media_type: str | None) -> StagedImage:
        return StagedImage(
            index=self.index,
            source_kind=self.source_kind,
            source_name=self.name,
            storage_key=self.key,
            byte_size=self.size,
            sha256=self.digest.hexdigest(),
            media_type=media_type,
        )

    def abort(self) -> None:
        self.upload.abort()


class Base64Image:
    """A base64 image decoded to storage as its text arrives, never held whole.

    Takes an optional ``data:image/...;base64,`` prefix and whitespace (line breaks) anywhere.
    """

    def __init__(self, intake: JobIntake) -> None:
        self.intake = intake
        self.where = f"images[{intake._next_index()}]"
        self.writer: ImageWriter | None = None
        # Text before the data: prefix is settled, then the last partial 4-character group.
        self.head = b""
        self.carry = b""

    def write(self, text: bytes) -> None:
        if self.writer is None:
            self.head += text
            if not self._settle_prefix(final=False):
                return
            text, self.head = self.head, b""
            self.writer = self.intake.begin_image("base64", None)
        data = (self.carry + text).translate(None, _WHITESPACE)
        usable = len(data) // 4 * 4
        self.carry = data[usable:]
        if usable:
            self.writer.write(self._decode(data[:usable]))

    def finish(self) -> None:
        if self.writer is None:
            self._settle_prefix(final=True)
            text, self.head = self.head, b""
            self.writer = self.intake.begin_image("base64", None)
            self.write(text)
        if self.carry:
            self.writer.write(self._decode(self.carry))
        self.intake.end_image(self.writer)

    def _settle_prefix(self, *, final: bool) -> bool:
        """Drop a data: prefix from ``head``; False while it cannot be told yet."""
        if not self.head.startswith(b"data:"):
            return final or not b"data:".startswith(self.head[:5])
        comma = self.head.find(b",")
        if comma >= 0:
            self.head = self.head[comma + 1 :]
            return True
        if final or len(self.head) > MAX_DATA_PREFIX_BYTES:
            raise InvalidRequest(
                f"{self.where} starts with data: but has no comma before its base64",
                input=self.where,
            )
        return False

    def _decode(self, data: bytes) -> bytes:
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as error:
            raise InvalidRequest(
                f"{self.where} is not valid base64 ({error})", input=self.where
            ) from error


class JobIntake:
    """Everything one request brings in, in input order."""

    def __init__(
        self,
        store: ImageStore,
        settings: Settings,
        job_id: uuid.UUID,
        rules: IntakeRules | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.job_id = job_id
        self.rules = rules or IntakeRules()
        self.max_image_bytes = self.rules.max_image_bytes or settings.max_image_bytes
        self.max_images = self.rules.max_images or settings.max_images_per_job
        self.images: list[StagedImage] = []
        # Indexes of images in formats sniff() does not know, for identify_other_formats().
        self.to_identify: list[int] = []
        # Indexes of PDFs, for count_document_pages().
        self.documents: list[int] = []
        self.total_bytes = 0
        self._open: ImageWriter | None = None
        self.uploads: list[Future[None]] = []

    def _next_index(self) -> int:
        index = len(self.images)
        if index >= self.max_images:
            plural = "s" if self.max_images != 1 else ""
            raise TooManyImages(
                f"more than {self.max_images} image{plural} sent; that is the limit per job",
                input="images",
            )
        return index

    def begin_image(self, source_kind: str, name: str | None) -> ImageWriter:
        index = self._next_index()
        if name is not None:
            _check_file_name(index, name)
        self._open = ImageWriter(self, index, source_kind, name)
        return self._open

    def end_image(self, writer: ImageWriter) -> None:
        self._open = None
        self.images.append(writer.finish())

    def add_base64(self, text: str) -> None:
        """A base64 image given whole (a short string); long ones use Base64Image."""
        image = Base64Image(self)
        image.write(text.encode("ascii", errors="replace"))
        image.finish()

    def add_url(self, url: str) -> None:
        index = self._next_index()
        parts = urlsplit(url)
        if len(url) > MAX_URL_CHARS or parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidRequest(
                f"images[{index}] is not an http(s) URL: {url[:200]!r}", input=f"images[{index}]"
            )
        # Static checks only (scheme, literal address); names are resolved when fetched.
        url_guard.require_safe_url(self.settings, url, input=f"images[{index}]")
        name = parts.path.rsplit("/", 1)[-1] or parts.hostname
        _check_file_name(index, name)
        self.images.append(
            StagedImage(index=index, source_kind="url", source_name=name, source_url=url)
        )

    async def stored(self) -> None:
        """Wait until every image is in storage; the first failure (StorageUnavailable)
        is raised once all have settled, so discard() finds none still on its way."""
        failures = []
        for upload in self.uploads:
            try:
                await asyncio.wrap_future(upload)
            except Exception as error:
                failures.append(error)
        if failures:
            raise failures[0]

    def identify_other_formats(self) -> None:
        """Read the header of each image in a format sniff() does not know: its format, and
        its size against the pixel limit. Blocking (reads storage): run it in a thread,
        after ``stored``."""
        for index in self.to_identify:
            staged = self.images[index]
            if staged.storage_key is None:  # URLs are fetched and judged by the worker
                continue
            self.images[index] = dataclasses.replace(
                staged,
                media_type=_identify_other_format(
                    self.store.open_for_read(staged.storage_key),
                    f"images[{index}]",
                    _label(index, staged.source_name),
                    self.settings,
                ),
            )
        self.to_identify.clear()

    def count_document_pages(self) -> None:
        """Open each PDF once it is stored: its page count (its price and its share of the
        job's limit), and its refusal when it is encrypted, broken or has too many pages.
        Blocking (reads storage, parses the PDF): run it in a thread, after ``stored``."""
        limit = self.settings.max_pages_per_document
        for index in self.documents:
            staged = self.images[index]
            label = _label(index, staged.source_name)
            # Only uploads are counted here (a URL's document is counted by the worker).
            with self.store.open_for_read(staged.storage_key or "") as file:
                data = file.read()
            pages = count_pages(data, name=label, input=f"images[{index}]", limit=limit)
            self.images[index] = dataclasses.replace(staged, page_count=pages)
        self.documents.clear()

    def discard(self) -> None:
        """Delete whatever was stored (blocking: run it in a thread)."""
        if self._open is not None:
            self._open.abort()
        for upload in self.uploads:
            try:
                upload.result()
            except Exception:  # noqa: S112 — failed uploads left nothing to delete
                continue
        self.store.delete_job(self.job_id)


def _identify_other_format(file: BinaryIO, where: str, label: str, settings: Settings) -> str:
    """The media type of an image in a format sniff() does not know, from its header alone.

    Pillow's open() reads the header and no pixels, so a small file that claims a huge
    image costs nothing here; the pixel limit is checked before the worker decodes it.
    """
    try:
        with warnings.catch_warnings():
            # Our own pixel check follows; Pillow's guard would only warn.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with file, Image.open(file) as opened:
                width, height = opened.size
                name = opened.format or ""
    except Image.DecompressionBombError:
        width, height, name = settings.max_image_pixels + 1, 1, ""
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as error:
        reason = "no format Pillow knows" if isinstance(error, UnidentifiedImageError) else error
        raise UnsupportedImageFormat(
            f"{label} is not an image format we read or can convert to PNG ({reason})",
            input=where,
        ) from error
    if width * height > settings.max_image_pixels:
        raise ImageTooLarge(
            f"{label} has more pixels than the limit of {settings.max_image_pixels}", input=where
        )
    return Image.MIME.get(name, f"image/x-{name.lower() or 'unknown'}")


async def read_multipart(
    stream: AsyncIterator[bytes], content_type: str, intake: JobIntake, file_fields: set[str]
) -> dict[str, str]:
    """Parse a multipart body; file parts named in ``file_fields`` become images.

    Every other part is kept as a text field; those parts and every part's headers count
    against ``max_fields_bytes`` together. A body that ends before its closing boundary is
    refused whole: its last part may have been cut off anywhere.
    """
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise InvalidRequest("multipart body without a boundary", input="Content-Type")
    limit = intake.settings.max_fields_bytes
    fields: dict[str, str] = {}
    state: dict[str, Any] = {
        "headers": {}, "field": b"", "value": b"", "name": None, "writer": None,
        "fields_bytes": 0, "ended": False,
    }  # fmt: skip

    def count(size: int) -> None:
        state["fields_bytes"] += size
        if state["fields_bytes"] > limit:
            name = state["name"]
            raise FieldTooLarge(
                f"the form fields besides the images are over the limit of {size_text(limit)} "
                f"together" + (f" (reached in {name})" if name else ""),
                input=name,
                details={"limit_bytes": limit},
            )

    def on_part_begin() -> None:
        state.update(headers={}, name=None, writer=None, buffer=bytearray(), header_bytes=0)

    def count_header(size: int) -> None:
        state["header_bytes"] += size
        if state["header_bytes"] > MAX_PART_HEADER_BYTES:
            raise FieldTooLarge(
                f"a part's headers are over the limit of {size_text(MAX_PART_HEADER_BYTES)}",
                details={"limit_bytes": MAX_PART_HEADER_BYTES},
            )

    def on_header_field(data: bytes, start: int, end: int) -> None:
        count_header(end - start)
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        count_header(end - start)
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["field"].decode("latin-1").lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    def on_headers_finished() -> None:
        _, disposition = parse_options_header(state["headers"].get("content-disposition", b""))
        name = disposition.get(b"name", b"").decode("utf-8", "replace")
        filename = disposition.get(b"filename")
        state["name"] = name
        if name in file_fields:
            state["writer"] = intake.begin_image(
                "upload", filename.decode("utf-8", "replace") if filename else None
            )
        else:
            # Image parts' headers are bounded per part (and parts by the image limit);
            # every other part counts whole, so many small fields add up too.
            count(state["header_bytes"])

    def on_part_data(data: bytes, start: int, end: int) -> None:
        writer: ImageWriter | None = state["writer"]
        if writer is not None:
            writer.write(data[start:end])
            return
        count(end - start)
        state["buffer"] += data[start:end]

    def on_part_end() -> None:
        writer: ImageWriter | None = state["writer"]
        state["writer"] = None
        if writer is not None:
            intake.end_image(writer)
        elif state["name"]:
            fields[state["name"]] = bytes(state["buffer"]).decode("utf-8", "replace")

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
        async for chunk in stream:
            parser.write(chunk)
        parser.finalize()
    except ValueError as error:
        # python-multipart reports a malformed body as ValueError subclasses.
        raise InvalidRequest(f"malformed multipart body: {error}") from error
    if not state["ended"]:
        writer = state["writer"]
        cut = writer.label if writer is not None else state["name"]
        raise InvalidRequest(
            "the multipart body ends before its closing boundary"
            + (f"; {cut} is cut off" if cut else "")
            + ": nothing was accepted, send the whole request again",
            input=f"images[{writer.index}]" if writer is not None else state["name"],
        )
    return fields


# Each multipart part's headers (Content-Disposition with its file name, Content-Type).
MAX_PART_HEADER_BYTES = 16 * 1024
# Body bytes handed to the JSON reader at once, in a worker thread: fewer thread hops than
# the server's 64 KB pieces, short enough holds of the GIL that the event loop keeps
# answering (/healthz within 100 ms under six parallel 18 MB bodies), and the event loop
# stays free while a body is scanned.
JSON_FEED_BYTES = 256 * 1024


async def read_json(
    stream: AsyncIterator[bytes], intake: JobIntake, *, image_keys: dict[str, bool] | None = None
) -> tuple[dict[str, Any], list[str]]:
    """Parse a JSON body; returns the other top-level fields and each image's kind.

    Each image string is stored as it arrives: URLs are kept to fetch later, anything else
    is decoded as base64. The caller checks the kinds against the declared input method.
    ``image_keys`` names the members holding images: ``{"images": True}`` (an array) unless
    given; DumplingAI also takes one string as ``image``.
    """
    settings = intake.settings
    kinds: list[str] = []

    class Images:
        """URLs are kept to fetch later; anything else is base64, stored as it arrives.
        Only a string's head is looked at: base64 is all scheme characters, so an
        unbounded match would scan (and backtrack over) the whole image."""

        def whole(self, _key: str, text: str) -> None:
            if _URL_SCHEME.match(text, 0, 40):
                kinds.append("url")
                intake.add_url(text)
            else:
                kinds.append("base64")
                intake.add_base64(text)

        def stream(self, _key: str, head: str) -> Base64Image | None:
            if _URL_SCHEME.match(head, 0, 40):
                return None
            kinds.append("base64")
            return Base64Image(intake)

    reader = JsonObjectReader(
        image_keys=image_keys or {"images": True},
        images=Images(),
        max_depth=settings.max_json_depth,
        max_fields_bytes=settings.max_fields_bytes,
        # A URL is at most MAX_URL_CHARS; JSON escapes may make it six times as long.
        max_whole_chars=MAX_URL_CHARS * 6,
    )
    # The images add up to the job limit as base64; the fields have their own limit.
    limit = settings.max_job_bytes * 3 // 2 + settings.max_fields_bytes + 1 * MB
    seen = 0
    pending: list[bytes] = []
    pending_size = 0
    async for chunk in stream:
        seen += len(chunk)
        if seen > limit:
            raise JobTooLarge(
                f"the request body is over {limit // MB} MB; images add up to more than the "
                "limit per job",
                input="images",
            )
        pending.append(chunk)
        pending_size += len(chunk)
        if pending_size >= JSON_FEED_BYTES:
            await run_in_threadpool(reader.feed, b"".join(pending))
            pending, pending_size = [], 0
    if pending:
        await run_in_threadpool(reader.feed, b"".join(pending))
    return reader.close(), kinds
