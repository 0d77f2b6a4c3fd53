"""How the batch commands (``submit``, ``extract``) end, so that a script can tell: 0 when
every image succeeded, 2 when some or all failed (a summary on stderr), 1 on an error (a
bad option, a server or provider that refused the run)."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Sequence
from typing import Any, NoReturn

import click

SUCCEEDED = 0
ERROR = 1
SOME_FAILED = 2


class UsageError(click.UsageError):
    """A usage error exits 1 here, as every error does: 2 means that some images failed."""

    exit_code = ERROR


class Command(click.Command):
    """Options that do not parse (click's usage errors, which exit 2) exit 1 as well."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as error:
            raise UsageError(error.message, error.ctx) from error


def echo_failures(failures: Sequence[tuple[str, str, str]]) -> None:
    """The failed images on stderr, ``(id, error code, message)`` each: a count per code,
    then one line per image."""
    if not failures:
        return
    by_code = Counter(code for _id, code, _message in failures)
    click.echo("failed: " + ", ".join(f"{n} {code}" for code, n in by_code.most_common()),
               err=True)  # fmt: skip
    for entry_id, code, message in failures:
        click.echo(f"  {entry_id}: {code}: {message}", err=True)


def exit_for(failed: bool) -> NoReturn:
    sys.exit(SOME_FAILED if failed else SUCCEEDED)
