"""The one way a command opens a unit of work on the configured database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session, sessionmaker

from core.settings import Settings, get_settings


def session_factory(settings: Settings | None = None) -> sessionmaker[Session]:
    from db.engine import make_engine, make_session_factory

    settings = settings or get_settings()
    return make_session_factory(make_engine(settings.resolved_database_url))


@contextmanager
def command_session() -> Iterator[Session]:
    """A unit of work for one command: committed when the block ends, rolled back on error."""
    from db.engine import unit_of_work

    with unit_of_work(session_factory()) as session:
        yield session
