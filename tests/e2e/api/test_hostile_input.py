"""Hostile and malformed requests: each is refused in its API's shape, names what broke
which limit, and creates, charges and stores nothing; the API keeps answering.

One row per case in HOSTILE. To add a case, add a row: how to send it, the status, the
error code (native), the base_resp code (u1) or a piece of the message (DumplingAI), and
the input the error must name.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import struct
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from PIL import Image
from sqlalchemy import func, select

from tests import stack
from tests.conftest import Caller, Stack, wait_for_job
from tests.sample_images import jpeg_for, png_for

MB = 1024 * 1024
DEPTH = 100_000
NATIVE, U1, DUMPLINGAI = "native", "u1", "dumplingai"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


PNG = _b64(png_for(0))


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _json(path: str, text: str, content_type: str = "application/json") -> Callable[..., Any]:
    def send(client: httpx.Client) -> httpx.Response:
        return client.post(path, content=text.encode(), headers={"Content-Type": content_type})

    return send


def _multipart(
    path: str,
    parts: list[tuple[str, str | None, bytes]],
    *,
    close: bool = True,
) -> Callable[..., Any]:
    """A multipart body by hand: (name, file name or None, bytes) per part; without
    ``close`` the body ends inside its last part, as a cut-off upload does."""

    def send(client: httpx.Client) -> httpx.Response:
        boundary = uuid.uuid4().hex
        body = b""
        for name, filename, data in parts:
            disposition = f'form-data; name="{name}"' + (
                f'; filename="{filename}"' if filename else ""
            )
            body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
            body += data + b"\r\n"
        if close:
            body += f"--{boundary}--\r\n".encode()
        else:
            body = body[: -len(parts[-1][2]) // 2 - 2]  # half of the last part's bytes
        return client.post(
            path,
            content=body,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )

    return send


def _get(path: str) -> Callable[..., Any]:
    def send(client: httpx.Client) -> httpx.Response:
        return client.get(path)

    return send


def _huge_header(client: httpx.Client) -> httpx.Response:
    """An 8 MB header, sent on a raw socket: the server answers once it has read its limit."""
    url = urlsplit(str(client.base_url))
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        head = (
            f"GET /v1/account HTTP/1.1\r\nHost: {url.hostname}\r\n"
            f"Authorization: {client.headers['Authorization']}\r\nX-Padding: "
        ).encode()
        try:
            sock.sendall(head)
            for _ in range(128):
                sock.sendall(b"a" * 65536)
        except OSError:
            pass  # the server closed the connection: the answer is waiting
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    headers_text, _, body = rest.partition(b"\r\n\r\n")
    headers = dict(
        line.decode().split(": ", 1) for line in headers_text.split(b"\r\n") if b": " in line
    )
    return httpx.Response(int(status_line.split()[1]), headers=headers, content=body)


def _tga_header(width: int, height: int) -> bytes:
    """An RLE true-colour TGA that claims width x height and holds one run of pixels."""
    header = struct.pack("<BBBHHBHHHHBB", 0, 0, 10, 0, 0, 0, 0, 0, width, height, 24, 0)
    return header + bytes([0xFF, 1, 2, 3])


def _claims_pixels(fmt: str, width: int, height: int) -> bytes:
    """A file of ``fmt`` whose header claims width x height, with no pixels behind it."""
    if fmt == "png":

        def chunk(kind: bytes, data: bytes) -> bytes:
            body = kind + data
            return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

        ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
        return (
            b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
        )  # fmt: skip
    if fmt == "jpeg":
        app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\0\1\1\0\0\1\0\1\0\0"
        sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + b"\1\x11\0" * 3
        return b"\xff\xd8" + app0 + sof + b"\xff\xd9"
    if fmt == "gif":
        return b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0) + b";"
    if fmt == "bmp":
        info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 0, 0, 0, 0)
        return b"BM" + struct.pack("<IHHI", 54, 0, 0, 54) + info
    # WebP, extended (VP8X): the canvas is 24-bit width - 1 and height - 1.
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\0" * 4
    vp8x += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", 4 + len(vp8x)) + b"WEBP" + vp8x


def _native_urls(*urls: str) -> Any:
    body = {"input_method": "url", "images": list(urls), "prompt": "x"}
    return _json("/v1/jobs", json.dumps(body))


def _not_an_image() -> bytes:
    return b"GIF-like? no: just text that no decoder reads" * 10


def _native(extra: str = "", *, prompt: str = '"x"', content_type: str = "application/json") -> Any:
    """A native JSON submit of one image; ``extra`` goes after the prompt, as JSON text."""
    text = '{"input_method": "base64", "images": ["' + PNG + '"], "prompt": ' + prompt + extra
    return _json("/v1/jobs", text + "}", content_type)


def _dumplingai(extra: str = "", *, image: str | None = None) -> Any:
    text = '{"inputMethod": "base64", "images": ["' + (image or PNG) + '"], "prompt": "x"'
    return _json("/api/v1/extract-image", text + extra + "}")


@dataclass(frozen=True)
class Hostile:
    name: str
    send: Callable[[httpx.Client], httpx.Response]
    status: int
    # native: the problem's code; u1: base_resp.status_code; DumplingAI: unused.
    code: str | int | None
    style: str = NATIVE
    # What the error must name: the problem's `input` (native) and, for every style, text
    # that its message must contain.
    input: str | None = None
    says: tuple[str, ...] = field(default=())


HOSTILE = [
    Hostile(
        "json nested 100,000 deep beside the images (native)",
        _native(', "z": ' + _nested(DEPTH)),
        400, "invalid_request", input="z", says=("z", "32 levels"),
    ),
    Hostile(
        "json nested 100,000 deep (DumplingAI)",
        _dumplingai(', "z": ' + _nested(DEPTH)),
        400, None, style=DUMPLINGAI, says=("z", "32 levels"),
    ),
    Hostile(
        "json nested 1,000 deep inside metadata",
        _native(', "metadata": {"a": ' + _nested(1000) + "}"),
        400, "invalid_request", input="metadata", says=("metadata", "32 levels"),
    ),
    Hostile(
        "multipart metadata nested 1,000 deep",
        _multipart(
            "/v1/jobs",
            [("images", "a.png", png_for(0)), ("prompt", None, b"x"),
             ("metadata", None, f'{{"a": {_nested(1000)}}}'.encode())],
        ),
        400, "invalid_request", input="metadata", says=("metadata", "32 levels"),
    ),
    Hostile(
        "17 KB of metadata (JSON)",
        _native(', "metadata": {"note": "' + "m" * 17 * 1024 + '"}'),
        413, "field_too_large", input="metadata", says=("metadata", "16 KB"),
    ),
    Hostile(
        "17 KB of metadata (multipart)",
        _multipart(
            "/v1/jobs",
            [("images", "a.png", png_for(0)), ("prompt", None, b"x"),
             ("metadata", None, b'{"note": "' + b"m" * 17 * 1024 + b'"}')],
        ),
        413, "field_too_large", input="metadata", says=("metadata", "16 KB"),
    ),
    Hostile(
        "10 MB of [[],[],...] in an unknown field",
        _native(', "junk": [' + "[]," * (10 * MB // 3) + "[]]"),
        413, "field_too_large", input="junk", says=("1 MB", "junk"),
    ),
    Hostile(
        "5 MB prompt in JSON",
        _native(prompt='"' + "p" * 5 * MB + '"'),
        413, "field_too_large", input="prompt", says=("1 MB",),
    ),
    Hostile(
        "prompt one character over max_prompt_chars (JSON)",
        _native(prompt='"' + "p" * 100_001 + '"'),
        413, "field_too_large", input="prompt", says=("100001 characters", "100000"),
    ),
    Hostile(
        "prompt one character over max_prompt_chars (u1 multipart)",
        _multipart(
            "/v1/ocr/image/extract",
            [("model", None, b"u1-ocr-extract"), ("image", "a.jpg", jpeg_for(0)),
             ("prompt", None, b"p" * 100_001)],
        ),
        400, 100001, style=U1, says=("prompt", "100000"),
    ),
    Hostile(
        "form fields over 1 MB together",
        _multipart(
            "/v1/jobs",
            [("images", "a.png", png_for(0)), ("prompt", None, b"x")]
            + [(f"note{i}", None, b"n" * 100_000) for i in range(11)],
        ),
        413, "field_too_large", input="note10", says=("1 MB", "note10"),
    ),
    Hostile(
        "multipart cut off inside its last image",
        _multipart(
            "/v1/jobs",
            [("prompt", None, b"x"), ("images", "a.png", png_for(0)),
             ("images", "b.png", png_for(1) + b"\0" * 4096)],
            close=False,
        ),
        400, "invalid_request", input="images[1]", says=("images[1] (b.png)", "boundary"),
    ),
    Hostile(
        "multipart cut off inside its u1 image",
        _multipart(
            "/v1/ocr/image/extract",
            [("model", None, b"u1-ocr-extract"), ("prompt", None, b"x"),
             ("image", "a.jpg", jpeg_for(0) + b"\0" * 4096)],
            close=False,
        ),
        400, 100001, style=U1, says=("image", "boundary"),
    ),
    Hostile(
        "a TGA whose header claims 400 million pixels (DumplingAI)",
        _dumplingai(image=_b64(_tga_header(20000, 20000))),
        400, None, style=DUMPLINGAI, says=("images[0]", "pixels"),
    ),
    Hostile(
        "bytes no decoder reads (DumplingAI), named without object reprs",
        _dumplingai(image=_b64(_not_an_image())),
        400, None, style=DUMPLINGAI, says=("images[0]", "no format Pillow knows"),
    ),
    Hostile(
        "ledger cursor past any integer",
        _get("/v1/account/ledger?cursor=999999999999999999999999999999"),
        400, "invalid_request", input="cursor",
    ),
    Hostile(
        "ledger cursor of a superscript digit",
        _get("/v1/account/ledger?cursor=%C2%B2"),
        400, "invalid_request", input="cursor",
    ),
    Hostile(
        "job list cursor that is not ours",
        _get("/v1/jobs?cursor=" + base64.urlsafe_b64encode(b"0001-01-01|x").decode()),
        400, "invalid_request", input="cursor",
    ),
    Hostile(
        "lone surrogate deep in metadata",
        _native(', "metadata": {"a": [{"b": "\\ud800"}]}'),
        400, "invalid_request", input="metadata", says=("surrogate",),
    ),
    Hostile(
        "NUL character in the prompt",
        _native(prompt='"a\\u0000b"'),
        400, "invalid_request", input="prompt", says=("NUL",),
    ),
    Hostile(
        "NUL byte in a multipart prompt",
        _multipart("/v1/jobs", [("images", "a.png", png_for(0)), ("prompt", None, b"a\0b")]),
        400, "invalid_request", input="prompt", says=("NUL",),
    ),
    Hostile(
        "an 8 MB header", _huge_header, 431, "headers_too_large", input="headers",
        says=("32 KB",),
    ),
    Hostile(
        "Content-Type application/jsonp",
        _native(content_type="application/jsonp"),
        400, "invalid_request", input="Content-Type",
    ),
    Hostile(
        "results_ttl with a fraction",
        _native(', "results_ttl": 60.9'),
        400, "invalid_request", input="results_ttl", says=("whole number",),
    ),
    Hostile(
        "webhookUrl to a private address, named as the client spelled it (DumplingAI)",
        _dumplingai(', "webhookUrl": "http://10.1.2.3/hook"'),
        400, None, style=DUMPLINGAI, says=("webhookUrl",),
    ),
    Hostile(
        "NUL in a multipart file name",
        _multipart("/v1/jobs", [("images", "a\0b.png", png_for(0)), ("prompt", None, b"x")]),
        400, "invalid_request", input="images[0]", says=("images[0]", "control character"),
    ),
    Hostile(
        "right-to-left override in a multipart file name",
        _multipart(
            "/v1/jobs",
            [("images", "a.png", png_for(0)), ("images", "invoice\u202egnp.exe", png_for(1)),
             ("prompt", None, b"x")],
        ),
        400, "invalid_request", input="images[1]", says=("images[1]", "U+202E"),
    ),
    Hostile(
        "right-to-left override in a u1 file name",
        _multipart(
            "/v1/ocr/image/extract",
            [("model", None, b"u1-ocr-extract"), ("image", "a\u202egpj.jpg", jpeg_for(0)),
             ("prompt", None, b"x")],
        ),
        400, 100001, style=U1, says=("image: the file name", "U+202E"),
    ),
    *[
        Hostile(
            f"a {fmt.upper()} header claiming {width}x{height} pixels",
            _json(
                "/v1/jobs",
                json.dumps({"input_method": "base64", "prompt": "x",
                            "images": [_b64(_claims_pixels(fmt, width, height))]}),
            ),
            413, "image_too_large", input="images[0]",
            says=("images[0]", f"{width}x{height}", "100000000 pixels"),
        )
        # Each format's largest (JPEG and GIF: 16 bits a side; WebP: 24).
        for fmt, width, height in [
            ("png", 1_000_000, 1_000_000), ("jpeg", 65535, 65535), ("gif", 65535, 65535),
            ("bmp", 1_000_000, 1_000_000), ("webp", 1_000_000, 1_000_000),
        ]
    ],
    Hostile(
        "a PNG header claiming a trillion pixels (multipart, named)",
        _multipart(
            "/v1/jobs",
            [("images", "small.png", png_for(0)),
             ("images", "huge.png", _claims_pixels("png", 1_000_000, 1_000_000)),
             ("prompt", None, b"x")],
        ),
        413, "image_too_large", input="images[1]", says=("images[1] (huge.png)", "pixels"),
    ),
    *[
        Hostile(
            f"an image URL to {url}",
            _native_urls("http://127.0.0.1:9/ok.png", url),
            400, "invalid_request", input="images[1]", says=("images[1]", reason),
        )
        for url, reason in [
            ("http://127.0.0.2/a.png", "127.0.0.2 is a loopback address"),
            ("http://10.0.0.1/", "10.0.0.1 is a private address"),
            ("http://[::1]/", "::1 is a loopback address"),
            ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local"),
            ("http://localhost:8080/a.png", "localhost is this machine"),
        ]
    ],
    Hostile(
        "an image URL to a private address (DumplingAI)",
        _json(
            "/api/v1/extract-image",
            json.dumps({"inputMethod": "url", "images": ["http://10.0.0.1/x.png"], "prompt": "x"}),
        ),
        400, None, style=DUMPLINGAI, says=("images[0]", "10.0.0.1 is a private address"),
    ),
    Hostile(
        "a path that does not exist (native)",
        _get("/v1/nothing-here"), 404, "not_found", says=("/v1/nothing-here",),
    ),
    Hostile(
        "a method the DumplingAI path does not take",
        lambda client: client.delete("/api/v1/extract-image"), 405, None, style=DUMPLINGAI,
    ),
    Hostile(
        "a path that does not exist (DumplingAI)",
        _get("/api/v1/nothing-here"), 404, None, style=DUMPLINGAI, says=("nothing-here",),
    ),
]  # fmt: skip


def _check_shape(case: Hostile, response: httpx.Response) -> str:
    """The error body in the style of its API; returns its message."""
    assert response.status_code == case.status, response.text[:500]
    body = response.json()
    if case.style == NATIVE:
        assert response.headers["content-type"] == "application/problem+json"
        assert body["code"] == case.code
        assert body["status"] == case.status
        if case.input is not None:
            assert body["input"] == case.input
        message: str = body["detail"]
    elif case.style == U1:
        assert body["base_resp"]["status_code"] == case.code
        message = body["base_resp"]["status_msg"]
    else:
        assert set(body) == {"error"}, body
        message = body["error"]
    for text in case.says:
        assert text in message, message
    assert " object at 0x" not in message
    return message


def _totals(session_factory: Any) -> tuple[int, int]:
    from db.models import Job, JobItem

    with session_factory() as session:
        return (
            session.scalar(select(func.count()).select_from(Job)) or 0,
            session.scalar(select(func.count()).select_from(JobItem)) or 0,
        )


@pytest.mark.parametrize("case", HOSTILE, ids=[case.name for case in HOSTILE])
def test_hostile_request_is_refused_in_shape_and_leaves_nothing(
    case: Hostile, caller: Caller, services: Stack, session_factory: Any
) -> None:
    balance = caller.client.get("/v1/account").json()["balance"]
    _check_shape(case, case.send(caller.client))
    assert _totals(session_factory) == (0, 0)
    assert services.stored_files() == []
    assert caller.client.get("/v1/account").json()["balance"] == balance
    assert caller.client.get("/healthz").json() == {"status": "ok"}


def test_readyz_keeps_the_image_folder(api_url: str, services: Stack, caller: Caller) -> None:
    """The probe file's folder is the storage root; deleting it broke every sweep."""
    (services.data_dir / "images").mkdir(parents=True, exist_ok=True)
    assert httpx.get(f"{api_url}/readyz").status_code == 200
    assert (services.data_dir / "images").is_dir()


@pytest.mark.parametrize(
    ("method", "path", "style"),
    [
        ("GET", "/v1/account", NATIVE),
        ("POST", "/api/v1/extract-image", DUMPLINGAI),
        ("POST", "/v1/ocr/image/extract", U1),
    ],
)
def test_a_failure_nobody_foresaw_answers_500_in_the_apis_shape(
    settings: Any, caller: Caller, method: str, path: str, style: str
) -> None:
    """An API whose database cannot be reached (a real connection refused, not a fake)
    answers 500 in its API's shape with an incident id, not a plain-text 500."""
    from api.app import create_app

    broken = settings.model_copy(
        update={"database_url": "postgresql+psycopg://nobody@127.0.0.1:1/none"}
    )
    response = stack.asgi_request(
        create_app(broken), method, path, headers={"Authorization": f"Bearer {caller.key}"}, json={}
    )
    assert response.status_code == 500, response.text
    body = response.json()
    if style == NATIVE:
        assert response.headers["content-type"] == "application/problem+json"
        assert body["code"] == "internal_error"
        message = body["detail"]
    elif style == U1:
        assert body["base_resp"]["status_code"] == 261999
        message = body["base_resp"]["status_msg"]
    else:
        assert set(body) == {"error"}
        message = body["error"]
    assert "logged as " in message
    assert "127.0.0.1" not in message  # the reason stays in the log


def _tga(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (10, 20, 30)).save(out, "TGA", compression="tga_rle")
    return out.getvalue()


def test_other_formats_reach_the_worker_undecoded(caller: Caller) -> None:
    """DumplingAI's other formats are identified by their header in the API and decoded by
    the worker: the job's image is the TGA as sent, and the model saw it as PNG."""
    data = _tga(37, 25)
    response = caller.client.post(
        "/api/v1/extract-image",
        json={"inputMethod": "base64", "images": [_b64(data)], "prompt": "x", "jsonMode": True},
    )
    assert response.status_code == 200, response.text
    assert json.loads(response.json()["results"]) == {"width": 37, "height": 25}


def test_a_corrupt_image_in_another_format_is_decoded_by_the_worker_not_the_api(
    caller: Caller,
) -> None:
    """A TGA whose header is sound and whose pixels are cut off: the API, which reads only
    headers, accepts it; the worker, which decodes, fails that image and refunds it."""
    data = _tga(300, 300)[:200]
    body = {"inputMethod": "base64", "images": [_b64(data)], "prompt": "x", "async": True}
    accepted = caller.client.post("/api/v1/extract-image", json=body)
    assert accepted.status_code == 202, accepted.text
    job = wait_for_job(caller.client, accepted.json()["id"])
    assert job["status"] == "failed"
    item = caller.client.get(f"/v1/jobs/{job['id']}/items").json()["items"][0]
    assert item["error"]["code"] == "corrupt_image"
    assert "claims to be TGA" in item["error"]["message"]
    assert job["credits"]["refunded"] == 1


def test_an_idempotency_key_reused_with_another_file_name_is_refused(
    caller: Caller, services: Stack, session_factory: Any
) -> None:
    """The same bytes under another name are another request: the key does not hand back
    the first job (whose results name the first file) and nothing more is charged."""
    headers = {"Idempotency-Key": "renamed-1"}

    def send(name: str) -> httpx.Response:
        files = [("images", (name, png_for(0), "image/png"))]
        return caller.client.post("/v1/jobs", files=files, data={"prompt": "x"}, headers=headers)

    first = send("invoice-1.png")
    assert first.status_code == 202, first.text
    balance = caller.client.get("/v1/account").json()["balance"]
    renamed = send("invoice-2.png")
    assert renamed.status_code == 422, renamed.text
    assert renamed.json()["code"] == "idempotency_key_reused"
    assert renamed.json()["input"] == "Idempotency-Key"
    assert send("invoice-1.png").json()["id"] == first.json()["id"]
    assert _totals(session_factory) == (1, 1)
    assert caller.client.get("/v1/account").json()["balance"] == balance
