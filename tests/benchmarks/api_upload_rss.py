"""Peak RSS of the API process while it accepts a 100 MB multipart job.

    .venv/bin/python -m tests.benchmarks.api_upload_rss [--images 50]

Starts Postgres and Redis on loopback, runs the API (uvicorn) in a process of its own,
streams a job of images adding up to just under 100 MB from disk, and reads the API's
peak resident set (VmHWM) from /proc. No worker runs: this measures intake only.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests import stack

MB = 1024 * 1024


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc status")


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
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="imageextract-rss-"))
    with stack.postgres() as database_url, stack.redis(work / "redis") as broker_url:
        env = {
            **os.environ,
            "IMAGEEXTRACT_DATABASE_URL": database_url,
            "IMAGEEXTRACT_BROKER_URL": broker_url,
            "IMAGEEXTRACT_DATA_DIR": str(work / "data"),
            "IMAGEEXTRACT_MODEL_PROVIDER": "openai",
        }
        subprocess.run([sys.executable, "-m", "api.cli", "migrate"], env=env, check=True)
        subprocess.run(
            [sys.executable, "-m", "api.cli", "accounts", "create", "bench", "--credits", "100000"],
            env=env, check=True, capture_output=True,
        )  # fmt: skip
        key = subprocess.run(
            [sys.executable, "-m", "api.cli", "keys", "create", "bench"],
            env=env, check=True, capture_output=True, text=True,
        ).stdout.strip().splitlines()[-1]  # fmt: skip
        port = stack.free_port()
        api = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "api.asgi:app", "--port", str(port),
             "--log-level", "warning"],
            env=env,
        )  # fmt: skip
        try:
            stack.wait_for_port(port)
            idle = peak_rss_mb(api.pid)
            paths = make_images(work, args.images, int(args.total_mb * MB))
            handles = [path.open("rb") for path in paths]
            started = time.monotonic()
            response = httpx.post(
                f"http://127.0.0.1:{port}/v1/jobs",
                headers={"Authorization": f"Bearer {key}"},
                files=[
                    ("images", (path.name, handle, "image/jpeg"))
                    for path, handle in zip(paths, handles, strict=True)
                ],
                data={"prompt": "Read the document"},
                timeout=300,
            )  # fmt: skip
            elapsed = time.monotonic() - started
            for handle in handles:
                handle.close()
            response.raise_for_status()
            peak = peak_rss_mb(api.pid)
            print(f"images: {args.images}, total: {args.total_mb} MB, accepted in {elapsed:.2f} s")
            print(f"API RSS idle: {idle:.1f} MB; peak while accepting: {peak:.1f} MB")
            print("target: peak < 250 MB")
        finally:
            api.terminate()
            api.wait(10)


if __name__ == "__main__":
    main()
