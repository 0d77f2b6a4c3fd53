"""An S3-compatible server for the tests: moto's standalone server on a loopback port.

moto keeps objects in memory; this wrapper writes them to ``--state`` when it is stopped
(SIGTERM) and loads them when it starts, so a restart keeps the objects, as MinIO keeps them
on its disk. Run: ``python tests/s3_server.py --port 9000 --state DIR --bucket images``.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import signal
import threading
from pathlib import Path
from typing import Any

from moto.s3.models import s3_backends
from moto.server import ThreadedMotoServer

REGION = "us-east-1"
# moto's account when a request names none (any credentials map to it).
ACCOUNT = "123456789012"


def _backend() -> Any:
    return s3_backends[ACCOUNT]["aws"]


def save(state: Path) -> None:
    buckets = {
        name: {key: base64.b64encode(value.value).decode() for key, value in bucket.keys.items()}
        for name, bucket in _backend().buckets.items()
    }
    state.write_text(json.dumps(buckets))


def load(state: Path, bucket: str | None) -> None:
    buckets: dict[str, dict[str, str]] = json.loads(state.read_text()) if state.exists() else {}
    if bucket is not None:
        buckets.setdefault(bucket, {})
    backend = _backend()
    for name, objects in buckets.items():
        backend.create_bucket(name, REGION)
        for key, value in objects.items():
            backend.put_object(name, key, base64.b64decode(value))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state", type=Path, required=True, help="file kept across restarts")
    parser.add_argument("--bucket", help="create this bucket at start")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # not a line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=args.port, verbose=False)
    load(args.state, args.bucket)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server.start()
    print(f"s3 server on 127.0.0.1:{args.port}", flush=True)
    stop.wait()
    server.stop()
    save(args.state)


if __name__ == "__main__":
    main()
