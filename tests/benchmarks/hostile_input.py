"""The API's peak RSS and /healthz latency while it is sent hostile bodies, one case after
another.

    .venv/bin/python -m tests.benchmarks.hostile_input [--repeat 3]

Starts Postgres and Redis on loopback and `imageextract api` in a process of its own (no
worker), then sends each case below `--repeat` times, while a thread asks /healthz every
20 ms. Prints a markdown table: per case, the answer, the API's RSS and peak RSS (VmHWM)
after it, and the slowest /healthz answer meanwhile. Targets: peak < 250 MB throughout,
/healthz < 100 ms.
"""

from __future__ import annotations

import argparse
import base64
import io
import multiprocessing
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event

import httpx
from PIL import Image, ImageDraw

from tests.benchmarks.api_process import ApiProcess, api_process, peak_rss_mb, rss_mb
from tests.sample_images import png_for

MB = 1024 * 1024
PNG = base64.b64encode(png_for(0)).decode()


def _chunks(parts: list[bytes | tuple[bytes, int]]) -> Iterator[bytes]:
    """A body streamed in 64 KB pieces; (piece, n) is the piece n times over."""
    for part in parts:
        data, times = part if isinstance(part, tuple) else (part, 1)
        block = data * max(1, 65536 // len(data))
        sent = 0
        while sent < len(data) * times:
            piece = block[: len(data) * times - sent]
            sent += len(piece)
            yield piece


def _native(extra: list[bytes | tuple[bytes, int]], prompt: bytes = b'"x"') -> Callable[..., int]:
    head = b'{"input_method": "base64", "images": ["' + PNG.encode() + b'"], "prompt": ' + prompt

    def send(client: httpx.Client) -> int:
        body = _chunks([head, *extra, b"}"])
        headers = {"Content-Type": "application/json"}
        return client.post("/v1/jobs", content=body, headers=headers).status_code

    return send


def _dumplingai(extra: bytes, image: str = PNG) -> Callable[..., int]:
    body = b'{"inputMethod": "base64", "images": ["' + image.encode() + b'"], "prompt": "x"'

    def send(client: httpx.Client) -> int:
        return client.post(
            "/api/v1/extract-image", content=body + extra + b"}",
            headers={"Content-Type": "application/json"},
        ).status_code  # fmt: skip

    return send


def _cut_multipart(client: httpx.Client) -> int:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nx\r\n'
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="images"; filename="a.png"\r\n\r\n'
        ).encode()
        + png_for(0)
        + b"\0" * MB
    )  # no closing boundary
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    return client.post("/v1/jobs", content=body, headers=headers).status_code


def _many_fields(client: httpx.Client) -> int:
    files = [("images", ("a.png", png_for(0), "image/png"))]
    data = {"prompt": "x", **{f"note{i}": "n" * 100_000 for i in range(40)}}
    return client.post("/v1/jobs", files=files, data=data).status_code


def _huge_header(client: httpx.Client) -> int:
    url = httpx.URL(str(client.base_url))
    with socket.create_connection((url.host, url.port), timeout=30) as sock:
        try:
            sock.sendall(b"GET /v1/account HTTP/1.1\r\nHost: x\r\nX-Padding: ")
            for _ in range(128):
                sock.sendall(b"a" * 65536)
        except OSError:
            pass
        answer = sock.recv(65536)
    return int(answer.split()[1])


def _big_tga() -> str:
    """A 9000 x 9000 RLE TGA of about 2.5 MB: stripes, so runs stay short enough."""
    image = Image.new("RGB", (9000, 9000), (250, 250, 250))
    draw = ImageDraw.Draw(image)
    for x in range(0, 9000, 50):
        draw.line([(x, 0), (x, 8999)], fill=(x % 256, 40, 90), width=3)
    out = io.BytesIO()
    image.save(out, "TGA", compression="tga_rle")
    return base64.b64encode(out.getvalue()).decode()


def _parallel(send: Callable[[httpx.Client], int], count: int) -> Callable[..., list[int]]:
    def run(client: httpx.Client) -> list[int]:
        with ThreadPoolExecutor(count) as pool:
            return list(pool.map(lambda _: send(client), range(count)))

    return run


def _cases(tga: str) -> list[tuple[str, Callable[[httpx.Client], int | list[int]]]]:
    deep = b"[" * 100_000 + b"]" * 100_000
    return [
        ("JSON nested 100,000 deep (native)", _native([b', "z": ', deep])),
        ("JSON nested 100,000 deep (DumplingAI)", _dumplingai(b', "z": ' + deep)),
        ("10 MB of [[],[],...] in an unknown field",
         _native([b', "junk": [', (b"[],", 10 * MB // 3), b"[]]"])),
        ("150 MB of [[],[],...] (the body cap)",
         _native([b', "junk": [', (b"[],", 150 * MB // 3), b"[]]"])),
        ("5 MB prompt", _native([], prompt=b'"' + b"p" * 5 * MB + b'"')),
        ("metadata with a lone surrogate 30 deep",
         _native([b', "metadata": ', b"[" * 30, b'"\\ud800"', b"]" * 30])),
        ("multipart cut off in its last image", _cut_multipart),
        ("40 form fields of 100 KB", _many_fields),
        ("8 MB header", _huge_header),
        ("6 parallel 9000 x 9000 RLE TGAs (DumplingAI, async: accepted)",
         _parallel(_dumplingai(b', "async": true', image=tga), 6)),
    ]  # fmt: skip


def _probe(
    url: str, stop: Event, slowest: Synchronized[float], failures: Synchronized[int]
) -> None:
    with httpx.Client(base_url=url, timeout=10) as client:
        while not stop.wait(0.02):
            started = time.monotonic()
            try:
                ok = client.get("/healthz").status_code == 200
            except httpx.HTTPError:
                ok = False
            slowest.value = max(slowest.value, time.monotonic() - started)
            failures.value += not ok


class HealthProbe:
    """Asks /healthz every 20 ms from a process of its own (so that this process's
    senders do not slow the probe down); keeps the slowest answer."""

    def __init__(self, url: str) -> None:
        context = multiprocessing.get_context("spawn")
        self._stop = context.Event()
        self._slowest = context.Value("d", 0.0)
        self._failures = context.Value("i", 0)
        self._process = context.Process(
            target=_probe, args=(url, self._stop, self._slowest, self._failures), daemon=True
        )

    @property
    def slowest(self) -> float:
        return float(self._slowest.value)

    @property
    def failures(self) -> int:
        return int(self._failures.value)

    def __enter__(self) -> HealthProbe:
        self._process.start()
        time.sleep(1.0)  # the probe's interpreter and first request, before the case starts
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._process.join()


def run_case(api: ApiProcess, send: Callable[[httpx.Client], int | list[int]], repeat: int) -> str:
    headers = {"Authorization": f"Bearer {api.key}"}
    answers: list[int] = []
    with (
        httpx.Client(base_url=api.url, headers=headers, timeout=300) as client,
        HealthProbe(api.url) as probe,
    ):
        started = time.monotonic()
        for _ in range(repeat):
            got = send(client)
            answers.extend(got if isinstance(got, list) else [got])
        seconds = time.monotonic() - started
    statuses = ", ".join(sorted({str(status) for status in answers}))
    return (
        f"| {statuses} | {seconds:.2f} | {rss_mb(api.pid):.0f} | {peak_rss_mb(api.pid):.0f} "
        f"| {probe.slowest * 1000:.0f} | {probe.failures} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="times each case is sent")
    args = parser.parse_args()
    tga = _big_tga()
    with api_process() as api:
        print(f"API idle: RSS {rss_mb(api.pid):.0f} MB, peak {peak_rss_mb(api.pid):.0f} MB; "
              f"each case sent {args.repeat} times")  # fmt: skip
        print()
        print("| case | answers | seconds | RSS after (MB) | peak RSS so far (MB) "
              "| slowest /healthz (ms) | /healthz failures |")  # fmt: skip
        print("|---|---|---|---|---|---|---|")
        for name, send in _cases(tga):
            print(f"| {name} " + run_case(api, send, args.repeat), flush=True)
        print()
        print("targets: peak RSS < 250 MB throughout; /healthz < 100 ms")


if __name__ == "__main__":
    main()
