"""Reading a job's images from the request stream straight into temporary storage.

The body is never held in memory: multipart parts and JSON strings are written to storage
as they arrive, hashed and sniffed on the way, and every limit is checked as soon as it can
be broken. On any error the caller discards what was written, so nothing is left behind.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import io
import re
import uuid
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import ijson
from PIL import Image, UnidentifiedImageError
from python_multipart.multipart import MultipartParser, parse_options_header

from core.errors import (
    CorruptImage,
    ImageTooLarge,
    InvalidRequest,
    JobTooLarge,
    TooManyImages,
    UnsupportedImageFormat,
)
from core.image_formats import SNIFF_BYTES, SUPPORTED_FORMATS, ImageFormat, sniff
from core.jobs import StagedImage
from core.settings import MB, Settings
from core.storage import ImageStore

# Non-file form fields (prompt, metadata...) are small; this bounds what one may hold.
MAX_FIELD_BYTES = 1 * MB
MAX_URL_CHARS = 4096
JSON_READ_BYTES = 4 * MB
_URL_SCHEME = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://")
# What \s matches in bytes; bytes.translate drops it at C speed, a regex took 0.7 s per 20 MB.
_WHITESPACE = b" \t\n\r\x0b\x0c"


def _label(index: int, name: str | None) -> str:
    return f"images[{index}]" + (f" ({name})" if name else "")


@dataclass(frozen=True, slots=True)
class IntakeRules:
    """What one API style takes, where it is stricter than the job limits in settings.

    The defaults (None, False) are the native API's: the limits from settings and every
    format ``sniff`` knows.
    """

    max_image_bytes: int | None = None
    max_images: int | None = None
    formats: frozenset[ImageFormat] | None = None
    # DumplingAI promises that any other format Pillow decodes is converted to PNG; the
    # worker only reads the formats sniff() knows, so those others are converted here.
    convert_other_formats: bool = False

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
        self.key = ImageStore.key_for(intake.job_id, index)
        self.size = 0
        self.head = b""
        self.digest = hashlib.sha256()
        self.file: BinaryIO = intake.store.open_for_write(self.key)

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
        self.digest.update(chunk)
        self.file.write(chunk)

    def finish(self) -> StagedImage:
        self.file.close()
        where = f"images[{self.index}]"
        if self.size == 0:
            raise CorruptImage(f"{self.label} is empty (0 bytes)", input=where)
        rules = self.intake.rules
        fmt = sniff(self.head)
        if fmt is None and not rules.convert_other_formats:
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
            self.intake.to_convert.append(self.index)
        return StagedImage(
            index=self.index,
            source_kind=self.source_kind,
            source_name=self.name,
            storage_key=self.key,
            byte_size=self.size,
            sha256=self.digest.hexdigest(),
            media_type=fmt.media_type if fmt else None,
        )

    def abort(self) -> None:
        self.file.close()


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
        # Indexes of images in a format sniff() does not know, for convert_other_formats().
        self.to_convert: list[int] = []
        self.total_bytes = 0
        self._open: ImageWriter | None = None

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
        self._open = ImageWriter(self, self._next_index(), source_kind, name)
        return self._open

    def end_image(self, writer: ImageWriter) -> None:
        self._open = None
        self.images.append(writer.finish())

    def add_base64(self, text: str) -> None:
        index = self._next_index()
        name = None
        if text.startswith("data:"):
            _, _, text = text.partition(",")
        raw = text.encode("ascii", errors="replace").translate(None, _WHITESPACE)
        if len(raw) * 3 // 4 > self.max_image_bytes + 2:
            raise ImageTooLarge(
                f"images[{index}] is larger than the "
                f"{self.max_image_bytes // MB} MB limit per image",
                input=f"images[{index}]",
            )
        try:
            data = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError) as error:
            raise InvalidRequest(
                f"images[{index}] is not valid base64 ({error})", input=f"images[{index}]"
            ) from error
        writer = self.begin_image("base64", name)
        writer.write(data)
        self.end_image(writer)

    def add_url(self, url: str) -> None:
        index = self._next_index()
        parts = urlsplit(url)
        if len(url) > MAX_URL_CHARS or parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidRequest(
                f"images[{index}] is not an http(s) URL: {url[:200]!r}", input=f"images[{index}]"
            )
        name = parts.path.rsplit("/", 1)[-1] or parts.hostname
        self.images.append(
            StagedImage(index=index, source_kind="url", source_name=name, source_url=url)
        )

    def convert_other_formats(self) -> None:
        """Store images in formats sniff() does not know as PNG, if Pillow decodes them.

        Blocking (decodes whole images): run it in a worker thread.
        """
        for index in self.to_convert:
            staged = self.images[index]
            if staged.storage_key is None:  # URLs are never sniffed here
                continue
            png = _to_png(
                self.store.read(staged.storage_key),
                index,
                _label(index, staged.source_name),
                self.settings.max_image_pixels,
            )
            with self.store.open_for_write(staged.storage_key) as out:
                out.write(png)
            self.images[index] = dataclasses.replace(
                staged,
                byte_size=len(png),
                sha256=hashlib.sha256(png).hexdigest(),
                media_type=ImageFormat.PNG.media_type,
            )
        self.to_convert.clear()

    def discard(self) -> None:
        if self._open is not None:
            self._open.abort()
        self.store.delete_job(self.job_id)


def _to_png(data: bytes, index: int, label: str, max_pixels: int) -> bytes:
    where = f"images[{index}]"
    try:
        with warnings.catch_warnings():
            # Our own pixel check runs before decoding; Pillow's guard would only warn.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as opened:
                width, height = opened.size
                if width * height > max_pixels:
                    raise Image.DecompressionBombError
                opened.load()
                image: Image.Image = opened
                if image.mode not in ("RGB", "RGBA", "L", "LA"):
                    image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
                out = io.BytesIO()
                image.save(out, "PNG", compress_level=1)
                return out.getvalue()
    except Image.DecompressionBombError as error:
        raise ImageTooLarge(
            f"{label} has more pixels than the limit of {max_pixels}", input=where
        ) from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as error:
        raise UnsupportedImageFormat(
            f"{label} is not an image format we read or can convert to PNG: {error}",
            input=where,
        ) from error


async def read_multipart(
    stream: AsyncIterator[bytes], content_type: str, intake: JobIntake, file_fields: set[str]
) -> dict[str, str]:
    """Parse a multipart body; file parts named in ``file_fields`` become images."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise InvalidRequest("multipart body without a boundary", input="Content-Type")
    fields: dict[str, str] = {}
    state: dict[str, Any] = {"headers": {}, "field": b"", "value": b""}

    def on_part_begin() -> None:
        state.update(headers={}, name=None, writer=None, buffer=bytearray())

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
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

    def on_part_data(data: bytes, start: int, end: int) -> None:
        writer: ImageWriter | None = state["writer"]
        if writer is not None:
            writer.write(data[start:end])
            return
        buffer: bytearray = state["buffer"]
        buffer += data[start:end]
        if len(buffer) > MAX_FIELD_BYTES:
            raise InvalidRequest(
                f"form field {state['name']!r} is over {MAX_FIELD_BYTES // MB} MB",
                input=state["name"],
            )

    def on_part_end() -> None:
        writer: ImageWriter | None = state["writer"]
        if writer is not None:
            intake.end_image(writer)
        elif state["name"]:
            fields[state["name"]] = bytes(state["buffer"]).decode("utf-8", "replace")

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
        },
    )
    try:
        async for chunk in stream:
            parser.write(chunk)
        parser.finalize()
    except ValueError as error:
        # python-multipart reports a malformed body as ValueError subclasses.
        raise InvalidRequest(f"malformed multipart body: {error}") from error
    return fields


class _ChunkReader:
    """An async file-like object over the request stream, for ijson, with a size cap."""

    def __init__(self, stream: AsyncIterator[bytes], limit: int) -> None:
        self._stream = stream.__aiter__()
        self._limit = limit
        self._seen = 0

    async def read(self, size: int = -1) -> bytes:
        if size == 0:
            # ijson reads zero bytes first to learn whether the source gives bytes or text.
            return b""
        # yajl copies a string value that spans reads again on every read, so a 27 MB base64
        # image read in the server's 64 KB pieces took seconds; a few MB per read keep it fast.
        # (An empty read means end of input to ijson, so empty chunks are skipped.)
        parts: list[bytes] = []
        got = 0
        while got < JSON_READ_BYTES:
            try:
                chunk = await self._stream.__anext__()
            except StopAsyncIteration:
                break
            parts.append(chunk)
            got += len(chunk)
            self._seen += len(chunk)
            if self._seen > self._limit:
                raise JobTooLarge(
                    f"the request body is over {self._limit // MB} MB; images add up to more "
                    "than the limit per job",
                    input="images",
                )
        return b"".join(parts)


async def read_json(
    stream: AsyncIterator[bytes], intake: JobIntake, *, images_key: str = "images"
) -> tuple[dict[str, Any], list[str]]:
    """Parse a JSON body; returns the other top-level fields and each image's kind.

    Each string in ``images`` is stored as it arrives: URLs are kept to fetch later,
    anything else is decoded as base64. The caller checks the kinds against the declared
    input method.
    """
    # Base64 is 4/3 of the bytes; the rest of the body (prompt, metadata) is small.
    limit = intake.settings.max_job_bytes * 4 // 3 + 4 * MB
    reader = _ChunkReader(stream, limit)
    fields: dict[str, Any] = {}
    kinds: list[str] = []
    builders: dict[str, Any] = {}
    key: str | None = None
    try:
        async for prefix, event, value in ijson.parse_async(reader, use_float=True):
            if prefix == "":
                if event == "map_key":
                    key = value
                    if key != images_key:
                        builders[key] = ijson.ObjectBuilder()
                elif event not in ("start_map", "end_map"):
                    raise InvalidRequest("the JSON body must be an object")
                continue
            if key == images_key:
                if prefix == images_key and event in ("start_array", "end_array"):
                    continue
                if prefix != f"{images_key}.item" or event != "string":
                    raise InvalidRequest(
                        f"{images_key} must be an array of strings (URLs or base64)",
                        input=images_key,
                    )
                # Only the head: base64 is all scheme characters, so an unbounded match
                # would scan (and backtrack over) the whole image.
                if _URL_SCHEME.match(value, 0, 40):
                    kinds.append("url")
                    intake.add_url(value)
                else:
                    kinds.append("base64")
                    intake.add_base64(value)
            elif key is not None:
                builders[key].event(event, value)
    except ijson.JSONError as error:
        raise InvalidRequest(f"the body is not valid JSON: {error}") from error
    except ijson.IncompleteJSONError as error:
        raise InvalidRequest(f"the body is not valid JSON: {error}") from error
    for name, builder in builders.items():
        fields[name] = builder.value
    return fields, kinds
