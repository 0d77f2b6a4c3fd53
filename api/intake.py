"""Reading a job's images from the request stream straight into temporary storage.

The body is never held in memory: multipart parts and JSON strings are written to storage
as they arrive, hashed and sniffed on the way, and every limit is checked as soon as it can
be broken. On any error the caller discards what was written, so nothing is left behind.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import ijson
from python_multipart.multipart import MultipartParser, parse_options_header

from core.errors import (
    CorruptImage,
    ImageTooLarge,
    InvalidRequest,
    JobTooLarge,
    TooManyImages,
    UnsupportedImageFormat,
)
from core.image_formats import SNIFF_BYTES, sniff
from core.jobs import StagedImage
from core.settings import MB, Settings
from core.storage import ImageStore

# Non-file form fields (prompt, metadata...) are small; this bounds what one may hold.
MAX_FIELD_BYTES = 1 * MB
MAX_URL_CHARS = 4096
_WHITESPACE = re.compile(rb"\s+")


def _label(index: int, name: str | None) -> str:
    return f"images[{index}]" + (f" ({name})" if name else "")


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
        if self.size > settings.max_image_bytes:
            limit = settings.max_image_bytes // MB
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
        fmt = sniff(self.head)
        if fmt is None:
            raise UnsupportedImageFormat(
                f"{self.label} is not an image format we read "
                "(PNG, JPEG, WebP, HEIC, HEIF, BMP, GIF, TIFF)",
                input=where,
            )
        return StagedImage(
            index=self.index,
            source_kind=self.source_kind,
            source_name=self.name,
            storage_key=self.key,
            byte_size=self.size,
            sha256=self.digest.hexdigest(),
            media_type=fmt.media_type,
        )

    def abort(self) -> None:
        self.file.close()


class JobIntake:
    """Everything one request brings in, in input order."""

    def __init__(self, store: ImageStore, settings: Settings, job_id: uuid.UUID) -> None:
        self.store = store
        self.settings = settings
        self.job_id = job_id
        self.images: list[StagedImage] = []
        self.total_bytes = 0
        self._open: ImageWriter | None = None

    def _next_index(self) -> int:
        index = len(self.images)
        if index >= self.settings.max_images_per_job:
            raise TooManyImages(
                f"more than {self.settings.max_images_per_job} images sent; "
                "that is the limit per job",
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
        raw = _WHITESPACE.sub(b"", text.encode("ascii", errors="replace"))
        if len(raw) * 3 // 4 > self.settings.max_image_bytes + 2:
            raise ImageTooLarge(
                f"images[{index}] is larger than the "
                f"{self.settings.max_image_bytes // MB} MB limit per image",
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

    def discard(self) -> None:
        if self._open is not None:
            self._open.abort()
        self.store.delete_job(self.job_id)


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
        # An empty read means end of input to ijson; Starlette's stream may yield empty chunks.
        chunk = b""
        while not chunk:
            try:
                chunk = await self._stream.__anext__()
            except StopAsyncIteration:
                return b""
        self._seen += len(chunk)
        if self._seen > self._limit:
            raise JobTooLarge(
                f"the request body is over {self._limit // MB} MB; images add up to more than "
                "the limit per job",
                input="images",
            )
        return chunk


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
                if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", value):
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
