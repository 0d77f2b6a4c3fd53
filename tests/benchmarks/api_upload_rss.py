"""Peak RSS of the API process while it accepts a 100 MB multipart job.

    .venv/bin/python -m tests.benchmarks.api_upload_rss [--images 50] [--storage file|s3]

Starts Postgres and Redis on loopback, runs the API (`imageextract api`) in a process of its own,
streams a job of images adding up to just under 100 MB from disk, and reads the API's
peak resident set (VmHWM) from /proc. No worker runs: this measures intake only. With
``--storage s3`` the images go to an S3 server (moto's) instead of a folder.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import httpx

from tests.benchmarks.api_process import api_process, peak_rss_mb

MB = 1024 * 1024


def make_images(folder: Path, count: int, total: int) -> list[Path]:
    """Files that sniff as JPEG, each total/count bytes (the API does not decode them)."""
    size = total // count
    paths = []
    for index in range(count):
        path = folder / f"scan{index:03d}.jpg"
        with path.open("wb") as handle:
            handle.write(b"\xff\xd8\xff\xe0" + os.urandom(size - 4))
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--total-mb", type=float, default=99.5)
    parser.add_argument("--storage", choices=["file", "s3"], default="file")
    args = parser.parse_args()
    with api_process(storage=args.storage) as api:
        idle = peak_rss_mb(api.pid)
        paths = make_images(api.work, args.images, int(args.total_mb * MB))
        handles = [path.open("rb") for path in paths]
        started = time.monotonic()
        response = httpx.post(
            f"{api.url}/v1/jobs",
            headers={"Authorization": f"Bearer {api.key}"},
            files=[
                ("images", (path.name, handle, "image/jpeg"))
                for path, handle in zip(paths, handles, strict=True)
            ],
            data={"prompt": "Read the document"},
            timeout=300,
        )
        elapsed = time.monotonic() - started
        for handle in handles:
            handle.close()
        response.raise_for_status()
        peak = peak_rss_mb(api.pid)
        print(f"images: {args.images}, total: {args.total_mb} MB, storage: {args.storage}, "
              f"accepted in {elapsed:.2f} s")  # fmt: skip
        print(f"API RSS idle: {idle:.1f} MB; peak while accepting: {peak:.1f} MB")
        print("target: peak < 250 MB")


if __name__ == "__main__":
    main()
