"""``imageextract worker`` and ``imageextract beat``: the Celery processes, and the command
lines everything else (``serve``, the tests, the benchmarks) starts them with."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

import click

from core.settings import Settings, get_settings

FC = TypeVar("FC", bound=Callable[..., object])
LOG_LEVELS = ("debug", "info", "warning", "error")


def log_level_option(default: str) -> Callable[[FC], FC]:
    """``--log-level``, the same on every command that starts Celery or uvicorn."""
    return click.option(
        "--log-level", type=click.Choice(LOG_LEVELS, case_sensitive=False), default=default,
        show_default=True, help="How much to print: warning and error, problems only; info "
        "adds every task, beat tick and request; debug, more still.",
    )  # fmt: skip


def _celery_options(log_level: str) -> list[str]:
    # --quiet drops the start-up banners (the configuration, the task list): at warning
    # and above they are as unwanted as the INFO lines.
    quiet = ["--quiet"] if log_level.lower() in ("warning", "error") else []
    return [*quiet, "-A", "worker.celery_app"]


def worker_command(
    queues: Sequence[str], pool: str, concurrency: int, hostname: str, log_level: str = "info"
) -> list[str]:
    """The command line of a Celery worker; `worker`, `serve`, the tests and the
    benchmarks all start workers with it."""
    return [
        sys.executable, "-m", "celery", *_celery_options(log_level), "worker",
        "--queues", ",".join(queues), "--pool", pool, "--concurrency", str(concurrency),
        "--hostname", hostname, "--loglevel", log_level.upper(), "--without-gossip",
        "--without-mingle",
    ]  # fmt: skip


def beat_command(settings: Settings, log_level: str = "info") -> list[str]:
    # Beat keeps its last run times in this file; under the data dir it survives restarts.
    return [
        sys.executable, "-m", "celery", *_celery_options(log_level), "beat",
        "--loglevel", log_level.upper(),
        "--schedule", str(settings.data_dir / "celerybeat-schedule"),
    ]  # fmt: skip


@click.command()
@log_level_option("info")
def beat(log_level: str) -> None:
    """Run the scheduler that starts periodic work (webhook delivery). Run exactly one."""
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    command = beat_command(settings, log_level)
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
@log_level_option("info")
def worker(queues: str, pool: str, concurrency: int | None, log_level: str) -> None:
    """Run a worker. Threads for the model queue (many calls in flight), prefork for cpu."""
    settings = get_settings()
    if concurrency is None:
        concurrency = settings.worker_threads if pool == "threads" else (os.cpu_count() or 1)
    name = "io@%h" if pool == "threads" else "cpu@%h"
    command = worker_command(queues.split(","), pool, concurrency, name, log_level)
    os.execv(command[0], command)  # noqa: S606 — we built the argument list ourselves
