"""The schema comes from the migrations alone, and they match the models (alembic check)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, inspect

from db import migrate
from tests.conftest import Stack


def test_migrations_match_the_models_on_postgres(services: Stack) -> None:
    # The session fixture already upgraded this database; check finds no drift.
    migrate.check(services.database_url)


def test_migrations_run_and_match_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'embedded.db'}"
    migrate.upgrade(url)
    migrate.check(url)
    tables = set(inspect(create_engine(url)).get_table_names())
    assert {"accounts", "api_keys", "jobs", "job_items"} <= tables
