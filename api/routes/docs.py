"""The API's documentation page at ``/docs`` (Swagger UI), served whole by this server like
the web page, so that it works where no other host can be reached.

Swagger UI's script, style and icon are the files that the ``fastapi-offline`` package ships
in its ``static`` folder (we use the files only, not its app factory). ``swagger-ui-bundle``
was the first choice, but it ships Swagger UI 4, which refuses to render OpenAPI 3.1, the
version FastAPI writes; ``fastapi-offline`` ships Swagger UI 5.

FastAPI's page starts Swagger UI with an inline script, so the Content-Security-Policy allows
that script by its hash, and no other inline script.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, HTTPException, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, Response

ASSETS = Path(fastapi_offline.__file__).resolve().parent / "static"
ASSETS_PATH = "/docs/assets"
# Only the files the page uses, by name.
FILES = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css",
         "favicon.png": "image/png"}  # fmt: skip
INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


def _policy(page: str) -> str:
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"
        for script in INLINE_SCRIPT.findall(page)
    )
    # Swagger UI's stylesheet draws its icons as data: images; "Try it out" calls this API.
    return (
        f"default-src 'none'; script-src 'self' {hashes}; style-src 'self'; "
        "img-src 'self' blob: data:; connect-src 'self'; form-action 'none'; base-uri 'none'; "
        "frame-ancestors 'none'"
    )


@router.get("/docs")
def swagger_ui(request: Request) -> Response:
    # Behind a proxy that mounts the API under a prefix, every URL of the page carries it.
    root = str(request.scope.get("root_path", "")).rstrip("/")
    app = request.app
    page = get_swagger_ui_html(
        openapi_url=f"{root}{app.openapi_url}",
        title=f"{app.title} - Swagger UI",
        swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
        swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
        # The API's keys are bearer tokens: no OAuth2 flow needs a redirect page.
        oauth2_redirect_url=None,
        swagger_ui_parameters=app.swagger_ui_parameters,
    )
    html = bytes(page.body).decode()
    page.headers.update({**HEADERS, "Content-Security-Policy": _policy(html)})
    return page


@router.get(f"{ASSETS_PATH}/{{name}}")
def asset(name: str) -> Response:
    if name not in FILES:
        raise HTTPException(status_code=404)
    return FileResponse(ASSETS / name, media_type=FILES[name], headers=HEADERS)
