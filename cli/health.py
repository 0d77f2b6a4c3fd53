"""``imageextract health api|worker|beat``: the health checks of the production processes
(docker-compose runs them in each container). Exit 0 when healthy; 1, with the reason on
stderr, when not."""

from __future__ import annotations

import socket
import sys
import time

import click
import httpx

from core.settings import get_settings


def _unhealthy(reason: str) -> None:
    click.echo(f"unhealthy: {reason}", err=True)
    sys.exit(1)


@click.group()
def health() -> None:
    """Health checks of the API, a worker and beat (for docker-compose or systemd)."""


@health.command("api")
@click.option("--url", default="http://127.0.0.1:8000", show_default=True)
@click.option("--timeout", default=5.0, show_default=True)
def api_health(url: str, timeout: float) -> None:
    """The API answers and its database, broker and image storage answer it (/readyz)."""
    try:
        response = httpx.get(f"{url.rstrip('/')}/readyz", timeout=timeout)
    except httpx.HTTPError as error:
        _unhealthy(f"{url}/readyz: {error!r}")
        return
    if response.status_code != 200:
        _unhealthy(f"{url}/readyz answered {response.status_code}: {response.text[:500]}")
    click.echo(f"{url}/readyz: ready")


@health.command("worker")
@click.option("--timeout", default=5.0, show_default=True)
def worker_health(timeout: float) -> None:
    """A worker of this host (io@ or cpu@ this host's name) answers a ping through the
    broker: it is connected and its consumer is running."""
    from core.broker import celery_app

    host = socket.gethostname()
    names = [f"io@{host}", f"cpu@{host}"]
    replies = celery_app.control.ping(destination=names, timeout=timeout)
    if not replies:
        _unhealthy(f"no worker named {' or '.join(names)} answered a ping within {timeout} s")
    click.echo(f"answered: {', '.join(name for reply in replies for name in reply)}")


@health.command("beat")
@click.option("--max-age", default=60.0, show_default=True, help="seconds")
def beat_health(max_age: float) -> None:
    """Beat has ticked within --max-age seconds (it touches a heartbeat file each tick)."""
    path = get_settings().beat_heartbeat_path
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        _unhealthy(f"{path} does not exist: beat has not ticked (is it running here?)")
        return
    if age > max_age:
        _unhealthy(f"beat last ticked {age:.0f} s ago (more than {max_age:.0f} s)")
    click.echo(f"beat ticked {age:.1f} s ago")
