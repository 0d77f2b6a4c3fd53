"""Image storage on both stores: the same behaviour from a folder and from the S3 server,
and clear answers when the store is down, the bucket is missing or nothing listens."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import stack
from tests.conftest import ROOT, Caller, Servers, Stack, _run_until_stopped
from tests.sample_images import png_for


def _settings(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Any:
    """Settings as a process started with ``env`` on top of this one's would read them."""
    from core.settings import Settings

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings()


@pytest.fixture(params=["file", "s3"])
def store(
    request: pytest.FixtureRequest,
    servers: Servers,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Any]:
    from core.storage import open_store

    if request.param == "s3":
        env = servers.s3.env(prefix=f"store-test-{uuid.uuid4().hex[:8]}")
    else:
        env = {"IMAGEEXTRACT_STORAGE_URL": f"file://{tmp_path}/images"}
    opened = open_store(_settings(monkeypatch, env))
    yield opened
    opened.close()


def _put(store: Any, key: str, data: bytes) -> None:
    upload = store.open_for_write(key)
    for start in range(0, len(data), 1000):
        upload.write(data[start : start + 1000])
    upload.finish().result()


def test_both_stores_write_read_list_and_delete_alike(store: Any) -> None:
    from core.storage import key_for

    first, second = uuid.uuid4(), uuid.uuid4()
    _put(store, key_for(first, 0), png_for(0))
    _put(store, key_for(first, 1), png_for(1))
    _put(store, key_for(second, 0), b"other")
    aborted = store.open_for_write(key_for(second, 1))
    aborted.write(b"half an image")
    aborted.abort()

    assert store.read(key_for(first, 1)) == png_for(1)
    assert store.open_for_read(key_for(first, 0)).read() == png_for(0)
    assert sorted(store.job_ids()) == sorted([first, second])
    assert sorted(store.job_files(first)) == [key_for(first, 0), key_for(first, 1)]
    assert store.files() == sorted([key_for(first, 0), key_for(first, 1), key_for(second, 0)])
    store.check()  # leaves nothing behind
    assert len(store.files()) == 3

    store.delete_many([key_for(first, 0), key_for(first, 7)])  # a missing key is no error
    with pytest.raises(FileNotFoundError):
        store.read(key_for(first, 0))
    store.delete_job(second)
    assert store.files() == [key_for(first, 1)]
    store.delete(key_for(first, 1))
    assert store.files() == []
    assert store.job_ids() == []


def test_an_image_larger_than_a_multipart_part_is_stored_whole(store: Any) -> None:
    from core.storage import key_for

    big = os.urandom(40 * 1024 * 1024 + 123)  # past the size where S3 uploads go in parts
    key = key_for(uuid.uuid4(), 0)
    _put(store, key, big)
    assert store.read(key) == big
    store.delete(key)


def _down_env() -> dict[str, str]:
    """S3 settings of a store where nothing listens."""
    return {
        "IMAGEEXTRACT_STORAGE_URL": "s3://imageextract/images",
        "IMAGEEXTRACT_S3_ENDPOINT_URL": f"http://127.0.0.1:{stack.free_port()}",
        "IMAGEEXTRACT_S3_ACCESS_KEY_ID": stack.S3_ACCESS_KEY,
        "IMAGEEXTRACT_S3_SECRET_ACCESS_KEY": stack.S3_SECRET_KEY,
        "IMAGEEXTRACT_STORAGE_TIMEOUT": "PT2S",
        "IMAGEEXTRACT_STORAGE_MAX_RETRIES": "1",
    }


def test_a_job_sent_while_the_store_is_down_gets_503_and_is_not_charged(
    caller: Caller, services: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from api.app import create_app

    app = create_app(_settings(monkeypatch, {**services.env, **_down_env()}))
    headers = {"Authorization": f"Bearer {caller.key}"}
    before = caller.client.get("/v1/account").json()["balance"]
    files = [("images", (f"{i}.png", png_for(i), "image/png")) for i in range(3)]
    response = stack.asgi_request(
        app, "POST", "/v1/jobs", files=files, data={"prompt": "x"}, headers=headers
    )
    assert response.status_code == 503, response.text
    problem = response.json()
    assert problem["code"] == "storage_unavailable"
    assert "s3://imageextract/images" in problem["detail"]
    assert caller.client.get("/v1/account").json()["balance"] == before
    assert caller.client.get("/v1/jobs").json()["jobs"] == []
    ready = stack.asgi_request(app, "GET", "/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["storage"] == "down"


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEEXTRACT_")}
    return subprocess.run(
        [sys.executable, "-m", "cli", *args], env={**clean, **env}, cwd=ROOT,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_serve_and_api_refuse_to_start_on_a_missing_bucket_or_a_store_that_is_down(
    servers: Servers, tmp_path: Path
) -> None:
    missing = {**servers.s3.env(), "IMAGEEXTRACT_STORAGE_URL": "s3://no-such-bucket/images",
               "IMAGEEXTRACT_DATA_DIR": str(tmp_path)}  # fmt: skip
    started = _cli(missing, "serve", "--port", str(stack.free_port()))
    assert started.returncode == 1
    assert "the bucket 'no-such-bucket' does not exist" in started.stderr
    down = _cli({**_down_env(), "IMAGEEXTRACT_DATA_DIR": str(tmp_path)}, "api")
    assert down.returncode == 1
    assert "image storage s3://imageextract/images could not" in down.stderr
    bad_url = _cli({"IMAGEEXTRACT_STORAGE_URL": "ftp://host/x"}, "api")
    assert bad_url.returncode == 1
    assert "use file:///path or s3://bucket/prefix" in bad_url.stderr


def test_a_worker_says_at_start_that_the_store_is_down(services: Stack, tmp_path: Path) -> None:
    from cli.processes import worker_command

    env = {**os.environ, **services.env, **_down_env()}
    log = tmp_path / "worker.log"
    command = worker_command(["default"], "threads", 2, "storage-down@%h")
    running = _run_until_stopped(command, env, log, "ready.")
    next(running)
    try:
        said = "Images wait in the queue until it answers"
        deadline = time.monotonic() + 30
        while said not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "image storage s3://imageextract/images could not" in log.read_text()
        assert said in log.read_text()
    finally:
        next(running, None)
