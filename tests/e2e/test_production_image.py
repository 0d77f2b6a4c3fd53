"""What the production image builds (``Dockerfile``), without a Docker engine: a wheel made
from exactly the paths its COPY lines copy, installed into a fresh virtualenv, runs the
command, the migrations against Postgres, and the API, a worker and beat against Redis,
each passing the health check docker-compose gives it.

The fresh virtualenv gets our wheel only; the third-party packages come from the test
environment (a ``.pth`` line), which adds their folder to the path but not our editable
install. A module that the Dockerfile leaves out therefore fails to import here as it
would in the image.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import venv
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from tests import stack
from tests.conftest import ROOT, Servers

pytestmark = pytest.mark.one_store


def copied_paths(dockerfile: Path) -> list[str]:
    """The sources of every COPY line, which all copy a path of the checkout to itself."""
    sources: list[str] = []
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if not words or words[0].upper() != "COPY":
            continue
        *copied, target = [word for word in words[1:] if not word.startswith("--")]
        assert target == "./" or copied == [target], f"a COPY this test cannot read: {line}"
        sources.extend(copied)
    return sources


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv holding the wheel that the Dockerfile's build would make: its bin/."""
    work = tmp_path_factory.mktemp("image")
    context = work / "app"
    context.mkdir()
    for source in copied_paths(ROOT / "Dockerfile"):
        if (ROOT / source).is_dir():
            ignore = shutil.ignore_patterns("__pycache__")
            shutil.copytree(ROOT / source, context / source, ignore=ignore)
        else:
            shutil.copy2(ROOT / source, context / source)
    wheels = work / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(wheels), str(context)], check=True)
    environment = work / "venv"
    venv.EnvBuilder(with_pip=False).create(environment)
    python = environment / "bin" / "python"
    (wheel,) = wheels.glob("imageextract-*.whl")
    subprocess.run([*pip, "--python", str(python), "install", "--no-deps", str(wheel)],
                   check=True)  # fmt: skip
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    Path(site, "test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return environment / "bin"


@pytest.fixture(scope="module")
def image_env(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The settings docker-compose gives our containers, on a database of their own (made
    here, empty) and a Redis database that no other test's worker reads."""
    url = make_url(servers.database_url)
    engine = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text("DROP DATABASE IF EXISTS image_check"))
        connection.execute(text("CREATE DATABASE image_check"))
    engine.dispose()
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path_factory.mktemp("home")),
        "IMAGEEXTRACT_DATABASE_URL": url.set(database="image_check").render_as_string(False),
        "IMAGEEXTRACT_BROKER_URL": servers.broker_url.rsplit("/", 1)[0] + "/7",
        "IMAGEEXTRACT_DATA_DIR": str(tmp_path_factory.mktemp("data")),
        # docker-compose's ${IMAGEEXTRACT_OPENAI_API_KEY:-} when no key is set.
        "IMAGEEXTRACT_OPENAI_API_KEY": "",
    }


def _run(image: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(image / "imageextract"), *args], env=env, cwd=image,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip


def _start(image: Path, env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([str(image / "imageextract"), *args], env=env, cwd=image,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)  # fmt: skip


def _healthy_within(image: Path, env: dict[str, str], process: subprocess.Popen[bytes],
                    log: Path, *check: str) -> str:  # fmt: skip
    """Run ``imageextract health ...`` until it passes; its output."""
    deadline = time.monotonic() + 60
    while True:
        result = _run(image, env, "health", *check)
        if result.returncode == 0:
            return result.stdout
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(
                f"health {' '.join(check)}: {result.stderr}\n{log.read_text()[-3000:]}"
            )
        time.sleep(0.5)


def test_the_image_runs_the_command_and_its_migrations(
    image: Path, image_env: dict[str, str]
) -> None:
    helped = _run(image, image_env, "--help")
    assert helped.returncode == 0, helped.stderr
    for command in ("serve", "api", "worker", "beat", "migrate", "submit", "health"):
        assert command in helped.stdout

    migrated = _run(image, image_env, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    engine = create_engine(image_env["IMAGEEXTRACT_DATABASE_URL"])
    try:
        tables = set(inspect(engine).get_table_names())
        with engine.connect() as connection:
            versions = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    finally:
        engine.dispose()
    assert {"accounts", "api_keys", "jobs", "job_items", "credit_ledger"} <= tables
    assert len(versions) == 1


def test_the_image_runs_the_api_a_worker_and_beat_and_each_passes_its_health_check(
    image: Path, image_env: dict[str, str], tmp_path: Path
) -> None:
    assert _run(image, image_env, "migrate").returncode == 0
    port = stack.free_port()
    commands = {
        "api": (["api", "--host", "127.0.0.1", "--port", str(port)],
                ["api", "--url", f"http://127.0.0.1:{port}"]),
        "worker": (["worker", "--queues", "cpu", "--pool", "solo"], ["worker"]),
        "beat": (["beat"], ["beat", "--max-age", "30"]),
    }  # fmt: skip
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, (command, _check) in commands.items():
            processes[name] = _start(image, image_env, tmp_path / f"{name}.log", *command)
        for name, (_command, check) in commands.items():
            log = tmp_path / f"{name}.log"
            answer = _healthy_within(image, image_env, processes[name], log, *check)
            if name == "worker":
                assert f"cpu@{socket.gethostname()}" in answer
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()

    # With nothing running, each check fails and says why.
    for _name, (_command, check) in commands.items():
        if check[0] == "beat":
            continue  # the heartbeat is fresh for --max-age yet
        failed = _run(image, image_env, "health", *check, "--timeout", "1")
        assert failed.returncode == 1
        assert "unhealthy" in failed.stderr
