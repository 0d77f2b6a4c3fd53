"""The HTTP server the API runs in: uvicorn, with a cap on the request head.

uvicorn's httptools protocol reads a request line and headers of any size (an 8 MB header
was read whole); its h11 protocol caps them but answers a bare 400. Here the bytes of each
request's head are counted as they arrive, and past ``max_header_bytes`` the request is
answered 431 in problem JSON and the connection closed, before the rest is read.
"""

from __future__ import annotations

import json
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.json_body import size_text
from api.problems import PROBLEM_TYPE_BASE
from core.errors import ErrorKind
from core.settings import Settings

# How long a connection whose request was refused for its head is drained before it closes.
LINGER_SECONDS = 2.0


def head_limited_protocol(max_header_bytes: int) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol, answering 431 to a request head over the limit."""
    kind = ErrorKind.HEADERS_TOO_LARGE
    body = json.dumps(
        {
            "type": PROBLEM_TYPE_BASE + kind.code,
            "title": kind.value.title,
            "status": kind.http_status,
            "detail": f"the request line and headers are over the limit of "
            f"{size_text(max_header_bytes)}",
            "code": kind.code,
            "input": "headers",
            "retryable": False,
        }
    ).encode()
    response = (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
        b"content-type: application/problem+json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n"
        b"connection: close\r\n\r\n" + body
    )

    class HeadLimitedProtocol(HttpToolsProtocol):
        _in_head = True
        _head_bytes = 0
        _refused = False

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return  # the rest of a refused request, read and dropped while we linger
            if not self._in_head:
                super().data_received(data)
                return
            room = max_header_bytes - self._head_bytes
            if len(data) <= room:
                self._head_bytes += len(data)
                super().data_received(data)
                return
            # Feed what fits: a head that ends within the limit goes on as usual.
            self._head_bytes = max_header_bytes
            super().data_received(data[:room])
            if self.transport.is_closing():
                return
            if self._in_head:
                self.logger.warning("request head over %d bytes refused", max_header_bytes)
                self._refused = True
                self.transport.write(response)
                # Closing with unread bytes would send a reset, and the client could lose
                # the answer before reading it: end our side, drop what still comes in a
                # while, then close (a "lingering close", as nginx does).
                if self.transport.can_write_eof():
                    self.transport.write_eof()
                self.loop.call_later(LINGER_SECONDS, self.transport.close)
                return
            self.data_received(data[room:])

        def on_headers_complete(self) -> None:
            self._in_head = False
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._in_head, self._head_bytes = True, 0

    return HeadLimitedProtocol


def server_config(
    app: Any, settings: Settings, *, host: str, port: int, **options: Any
) -> uvicorn.Config:
    """The uvicorn configuration every way of running the API uses (serve, api, tests)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=head_limited_protocol(settings.max_header_bytes),
        **options,
    )
