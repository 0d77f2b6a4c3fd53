"""The ``imageextract`` command group, gathered from one module per command group."""

from __future__ import annotations

import sys

import click

from cli import accounts, credits, database, extract, health, processes, server, submit


@click.group()
def main() -> None:
    """imageextract: images plus a prompt in, structured data out."""


main.add_command(database.migrate)
main.add_command(accounts.accounts)
main.add_command(accounts.keys)
main.add_command(credits.credits)
main.add_command(processes.worker)
main.add_command(processes.beat)
main.add_command(server.api)
main.add_command(server.serve)
main.add_command(extract.extract)
main.add_command(submit.submit)
main.add_command(submit.jobs)
main.add_command(health.health)


def run() -> None:
    """Console entry point: our errors, and settings that cannot be read, become one clear
    line and exit status 1."""
    from pydantic_settings import SettingsError

    from core.errors import ImageExtractError

    try:
        main(standalone_mode=True)
    except ImageExtractError as error:
        click.echo(f"error: {error.message}", err=True)
        sys.exit(1)
    except SettingsError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    run()
