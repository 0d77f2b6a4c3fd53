"""``imageextract accounts …`` and ``imageextract keys …``."""

from __future__ import annotations

import uuid

import click

from cli.session import command_session
from core import accounts as accounts_service


@click.group()
def accounts() -> None:
    """Manage accounts."""


@accounts.command("create")
@click.argument("name")
@click.option("--credits", "credits_", type=int, default=0, show_default=True)
def accounts_create(name: str, credits_: int) -> None:
    """Create the account NAME."""
    with command_session() as session:
        account = accounts_service.create_account(session, name, credits_)
    click.echo(f"account {account.name} ({account.id}) created with {credits_} credits")


@accounts.command("set-rate-limit")
@click.argument("name")
@click.argument("requests_per_minute", type=click.IntRange(min=1))
def accounts_set_rate_limit(name: str, requests_per_minute: int) -> None:
    """Give NAME's keys their own limit of REQUESTS_PER_MINUTE each."""
    with command_session() as session:
        accounts_service.set_rate_limit(session, name, requests_per_minute)
    click.echo(f"{name}: {requests_per_minute} requests per minute per key")


@accounts.command("set-max-in-flight")
@click.argument("name")
@click.argument("images", type=click.IntRange(min=0))
def accounts_set_max_in_flight(name: str, images: int) -> None:
    """Let at most IMAGES of NAME's images be on the model at once (0: no cap)."""
    with command_session() as session:
        accounts_service.set_max_in_flight(session, name, images or None)
    click.echo(f"{name}: " + (f"at most {images} images in flight" if images else "no cap"))


@click.group()
def keys() -> None:
    """Manage API keys."""


@keys.command("create")
@click.argument("account_name")
def keys_create(account_name: str) -> None:
    """Create an API key for ACCOUNT_NAME; the key is printed once, on the last line."""
    with command_session() as session:
        new_key = accounts_service.create_key(session, account_name)
    click.echo(f"key {new_key.api_key.id} for {account_name}; store it now, it is not shown again:")
    click.echo(new_key.secret)


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke the key KEY_ID (the id printed when it was made); it stops working at once."""
    try:
        parsed = uuid.UUID(key_id)
    except ValueError as error:
        raise click.BadParameter(f"{key_id!r} is not a key id") from error
    with command_session() as session:
        accounts_service.revoke_key(session, parsed)
    click.echo(f"key {key_id} revoked")
