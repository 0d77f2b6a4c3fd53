"""Which image a free model thread takes next: priority, then fair share across accounts,
then within an account. The fake model holds every call at its door; releasing one frees
one model thread, and the next call that arrives is the image the claim chose."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, Caller, Stack, wait_for_job
from tests.sample_images import png_for, size_for

# Once, with images in a folder: the order of claims does not depend on the image store.
pytestmark = pytest.mark.one_store

# Images 0..299 are 16-115 x 16-18 pixels; these stand apart (height 25, 26).
MARKED = (980, 1080)


def _arrivals(services: Stack) -> list[tuple[int, int]]:
    stats = httpx.get(f"{services.model_url}/_stats", timeout=5).json()
    return [(int(size[0]), int(size[1])) for size in stats["arrivals"]]


def _wait_for_arrivals(services: Stack, count: int, timeout: float = 30) -> list[tuple[int, int]]:
    deadline = time.monotonic() + timeout
    while len(arrivals := _arrivals(services)) < count:
        assert time.monotonic() < deadline, f"{len(arrivals)} calls arrived, waited for {count}"
        time.sleep(0.02)
    return arrivals


def _submit(caller: Caller, indexes: range | list[int], **fields: str) -> str:
    files = [("images", (f"{i}.png", png_for(i), "image/png")) for i in indexes]
    response = caller.client.post("/v1/jobs", files=files, data={"prompt": "Read", **fields})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def _held_with_a_full_house(
    caller: Caller, services: Stack, fake_model: Callable[..., Any], count: int = 300, **fields: str
) -> tuple[str, set[tuple[int, int]]]:
    """Hold the model, submit ``count`` images: every model thread ends up waiting at the
    door. Returns the job and the images that wait there (by size).

    Settled means: every image the job has running has reached the model (none is still
    being claimed or read from storage), and that stays so for a moment. Images are told
    apart by size: a call the client retried after its timeout arrives twice.
    """
    fake_model(hold=1)
    job_id = _submit(caller, range(count), **fields)
    _wait_for_arrivals(services, 8)
    deadline, settled_since = time.monotonic() + 20, None
    waiting: set[tuple[int, int]] = set()
    while settled_since is None or time.monotonic() - settled_since < 0.3:
        running = caller.client.get(f"/v1/jobs/{job_id}").json()["counts"]["running"]
        now_waiting = set(_arrivals(services))
        assert time.monotonic() < deadline, (running, sorted(now_waiting))
        if len(now_waiting) == running and now_waiting == waiting:
            settled_since = settled_since or time.monotonic()
        else:
            settled_since, waiting = None, now_waiting
        time.sleep(0.05)
    assert len(waiting) >= 8
    return job_id, waiting


def _release_one_and_see_next(
    services: Stack, fake_model: Callable[..., Any], seen: set[tuple[int, int]]
) -> tuple[int, int]:
    """Let one held call through; the next image to reach the model (not one seen before,
    nor a retry of one), which joins ``seen``."""
    fake_model(release=1)
    deadline = time.monotonic() + 30
    while True:
        new = [size for size in _arrivals(services) if size not in seen]
        if new:
            seen.add(new[0])
            return new[0]
        assert time.monotonic() < deadline, "no new image reached the model"
        time.sleep(0.02)


def test_a_single_image_goes_before_a_running_batch_of_another_account(
    make_caller: Callable[..., Caller],
    worker_process: Path,
    services: Stack,
    fake_model: Callable[..., Any],
) -> None:
    batch, single = make_caller("nightly"), make_caller("app")
    _, seen = _held_with_a_full_house(batch, services, fake_model)
    app_job = _submit(single, [MARKED[0]])
    time.sleep(0.3)  # its tokens sit behind the batch's in the queue
    assert _release_one_and_see_next(services, fake_model, seen) == size_for(MARKED[0])
    fake_model(hold=0)
    assert wait_for_job(single.client, app_job)["status"] == "succeeded"


def test_priority_goes_before_fair_share(
    make_caller: Callable[..., Caller],
    worker_process: Path,
    services: Stack,
    fake_model: Callable[..., Any],
) -> None:
    """An interactive job of the busy account goes first; a batch job of an idle account
    waits behind normal work, though its account has nothing in flight."""
    busy, idle = make_caller("busy"), make_caller("idle")
    _, seen = _held_with_a_full_house(busy, services, fake_model)
    _submit(idle, [MARKED[1]], priority="batch")
    _submit(busy, [MARKED[0]], priority="interactive")
    time.sleep(0.3)
    assert _release_one_and_see_next(services, fake_model, seen) == size_for(MARKED[0])
    after = _release_one_and_see_next(services, fake_model, seen)
    assert after != size_for(MARKED[1])  # still the busy account's normal job
    assert after[1] < 25


def test_fair_share_serves_the_account_with_fewer_images_in_flight(
    make_caller: Callable[..., Caller],
    worker_process: Path,
    services: Stack,
    fake_model: Callable[..., Any],
) -> None:
    first, second = make_caller("first"), make_caller("second")
    _, seen = _held_with_a_full_house(first, services, fake_model)
    _submit(second, [1000 + i for i in range(20)])  # heights 26: the second account's
    time.sleep(0.3)
    nexts = [_release_one_and_see_next(services, fake_model, seen)[1] for _ in range(8)]
    # The second account has none in flight against the first's full house: it gets each
    # thread that frees up.
    assert nexts == [26] * 8


def test_within_an_account_the_job_with_fewer_in_flight_goes_first(
    caller: Caller, services: Stack, fake_model: Callable[..., Any]
) -> None:
    _, seen = _held_with_a_full_house(caller, services, fake_model)
    _submit(caller, [MARKED[0]])
    time.sleep(0.3)
    assert _release_one_and_see_next(services, fake_model, seen) == size_for(MARKED[0])


def test_a_job_shows_its_priority_and_the_images_ahead_of_it(
    caller: Caller, services: Stack, fake_model: Callable[..., Any]
) -> None:
    first, seen = _held_with_a_full_house(caller, services, fake_model, count=100)
    later = _submit(caller, range(5))
    job = caller.client.get(f"/v1/jobs/{later}").json()
    assert job["priority"] == "normal"
    # The account's older job of the same priority runs first: its images still waiting.
    assert job["images_ahead"] == 100 - len(seen)
    urgent = _submit(caller, range(3), priority="interactive")
    assert caller.client.get(f"/v1/jobs/{urgent}").json()["images_ahead"] == 0
    fake_model(hold=0)
    assert wait_for_job(caller.client, first)["images_ahead"] is None


@pytest.fixture
def three_more_workers(services: Stack, settings: Any, tmp_path: Path) -> Iterator[None]:
    from cli.processes import worker_command

    processes = []
    for number in range(3):
        log = tmp_path / f"worker{number}.log"
        command = worker_command(["model"], "threads", settings.worker_threads, f"extra{number}@%h")
        processes.append(
            subprocess.Popen(
                command,
                cwd=ROOT,
                env={**os.environ, **services.env},
                stdout=log.open("w"),
                stderr=subprocess.STDOUT,
            )
        )
    for number in range(3):
        log = tmp_path / f"worker{number}.log"
        deadline = time.monotonic() + 60
        while "ready." not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.1)
    yield
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()


def test_an_account_cap_holds_across_four_workers(
    caller: Caller,
    services: Stack,
    fake_model: Callable[..., Any],
    three_more_workers: None,
) -> None:
    subprocess.run(
        [sys.executable, "-m", "cli", "accounts", "set-max-in-flight", caller.name, "3"],
        env={**os.environ, **services.env}, check=True, capture_output=True,
    )  # fmt: skip
    fake_model(latency=0.2)
    job_id = _submit(caller, range(60))
    job = wait_for_job(caller.client, job_id)
    assert job["status"] == "succeeded"
    stats = httpx.get(f"{services.model_url}/_stats", timeout=5).json()
    assert stats["max_in_flight"] == 3


def test_cli_sets_and_clears_the_cap(caller: Caller, services: Stack) -> None:
    env = {**os.environ, **services.env}
    done = subprocess.run(
        [sys.executable, "-m", "cli", "accounts", "set-max-in-flight", caller.name, "0"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "no cap" in done.stdout
