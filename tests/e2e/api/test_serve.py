"""`imageextract serve`: the whole product on one machine, no servers, no key, no Docker."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests import stack
from tests.sample_pdfs import text_pdf

SHARED_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"


def _embedded_env(data_dir: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEEXTRACT_")}
    env["IMAGEEXTRACT_DATA_DIR"] = str(data_dir)
    env.update({f"IMAGEEXTRACT_{name.upper()}": value for name, value in settings.items()})
    return env


def _start(
    data_dir: Path, port: int, log: Path, *options: str, **settings: str
) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", "--port", str(port), *options],
        env=_embedded_env(data_dir, **settings), stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    stack.wait_for_port(port, timeout=60)
    return process


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)
    process.wait(60)


def _io_worker_of(pid: int) -> int | None:
    for child in _children_of(pid):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"io@%h" in command:
            return child
    return None


def _remote_model(model_server: str) -> dict[str, str]:
    """Settings for the fake model: no local engine to load, so serve is up in seconds."""
    return {
        "model_provider": "openai",
        "openai_base_url": f"{model_server}/v1",
        "openai_api_key": "sk-test",
    }


def _io_worker_ready(log: Path) -> int:
    return len(re.findall(r"io@\S+ ready\.", log.read_text(errors="replace")))


def _children_of(pid: int) -> list[int]:
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        if re.search(rf"^PPid:\s+{pid}$", text, re.MULTILINE):
            found.append(int(status.parent.name))
    return found


@pytest.mark.timeout(300)
def test_serve_prints_a_key_and_a_curl_that_works_as_printed_and_nothing_more(
    tmp_path: Path,
) -> None:
    """The key printed at first start stays on screen: nothing else is printed while jobs
    run and beat queues upkeep (every second here). The key is also kept in a file that
    only its owner can read."""
    port = stack.free_port()
    log = tmp_path / "serve.log"
    data = tmp_path / "data"
    process = _start(data, port, log, maintenance_interval="PT1S")
    try:
        deadline = time.monotonic() + 30
        while "Try it:" not in log.read_text() or "-F json_mode=true" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        printed = log.read_text()
        curl = (
            printed.split("Try it:\n", 1)[1].split("-F json_mode=true", 1)[0] + "-F json_mode=true"
        )
        answer = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, check=True)
        job = json.loads(answer.stdout)
        assert job["status"] == "succeeded", job
        fields = job["results"][0]["parsed"]
        assert set(fields) == {"company", "date", "address", "total"}
        # The sample receipt is ours (made at first start), so its values can be checked.
        assert fields["total"] == "11.50"
        assert fields["date"] == "21/11/2026"
        assert "SUNRISE STATIONERY" in fields["company"]
        # The local engine says how sure it is of each value, beside its evidence.
        evidence = job["results"][0]["evidence"]
        assert set(evidence) == set(fields)
        assert all(0.5 < found["confidence"] < 1 for found in evidence.values()), evidence

        # A PDF page by page: each page's values keep their confidence (paths "[i].…").
        key = curl.split("Bearer ", 1)[1].split("'", 1)[0]
        pages = httpx.post(
            f"http://127.0.0.1:{port}/v1/jobs?wait=60",
            headers={"Authorization": f"Bearer {key}"},
            files=[("images", ("two.pdf", text_pdf([["Total: 12.50"], ["Total: 7.25"]]),
                               "application/pdf"))],
            data={"prompt": '{"total": "Total"}', "json_mode": "true",
                  "document_mode": "pages"},
            timeout=90,
        ).json()  # fmt: skip
        assert pages["status"] == "succeeded", pages
        paged = pages["results"][0]
        assert paged["parsed"] == [{"total": "12.50"}, {"total": "7.25"}]
        assert set(paged["evidence"]) == {"[0].total", "[1].total"}
        assert all(0.5 < found["confidence"] < 1 for found in paged["evidence"].values())

        receipts = SHARED_DATA / "sroie-dev" / "images"
        if receipts.is_dir():
            receipt = sorted(receipts.iterdir())[0]
            sample = str(tmp_path / "data" / "sample-receipt.png")
            real = subprocess.run(
                ["bash", "-c", curl.replace(sample, str(receipt))],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            parsed = json.loads(real.stdout)["results"][0]["parsed"]
            assert set(parsed) == {"company", "date", "address", "total"}
        workers = _children_of(process.pid)
        assert len(workers) >= 2
        # Rounds of upkeep: what beat and the workers would say about them is printed by
        # now if it ever is. (A window to watch, not a wait for work.)
        watched_until = time.monotonic() + 3
        while time.monotonic() < watched_until:
            time.sleep(0.5)
        printed = log.read_text()
    finally:
        _stop(process)
    key_file = data / "api-key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text().strip()
    assert key.startswith("iek_")
    assert f"Bearer {key}" in curl
    if os.geteuid() == 0:
        # Where the tests run as root, each worker warns about it once as it starts (a
        # warning, so shown; a user's serve need not run as root).
        printed = _ROOT_WARNING.sub("", printed)
    lines = [line for line in printed.splitlines() if line.strip()]
    assert f"  {key}" in lines
    assert f"Saved in {key_file} (readable only by you)." in lines
    assert not [line for line in lines if _LOGGED_LINE.match(line)], printed
    # The greeting (address, key, where it is kept, a curl of five lines, the web page)
    # is all there is, its last line still the last one.
    assert len(lines) <= 12, printed
    assert lines[-1].startswith("Or open http://"), printed
    assert process.returncode is not None
    for pid in workers:
        assert (
            not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
        )

    # A second start keeps the account: no new key is printed.
    log2 = tmp_path / "serve2.log"
    process = _start(tmp_path / "data", port, log2)
    try:
        time.sleep(1)
        assert "iek_" not in log2.read_text()
        assert "the key was printed at first start" in log2.read_text()
    finally:
        _stop(process)


# A line of a Celery worker or beat, or of uvicorn, as they log: "[2026-…: INFO/MainProcess] …",
# "INFO:     Uvicorn running on …"
_LOGGED_LINE = re.compile(r"^(\[\d{4}-\d\d-\d\d [^]]*: [A-Z]+/|(INFO|WARNING|ERROR):\s)")
_ROOT_WARNING = re.compile(
    r"^\S*celery/platforms\.py:\d+: SecurityWarning: You're running the worker with superuser"
    r".*?^  _warn_or_raise_security_error\(.*?\n",
    re.MULTILINE | re.DOTALL,
)


def _kill_the_io_worker_and_wait_for_its_restart(
    process: subprocess.Popen[bytes], log: Path
) -> int:
    """SIGKILL serve's io worker once it is ready; returns its pid once the new one is ready
    (started again, and connected to the broker: ready to consume)."""
    deadline = time.monotonic() + 60
    while _io_worker_ready(log) < 1 or (first := _io_worker_of(process.pid)) is None:
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while _io_worker_ready(log) < 2:
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    return first


@pytest.mark.timeout(120)
def test_serve_starts_a_worker_again_when_it_dies_and_stops_all_on_sigterm(
    tmp_path: Path,
) -> None:
    port = stack.free_port()
    log = tmp_path / "serve.log"
    # A remote model: the cpu worker need not load the local engine's models. At info
    # level, to see the workers say that they are ready, beat queue its upkeep and the API
    # log its requests.
    process = _start(tmp_path / "data", port, log, "--log-level", "info",
                     model_provider="openai", maintenance_interval="PT1S")  # fmt: skip
    try:
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).raise_for_status()
        first = _kill_the_io_worker_and_wait_for_its_restart(process, log)
        deadline = time.monotonic() + 60
        while (
            log.read_text().count("Scheduler: Sending due task") < 2
            or '"GET /healthz HTTP/1.1" 200' not in log.read_text()
        ):
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        assert _io_worker_of(process.pid) not in (None, first)
        assert "serve: worker io exited unexpectedly with code -9" in log.read_text()
        workers = _children_of(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    for pid in workers:
        assert (
            not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
        )
    # Stopping is not mistaken for workers dying.
    assert log.read_text().count("exited unexpectedly") == 1, log.read_text()


def _descendants_of(pid: int) -> list[int]:
    found, frontier = [], [pid]
    while frontier:
        children = [child for parent in frontier for child in _children_of(parent)]
        found.extend(children)
        frontier = children
    return found


def _gone(pid: int) -> bool:
    try:
        return "zombie" in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True


@pytest.mark.timeout(180)
def test_serve_killed_by_sigkill_leaves_no_process_behind(tmp_path: Path) -> None:
    """SIGKILL (or the OOM killer) gives serve no chance to stop its children; they must
    die with it, also a worker it restarted, or a second serve would run two beats."""
    port = stack.free_port()
    log = tmp_path / "serve.log"
    process = _start(tmp_path / "data", port, log, "--log-level", "info", model_provider="openai")
    try:
        # Restarted workers are started by another thread of serve than the first ones.
        _kill_the_io_worker_and_wait_for_its_restart(process, log)
        family = _descendants_of(process.pid)
        commands = [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in family]
        assert any(b"beat" in command for command in commands), commands
        assert len(family) >= 4  # io worker, cpu worker and its pool, beat
    finally:
        process.kill()
        process.wait(30)
    deadline = time.monotonic() + 30
    while not all(_gone(pid) for pid in family):
        left = [pid for pid in family if not _gone(pid)]
        assert time.monotonic() < deadline, f"still running after serve died: {left}"
        time.sleep(0.2)
