"""Exit a worker whose consumer has stopped consuming, so that its supervisor restarts it.

Why: after a Redis restart, Celery 5.7 / kombu 5.7 can fail to re-establish the consumer
(kombu/connection.py and kombu/transport/redis.py in 5.7.0). When the connection loss is
first seen on the pidbox subscription, a BRPOP is still pending;
``Consumer.on_connection_error_after_connected`` calls
``Connection.collect()``, whose channel close fails reading that BRPOP and leaves the
channel open, and then detaches the transport from the connection (``client = None``). The
``connection.close()`` that follows closes the channel again, and restoring its unacked
messages builds a Redis client from the detached transport: ``AttributeError: 'NoneType'
object has no attribute 'hostname'`` escapes the reconnect logic and the worker stops. No
Celery or kombu setting avoids that path, so a worker that cannot consume must end, loudly,
and be started afresh: `imageextract serve` and docker-compose restart it, and the messages
it held come back through item leases and the maintenance sweep.

The watchdog also covers a consumer that hangs instead of exiting: whatever the cause, a
worker whose event loop has not run with a live broker connection for
``consumer_stall_timeout`` exits with :data:`EXIT_CODE`.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Any

from celery import bootsteps

from core.settings import get_settings

log = logging.getLogger(__name__)

# EX_TEMPFAIL: the worker is fine to start again; its broker connection was not.
EXIT_CODE = 75


def _connected(consumer: Any) -> bool:
    connection = consumer.connection
    return connection is not None and bool(connection.connected)


# Celery's bootstep classes are untyped.
class ConsumerWatchdog(bootsteps.StartStopStep):  # type: ignore[misc]
    """A consumer bootstep: the event loop stamps a heartbeat while connected, and a thread
    exits the process once the heartbeat is older than the limit.

    Celery starts consumer steps again after every reconnect, so the heartbeat timer is
    registered for each connection (and cancelled with it).
    """

    # After the task consumers are set up; the event loop (always last) starts after us.
    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.limit = get_settings().consumer_stall_timeout.total_seconds()
        self.interval = min(max(self.limit / 10, 0.1), 1.0)
        self.last_alive = time.monotonic()
        self._heartbeat: Any = None
        self._thread: threading.Thread | None = None

    def start(self, parent: Any) -> None:
        # Connected just now: the stall, if any, is over (the first timed beat is a whole
        # interval away, and the connection may be lost again before it).
        self._beat(parent)
        if parent.hub is not None:
            self._heartbeat = parent.hub.call_repeatedly(self.interval, self._beat, parent)
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._watch, args=(parent,), name="consumer-watchdog", daemon=True
            )
            self._thread.start()

    def stop(self, parent: Any) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            self._heartbeat = None

    shutdown = stop

    def _beat(self, consumer: Any) -> None:
        if _connected(consumer):
            self.last_alive = time.monotonic()

    def _watch(self, consumer: Any) -> None:
        while True:
            time.sleep(self.interval)
            # Without an event loop (the filesystem broker's polling loop) nothing beats:
            # a live connection is all we can see from here.
            if consumer.hub is None and _connected(consumer):
                self.last_alive = time.monotonic()
            stalled = time.monotonic() - self.last_alive
            if stalled > self.limit:
                self._exit(stalled)

    def _exit(self, stalled: float) -> None:
        log.critical(
            "consumer watchdog: not consuming from the broker for %.0f s "
            "(IMAGEEXTRACT_CONSUMER_STALL_TIMEOUT is %.0f s); exiting with code %d "
            "so that the supervisor starts this worker again",
            stalled,
            self.limit,
            EXIT_CODE,
        )
        for handler in logging.getLogger().handlers:
            handler.flush()
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            if stream is not None:
                stream.flush()
        # Not sys.exit: the main thread may be the one that is stuck. Unacknowledged tasks
        # are redelivered (acks late) or reclaimed when their item's lease runs out.
        os._exit(EXIT_CODE)
