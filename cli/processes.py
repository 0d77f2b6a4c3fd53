"""``imageextract worker`` and ``imageextract beat``: the Celery processes, and the command
lines everything else (``serve``, the tests, the benchmarks) starts them with."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import click

from core.settings import Settings, get_settings


def worker_command(queues: Sequence[str], pool: str, concurrency: int, hostname: str) -> list[str]:
    """The command line of a Celery worker; `worker`, `serve`, the tests and the
    benchmarks all start workers with it."""
    return [
        sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker",
        "--queues", ",".join(queues), "--pool", pool, "--concurrency", str(concurrency),
        "--hostname", hostname, "--loglevel", "INFO", "--without-gossip", "--without-mingle",
    ]  # fmt: skip


def beat_command(settings: Settings) -> list[str]:
    # Beat keeps its last run times in this file; under the data dir it survives restarts.
    return [
        sys.executable, "-m", "celery", "-A", "worker.celery_app", "beat", "--loglevel", "INFO",
        "--schedule", str(settings.data_dir / "celerybeat-schedule"),
    ]  # fmt: skip


@click.command()
def beat() -> None:
    """Run the scheduler that starts periodic work (webhook delivery). Run exactly one."""
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    command = beat_command(settings)
    os.execv(command[0], command)  # noqa: S606 — we built the argument list ourselves


@click.command()
@click.option("--queues", default="default,model", show_default=True)
@click.option("--pool", type=click.Choice(["threads", "prefork", "solo"]), default="threads")
@click.option(
    "--concurrency",
    type=int,
    default=None,
    help="Celery threads or processes; default: threads enough for model_concurrency model "
    "calls in flight, one process per core for prefork",
)
def worker(queues: str, pool: str, concurrency: int | None) -> None:
    """Run a worker. Threads for the model queue (many calls in flight), prefork for cpu."""
    settings = get_settings()
    if concurrency is None:
        concurrency = settings.worker_threads if pool == "threads" else (os.cpu_count() or 1)
    name = "io@%h" if pool == "threads" else "cpu@%h"
    command = worker_command(queues.split(","), pool, concurrency, name)
    os.execv(command[0], command)  # noqa: S606 — we built the argument list ourselves
