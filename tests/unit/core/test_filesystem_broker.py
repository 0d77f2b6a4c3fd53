"""The embedded broker hands over whole messages while another process writes them."""

from __future__ import annotations

import threading
from pathlib import Path

from kombu.connection import Connection

from core.filesystem_broker import TRANSPORT

MESSAGES = 2000


def _connection(folder: Path, transport: str) -> Connection:
    # kombu is untyped. control_folder: without it kombu writes its exchange table into
    # ./control of wherever the tests run.
    return Connection(  # type: ignore[no-untyped-call]
        "filesystem://",
        transport=transport,
        transport_options={"data_folder_in": str(folder), "data_folder_out": str(folder),
                           "control_folder": str(folder / "control"), "polling_interval": 0.001},
    )  # fmt: skip


def test_a_reader_polling_while_messages_are_written_gets_every_one_whole(tmp_path: Path) -> None:
    # kombu's own filesystem transport fails this: the reader takes a message file that
    # was created but not yet written.
    transport = TRANSPORT
    received: list[int] = []
    errors: list[BaseException] = []

    def read() -> None:
        with _connection(tmp_path, transport) as connection:
            queue = connection.SimpleQueue("jobs")
            try:
                while len(received) < MESSAGES:
                    message = queue.get(timeout=30)
                    received.append(message.payload["n"])
                    message.ack()
            except BaseException as error:  # a message read half-written fails to decode
                errors.append(error)

    reader = threading.Thread(target=read)
    reader.start()
    with _connection(tmp_path, transport) as connection:
        queue = connection.SimpleQueue("jobs")
        for n in range(MESSAGES):
            queue.put({"n": n, "padding": "x" * 2000})
    reader.join(60)
    assert errors == []
    assert sorted(received) == list(range(MESSAGES))
