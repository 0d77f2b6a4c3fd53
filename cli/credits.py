"""``imageextract credits …``."""

from __future__ import annotations

import click

from cli.session import command_session
from core import accounts as accounts_service
from core import credits as credits_service


@click.group()
def credits() -> None:
    """Manage credits."""


@credits.command("grant")
@click.argument("account_name")
@click.argument("amount", type=int)
@click.option("--note", default=None, help="Recorded in the ledger.")
def credits_grant(account_name: str, amount: int, note: str | None) -> None:
    """Grant AMOUNT credits to ACCOUNT_NAME."""
    with command_session() as session:
        account = accounts_service.get_account(session, account_name)
        balance = credits_service.grant(session, account.id, amount, note=note)
    click.echo(f"granted {amount} credits to {account_name}; balance {balance}")
