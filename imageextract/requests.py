"""What the clients send, and how they read answers: shared by Client and AsyncClient.

A submission is built once (its JSON body, or its multipart body as a stream that can be
made again for a retry, with its length known up front); answers are read into the API's
own Pydantic schemas; problems become the exception of their code.
"""

from __future__ import annotations

import json
import mimetypes
import os
import random
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx

from imageextract.errors import APIError, error_for

# One image: a path (str or Path), its bytes, or an http(s) URL for the server to fetch.
ImageInput = str | os.PathLike[str] | bytes
# Called as an upload goes: bytes sent so far, bytes in all.
UploadProgress = Callable[[int, int], None]

CHUNK = 256 * 1024
# Answers worth asking again: rate limited, or the server (or a proxy in front of it) failing
# or briefly away. Every call is safe to repeat: reads, cancels, and submissions, which carry
# an Idempotency-Key. 409 only for a submission whose key an earlier try still holds.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
DEFAULT_SCHEMA_PROMPT = "Extract the information from the image using this schema:"


def resolve(base_url: str | None, api_key: str | None) -> tuple[str, str]:
    """The server and key: as given, else IMAGEEXTRACT_URL and IMAGEEXTRACT_API_KEY."""
    url = base_url or os.environ.get("IMAGEEXTRACT_URL")
    key = api_key or os.environ.get("IMAGEEXTRACT_API_KEY")
    if not url:
        raise ValueError("no server: pass base_url or set IMAGEEXTRACT_URL")
    if not key:
        raise ValueError("no API key: pass api_key or set IMAGEEXTRACT_API_KEY")
    return url.rstrip("/"), key


def http_options(base_url: str | None, api_key: str | None, timeout: float) -> dict[str, Any]:
    """What both clients give httpx: the server, the key's header and the timeouts."""
    url, key = resolve(base_url, api_key)
    return {
        "base_url": url,
        "headers": {"Authorization": f"Bearer {key}", "User-Agent": "imageextract-python"},
        "timeout": httpx.Timeout(timeout, connect=min(timeout, 10.0)),
    }


def retry_delay(attempt: int, response: httpx.Response | None) -> float:
    """Seconds to wait before try ``attempt + 1``: the server's Retry-After when it gave
    one, else exponential backoff with jitter (0.5 s, 1 s, 2 s … at most 30 s)."""
    if response is not None:
        after = response.headers.get("retry-after")
        if after:
            try:
                return max(float(after), 0.0)
            except ValueError:
                try:
                    when = parsedate_to_datetime(after)
                    return max(when.timestamp() - time.time(), 0.0)
                except (TypeError, ValueError):
                    pass
    return min(0.5 * 2.0**attempt, 30.0) * (0.5 + random.random() / 2)  # noqa: S311


def should_retry(response: httpx.Response, *, submission: bool) -> bool:
    if response.status_code in RETRY_STATUSES:
        return True
    if submission and response.status_code == 409:
        # The same Idempotency-Key is still being used by an earlier try (a connection
        # that broke mid-upload, which the server has not noticed yet).
        return "in progress" in response.text
    return False


def raise_for_problem(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        body = response.json()
    except ValueError:
        body = {"detail": response.text[:500] or response.reason_phrase}
    raise error_for(response.status_code, body)


def is_url(image: ImageInput) -> bool:
    return isinstance(image, str) and image.startswith(("http://", "https://"))


def prompt_with_schema(prompt: str | None, schema: Any) -> str:
    """The prompt with a JSON template or JSON Schema (a dict, JSON text, or a file)."""
    if isinstance(schema, os.PathLike) or (
        isinstance(schema, str) and not schema.lstrip().startswith(("{", "["))
    ):
        text = Path(schema).read_text()
    elif isinstance(schema, str):
        text = schema
    else:
        text = json.dumps(schema, ensure_ascii=False)
    return f"{prompt or DEFAULT_SCHEMA_PROMPT}\n{text}"


def _quote(name: str) -> str:
    return name.replace("\\", "\\\\").replace('"', "%22").replace("\r", "").replace("\n", "")


@dataclass
class _Part:
    head: bytes
    path: Path | None = None
    data: bytes | None = None
    size: int = 0


@dataclass
class Submission:
    """One POST /v1/jobs: JSON (URLs) or a multipart body streamed from the files."""

    headers: dict[str, str]
    json_body: dict[str, Any] | None = None
    parts: list[_Part] = field(default_factory=list)
    boundary: str = ""

    @property
    def length(self) -> int:
        if self.json_body is not None:
            return 0
        tail = len(f"--{self.boundary}--\r\n")
        return sum(len(part.head) + part.size + 2 for part in self.parts) + tail

    def body(self, progress: UploadProgress | None = None) -> Iterator[bytes]:
        """The multipart body, read from disk as it is sent; made anew for each try."""
        total, sent = self.length, 0
        for part in self.parts:
            yield part.head
            sent += len(part.head)
            if part.data is not None:
                yield part.data
                sent += len(part.data)
            elif part.path is not None:
                with part.path.open("rb") as stream:
                    while chunk := stream.read(CHUNK):
                        yield chunk
                        sent += len(chunk)
                        if progress is not None:
                            progress(sent, total)
            yield b"\r\n"
            sent += 2
            if progress is not None:
                progress(sent, total)
        yield f"--{self.boundary}--\r\n".encode()
        if progress is not None:
            progress(total, total)


def submission(
    images: Sequence[ImageInput],
    fields: dict[str, Any],
    idempotency_key: str | None,
) -> Submission:
    """The request for these images and fields (None values left out)."""
    if not images:
        raise ValueError("give at least one image")
    headers = {"Idempotency-Key": idempotency_key or uuid.uuid4().hex}
    present = {name: value for name, value in fields.items() if value is not None}
    urls = [is_url(image) for image in images]
    if all(urls):
        body = {**present, "input_method": "url", "images": [str(i) for i in images]}
        return Submission(headers=headers, json_body=body)
    if any(urls):
        raise ValueError("images must be all URLs, or all files and bytes (send URLs apart)")
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in present.items():
        text = json.dumps(value) if isinstance(value, dict | list) else _form_value(value)
        field_head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
        parts.append(_Part(head=field_head.encode(), data=text.encode(), size=len(text.encode())))
    for position, image in enumerate(images):
        if isinstance(image, bytes):
            filename, path, data, size = f"image-{position}", None, image, len(image)
        else:
            path = Path(image)
            try:
                size = path.stat().st_size
            except OSError as error:
                raise ValueError(
                    f"images[{position}]: cannot read {path}: {error.strerror}"
                ) from error
            filename, data = path.name, None
        media_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="images"; '
            f'filename="{_quote(filename)}"\r\nContent-Type: {media_type}\r\n\r\n'
        ).encode()
        parts.append(_Part(head=head, path=path, data=data, size=size))
    headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
    return Submission(headers=headers, parts=parts, boundary=boundary)


def _form_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def read_json(response: httpx.Response) -> Any:
    raise_for_problem(response)
    try:
        return response.json()
    except ValueError as error:
        raise APIError(
            response.status_code, {"detail": f"not JSON: {response.text[:200]}"}
        ) from error
