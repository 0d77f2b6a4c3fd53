"""Slow and stalled clients: a client that reads nothing of its
results, or sends nothing (or half) of its request, holds neither a database connection nor
its socket for long, and other accounts keep being served.

Each case runs against an API of its own (``api_with``) with short timeouts.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import select

from tests.conftest import Caller

pytestmark = pytest.mark.one_store

# A finished job whose results are far more than the socket buffers hold (~12 MB).
ITEMS, CONTENT_BYTES = 300, 40_000


def _big_finished_job(session_factory: Any, caller: Caller) -> uuid.UUID:
    """A job of ITEMS succeeded images, written straight into the database."""
    from db.engine import unit_of_work
    from db.models import Account, ItemStatus, Job, JobItem, JobStatus

    now = datetime.now(UTC)
    with unit_of_work(session_factory) as session:
        account_id = session.scalars(select(Account.id).where(Account.name == caller.name)).one()
        job = Job(
            account_id=account_id, status=JobStatus.SUCCEEDED, prompt="x", provider="openai",
            item_count=ITEMS, items_succeeded=ITEMS, started_at=now, finished_at=now,
        )  # fmt: skip
        session.add(job)
        session.flush()
        session.add_all(
            JobItem(
                job_id=job.id,
                index=index,
                status=ItemStatus.SUCCEEDED,
                source_kind="upload",
                source_name=f"{index}.png",
                content=f"{index:05d}" + "r" * CONTENT_BYTES,
                started_at=now,
                finished_at=now,
            )
            for index in range(ITEMS)
        )
        return job.id


def _connect(api: str) -> socket.socket:
    url = urlsplit(api)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # A receive window of a few KB: the server's writes back up at once.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect((url.hostname, url.port))
    return sock


@contextmanager
def _stalled_readers(api: str, key: str, path: str, count: int) -> Iterator[list[socket.socket]]:
    """``count`` connections that ask for ``path``, read the status line, and then nothing."""
    with ExitStack() as sockets:
        readers = []
        for _ in range(count):
            sock = sockets.enter_context(_connect(api))
            sock.sendall(
                f"GET {path} HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {key}\r\n\r\n".encode()
            )
            assert sock.recv(12) == b"HTTP/1.1 200"
            readers.append(sock)
        yield readers


def _closed_within(sock: socket.socket, seconds: float) -> float:
    """Seconds until the server closed ``sock`` (whatever it sent is read and dropped);
    fails if it is still open after ``seconds``."""
    started = time.monotonic()
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        pytest.fail(f"the connection was still open after {seconds} s")
    return time.monotonic() - started


def test_stalled_results_readers_leave_other_accounts_served(
    api_with: Callable[..., str], make_caller: Callable[..., Caller], session_factory: Any
) -> None:
    # No cap on streams and no write timeout to speak of: what is tested is that a stalled
    # stream holds no database connection (the pool has 20).
    api = api_with(max_result_streams_per_account=100, response_write_timeout=600)
    reader, other = make_caller("reader"), make_caller("other")
    job_id = _big_finished_job(session_factory, reader)
    with _stalled_readers(api, reader.key, f"/v1/jobs/{job_id}/results", 20):
        for _ in range(3):
            started = time.monotonic()
            response = httpx.get(
                f"{api}/v1/jobs", headers={"Authorization": f"Bearer {other.key}"}, timeout=5
            )
            elapsed = time.monotonic() - started
            print(f"GET /v1/jobs of another account while 20 readers stall: {elapsed:.3f} s")
            assert response.status_code == 200
            assert response.json()["jobs"] == []
        # The stalling account itself is still served too.
        response = httpx.get(
            f"{api}/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {reader.key}"}, timeout=5
        )
        assert response.status_code == 200


def test_results_streams_over_the_accounts_cap_are_refused(
    api_with: Callable[..., str], make_caller: Callable[..., Caller], session_factory: Any
) -> None:
    api = api_with(max_result_streams_per_account=2)
    reader, other = make_caller("reader"), make_caller("other")
    job_id = _big_finished_job(session_factory, reader)
    other_job = _big_finished_job(session_factory, other)
    with _stalled_readers(api, reader.key, f"/v1/jobs/{job_id}/results", 2):
        for suffix in ("results", "results.csv"):
            response = httpx.get(
                f"{api}/v1/jobs/{job_id}/{suffix}",
                headers={"Authorization": f"Bearer {reader.key}"},
                timeout=5,
            )
            assert response.status_code == 429
            problem = response.json()
            assert problem["code"] == "rate_limited"
            assert f"GET /v1/jobs/{{id}}/{suffix}:" in problem["detail"]
            assert int(response.headers["Retry-After"]) > 0
        # The cap is the account's: another account streams its results whole.
        response = httpx.get(
            f"{api}/v1/jobs/{other_job}/results",
            headers={"Authorization": f"Bearer {other.key}"},
            timeout=30,
        )
        assert response.status_code == 200
        assert len(response.text.splitlines()) == ITEMS


def test_a_results_reader_that_takes_nothing_is_dropped(
    api_with: Callable[..., str], make_caller: Callable[..., Caller], session_factory: Any
) -> None:
    api = api_with(max_result_streams_per_account=1, response_write_timeout=1)
    reader = make_caller("reader")
    job_id = _big_finished_job(session_factory, reader)
    path = f"/v1/jobs/{job_id}/results"
    headers = {"Authorization": f"Bearer {reader.key}"}
    with _stalled_readers(api, reader.key, path, 1) as (sock,):
        # Its stream is dropped after a second of taking nothing, which frees the account's
        # only stream: another one is answered, and read whole.
        deadline = time.monotonic() + 4
        while (
            response := httpx.get(f"{api}{path}.csv", headers=headers, timeout=30)
        ).status_code == 429:
            assert time.monotonic() < deadline, "the stalled stream still counts"
            time.sleep(0.1)
        assert response.status_code == 200
        assert len(response.text.splitlines()) == ITEMS + 1  # and the header row
        assert _closed_within(sock, 1) < 1


def test_a_slow_results_reader_that_keeps_reading_gets_everything(
    api_with: Callable[..., str], make_caller: Callable[..., Caller], session_factory: Any
) -> None:
    api = api_with(response_write_timeout=1)
    reader = make_caller("reader")
    job_id = _big_finished_job(session_factory, reader)
    with _stalled_readers(api, reader.key, f"/v1/jobs/{job_id}/results", 1) as (sock,):
        # Three seconds at about 300 KB/s (a slow link): the server's send buffer stays full
        # the whole time, yet the client takes bytes, so it is not dropped.
        received = bytearray()
        started = time.monotonic()
        while time.monotonic() - started < 3:
            received += sock.recv(32768)
            time.sleep(0.1)
        sock.settimeout(30)
        while b"\r\n0\r\n\r\n" not in received[-16:]:  # the last chunk of the body
            chunk = sock.recv(1 << 20)
            assert chunk, "the server closed the stream"
            received += chunk
    assert received.count(b'"status":"succeeded"') == ITEMS


@pytest.mark.parametrize(
    "sends",
    [
        pytest.param(b"", id="nothing"),
        pytest.param(b"GET /v1/jobs HTTP/1.1\r\nHost: api\r\nAuthor", id="half a request head"),
    ],
)
def test_a_client_that_stalls_in_its_request_head_is_disconnected(
    api_with: Callable[..., str], sends: bytes
) -> None:
    api = api_with(request_read_timeout=1)
    with _connect(api) as sock:
        sock.sendall(sends)
        assert _closed_within(sock, 4) < 1 + 1


def test_a_client_that_stalls_in_its_request_body_is_disconnected(
    api_with: Callable[..., str], make_caller: Callable[..., Caller]
) -> None:
    api = api_with(request_read_timeout=1)
    caller = make_caller()
    with _connect(api) as sock:
        sock.sendall(
            b"POST /v1/jobs HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + caller.key.encode() + b"\r\n"
            b"Content-Length: 1000\r\n\r\n" + b'{"prompt":'
        )
        assert _closed_within(sock, 4) < 1 + 1
    # Nothing was created or charged.
    assert caller.client.get("/v1/jobs").json()["jobs"] == []
    assert caller.client.get("/v1/account").json()["balance"] == 1_000_000


def test_past_max_connections_new_requests_are_answered_503(api_with: Callable[..., str]) -> None:
    api = api_with(max_connections=3)
    with _connect(api), _connect(api):
        assert httpx.get(f"{api}/healthz", timeout=5).status_code == 503
    # Once those connections close, requests are served again.
    deadline = time.monotonic() + 5
    while httpx.get(f"{api}/healthz", timeout=5).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)
