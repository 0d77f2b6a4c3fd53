"""The imageextract command: accounts and keys."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from typing import Any

import httpx
from sqlalchemy import select

from tests.conftest import Stack


def _cli(services: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        env={**os.environ, **services.env},
        capture_output=True,
        text=True,
        check=False,
    )


def test_accounts_and_keys_are_created_and_only_a_hash_is_stored(
    services: Stack, session_factory: Any, api_url: str
) -> None:
    from db.models import ApiKey

    created = _cli(services, "accounts", "create", "northwind", "--credits", "500")
    assert created.returncode == 0, created.stderr
    assert "northwind" in created.stdout

    made = _cli(services, "keys", "create", "northwind")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]
    assert key.startswith("iek_")
    assert len(key) > 40

    with session_factory() as session:
        stored = session.scalars(select(ApiKey)).all()
    assert [row.key_hash for row in stored] == [hashlib.sha256(key.encode()).hexdigest()]
    assert key not in {row.prefix for row in stored}

    response = httpx.get(f"{api_url}/v1/jobs/00000000-0000-0000-0000-000000000000",
                         headers={"Authorization": f"Bearer {key}"})  # fmt: skip
    assert response.status_code == 404


def test_duplicate_account_and_unknown_account_are_clear_errors(services: Stack) -> None:
    assert _cli(services, "accounts", "create", "dup").returncode == 0
    again = _cli(services, "accounts", "create", "dup")
    assert again.returncode != 0
    assert "already exists" in again.stderr
    missing = _cli(services, "keys", "create", "nobody")
    assert missing.returncode != 0
    assert "no account named 'nobody'" in missing.stderr
