"""An S3-compatible server for the tests: moto's standalone server on a loopback port.

moto keeps objects in memory; this wrapper writes them to ``--state`` when it is stopped
(SIGTERM) and loads them when it starts, so a restart keeps the objects, as MinIO keeps them
on its disk. Run: ``python tests/s3_server.py --port 9000 --state DIR --bucket images``.

Stopping never waits on a client: the accept loop gets a few seconds to end, request threads
still running are abandoned, and the process leaves with ``os._exit`` once the state is
written, so no interpreter shutdown step (logging's, a daemon thread's lock) can hold it up.
If a step still hangs, the threads' stacks are written to the log after ``_DUMP_AFTER`` s.
"""

from __future__ import annotations

import argparse
import base64
import faulthandler
import json
import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

from moto.s3.models import s3_backends
from moto.server import ThreadedMotoServer

REGION = "us-east-1"
# moto's account when a request names none (any credentials map to it).
ACCOUNT = "123456789012"
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
_DUMP_AFTER = 10.0


def _backend() -> Any:
    return s3_backends[ACCOUNT]["aws"]


def _encoded(item: Any) -> str:
    return base64.b64encode(item.value).decode()


def _snapshot() -> dict[str, dict[str, str]]:
    """Every bucket's objects, base64; taken again if an abandoned request changes a bucket
    while it is read."""
    for _ in range(20):
        try:
            return {
                name: {key: _encoded(item) for key, item in list(bucket.keys.items())}
                for name, bucket in list(_backend().buckets.items())
            }
        except (RuntimeError, ValueError):  # a bucket changed size, a deleted key's buffer closed
            continue
    raise RuntimeError("the buckets kept changing while the state was saved")


def save(state: Path) -> None:
    partial = state.with_name(state.name + ".partial")
    partial.write_text(json.dumps(_snapshot()))
    partial.replace(state)


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
    # Blocked before any thread starts, so every thread inherits the mask and the signal
    # waits for sigwait below instead of interrupting whatever a thread holds.
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    server.start()
    print(f"s3 server on 127.0.0.1:{args.port}", flush=True)
    received = signal.sigwait(_STOP_SIGNALS)
    faulthandler.dump_traceback_later(_DUMP_AFTER)
    stopping = threading.Thread(target=server.stop, daemon=True)
    stopping.start()
    stopping.join(5)
    save(args.state)
    print(f"s3 server stopped by signal {received}, state saved", flush=True)
    os._exit(0)


if __name__ == "__main__":
    main()
