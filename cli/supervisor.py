"""Child processes that are started again when they exit: what `imageextract serve` runs
its workers and beat under, as docker-compose's ``restart: unless-stopped`` does in
production.

A worker exits on its own when it cannot go on (an unrecoverable broker error, or the
consumer watchdog); its unacknowledged tasks come back, so starting it again is all
recovery needs. Children get a process group of their own: Ctrl-C in a terminal reaches
only us, and we stop them, rather than racing their shutdown against a restart.

Children die with us: on Linux each asks the kernel for SIGKILL when the thread that
started it ends (PR_SET_PDEATHSIG), so a supervisor killed by SIGKILL or the OOM killer
leaves no worker or beat behind (a restarted ``serve`` would otherwise run two beats).
That signal follows the starting *thread*, so the watcher thread, which starts restarted
children, lives until :meth:`stop` has stopped them all.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

# A child that ran this long before exiting was healthy: start it again at once.
HEALTHY_RUN_SECONDS = 60.0
MAX_RESTART_DELAY_SECONDS = 30.0
_PR_SET_PDEATHSIG = 1
# Looked up once here: the child calls it between fork and exec, where it must not load
# libraries or take locks.
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None


def _die_with_parent(parent_pid: int) -> None:
    """Run in the child before exec: SIGKILL when the starting thread ends."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before the line above
        os._exit(1)


@dataclass
class Child:
    name: str
    command: list[str]
    log: Path | None
    process: subprocess.Popen[bytes]
    started_at: float
    restarts: int = 0
    quick_exits: int = 0
    restart_at: float | None = None


class Supervisor:
    """Starts commands, restarts any that exits until :meth:`stop`, then stops them all."""

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        report: Callable[[str], None] = print,
        poll_interval: float = 0.2,
    ) -> None:
        self.env = env
        self.cwd = cwd
        # Told about every unexpected exit, in one line.
        self.report = report
        self.poll_interval = poll_interval
        self.children: dict[str, Child] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, name: str, command: Sequence[str], log: Path | None = None) -> Child:
        """Start ``command`` as ``name``, its output appended to ``log`` (default: ours)."""
        with self._lock:
            child = Child(
                name=name, command=list(command), log=log, process=self._spawn(command, log),
                started_at=time.monotonic(),
            )  # fmt: skip
            self.children[name] = child
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="supervisor", daemon=True)
            self._thread.start()
        return child

    def stop(self, timeout: float = 30.0) -> None:
        """Stop restarting, send SIGTERM to every child, wait, then SIGKILL what is left."""
        with self._lock:  # the watcher checks _stopping under this lock
            self._stopping.set()
            processes = [child.process for child in self.children.values()]
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in processes:
            try:
                process.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        # Only now may the watcher thread end: its end kills the children it started.
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()

    def _spawn(self, command: Sequence[str], log: Path | None) -> subprocess.Popen[bytes]:
        output: IO[bytes] | None = log.open("ab") if log is not None else None
        try:
            parent = os.getpid()
            return subprocess.Popen(  # noqa: S603 — our own argument lists, no shell
                list(command), env=self.env, cwd=self.cwd, stdout=output,
                stderr=subprocess.STDOUT if output is not None else None, process_group=0,
                preexec_fn=lambda: _die_with_parent(parent),
            )  # fmt: skip
        finally:
            if output is not None:
                output.close()  # the child has its own copy

    def _watch(self) -> None:
        while not self._stopped.wait(self.poll_interval):
            with self._lock:
                if self._stopping.is_set():
                    continue
                for child in self.children.values():
                    self._check(child)

    def _check(self, child: Child) -> None:
        now = time.monotonic()
        if child.restart_at is None:
            code = child.process.poll()
            if code is None:
                return
            ran = now - child.started_at
            child.quick_exits = 0 if ran >= HEALTHY_RUN_SECONDS else child.quick_exits + 1
            # A child that keeps dying at once (bad settings, broker down) is started
            # again after a growing pause rather than in a tight loop.
            delay = (
                min(2.0 ** (child.quick_exits - 1), MAX_RESTART_DELAY_SECONDS)
                if child.quick_exits
                else 0.0
            )
            child.restart_at = now + delay
            self.report(
                f"{child.name} exited unexpectedly with code {code} after {ran:.0f} s; "
                f"restarting it in {delay:.0f} s"
            )
        if now >= child.restart_at:
            child.process = self._spawn(child.command, child.log)
            child.started_at, child.restart_at = now, None
            child.restarts += 1
