"""kombu's filesystem transport with messages that appear whole (the embedded broker).

kombu 5.7's ``Channel._put`` creates the message file under its final name, empty, and
writes it afterwards. A worker polling the folder in between moves that empty file away,
fails to decode it (``JSONDecodeError``: "Unrecoverable error") and the message is lost.
Here the message is written under a temporary name that no queue matches, then renamed:
a rename within one folder is atomic, so a reader sees all of a message or none of it.

Its exchange tables (which queues an exchange routes to, in ``control_folder``) have the same
flaw: ``_queue_bind`` creates the file empty and locks it afterwards, so a process starting
beside it (serve starts the API and three workers at once) can read an empty table and fail
with a ``JSONDecodeError`` (and a process killed in between leaves it empty for good). Here
binders take turns on a lock file of their own, the new table replaces the old by a rename,
and an empty table reads as no bindings.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    # kombu's own classes disagree on this signature; this one is the filesystem Channel's.
    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        folder = self.data_folder_out
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        # kombu picks a queue's messages by what follows the first dot: "tmp" is no queue.
        temporary = os.path.join(folder, f"{uuid.uuid4().hex}.tmp")
        try:
            with open(temporary, "wb") as handle:
                handle.write(dumps(payload).encode())
            os.replace(temporary, os.path.join(folder, name))
        except OSError as error:
            raise ChannelError(f"Cannot add file {name!r} to directory {folder!r}") from error

    def get_table(self, exchange: Any) -> Any:
        # An empty table is one a kombu process was killed while creating: no bindings.
        try:
            return super().get_table(exchange)
        except ValueError:
            if self._exchange_file(exchange).stat().st_size == 0:
                return []
            raise

    def _queue_bind(self, exchange: Any, routing_key: Any, pattern: Any, queue: Any) -> None:
        table = self._exchange_file(exchange)
        self.control_folder.mkdir(exist_ok=True)
        entry = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        try:
            with open(table.with_suffix(".lock"), "ab") as guard:
                filesystem.lock(guard, filesystem.LOCK_EX)
                try:
                    queues = list(self.get_table(exchange))
                    if entry not in queues:
                        queues.insert(0, entry)
                        temporary = self.control_folder / f"{uuid.uuid4().hex}.tmp"
                        temporary.write_bytes(dumps(queues).encode())
                        os.replace(temporary, table)
                finally:
                    filesystem.unlock(guard)
        except OSError as error:
            raise ChannelError(f"Cannot open {table}") from error


class Transport(filesystem.Transport):
    Channel = Channel

    @property
    def default_connection_params(self) -> dict[str, Any]:
        # Folders have no host. kombu's default of "localhost" has every connection warn
        # "No hostname was supplied", the only line a quiet worker printed.
        return {}


# For Celery's ``broker_transport`` setting.
TRANSPORT = f"{__name__}:Transport"
