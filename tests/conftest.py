"""The real stack for the tests: Postgres, Redis, a Celery worker process, the fake model,
and the API on a real HTTP port. Started once per run, only for the tests that ask for it
(``tests/unit`` asks for none of it, or for the fake model alone); every test gets clean
tables. Tests are marked by their tier's folder: ``unit``, ``e2e``, ``faults``.

The stack runs twice: with images on the filesystem (``[file]``) and in an S3 server
(``[s3]``, moto's), so every end-to-end test holds on both stores.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from psycopg.errors import DeadlockDetected
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from tests import stack
from tests.sample_images import jpeg_for, png_for

ROOT = Path(__file__).resolve().parents[1]
METRICS_TOKEN = "metrics-test-token"  # noqa: S105 — the test stack's own, on loopback


@dataclass
class Stack:
    database_url: str
    broker_url: str
    data_dir: Path
    model_url: str
    env: dict[str, str]
    # The S3 server the images go to; None: they go to data_dir/images.
    s3: stack.S3Server | None = None

    def stored_files(self) -> list[str]:
        """Temporary images left in storage (workers may be deleting some meanwhile), as
        ``<job id>/<index>``, seen directly (the folder, or the bucket through boto3)."""
        if self.s3 is not None:
            return [key.removeprefix("images/") for key in self.s3.keys("images/")]
        root = self.data_dir / "images"
        found: list[str] = []
        for directory, _dirs, names in os.walk(root):  # skips folders that vanish
            found.extend(str(Path(directory, name).relative_to(root)) for name in names)
        return sorted(found)

    def clear_storage(self) -> None:
        if self.s3 is not None:
            self.s3.empty()
        shutil.rmtree(self.data_dir / "images", ignore_errors=True)


@pytest.fixture(scope="session")
def model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The fake OpenAI-compatible model on a loopback port: its base URL. Needs no
    Postgres or Redis, so the provider tests run without them."""
    log = tmp_path_factory.mktemp("model") / "model.log"
    port = stack.free_port()
    model = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "fake_model_server.py"), "--port", str(port)],
        stdout=log.open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        stack.wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        model.terminate()
        model.wait(10)


@dataclass
class Servers:
    database_url: str
    broker_url: str
    s3: stack.S3Server
    work: Path


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """Postgres (migrated), Redis and the S3 server, shared by both stores' stacks."""
    work = tmp_path_factory.mktemp("stack")
    with (
        stack.postgres() as database_url,
        stack.redis(work / "redis") as broker_url,
        stack.s3(work / "s3") as s3,
    ):
        from db import migrate

        migrate.upgrade(database_url)
        yield Servers(database_url=database_url, broker_url=broker_url, s3=s3, work=work)


@pytest.fixture(scope="session", params=["file", "s3"])
def services(request: pytest.FixtureRequest, servers: Servers, model_server: str) -> Stack:
    """The stack's settings, with images in a folder (``file``) or the S3 server (``s3``)."""
    s3 = servers.s3 if request.param == "s3" else None
    database_url, broker_url = servers.database_url, servers.broker_url
    data_dir = servers.work / f"data-{request.param}"
    env = {
        "IMAGEEXTRACT_DATABASE_URL": database_url,
        "IMAGEEXTRACT_BROKER_URL": broker_url,
        "IMAGEEXTRACT_DATA_DIR": str(data_dir),
        "IMAGEEXTRACT_MODEL_PROVIDER": "openai",
        "IMAGEEXTRACT_OPENAI_BASE_URL": f"{model_server}/v1",
        "IMAGEEXTRACT_OPENAI_API_KEY": "sk-test",
        "IMAGEEXTRACT_OPENAI_MODEL": "fake-vision",
        "IMAGEEXTRACT_MODEL_TIMEOUT": "PT2S",
        "IMAGEEXTRACT_MODEL_MAX_RETRIES": "2",
        "IMAGEEXTRACT_URL_ALLOW_LIST": '["127.0.0.1"]',
        # An image URL's whole download: loopback servers answer at once, and a server that
        # drips is cut off in seconds, not half a minute.
        "IMAGEEXTRACT_URL_FETCH_TIMEOUT": "PT2S",
        "IMAGEEXTRACT_METRICS_TOKEN": METRICS_TOKEN,
        # Webhook retries seconds apart instead of hours, run by a fast beat.
        "IMAGEEXTRACT_WEBHOOK_DISPATCH_INTERVAL": "PT0.5S",
        "IMAGEEXTRACT_WEBHOOK_RETRY_SCHEDULE": '["PT0S", "PT0.5S", "PT1S", "PT2S", "PT2S"]',
        # Provider batches asked about every half second (a second at most), and small, so
        # that a job of a dozen images spans several.
        "IMAGEEXTRACT_BATCH_POLL_INTERVAL": "PT0.5S",
        "IMAGEEXTRACT_BATCH_POLL_MAX_INTERVAL": "PT1S",
        "IMAGEEXTRACT_BATCH_MAX_REQUESTS": "5",
        **(s3.env() if s3 is not None else {}),
    }
    for name in [name for name in os.environ if name.startswith("IMAGEEXTRACT_")]:
        del os.environ[name]  # the other store's stack set some
    os.environ.update(env)
    return Stack(
        database_url=database_url,
        broker_url=broker_url,
        data_dir=data_dir,
        model_url=model_server,
        env=env,
        s3=s3,
    )


@pytest.fixture(scope="session")
def settings(services: Stack) -> Any:
    from core.settings import Settings

    return Settings()


@pytest.fixture(scope="session")
def session_factory(settings: Any) -> Any:
    from db.engine import make_engine, make_session_factory

    return make_session_factory(make_engine(settings.resolved_database_url))


def _run_until_stopped(
    command: list[str], env: dict[str, str], log: Path, ready_text: str
) -> Iterator[Path]:
    """Start a process, wait until its log says it is ready, yield the log, stop it."""
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log.open("w"),
                               stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.monotonic() + 60
    while ready_text not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{command[3:6]} did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    yield log
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="session")
def worker_process(
    services: Stack, settings: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """One real Celery worker process: threads pool, many model calls in flight."""
    from cli.processes import worker_command

    log = tmp_path_factory.mktemp("worker") / "worker.log"
    command = worker_command(["default", "model"], "threads", settings.worker_threads, "test@%h")
    yield from _run_until_stopped(command, {**os.environ, **services.env}, log, "ready.")


@pytest.fixture(scope="session")
def cpu_worker_process(
    services: Stack, settings: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """A prefork worker of the cpu queue (one process): it reads images for grounding."""
    from cli.processes import worker_command

    log = tmp_path_factory.mktemp("cpu-worker") / "worker.log"
    command = worker_command(["cpu"], "prefork", 1, "cpu@%h")
    yield from _run_until_stopped(command, {**os.environ, **services.env}, log, "ready.")


@pytest.fixture(scope="session")
def api_url(settings: Any) -> Iterator[str]:
    with _api_server(settings) as url:
        yield url


@contextlib.contextmanager
def _api_server(settings: Any) -> Iterator[str]:
    """The API in a thread of this process, on a loopback port: its base URL."""
    from api.app import create_app
    from api.http_server import server_config

    port = stack.free_port()
    server = uvicorn.Server(
        server_config(create_app(settings), settings, host="127.0.0.1", port=port,
                      log_level="warning")
    )  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    stack.wait_for_port(port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def api_with(services: Stack) -> Iterator[Callable[..., str]]:
    """An API of its own, with settings of the test's choosing (the stack's, changed):
    its base URL."""
    from core.settings import Settings

    with contextlib.ExitStack() as servers:
        yield lambda **changes: servers.enter_context(_api_server(Settings(**changes)))


TABLES = ("job_items", "jobs", "api_keys", "accounts")


def _truncate(factory: Any) -> None:
    """Empty the tables. A job the test left running may still be written by a worker,
    whose locks can meet TRUNCATE's in a deadlock; Postgres then aborts one side, and
    when it is this one it is tried again."""
    for attempt in range(5):
        try:
            with factory() as session:
                session.execute(text(f"TRUNCATE {', '.join(TABLES)} CASCADE"))
                session.commit()
            return
        except OperationalError as error:
            if not isinstance(error.orig, DeadlockDetected) or attempt == 4:
                raise
            time.sleep(0.2)


@pytest.fixture(autouse=True)
def _clean_state(request: pytest.FixtureRequest) -> Iterator[None]:
    if "model_server" not in request.fixturenames:
        yield
        return
    model_url: str = request.getfixturevalue("model_server")
    # Taken before the test: pytest no longer hands out fixtures during teardown.
    with_tables = "services" in request.fixturenames
    if with_tables:
        services: Stack = request.getfixturevalue("services")
        factory = request.getfixturevalue("session_factory")
    yield
    if with_tables:
        _truncate(factory)
        # Jobs a test left running lose their rows above; their files must not leak into
        # the next test's "nothing left in storage" checks.
        services.clear_storage()
    # Model calls still in flight for those jobs would count in the next test's stats;
    # calls a test held at the fake model's door go through now.
    httpx.post(f"{model_url}/_control", json={"hold": 0}, timeout=5)
    deadline, quiet_since = time.monotonic() + 30, time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - quiet_since < 0.3:
        if httpx.get(f"{model_url}/_stats", timeout=5).json()["in_flight"]:
            quiet_since = time.monotonic()
        time.sleep(0.05)
    httpx.post(f"{model_url}/_reset", timeout=5)


@dataclass
class Caller:
    """An account with a key, and an HTTP client that uses it."""

    name: str
    key: str
    client: httpx.Client


@pytest.fixture
def make_caller(api_url: str, session_factory: Any) -> Iterator[Callable[..., Caller]]:
    from core import accounts as accounts_service
    from db.engine import unit_of_work

    clients: list[httpx.Client] = []

    def make(name: str = "acme", credits: int = 1_000_000) -> Caller:
        with unit_of_work(session_factory) as session:
            accounts_service.create_account(session, name, credits)
            key = accounts_service.create_key(session, name).secret
        client = httpx.Client(
            base_url=api_url, headers={"Authorization": f"Bearer {key}"}, timeout=120
        )
        clients.append(client)
        return Caller(name=name, key=key, client=client)

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def caller(make_caller: Callable[..., Caller], worker_process: Path) -> Caller:
    return make_caller()


@pytest.fixture
def image_server() -> Iterator[str]:
    """Serves /img/<n>.png (the sample image n) and the reference examples' file names on
    loopback; anything else is a 404."""
    files = {"/receipt.jpg": jpeg_for(0), "/menu.png": png_for(1), "/sample-image.jpg": jpeg_for(2)}

    def answer(path: str) -> stack.Reply:
        if path.startswith("/img/"):
            index = int(path.rsplit("/", 1)[-1].split(".")[0])
            return 200, {"Content-Type": "image/png"}, png_for(index)
        if path in files:
            return 200, {}, files[path]
        return 404, {}, b""

    with stack.http_server(answer) as url:
        yield url


@pytest.fixture
def fake_model(model_server: str) -> Callable[..., dict[str, Any]]:
    """Change the fake model's behaviour for this test (reset after it)."""

    def control(**changes: Any) -> dict[str, Any]:
        response = httpx.post(f"{model_server}/_control", json=changes, timeout=5)
        response.raise_for_status()
        return dict(response.json())

    return control


def wait_for_job(client: httpx.Client, job_id: str, timeout: float = 180) -> dict[str, Any]:
    """Poll until the job has ended (finished_at set), with a deadline."""
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/v1/jobs/{job_id}").raise_for_status().json()
        if job["finished_at"] is not None:
            return dict(job)
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"job {job_id} still {job['status']} after {timeout} s: {job['counts']}"
            )
        time.sleep(0.2)


@pytest.fixture(scope="session")
def beat_process(services: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One real Celery beat process: it queues the webhook dispatcher every half second."""
    folder = tmp_path_factory.mktemp("beat")
    log = folder / "beat.log"
    command = [
        sys.executable, "-m", "celery", "-A", "worker.celery_app", "beat", "--loglevel", "INFO",
        "--schedule", str(folder / "celerybeat-schedule"),
    ]  # fmt: skip
    yield from _run_until_stopped(command, {**os.environ, **services.env}, log, "beat: Starting")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test by its tier's folder, so ``-m unit`` or ``-m "not faults"`` selects;
    tests marked ``one_store`` run with images in a folder only."""
    twice = [
        item
        for item in items
        if item.get_closest_marker("one_store")
        and getattr(getattr(item, "callspec", None), "params", {}).get("services") == "s3"
    ]
    if twice:
        config.hook.pytest_deselected(items=twice)
        items[:] = [item for item in items if item not in twice]
    for item in items:
        tier = Path(str(item.fspath)).relative_to(ROOT / "tests").parts[0]
        if tier in ("unit", "e2e", "faults"):
            item.add_marker(tier)
