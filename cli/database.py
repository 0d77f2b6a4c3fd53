"""``imageextract migrate``."""

from __future__ import annotations

import click

from core.settings import get_settings


@click.command()
def migrate() -> None:
    """Bring the database schema up to date."""
    from db import migrate as db_migrate

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db_migrate.upgrade(settings.resolved_database_url)
    click.echo("database is up to date")
