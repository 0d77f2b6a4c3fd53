"""The HTTP server the API runs in: uvicorn, guarded against hostile and slow clients.

uvicorn's httptools protocol reads a request line and headers of any size (an 8 MB header
was read whole); its h11 protocol caps them but answers a bare 400. Here the bytes of each
request's head are counted as they arrive, and past ``max_header_bytes`` the request is
answered 431 in problem JSON and the connection closed, before the rest is read.

uvicorn also waits forever for a client that connects and sends nothing, or half a request
(its keep-alive timeout runs only between requests), and for one that takes none of a
response: every such connection holds a socket, and a stalled response holds its stream. Here
a request head must arrive within ``request_read_timeout`` of its start and a body may pause
no longer; a response the client takes nothing of for ``response_write_timeout`` is dropped.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import struct
import termios
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.json_body import size_text
from api.problems import PROBLEM_TYPE_BASE
from core.errors import ErrorKind
from core.settings import Settings

# How long a connection whose request was refused for its head is drained before it closes.
LINGER_SECONDS = 2.0


def _refusal(max_header_bytes: int) -> bytes:
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
    return (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
        b"content-type: application/problem+json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n"
        b"connection: close\r\n\r\n" + body
    )


def _unsent_bytes(transport: asyncio.Transport) -> int:
    """Bytes of the response not yet taken by the client: in the transport's buffer and, where
    the system says (Linux), in the socket's send queue, which can hold megabytes."""
    unsent = transport.get_write_buffer_size()
    sock = transport.get_extra_info("socket")
    if sock is not None and hasattr(termios, "TIOCOUTQ"):
        try:
            queued = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4)
        except OSError:
            return unsent
        unsent += int(struct.unpack("i", queued)[0])
    return unsent


def guarded_protocol(settings: Settings) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol, answering 431 to a request head over the limit and
    closing connections whose client stalls while sending a request or taking a response."""
    max_header_bytes = settings.max_header_bytes
    read_timeout = settings.request_read_timeout.total_seconds()
    write_timeout = settings.response_write_timeout.total_seconds()
    response = _refusal(max_header_bytes)

    class GuardedProtocol(HttpToolsProtocol):
        _in_head = True
        _head_bytes = 0
        _refused = False
        # Between a request's head and the end of its body.
        _in_body = False
        _read_timer: asyncio.TimerHandle | None = None
        _write_timer: asyncio.TimerHandle | None = None
        # Bytes waiting to be sent when the write timer was armed.
        _unsent = 0

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_read_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_read_timer()
            if self._write_timer is not None:
                self._write_timer.cancel()
                self._write_timer = None
            super().connection_lost(exc)

        def _arm_read_timer(self) -> None:
            self._cancel_read_timer()
            self._read_timer = self.loop.call_later(read_timeout, self._read_timed_out)

        def _cancel_read_timer(self) -> None:
            if self._read_timer is not None:
                self._read_timer.cancel()
                self._read_timer = None

        def _read_timed_out(self) -> None:
            self._read_timer = None
            if self._in_body and (self.flow.read_paused or self.cycle.waiting_for_100_continue):
                # The body waits on us (the app has not taken what came, or has not asked
                # for the body a client sends after "100 Continue"), not on the client.
                self._arm_read_timer()
                return
            if not self.transport.is_closing():
                part = "body" if self._in_body else "head"
                self.logger.warning(
                    "connection closed: no request %s bytes for %.0f s", part, read_timeout
                )
                self.transport.close()

        def pause_writing(self) -> None:
            super().pause_writing()
            if self._write_timer is None:
                self._arm_write_timer()

        def _arm_write_timer(self) -> None:
            self._unsent = _unsent_bytes(self.transport)
            self._write_timer = self.loop.call_later(write_timeout, self._write_timed_out)

        def resume_writing(self) -> None:
            super().resume_writing()
            if self._write_timer is not None:
                self._write_timer.cancel()
                self._write_timer = None

        def _write_timed_out(self) -> None:
            self._write_timer = None
            if _unsent_bytes(self.transport) < self._unsent:
                # Slow but taking bytes (a large chunk stays over the high-water mark for a
                # while): only a client that takes nothing at all is dropped.
                self._arm_write_timer()
                return
            self.logger.warning(
                "connection dropped: the client took no response bytes for %.0f s", write_timeout
            )
            # close() would wait for the unsent bytes to drain, which is what never happens.
            self.transport.abort()

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return  # the rest of a refused request, read and dropped while we linger
            if self._in_body:
                self._arm_read_timer()  # a body may pause up to the timeout between chunks
            elif self._in_head and self._read_timer is None:
                self._arm_read_timer()  # a new request's head: all of it within the timeout
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
                self._cancel_read_timer()
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
            self._in_head, self._in_body = False, True
            self._arm_read_timer()
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._in_body = False
            self._cancel_read_timer()
            super().on_message_complete()
            self._in_head, self._head_bytes = True, 0

    return GuardedProtocol


def server_config(
    app: Any, settings: Settings, *, host: str, port: int, **options: Any
) -> uvicorn.Config:
    """The uvicorn configuration every way of running the API uses (serve, api, tests)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=guarded_protocol(settings),
        timeout_keep_alive=max(1, round(settings.keep_alive_timeout.total_seconds())),
        # Past this many open connections, new requests are answered 503.
        limit_concurrency=settings.max_connections,
        **options,
    )
