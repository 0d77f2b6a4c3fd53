"""An API process of its own on a real Postgres and Redis, for the API benchmarks.

No worker runs: these benchmarks measure what the API process does with a request.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests import stack


@dataclass(frozen=True)
class ApiProcess:
    url: str
    key: str
    pid: int
    work: Path


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set so far (VmHWM)."""
    return _status_kb(pid, "VmHWM:") / 1024


def rss_mb(pid: int) -> float:
    return _status_kb(pid, "VmRSS:") / 1024


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


@contextlib.contextmanager
def api_process(credits: int = 100_000, storage: str = "file") -> Iterator[ApiProcess]:
    """Postgres, Redis and `imageextract api` (the server every deployment runs), with an
    account holding ``credits`` and its key; images in a folder, or (``storage="s3"``) in
    an S3 server of its own."""
    work = Path(tempfile.mkdtemp(prefix="imageextract-bench-"))
    with contextlib.ExitStack() as servers:
        database_url = servers.enter_context(stack.postgres())
        broker_url = servers.enter_context(stack.redis(work / "redis"))
        s3 = servers.enter_context(stack.s3(work / "s3")) if storage == "s3" else None
        env = {
            **os.environ,
            "IMAGEEXTRACT_DATABASE_URL": database_url,
            "IMAGEEXTRACT_BROKER_URL": broker_url,
            "IMAGEEXTRACT_DATA_DIR": str(work / "data"),
            "IMAGEEXTRACT_MODEL_PROVIDER": "openai",
            **(s3.env() if s3 is not None else {}),
        }

        def cli(*args: str) -> str:
            return subprocess.run(
                [sys.executable, "-m", "cli", *args],
                env=env, check=True, capture_output=True, text=True,
            ).stdout  # fmt: skip

        cli("migrate")
        cli("accounts", "create", "bench", "--credits", str(credits))
        key = cli("keys", "create", "bench").strip().splitlines()[-1]
        port = stack.free_port()
        api = subprocess.Popen(
            [sys.executable, "-m", "cli", "api", "--port", str(port)], env=env,
            stdout=(work / "api.log").open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            stack.wait_for_port(port)
            yield ApiProcess(url=f"http://127.0.0.1:{port}", key=key, pid=api.pid, work=work)
        finally:
            api.terminate()
            api.wait(10)
