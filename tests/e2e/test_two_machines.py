"""Two machines that share no disk: the API and a worker with data directories of their own,
their images in the S3 server. Only Postgres, Redis and the bucket are common to both.

They get a database and a Redis database of their own, so that the suite's worker (which
keeps its images elsewhere) never claims their images."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests import stack
from tests.conftest import ROOT, Servers, _run_until_stopped, wait_for_job
from tests.sample_images import png_for

IMAGES = 50


def _machine(shared: dict[str, str], model_server: str, data_dir: Path) -> dict[str, str]:
    """The environment of one machine: its own data directory, the shared servers."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("IMAGEEXTRACT_")},
        **shared,
        "IMAGEEXTRACT_DATA_DIR": str(data_dir),
        "IMAGEEXTRACT_MODEL_PROVIDER": "openai",
        "IMAGEEXTRACT_OPENAI_BASE_URL": f"{model_server}/v1",
    }


@pytest.fixture
def shared(servers: Servers) -> Iterator[dict[str, str]]:
    """A database of their own (on the suite's Postgres), Redis database 1, the bucket."""
    name = f"two_machines_{uuid.uuid4().hex[:8]}"
    admin = create_engine(servers.database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield {
        "IMAGEEXTRACT_DATABASE_URL": servers.database_url.rsplit("/", 1)[0] + f"/{name}",
        "IMAGEEXTRACT_BROKER_URL": servers.broker_url.rsplit("/", 1)[0] + "/1",
        **servers.s3.env(prefix="two-machines"),
    }
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


def test_api_and_worker_on_two_machines_complete_a_job_through_s3(
    servers: Servers, shared: dict[str, str], model_server: str, tmp_path: Path
) -> None:
    api_env = _machine(shared, model_server, tmp_path / "api-machine")
    worker_env = _machine(shared, model_server, tmp_path / "worker-machine")
    run = [sys.executable, "-m", "cli"]
    subprocess.run([*run, "migrate"], env=api_env, cwd=ROOT, check=True, capture_output=True)
    subprocess.run([*run, "accounts", "create", "two", "--credits", "1000"], env=api_env,
                   cwd=ROOT, check=True, capture_output=True)  # fmt: skip
    made = subprocess.run([*run, "keys", "create", "two"], env=api_env, cwd=ROOT, check=True,
                          capture_output=True, text=True)  # fmt: skip
    key = made.stdout.strip().splitlines()[-1]
    port = stack.free_port()
    worker = _run_until_stopped(
        [*run, "worker", "--queues", "default,model"], worker_env, tmp_path / "worker.log", "ready."
    )
    api = _run_until_stopped(
        [*run, "api", "--port", str(port)], api_env, tmp_path / "api.log", "Application startup"
    )
    next(worker), next(api)
    try:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"},
            timeout=60,
        ) as client:  # fmt: skip
            files = [("images", (f"{i}.png", png_for(i), "image/png")) for i in range(IMAGES)]
            response = client.post("/v1/jobs", files=files, data={"prompt": "x"})
            assert response.status_code == 202, response.text
            job_id = response.json()["id"]
            job = wait_for_job(client, job_id, timeout=120)
            failed = client.get(f"/v1/jobs/{job_id}/items", params={"status": "failed"}).json()
            assert job["status"] == "succeeded", [item["error"] for item in failed["items"]]
            assert job["counts"]["succeeded"] == IMAGES
            results = client.get(f"/v1/jobs/{job_id}/results").text.splitlines()
            assert len(results) == IMAGES
            assert client.get("/readyz").json()["checks"]["storage"] == "ok"
    finally:
        for process in (api, worker):
            next(process, None)
    # The images went through the bucket and are gone; neither machine kept one.
    assert servers.s3.keys("two-machines/") == []
    for machine in ("api-machine", "worker-machine"):
        kept = [p for p in (tmp_path / machine).rglob("*") if p.is_file() and "images" in p.parts]
        assert kept == [], machine
