"""The consumer watchdog: a worker that cannot consume exits, for its supervisor to restart it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import stack
from tests.conftest import ROOT
from worker.consumer_watchdog import EXIT_CODE


@pytest.mark.timeout(60)
def test_a_worker_whose_broker_is_gone_exits_and_an_idle_one_does_not(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    with stack.redis(tmp_path / "redis") as broker_url:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("IMAGEEXTRACT_")},
            "IMAGEEXTRACT_BROKER_URL": broker_url,
            "IMAGEEXTRACT_DATA_DIR": str(tmp_path / "data"),
            "IMAGEEXTRACT_MODEL_PROVIDER": "openai",
            "IMAGEEXTRACT_CONSUMER_STALL_TIMEOUT": "PT2S",
        }
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker",
             "--queues", "default,model", "--pool", "threads", "--concurrency", "2",
             "--hostname", "watched@%h", "--loglevel", "INFO", "--without-gossip",
             "--without-mingle"],
            cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while " ready." not in log.read_text(errors="replace"):
                assert worker.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            # Connected and idle for twice the limit: nothing to consume is not a stall.
            try:
                worker.wait(4)
            except subprocess.TimeoutExpired:
                pass
            assert worker.poll() is None, log.read_text()
        except BaseException:
            worker.kill()
            raise
    # Redis is gone for good: Celery would retry the connection for many minutes.
    try:
        code = worker.wait(15)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert code == EXIT_CODE, log.read_text()
    assert "consumer watchdog: not consuming from the broker" in log.read_text()
