"""``imageextract api`` (the API alone) and ``imageextract serve`` (the whole service on
this machine)."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import click

from cli.processes import beat_command, log_level_option, worker_command
from cli.session import session_factory
from cli.supervisor import Supervisor
from core.settings import get_settings


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def api(host: str, port: int) -> None:
    """Run the API alone (production: workers run separately)."""
    require_storage()
    _run_api(host, port, proxy_headers=True)


def require_storage() -> str:
    """Exit with the reason when image storage does not answer (a store that is down, a
    missing bucket, wrong credentials): better now than on the first upload."""
    from core.errors import StorageUnavailable
    from core.storage import check_store

    try:
        return check_store(get_settings())
    except (StorageUnavailable, ValueError) as error:
        click.echo(f"error: {getattr(error, 'message', error)}", err=True)
        sys.exit(1)


def _run_api(host: str, port: int, **options: Any) -> None:
    """uvicorn.run, with the server configuration of api.http_server (request head cap)."""
    import uvicorn

    from api.http_server import server_config

    server = uvicorn.Server(
        server_config("api.asgi:app", get_settings(), host=host, port=port, **options)
    )
    server.run()
    if not server.started:
        sys.exit(3)  # what uvicorn.run exits with when the server could not start


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@log_level_option("warning")
def serve(host: str, port: int, log_level: str) -> None:
    """Run the whole service on this machine: migrations, workers, beat and the API.

    Workers and beat are restarted when they exit (a worker whose broker connection could
    not be re-established exits on purpose); Ctrl-C or SIGTERM stops them all. They and
    the API print problems only unless --log-level says more, so that what serve says at
    start (the API key, the first time) stays on screen.
    """
    from cli import first_run
    from db import migrate as db_migrate

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    storage = require_storage()
    db_migrate.upgrade(settings.resolved_database_url)
    key = first_run.ensure_local_account(session_factory(settings))
    key_file = settings.data_dir / first_run.KEY_FILE
    sample = first_run.write_sample_receipt(settings.data_dir / "sample-receipt.png")
    base_url = f"http://{host}:{port}"
    click.echo(f"imageextract on {base_url}  (data: {settings.data_dir}, images: {storage}, "
               f"model: {settings.model_provider})")  # fmt: skip
    if key is not None:
        click.echo("\nYour API key (make more: imageextract keys create local):")
        click.echo(f"  {key}")
        try:
            first_run.save_key(key_file, key)
        except OSError as error:
            # The account exists now: a key not saved must at least have been printed.
            click.echo(f"Not saved ({error}): copy it now, it is not shown again.")
        else:
            click.echo(f"Saved in {key_file} (readable only by you).")
        click.echo(f"\nTry it:\n  {first_run.curl_example(base_url, key, sample)}\n")
        click.echo(f"Or open {base_url}/ in a browser and sign in with the key.\n")
    else:
        kept = f" and is in {key_file}" if key_file.exists() else ""
        click.echo(f"Sample receipt: {sample}; the key was printed at first start{kept}.")
        click.echo(f"The web page: {base_url}/")
    cores = os.cpu_count() or 1
    # Webhook payloads link to results: unless told otherwise, to where this API listens.
    env = {**os.environ}
    env.setdefault("IMAGEEXTRACT_PUBLIC_BASE_URL", base_url)
    supervisor = Supervisor(env=env, report=lambda line: click.echo(f"serve: {line}", err=True))
    supervisor.start(
        "worker io",
        worker_command(
            ["default", "model"], "threads", settings.worker_threads, "io@%h", log_level
        ),
    )
    supervisor.start("worker cpu", worker_command(["cpu"], "prefork", cores, "cpu@%h", log_level))
    supervisor.start("beat", beat_command(settings, log_level))
    # uvicorn re-raises SIGTERM once it has shut down; as an exception it lets the
    # finally below stop the workers, where the default action would kill us first.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        # uvicorn's access log is at INFO too: one line per request unless asked for.
        _run_api(host, port, log_level=log_level)
    finally:
        supervisor.stop()
