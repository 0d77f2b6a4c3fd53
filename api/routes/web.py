"""The web page at ``/``: sign in with a key, try a template on an image, watch jobs, see
where each value came from; the account's balance, ledger, keys and webhooks.

Plain files in ``api/web`` (HTML, CSS and one script, no build step and no request to any
other host), served with a Content-Security-Policy that lets the page load only its own
script and style and talk only to this API.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, Response

WEB = Path(__file__).resolve().parent.parent / "web"
# Only files of the page itself, by name.
FILES = {"app.js": "text/javascript", "app.css": "text/css", "favicon.svg": "image/svg+xml"}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


@router.get("/")
def page() -> Response:
    return FileResponse(WEB / "index.html", media_type="text/html; charset=utf-8",
                        headers=HEADERS)  # fmt: skip


@router.get("/web/{name}")
def asset(name: str) -> Response:
    if name not in FILES:
        raise HTTPException(status_code=404)
    return FileResponse(WEB / name, media_type=FILES[name], headers=HEADERS)
