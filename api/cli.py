"""The ``imageextract`` command.

It lives in ``api/`` because it is an entry point above every other layer: it starts the
API, starts worker processes (as processes, never by importing tasks), and manages accounts.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from api.supervisor import Supervisor
from core.settings import Settings, get_settings


def _session_factory(settings: Settings):  # type: ignore[no-untyped-def]
    from db.engine import make_engine, make_session_factory

    return make_session_factory(make_engine(settings.resolved_database_url))


@click.group()
def main() -> None:
    """imageextract: images plus a prompt in, structured data out."""


@main.command()
def migrate() -> None:
    """Bring the database schema up to date."""
    from db import migrate as db_migrate

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db_migrate.upgrade(settings.resolved_database_url)
    click.echo("database is up to date")


@main.group()
def accounts() -> None:
    """Manage accounts."""


@accounts.command("create")
@click.argument("name")
@click.option("--credits", "credits_", type=int, default=0, show_default=True)
def accounts_create(name: str, credits_: int) -> None:
    """Create the account NAME."""
    from core import accounts as accounts_service
    from db.engine import unit_of_work

    with unit_of_work(_session_factory(get_settings())) as session:
        account = accounts_service.create_account(session, name, credits_)
    click.echo(f"account {account.name} ({account.id}) created with {credits_} credits")


@main.group()
def keys() -> None:
    """Manage API keys."""


@keys.command("create")
@click.argument("account_name")
def keys_create(account_name: str) -> None:
    """Create an API key for ACCOUNT_NAME; the key is printed once, on the last line."""
    from core import accounts as accounts_service
    from db.engine import unit_of_work

    with unit_of_work(_session_factory(get_settings())) as session:
        new_key = accounts_service.create_key(session, account_name)
    click.echo(f"key {new_key.api_key.id} for {account_name}; store it now, it is not shown again:")
    click.echo(new_key.secret)


@accounts.command("set-rate-limit")
@click.argument("name")
@click.argument("requests_per_minute", type=click.IntRange(min=1))
def accounts_set_rate_limit(name: str, requests_per_minute: int) -> None:
    """Give NAME's keys their own limit of REQUESTS_PER_MINUTE each."""
    from core import accounts as accounts_service
    from db.engine import unit_of_work

    with unit_of_work(_session_factory(get_settings())) as session:
        accounts_service.get_account(session, name).rate_limit_per_minute = requests_per_minute
    click.echo(f"{name}: {requests_per_minute} requests per minute per key")


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke the key KEY_ID (the id printed when it was made); it stops working at once."""
    import uuid

    from core import accounts as accounts_service
    from db.engine import unit_of_work

    try:
        parsed = uuid.UUID(key_id)
    except ValueError as error:
        raise click.BadParameter(f"{key_id!r} is not a key id") from error
    with unit_of_work(_session_factory(get_settings())) as session:
        accounts_service.revoke_key(session, parsed)
    click.echo(f"key {key_id} revoked")


@main.group()
def credits() -> None:
    """Manage credits."""


@credits.command("grant")
@click.argument("account_name")
@click.argument("amount", type=int)
@click.option("--note", default=None, help="Recorded in the ledger.")
def credits_grant(account_name: str, amount: int, note: str | None) -> None:
    """Grant AMOUNT credits to ACCOUNT_NAME."""
    from core import accounts as accounts_service
    from core import credits as credits_service
    from db.engine import unit_of_work

    with unit_of_work(_session_factory(get_settings())) as session:
        account = accounts_service.get_account(session, account_name)
        balance = credits_service.grant(session, account.id, amount, note=note)
    click.echo(f"granted {amount} credits to {account_name}; balance {balance}")


def worker_command(queues: Sequence[str], pool: str, concurrency: int, hostname: str) -> list[str]:
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


@main.command()
def beat() -> None:
    """Run the scheduler that starts periodic work (webhook delivery). Run exactly one."""
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    command = beat_command(settings)
    os.execv(command[0], command)  # noqa: S606 — we built the argument list ourselves


@main.command()
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


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def api(host: str, port: int) -> None:
    """Run the API alone (production: workers run separately)."""
    _run_api(host, port, proxy_headers=True)


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


@main.command()
@click.argument("images", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--prompt", help="What to extract; may hold a JSON template.")
@click.option(
    "--schema", type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A JSON template or JSON Schema file; the prompt asks for it.",
)  # fmt: skip
@click.option("--scene", type=click.Choice(["general", "medical"]), default="general")
@click.option("--json", "json_mode", is_flag=True, help="Output parsed JSON (JSON mode).")
@click.option(
    "--manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help='JSON Lines: {"id"?, "image", "prompt"?} per line.',
)  # fmt: skip
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="default: stdout")
@click.option("--provider", type=click.Choice(["local", "openai"]), default=None,
              help="default: the model_provider setting")  # fmt: skip
def extract(
    images: tuple[Path, ...],
    prompt: str | None,
    schema: Path | None,
    scene: str,
    json_mode: bool,
    manifest: Path | None,
    out: Path | None,
    provider: str | None,
) -> None:
    """Extract from images on disk in this process: one JSON line per image.

    IMAGES are files or folders. Each line: {"id", "image", "output", "usage", "error"}.
    """
    from worker import batch_extract
    from worker.providers.base import Scene
    from worker.providers.registry import create_provider

    settings = get_settings()
    if schema is not None:
        prompt = (
            f"{prompt or 'Extract the information from the image using this schema:'}\n"
            f"{schema.read_text()}"
        )
        json_mode = True
    if manifest is not None:
        try:
            entries = batch_extract.entries_from_manifest(manifest, prompt)
        except ValueError as error:
            raise click.UsageError(str(error)) from error
    elif images:
        if not prompt:
            raise click.UsageError("give --prompt or --schema")
        entries = batch_extract.entries_from_paths(images, prompt)
    else:
        raise click.UsageError("give IMAGES or --manifest")

    if settings.local_engine_threads is None:
        # One process does all the work here, so the engine may use every core.
        settings = settings.model_copy(update={"local_engine_threads": os.cpu_count()})
    model = create_provider(provider or settings.model_provider, settings)
    sink = out.open("w") if out is not None else sys.stdout
    failed = 0
    try:
        records = batch_extract.extract_all(
            model, settings, entries, json_mode=json_mode, scene=Scene(scene)
        )
        show_bar = sys.stderr.isatty() and (out is not None or not sys.stdout.isatty())
        with click.progressbar(
            records, length=len(entries), label="extracting", file=sys.stderr,
            show_pos=True, show_eta=True, hidden=not show_bar,
        ) as bar:  # fmt: skip
            for record in bar:
                failed += record["error"] is not None
                sink.write(json.dumps(record, ensure_ascii=False) + "\n")
                sink.flush()
    finally:
        model.close()
        if out is not None:
            sink.close()
    click.echo(f"{len(entries) - failed} of {len(entries)} images extracted", err=True)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def serve(host: str, port: int) -> None:
    """Run the whole service on this machine: migrations, workers, beat and the API.

    Workers and beat are restarted when they exit (a worker whose broker connection could
    not be re-established exits on purpose); Ctrl-C or SIGTERM stops them all.
    """
    from api import first_run
    from db import migrate as db_migrate

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db_migrate.upgrade(settings.resolved_database_url)
    key = first_run.ensure_local_account(_session_factory(settings))
    sample = first_run.write_sample_receipt(settings.data_dir / "sample-receipt.png")
    base_url = f"http://{host}:{port}"
    click.echo(f"imageextract on {base_url}  (data: {settings.data_dir}, model: "
               f"{settings.model_provider})")  # fmt: skip
    if key is not None:
        click.echo("\nYour API key, shown once (make more: imageextract keys create local):")
        click.echo(f"  {key}\n\nTry it:\n  {first_run.curl_example(base_url, key, sample)}\n")
    else:
        click.echo(f"Sample receipt: {sample}; the key was printed at first start.")
    cores = os.cpu_count() or 1
    # Webhook payloads link to results: unless told otherwise, to where this API listens.
    env = {**os.environ}
    env.setdefault("IMAGEEXTRACT_PUBLIC_BASE_URL", base_url)
    supervisor = Supervisor(env=env, report=lambda line: click.echo(f"serve: {line}", err=True))
    supervisor.start(
        "worker io",
        worker_command(["default", "model"], "threads", settings.worker_threads, "io@%h"),
    )
    supervisor.start("worker cpu", worker_command(["cpu"], "prefork", cores, "cpu@%h"))
    supervisor.start("beat", beat_command(settings))
    # uvicorn re-raises SIGTERM once it has shut down; as an exception it lets the
    # finally below stop the workers, where the default action would kill us first.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        _run_api(host, port)
    finally:
        supervisor.stop()


def run() -> None:
    """Console entry point: our errors become one clear line and exit status 1."""
    from core.errors import ImageExtractError

    try:
        main(standalone_mode=True)
    except ImageExtractError as error:
        click.echo(f"error: {error.message}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    run()
