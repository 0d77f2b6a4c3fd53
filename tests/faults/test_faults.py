"""Fault injection on the real stack: a 500-image job in flight while a worker is
SIGKILLed, Redis, Postgres or the S3 server restarts, or the model misbehaves. After each,
every image has ended exactly once, none succeeded twice, the credits balance and no file
is left over.

These tests own their stack (Postgres, Redis, two worker processes, beat, the API and the
fake model), so restarting a server does not disturb the rest of the suite. The workers run
under the supervisor that `imageextract serve` uses: one that exits is started again, as in
production.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from sqlalchemy import create_engine, text

from cli.supervisor import Supervisor
from core.jobs import RETRYABLE_CODES
from extraction.schema import schema_of_prompt
from tests import stack
from tests.conftest import ROOT, wait_for_job
from tests.sample_images import png_for

pytestmark = [pytest.mark.faults, pytest.mark.timeout(600)]

IMAGES = 500
FIGURES: list[dict[str, Any]] = []


@dataclass
class FaultStack:
    database_url: str
    broker_url: str
    data_dir: Path
    model_url: str
    env: dict[str, str]
    client: httpx.Client
    supervisor: Supervisor
    logs: Path = Path()
    restarts_recorded: int = 0
    # The S3 server holding the images; None: they are in data_dir/images.
    s3: stack.S3Server | None = None

    def stored_files(self, job_id: str) -> set[str]:
        """The job's images in storage, as ``<job id>/<index>``."""
        if self.s3 is not None:
            return {key.removeprefix("images/") for key in self.s3.keys(f"images/{job_id}/")}
        root = self.data_dir / "images"
        return {str(p.relative_to(root)) for p in (root / job_id).glob("*") if p.is_file()}

    def start_worker(self, name: str) -> None:
        command = [
            sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker",
            "--queues", "default,model", "--pool", "threads", "--concurrency", "16",
            "--hostname", f"{name}@%h", "--loglevel", "INFO", "--without-gossip",
            "--without-mingle",
        ]  # fmt: skip
        self.supervisor.start(name, command, log=self.logs / f"{name}.log")
        self.wait_until_ready(name, times=1)

    def wait_until_ready(self, name: str, times: int) -> None:
        """Until the worker's log says it is ready the ``times``-th time (restarts append)."""
        log = self.logs / f"{name}.log"
        deadline = time.monotonic() + 60
        while log.read_text(errors="replace").count(" ready.") < times:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)

    def restarts(self) -> int:
        return sum(child.restarts for child in self.supervisor.children.values())

    def model(self, **changes: Any) -> None:
        httpx.post(f"{self.model_url}/_reset", timeout=5).raise_for_status()
        if changes:
            httpx.post(f"{self.model_url}/_control", json=changes, timeout=5).raise_for_status()


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "cli", *args], env=env, capture_output=True, text=True,
        check=True, cwd=ROOT,
    )  # fmt: skip
    return done.stdout


@pytest.fixture(scope="module")
def faults_stack(request: pytest.FixtureRequest) -> Iterator[FaultStack]:
    """The stack, with its images in a folder or (``indirect`` param ``"s3"``) an S3 server."""
    work = Path(tempfile.mkdtemp(prefix="imageextract-faults-"))
    store = getattr(request, "param", "file")
    with contextlib.ExitStack() as servers:
        # Durable commits, as in production: the suite's own cluster runs without them
        # (fsync and synchronous_commit off), and an immediate restart of such a cluster
        # forgets transactions it had reported committed, which no service can survive.
        database_url = servers.enter_context(
            stack.postgres(extra_config="fsync = on\nsynchronous_commit = on\n")
        )
        broker_url = servers.enter_context(stack.redis(work / "redis"))
        s3 = servers.enter_context(stack.s3(work / "s3")) if store == "s3" else None
        model_port, api_port = stack.free_port(), stack.free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("IMAGEEXTRACT_")},
            "IMAGEEXTRACT_DATABASE_URL": database_url,
            "IMAGEEXTRACT_BROKER_URL": broker_url,
            "IMAGEEXTRACT_DATA_DIR": str(work / "data"),
            "IMAGEEXTRACT_MODEL_PROVIDER": "openai",
            "IMAGEEXTRACT_OPENAI_BASE_URL": f"http://127.0.0.1:{model_port}/v1",
            "IMAGEEXTRACT_MODEL_TIMEOUT": "PT1S",
            "IMAGEEXTRACT_MODEL_MAX_RETRIES": "2",
            "IMAGEEXTRACT_MODEL_CONCURRENCY": "16",
            "IMAGEEXTRACT_ITEM_LEASE": "PT5S",
            "IMAGEEXTRACT_MAINTENANCE_INTERVAL": "PT1S",
            "IMAGEEXTRACT_LOST_MESSAGE_GRACE": "PT3S",
            # A worker whose consumer cannot get back to Redis exits, and is restarted.
            "IMAGEEXTRACT_CONSUMER_STALL_TIMEOUT": "PT10S",
            # The batch lane: provider batches of at most 200 lines, asked about often.
            "IMAGEEXTRACT_BATCH_MAX_REQUESTS": "200",
            "IMAGEEXTRACT_BATCH_POLL_INTERVAL": "PT0.5S",
            "IMAGEEXTRACT_BATCH_POLL_MAX_INTERVAL": "PT2S",
            **(s3.env() if s3 is not None else {}),
        }
        processes: list[subprocess.Popen[bytes]] = []
        logs = work / "logs"
        logs.mkdir()

        def report(line: str) -> None:
            with (logs / "supervisor.log").open("a") as handle:
                handle.write(line + "\n")

        supervisor = Supervisor(env=env, cwd=ROOT, report=report)

        def spawn(name: str, command: list[str]) -> subprocess.Popen[bytes]:
            process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=(logs / f"{name}.log").open("ab"),
                stderr=subprocess.STDOUT,
            )  # fmt: skip
            processes.append(process)
            return process

        try:
            spawn("model", [sys.executable, str(ROOT / "tests" / "fake_model_server.py"),
                            "--port", str(model_port)])  # fmt: skip
            _cli(env, "migrate")
            _cli(env, "accounts", "create", "nightly", "--credits", "100000")
            key = _cli(env, "keys", "create", "nightly").strip().splitlines()[-1]
            spawn("api", [sys.executable, "-m", "uvicorn", "api.asgi:app", "--port", str(api_port),
                          "--log-level", "warning"])  # fmt: skip
            # Under the supervisor, as the workers: one killed is started again.
            supervisor.start(
                "beat",
                [sys.executable, "-m", "celery", "-A", "worker.celery_app", "beat",
                 "--schedule", str(work / "beat-schedule")],
                log=logs / "beat.log",
            )  # fmt: skip
            stack.wait_for_port(model_port)
            stack.wait_for_port(api_port)
            client = httpx.Client(
                base_url=f"http://127.0.0.1:{api_port}",
                headers={"Authorization": f"Bearer {key}"},
                timeout=120,
            )
            faults = FaultStack(
                database_url=database_url, broker_url=broker_url, data_dir=work / "data",
                model_url=f"http://127.0.0.1:{model_port}", env=env, client=client,
                supervisor=supervisor, logs=logs, s3=s3,
            )  # fmt: skip
            faults.start_worker("w1")
            faults.start_worker("w2")
            yield faults
            client.close()
        finally:
            supervisor.stop(timeout=20)
            for process in processes:
                if process.poll() is None:
                    process.terminate()
            for process in processes:
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    process.kill()


def _submit(faults: FaultStack, **data: str) -> str:
    files = [("images", (f"{i:03d}.png", png_for(i), "image/png")) for i in range(IMAGES)]
    response = faults.client.post("/v1/jobs", files=files, data={"prompt": "x", **data})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def _wait_for_progress(faults: FaultStack, job_id: str, succeeded: int) -> None:
    deadline = time.monotonic() + 120
    while faults.client.get(f"/v1/jobs/{job_id}").json()["counts"]["succeeded"] < succeeded:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def _check_and_record(faults: FaultStack, job_id: str, fault: str, injected: int) -> None:
    """The invariants every fault must leave intact, and the figures for the report."""
    job = wait_for_job(faults.client, job_id, timeout=300)
    engine = create_engine(faults.database_url)
    with engine.connect() as connection:
        by_status: dict[str, int] = dict(
            connection.execute(
                text("SELECT status, count(*) FROM job_items WHERE job_id = :id GROUP BY status"),
                {"id": job_id},
            ).all()
        )
        counters = connection.execute(
            text("SELECT items_succeeded, items_failed, items_cancelled, credits_reserved, "
                 "credits_captured, credits_refunded FROM jobs WHERE id = :id"),
            {"id": job_id},
        ).one()  # fmt: skip
        ledger: dict[str, int] = dict(
            connection.execute(
                text(
                    "SELECT kind, sum(amount) FROM credit_ledger WHERE job_id = :id GROUP BY kind"
                ),
                {"id": job_id},
            ).all()
        )
        balance, ledger_sum = connection.execute(
            text("SELECT a.credit_balance, (SELECT sum(delta) FROM credit_ledger l "
                 "WHERE l.account_id = a.id) FROM accounts a")
        ).one()  # fmt: skip
        failed_by_code: dict[str, int] = dict(
            connection.execute(
                text("SELECT error_code, count(*) FROM job_items WHERE job_id = :id "
                     "AND status = 'failed' GROUP BY error_code"),
                {"id": job_id},
            ).all()
        )  # fmt: skip
        kept = set(
            connection.execute(
                text("SELECT storage_key FROM job_items WHERE job_id = :id "
                     "AND status = 'failed' AND error_code = ANY(:codes)"),
                {"id": job_id, "codes": list(RETRYABLE_CODES)},
            ).scalars()
        )  # fmt: skip
    engine.dispose()
    lost = IMAGES - sum(by_status.get(s, 0) for s in ("succeeded", "failed", "cancelled"))
    succeeded_twice = counters[0] - by_status.get("succeeded", 0)
    calls = httpx.get(f"{faults.model_url}/_stats").json()["calls"]
    restarts, faults.restarts_recorded = (
        faults.restarts() - faults.restarts_recorded, faults.restarts()
    )  # fmt: skip
    FIGURES.append({
        "fault": fault, "injected": injected, "images": IMAGES,
        "succeeded": by_status.get("succeeded", 0), "failed": by_status.get("failed", 0),
        "lost": lost, "succeeded_twice": succeeded_twice,
        "failed_by_code": failed_by_code,
        "model_calls_ok": calls.get("ok", 0), "worker_restarts": restarts,
        "status": job["status"],
    })  # fmt: skip
    assert lost == 0
    assert succeeded_twice == 0
    assert (counters[1], counters[2]) == (by_status.get("failed", 0), by_status.get("cancelled", 0))
    assert ledger.get("capture", 0) + ledger.get("refund", 0) == ledger["reserve"] == counters[3]
    assert balance == ledger_sum >= 0
    # Only images that failed for a passing reason keep their file (for /retry). The rest
    # go as their items end, or when the job ends (a worker killed between recording an
    # outcome and deleting the file), just after the job's final status is committed.
    deadline = time.monotonic() + 15
    while True:
        left = faults.stored_files(job_id)
        if left <= kept or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert left <= kept, (left - kept, _grep_logs(faults, sorted(left - kept)))


def _grep_logs(faults: FaultStack, keys: list[str]) -> list[str]:
    """Worker log lines about the images behind ``keys``, to explain a failure."""
    engine = create_engine(faults.database_url)
    with engine.connect() as connection:
        ids = [str(i) for i in connection.execute(
            text("SELECT id FROM job_items WHERE storage_key = ANY(:keys)"), {"keys": keys}
        ).scalars()]  # fmt: skip
    engine.dispose()
    found = []
    for log in faults.logs.glob("*.log"):
        for line in log.read_text(errors="replace").splitlines():
            if any(i in line for i in ids) or "Traceback" in line or "Error" in line:
                found.append(f"{log.name}: {line}")
    return found[:40]


TEMPLATE = 'Read the size: {"width": "Width", "height": "Height"}'


def test_model_failures_500_429_timeouts_and_malformed_json(faults_stack: FaultStack) -> None:
    faults = faults_stack
    faults.model(latency=0.02, error_rate=0.15, rate_limit_rate=0.1, retry_after=0.2,
                 timeout_rate=0.02, hang=2, malformed_rate=0.1, misshaped_rate=0.1)  # fmt: skip
    job_id = _submit(faults, json_mode="true", prompt=TEMPLATE)
    wait_for_job(faults.client, job_id, timeout=300)
    calls = httpx.get(f"{faults.model_url}/_stats").json()["calls"]
    injected = sum(v for k, v in calls.items() if k != "ok")
    assert injected > 50
    _check_and_record(faults, job_id, "model 500/429/timeout/malformed or misshaped JSON",
                      injected)  # fmt: skip
    # Every image that succeeded holds an answer that fits the prompt's schema.
    schema = schema_of_prompt(TEMPLATE)
    assert schema is not None
    engine = create_engine(faults.database_url)
    with engine.connect() as connection:
        answers = connection.execute(
            text("SELECT parsed FROM job_items WHERE job_id = :id AND status = 'succeeded'"),
            {"id": job_id},
        ).scalars().all()  # fmt: skip
    engine.dispose()
    validator = Draft202012Validator(schema)
    misfits = [answer for answer in answers if not validator.is_valid(answer)]
    FIGURES[-1]["conform_to_schema"] = f"{len(answers) - len(misfits)}/{len(answers)}"
    assert answers
    assert misfits == []


def test_sigkill_of_a_worker_process(faults_stack: FaultStack) -> None:
    faults = faults_stack
    faults.model(latency=0.3)
    job_id = _submit(faults)
    _wait_for_progress(faults, job_id, 100)
    victim = faults.supervisor.children["w1"]
    ready_before = (faults.logs / "w1.log").read_text(errors="replace").count(" ready.")
    os.kill(victim.process.pid, signal.SIGKILL)
    # The supervisor starts it again, as docker-compose and `imageextract serve` would.
    faults.wait_until_ready("w1", times=ready_before + 1)
    _check_and_record(faults, job_id, "SIGKILL of a worker", 1)


def test_restart_of_postgres(faults_stack: FaultStack) -> None:
    faults = faults_stack
    faults.model(latency=0.2)
    job_id = _submit(faults)
    _wait_for_progress(faults, job_id, 100)
    stack.restart(faults.database_url)
    _check_and_record(faults, job_id, "restart of Postgres", 1)


# After a Redis restart a worker's consumer sometimes cannot reconnect (kombu closes its
# channel twice; see worker/consumer_watchdog.py): that worker exits, and the supervisor
# starts it again.
def test_restart_of_redis(faults_stack: FaultStack) -> None:
    faults = faults_stack
    faults.model(latency=0.2)
    job_id = _submit(faults)
    _wait_for_progress(faults, job_id, 100)
    stack.restart(faults.broker_url)
    _check_and_record(faults, job_id, "restart of Redis (queued messages lost)", 1)


@pytest.mark.parametrize("faults_stack", ["s3"], indirect=True)
def test_restart_of_the_s3_server(faults_stack: FaultStack) -> None:
    """Images that cannot be read while the store is away go back to the queue and run
    once it answers: none fails for it, and the bucket is empty at the end."""
    faults = faults_stack
    assert faults.s3 is not None
    faults.model(latency=0.2)
    job_id = _submit(faults)
    _wait_for_progress(faults, job_id, 100)
    stack.restart(faults.s3.endpoint)
    _check_and_record(faults, job_id, "restart of the S3 server", 1)
    assert faults.client.get(f"/v1/jobs/{job_id}").json()["counts"]["succeeded"] == IMAGES
    deadline = time.monotonic() + 15
    while faults.s3.keys() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert faults.s3.keys() == []


def test_batch_lane_through_sigkills_of_beat_and_a_worker_and_a_redis_restart(
    faults_stack: FaultStack,
) -> None:
    """A batch job whose provider batches are in progress when beat and a worker are
    SIGKILLed and Redis restarts: its state is in Postgres, so every image's outcome is
    recorded once, at the batch price, with no live call."""
    faults = faults_stack
    faults.model(batch_hold=1)
    job_id = _submit(faults, mode="batch", json_mode="true", prompt=TEMPLATE)
    deadline = time.monotonic() + 120
    while True:
        batches = faults.client.get(f"/v1/jobs/{job_id}").json()["provider_batches"]
        in_progress = [b for b in batches if b["status"] == "in_progress"]
        if sum(b["request_counts"]["total"] for b in in_progress) == IMAGES:
            break
        assert time.monotonic() < deadline, batches
        time.sleep(0.1)
    assert len(in_progress) == 3  # 200 + 200 + 100 lines
    beat, worker = faults.supervisor.children["beat"], faults.supervisor.children["w1"]
    beat_restarts, ready_before = (
        beat.restarts,
        (faults.logs / "w1.log").read_text(errors="replace").count(" ready."),
    )
    os.kill(beat.process.pid, signal.SIGKILL)
    os.kill(worker.process.pid, signal.SIGKILL)
    stack.restart(faults.broker_url)
    faults.wait_until_ready("w1", times=ready_before + 1)
    deadline = time.monotonic() + 60
    while beat.restarts == beat_restarts:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    httpx.post(f"{faults.model_url}/_control", json={"batch_hold": 0}, timeout=5)
    _check_and_record(faults, job_id, "batch lane: SIGKILL of beat and a worker, Redis restart", 3)
    job = faults.client.get(f"/v1/jobs/{job_id}").json()
    assert job["counts"]["succeeded"] == IMAGES
    # Charged once, at the batch price (half of the live 1 per image, rounded up).
    assert job["credits"]["captured"] == job["credits"]["reserved"] == 10 + IMAGES
    stats = httpx.get(f"{faults.model_url}/_stats").json()
    assert stats["calls"].get("ok", 0) == 0
    assert stats["calls"]["batch_ok"] == IMAGES
    deadline = time.monotonic() + 30
    while httpx.get(f"{faults.model_url}/_stats").json()["batches"]["files"]:
        assert time.monotonic() < deadline, "the provider's files were not deleted"
        time.sleep(0.2)
