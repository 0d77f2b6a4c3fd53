"""What ``imageextract serve`` does the first time: a local account, its key, a sample
receipt, and a curl command that works as printed."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont
from sqlalchemy.orm import Session, sessionmaker

from core import accounts as accounts_service
from db import accounts as accounts_repository
from db.engine import unit_of_work

LOCAL_ACCOUNT = "local"
KEY_FILE = "api-key"
LOCAL_CREDITS = 1_000_000
SAMPLE_PROMPT = (
    'Extract {"company": "Company name", "date": "Date", "address": "Address", '
    '"total": "Total amount"}'
)
_SAMPLE_LINES = [
    ("SUNRISE STATIONERY SDN BHD", 34),
    ("12 JALAN MERDEKA, TAMAN MAJU,", 26),
    ("50050 KUALA LUMPUR", 26),
    ("TEL: 03-2345 6789", 26),
    ("", 26),
    ("INVOICE NO: INV-1042", 26),
    ("DATE: 21/11/2026  10:42", 26),
    ("", 26),
    ("PEN BLUE 2 X 2.00        4.00", 26),
    ("A5 NOTEBOOK 1 X 7.50     7.50", 26),
    ("", 26),
    ("TOTAL                   11.50", 30),
    ("CASH                    20.00", 26),
    ("CHANGE                   8.50", 26),
]


def ensure_local_account(factory: sessionmaker[Session]) -> str | None:
    """Create the local account and a key on first start; the key is returned only then."""
    with unit_of_work(factory) as session:
        if accounts_repository.get_account_by_name(session, LOCAL_ACCOUNT) is not None:
            return None
        accounts_service.create_account(session, LOCAL_ACCOUNT, LOCAL_CREDITS)
        return accounts_service.create_key(session, LOCAL_ACCOUNT).secret


def save_key(path: Path, key: str) -> None:
    """Write the key to ``path``, readable and writable by its owner only.

    The file is created with mode 0600 (a new file under another name, then renamed over
    ``path``), so the key is never in a file others can read, not even for a moment, and a
    file left by an earlier data dir, whatever its mode, is replaced rather than reused.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.unlink(missing_ok=True)  # left by a crash of an earlier process of this pid
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(descriptor, "w") as stream:
            stream.write(key + "\n")
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_sample_receipt(path: Path) -> Path:
    if path.exists():
        return path
    image = Image.new("L", (720, 40 + 48 * len(_SAMPLE_LINES)), 255)
    draw = ImageDraw.Draw(image)
    y = 30
    for text, size in _SAMPLE_LINES:
        draw.text((40, y), text, fill=0, font=ImageFont.load_default(size=size))
        y += 48
    image.save(path)
    return path


def curl_example(base_url: str, key: str, sample: Path) -> str:
    return " \\\n    ".join(
        [
            f"curl -s '{base_url}/v1/jobs?wait=60'",
            f"-H 'Authorization: Bearer {key}'",
            f"-F images=@{shlex.quote(str(sample))}",
            f"-F {shlex.quote('prompt=' + SAMPLE_PROMPT)}",
            "-F json_mode=true",
        ]
    )
