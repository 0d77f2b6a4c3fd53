"""The embedded broker hands over whole messages while another process writes them."""

from __future__ import annotations

import json
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

    bound = threading.Event()

    def read() -> None:
        with _connection(tmp_path, transport) as connection:
            queue = connection.SimpleQueue("jobs")
            bound.set()
            try:
                while len(received) < MESSAGES:
                    message = queue.get(timeout=30)
                    received.append(message.payload["n"])
                    message.ack()
            except BaseException as error:  # a message read half-written fails to decode
                errors.append(error)

    reader = threading.Thread(target=read)
    reader.start()
    # Both connections share kombu's in-process broker state: a binding declared by the
    # reader counts for the writer before the reader has written the exchange table, and
    # the writer's first messages would have no route. (Processes do not share it.)
    bound.wait(30)
    with _connection(tmp_path, transport) as connection:
        queue = connection.SimpleQueue("jobs")
        for n in range(MESSAGES):
            queue.put({"n": n, "padding": "x" * 2000})
    reader.join(60)
    assert errors == []
    assert sorted(received) == list(range(MESSAGES))


def test_an_exchange_table_left_empty_does_not_stop_the_broker(tmp_path: Path) -> None:
    """kombu's own transport creates an exchange table empty and fills it after: a process
    killed in between (or one reading at that moment) leaves or sees an empty table, and
    every later bind and publish fails with a JSONDecodeError. Ours writes tables whole
    and takes an empty one as no bindings."""
    (tmp_path / "control").mkdir()
    # A name of its own: kombu remembers bindings per process, across connections.
    (tmp_path / "control" / "left-empty.exchange").write_bytes(b"")
    with _connection(tmp_path, TRANSPORT) as connection:
        queue = connection.SimpleQueue("left-empty")
        queue.put({"n": 1})
        assert queue.get(timeout=5).payload == {"n": 1}
    table = json.loads((tmp_path / "control" / "left-empty.exchange").read_text())
    assert [entry[2] for entry in table] == ["left-empty"]
