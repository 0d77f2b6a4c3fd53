"""Start real Postgres, Redis and S3 servers on loopback ports of their own.

Used by the test suite and by the benchmark. Postgres refuses to run as root, so when
we are root the cluster belongs to the ``postgres`` user and is started through runuser.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import http.server
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

# An HTTP answer: status, headers, body.
Reply = tuple[int, dict[str, str], bytes]

# Restart functions of the servers started here, by their URL (for fault-injection tests).
_restarts: dict[str, Callable[[], None]] = {}


def restart(url: str) -> None:
    """Restart the Postgres, Redis or S3 server behind ``url`` on the same port."""
    _restarts[url]()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


def _pg_bin(name: str) -> str:
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    found = candidates[0] if candidates else shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} not found: install Debian's postgresql package")
    return found


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@contextlib.contextmanager
def postgres(extra_config: str = "") -> Iterator[str]:
    """A throwaway cluster; yields a SQLAlchemy URL for an empty database.

    The cluster lives in a folder of its own under /tmp: when we are root, the postgres
    user must be able to reach it, which a pytest tmp_path (mode 0700) does not allow.
    ``extra_config`` is appended to postgresql.conf (the benchmark loads pg_stat_statements).
    """
    workdir = Path(tempfile.mkdtemp(prefix="imageextract-pg-"))
    workdir.chmod(0o755)
    data = workdir / "pgdata"
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(workdir, "postgres")
        shutil.chown(data, "postgres")
    port = free_port()
    subprocess.run(
        _as_postgres(
            [_pg_bin("initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8"]
        ),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    conf = (
        f"listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{data}'\n"
        "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 300\n"
    )
    if extra_config:
        conf += extra_config.rstrip("\n") + "\n"
    with (data / "postgresql.conf").open("a") as handle:
        handle.write(conf)
    log = workdir / "postgres.log"
    subprocess.run(
        _as_postgres([_pg_bin("pg_ctl"), "-D", str(data), "-l", str(log), "-w", "start"]),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/imageextract"

    def restart() -> None:
        # Immediate: connections are cut as a crash would cut them.
        subprocess.run(
            _as_postgres([_pg_bin("pg_ctl"), "-D", str(data), "-l", str(log), "-m", "immediate",
                          "-w", "restart"]),
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip

    _restarts[url] = restart
    try:
        subprocess.run(
            [
                _pg_bin("createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "postgres",
                "imageextract",
            ],
            check=True,
        )
        yield url
    finally:
        _restarts.pop(url, None)
        subprocess.run(
            _as_postgres([_pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            check=False,
            stdout=subprocess.DEVNULL,
        )
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def redis(workdir: Path) -> Iterator[str]:
    server = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(server).exists():
        raise RuntimeError("redis-server not found: install Debian's redis-server package")
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    # No persistence: a restart loses every queued message, the worst case to recover from.
    command = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", str(workdir)]  # fmt: skip
    procs = [
        subprocess.Popen(
            command, stdout=(workdir / "redis.log").open("a"), stderr=subprocess.STDOUT
        )
    ]
    url = f"redis://127.0.0.1:{port}/0"

    def restart() -> None:
        procs[-1].terminate()
        procs[-1].wait(10)
        procs.append(
            subprocess.Popen(
                command, stdout=(workdir / "redis.log").open("a"), stderr=subprocess.STDOUT
            )
        )
        wait_for_port(port)

    _restarts[url] = restart
    try:
        wait_for_port(port)
        yield url
    finally:
        _restarts.pop(url, None)
        procs[-1].terminate()
        procs[-1].wait(10)


# The S3 server's credentials: moto takes any; these are what the tests configure.
S3_ACCESS_KEY = "test-access-key"
S3_SECRET_KEY = "test-secret-key"  # noqa: S105 — a loopback test server's


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    bucket: str

    def client(self) -> Any:
        """A boto3 client of this server, to look into the bucket independently of us."""
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id=S3_ACCESS_KEY, aws_secret_access_key=S3_SECRET_KEY,
        )  # fmt: skip

    def keys(self, prefix: str = "") -> list[str]:
        found: list[str] = []
        pages = self.client().get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=self.bucket, Prefix=prefix):
            found.extend(item["Key"] for item in page.get("Contents", []))
        return sorted(found)

    def empty(self) -> None:
        client = self.client()
        keys = self.keys()
        for start in range(0, len(keys), 1000):
            objects = [{"Key": key} for key in keys[start : start + 1000]]
            client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects})

    def env(self, prefix: str = "images") -> dict[str, str]:
        """What the API and workers need to keep their images here."""
        return {
            "IMAGEEXTRACT_STORAGE_URL": f"s3://{self.bucket}/{prefix}",
            "IMAGEEXTRACT_S3_ENDPOINT_URL": self.endpoint,
            "IMAGEEXTRACT_S3_ACCESS_KEY_ID": S3_ACCESS_KEY,
            "IMAGEEXTRACT_S3_SECRET_ACCESS_KEY": S3_SECRET_KEY,
            "IMAGEEXTRACT_STORAGE_TIMEOUT": "PT5S",
        }


@contextlib.contextmanager
def s3(workdir: Path, bucket: str = "imageextract") -> Iterator[S3Server]:
    """moto's S3 server (tests/s3_server.py) with ``bucket`` created; objects survive a
    restart through a state file, as they would on MinIO's disk."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, str(Path(__file__).with_name("s3_server.py")), "--port", str(port),
               "--state", str(workdir / "s3-state.json"), "--bucket", bucket]  # fmt: skip
    log = workdir / "s3.log"
    procs = [subprocess.Popen(command, stdout=log.open("a"), stderr=subprocess.STDOUT)]
    server = S3Server(endpoint=f"http://127.0.0.1:{port}", bucket=bucket)

    def stop() -> None:
        procs[-1].terminate()
        try:
            procs[-1].wait(30)
        except subprocess.TimeoutExpired:
            procs[-1].kill()
            tail = log.read_text(errors="replace")[-4000:]
            raise AssertionError(
                f"the S3 server did not stop in 30 s; its log ends:\n{tail}"
            ) from None

    def restart() -> None:
        stop()
        procs.append(subprocess.Popen(command, stdout=log.open("a"), stderr=subprocess.STDOUT))
        wait_for_port(port)

    _restarts[server.endpoint] = restart
    try:
        wait_for_port(port)
        yield server
    finally:
        _restarts.pop(server.endpoint, None)
        stop()


@contextlib.contextmanager
def http_server(answer: Callable[[str], Reply]) -> Iterator[str]:
    """A server on a loopback port answering each GET with ``answer(path)``; yields its URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, headers, body = answer(self.path)
            self.send_response(status)
            for name, value in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def asgi_request(app: Any, method: str, path: str, **options: Any) -> httpx.Response:
    """One request to an app in this process, without a server: for apps made with other
    settings than the stack's (a database that cannot be reached, metrics off). The app's
    own errors come back as its responses, as they would over HTTP."""

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            return await client.request(method, path, **options)

    return asyncio.run(send())
