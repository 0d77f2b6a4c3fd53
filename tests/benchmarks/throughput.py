"""Throughput of a 3000-image job against the limit Little's law allows, with a naive baseline.

    python -m tests.benchmarks.throughput [--images 3000] [--latency 1.0] [--concurrency 64]
        [--workers 2] [--baseline-images 200] [--no-baseline] [--storage file|s3] [--markdown]

Starts the real stack on loopback (Postgres with pg_stat_statements, Redis, the fake
OpenAI-compatible model with the given latency, the API under uvicorn, and ``--workers``
Celery worker processes with the threads pool, ``concurrency / workers`` threads each),
warms it with a small job, then submits one multipart job of small distinct PNGs and
reports the figures below. With ``--storage s3`` the images go through an S3 server
(moto's, tests/s3_server.py) instead of a folder; the run checks that the bucket is empty
at the end. The naive baseline follows on the same stack and model: the
threads workers stop and one worker with the prefork pool and ``concurrency = cores``
runs ``--baseline-images`` images (fewer: at 1 s latency 3000 images would take 25
minutes; images/s is the comparable figure).

Definitions (timestamps come from job_items and jobs; both are written by our processes on
this machine, so they share the benchmark's clock):

- submit: request start to the 202 answer (the client encodes the body beforehand).
- time to last result: request start to the job's ``finished_at``.
- images/s: images / (last item ``finished_at`` - first item ``started_at``); "end to end"
  is images / time to last result.
- limit: concurrency / latency (Little's law). With a 0-latency model the limit is the
  CPU: cores / CPU-seconds per image, the CPU-seconds measured from /proc over the
  processing window (202 answer to job finished) for every process the benchmark started:
  API, workers, fake model, Postgres and Redis. The fake model is included because it
  competes for the same cores; the split per process is reported.
- own time per item: (``finished_at`` - ``started_at``) - ``model_ms``: claiming, loading,
  normalising, building the request and reading the answer, without the model call; it
  ends before the outcome's UPDATE, and time waiting in the queue is not in it.
- DB statements per item: top-level pg_stat_statements calls (BEGIN and COMMIT included)
  by the service's role, reset right before the submit, divided by images. The pool's
  pre-ping on each checkout is an empty query (``;``) that pg_stat_statements does not see.
  The benchmark's own polling uses a role of its own and is not counted.
- worker RSS: per worker process tree (the prefork pool: parent plus children, shared
  pages counted in each), after the warm-up job (a tenth of the images, at least twice the
  concurrency) vs after the measured job; growth in %.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import psycopg
import redis
from sqlalchemy.engine import make_url

from cli.processes import worker_command
from core.settings import Settings
from tests import sample_images, stack

ROOT = Path(__file__).resolve().parents[2]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PG_STAT_STATEMENTS = (
    "shared_preload_libraries = 'pg_stat_statements'\n"
    "pg_stat_statements.track = all\n"
    "pg_stat_statements.max = 10000\n"
)
# The harness's own queries (polling, counting) run as this role and are left out.
HARNESS_ROLE = "benchmark_harness"
PROMPT = 'Extract the image size using this schema: {"width": "Width", "height": "Height"}'


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- processes -----------------------------------------------------------------------------


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid


def start_service(name: str, command: Sequence[str], env: dict[str, str], work: Path) -> Service:
    log_path = work / f"{name}.log"
    with log_path.open("wb") as sink:
        # A session of its own: Ctrl-C reaches only the benchmark, which then stops every
        # service in order instead of racing them.
        process = subprocess.Popen(
            list(command), cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    return Service(name, process, log_path)


def stop_service(service: Service, timeout: float = 30.0) -> None:
    if service.process.poll() is not None:
        return
    service.process.terminate()
    try:
        service.process.wait(timeout)
    except subprocess.TimeoutExpired:
        # The whole group: a prefork worker's children must not outlive it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(service.pid, signal.SIGKILL)
        service.process.wait(10)


def wait_for_log(service: Service, marker: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while marker not in service.log_path.read_text(errors="replace"):
        if service.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{service.name} did not start:\n{tail(service.log_path)}")
        time.sleep(0.1)


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --- /proc ---------------------------------------------------------------------------------


def process_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU-seconds of the process plus its reaped children)."""
    table: dict[int, tuple[int, float]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses; the fields after it do not.
        fields = raw.rsplit(")", 1)[1].split()
        ticks = sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
        table[int(entry.name)] = (int(fields[1]), ticks / CLOCK_TICKS)
    return table


def process_tree(table: dict[int, tuple[int, float]], root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, (parent, _cpu) in table.items():
        children.setdefault(parent, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            found.append(pid)
            todo.extend(children.get(pid, []))
    return found


def cpu_seconds(groups: dict[str, list[int]]) -> dict[str, float]:
    """CPU-seconds used so far by each group of process trees.

    A child that exited was reaped by its parent in the tree, whose cutime/cstime now hold
    its time, so Postgres backends that came and went are still counted.
    """
    table = process_table()
    return {
        name: sum(table[pid][1] for root in roots for pid in process_tree(table, root))
        for name, roots in groups.items()
    }


def status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_mb(root: int) -> float:
    return sum(status_kb(pid, "VmRSS") for pid in process_tree(process_table(), root)) / 1024


# --- the job -------------------------------------------------------------------------------


def multipart_body(
    first_index: int, count: int, fields: dict[str, str] | None = None
) -> tuple[bytes, str]:
    """A multipart body of ``count`` distinct small PNGs, encoded before the clock starts."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in (("prompt", PROMPT), ("json_mode", "true"), *(fields or {}).items())
    ]
    for index in range(first_index, first_index + count):
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="images"; '
            f'filename="page{index:05d}.png"\r\nContent-Type: image/png\r\n\r\n'.encode()
            + sample_images.png_for(index)
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


@dataclass
class WorkerMemory:
    start_mb: float
    end_mb: float
    peak_mb: float

    @property
    def growth(self) -> float:
        return (self.end_mb - self.start_mb) / self.start_mb if self.start_mb else 0.0


@dataclass
class RunResult:
    label: str
    images: int
    failed: int
    limit: float
    limit_basis: str
    submit_s: float
    to_last_s: float
    processing_ips: float
    end_to_end_ips: float
    own_ms: list[float]
    model_ms: list[float]
    max_in_flight: int
    api_peak_mb: float
    workers: list[WorkerMemory]
    statements: int
    top_statements: list[tuple[int, bool, str]]
    submit_cpu: dict[str, float]
    processing_cpu: dict[str, float]
    processing_wall_s: float
    cores: int
    dispatch_s: float

    @property
    def ratio(self) -> float:
        return self.processing_ips / self.limit if self.limit else 0.0

    @property
    def statements_per_item(self) -> float:
        return self.statements / self.images

    def cpu_per_image(self, group: str | None = None) -> float:
        if group is None:
            return sum(self.processing_cpu.values()) / self.images
        return self.processing_cpu.get(group, 0.0) / self.images

    @property
    def utilisation(self) -> float:
        """Share of the machine's core-time used between the 202 and the job's end."""
        return sum(self.processing_cpu.values()) / (self.cores * self.processing_wall_s)


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


class Bench:
    """The running stack: services, the harness's database connection, the API key."""

    def __init__(self, exits: contextlib.ExitStack, args: argparse.Namespace, work: Path) -> None:
        self.exits = exits
        self.args = args
        self.work = work
        self.cores = os.cpu_count() or 1
        database_url = exits.enter_context(stack.postgres(extra_config=PG_STAT_STATEMENTS))
        broker_url = exits.enter_context(stack.redis(work / "redis"))
        url = make_url(database_url)
        self.pg_params: dict[str, Any] = {
            "host": url.host, "port": url.port, "dbname": url.database,
        }  # fmt: skip
        model_port = stack.free_port()
        self.s3 = exits.enter_context(stack.s3(work / "s3")) if args.storage == "s3" else None
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEEXTRACT_")}
        self.env = {
            **inherited,
            "IMAGEEXTRACT_DATABASE_URL": database_url,
            "IMAGEEXTRACT_BROKER_URL": broker_url,
            "IMAGEEXTRACT_DATA_DIR": str(work / "data"),
            "IMAGEEXTRACT_MODEL_PROVIDER": "openai",
            "IMAGEEXTRACT_OPENAI_BASE_URL": f"http://127.0.0.1:{model_port}/v1",
            "IMAGEEXTRACT_OPENAI_API_KEY": "sk-benchmark",
            "IMAGEEXTRACT_OPENAI_MODEL": "fake-vision",
            "IMAGEEXTRACT_MAX_IMAGES_PER_JOB": str(max(3000, args.images)),
            **(self.s3.env() if self.s3 is not None else {}),
        }
        self.model_url = f"http://127.0.0.1:{model_port}"
        self.model = self.start(
            "model",
            [sys.executable, str(ROOT / "tests" / "fake_model_server.py"), "--port",
             str(model_port), "--latency", str(args.latency)],
        )  # fmt: skip
        stack.wait_for_port(model_port)
        self.cli("migrate")
        self.cli("accounts", "create", "bench", "--credits", "10000000")
        self.key = self.cli("keys", "create", "bench").strip().splitlines()[-1]
        with psycopg.connect(**self.pg_params, user="postgres", autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            conn.execute(f"CREATE ROLE {HARNESS_ROLE} LOGIN SUPERUSER")
            # stack.postgres() does not say which process is the postmaster; the
            # checkpointer lives as long as the cluster and is its child.
            checkpointer = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'"
            ).fetchone()
        self.db = psycopg.connect(**self.pg_params, user=HARNESS_ROLE, autocommit=True)
        exits.callback(self.db.close)
        assert checkpointer is not None
        self.postgres_pid = process_table()[int(checkpointer[0])][0]
        broker = redis.Redis.from_url(broker_url)
        self.redis_pid = int(broker.info("server")["process_id"])
        broker.close()
        api_port = stack.free_port()
        self.api = self.start(
            "api",
            [sys.executable, "-m", "uvicorn", "api.asgi:app", "--port", str(api_port),
             "--log-level", "warning"],
        )  # fmt: skip
        stack.wait_for_port(api_port)
        self.api_url = f"http://127.0.0.1:{api_port}"
        self.next_index = 0

    def start(
        self, name: str, command: Sequence[str], env: dict[str, str] | None = None
    ) -> Service:
        service = start_service(name, command, env or self.env, self.work)
        self.exits.callback(stop_service, service)
        return service

    def cli(self, *arguments: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "cli", *arguments], cwd=ROOT, env=self.env, check=True,
            capture_output=True, text=True,
        ).stdout  # fmt: skip

    def start_workers(self, pool: str, concurrencies: list[int], label: str) -> list[Service]:
        """Threads workers for the model queue plus a small one for dispatch and upkeep (the
        production shape); the naive baseline takes both queues in one prefork worker."""
        workers = []
        queues = ["model"] if pool == "threads" else ["default", "model"]
        for number, concurrency in enumerate(concurrencies, start=1):
            env = dict(self.env)
            slots = concurrency
            if pool == "threads":
                # ``concurrency`` model threads; Celery threads enough to keep them busy.
                env["IMAGEEXTRACT_MODEL_CONCURRENCY"] = str(concurrency)
                slots = Settings(model_concurrency=concurrency).worker_threads
            else:
                # The naive shape: one image per message, one model call per process.
                env["IMAGEEXTRACT_MODEL_CONCURRENCY"] = "1"
                env["IMAGEEXTRACT_DISPATCH_BATCH_SIZE"] = "1"
            command = worker_command(queues, pool, slots, f"{label}{number}@%h")
            workers.append(self.start(f"worker-{label}{number}", command, env))
        if pool == "threads":
            command = worker_command(["default"], "threads", 4, f"{label}-control@%h")
            workers.append(self.start(f"worker-{label}-control", command, dict(self.env)))
        for worker in workers:
            wait_for_log(worker, "ready.")
        return workers

    def model_stats(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.model_url}/_stats", timeout=10).json())

    def reset_model(self) -> None:
        """Clear the call counters; /_reset also clears the latency, so it is set again."""
        deadline = time.monotonic() + 60
        while self.model_stats()["in_flight"] and time.monotonic() < deadline:
            time.sleep(0.05)
        httpx.post(f"{self.model_url}/_reset", timeout=10).raise_for_status()
        httpx.post(
            f"{self.model_url}/_control", json={"latency": self.args.latency}, timeout=10
        ).raise_for_status()

    def cpu_groups(self, workers: list[Service]) -> dict[str, list[int]]:
        return {
            "api": [self.api.pid],
            "workers": [worker.pid for worker in workers],
            "model": [self.model.pid],
            "postgres": [self.postgres_pid],
            "redis": [self.redis_pid],
        }

    def submit(self, count: int) -> tuple[str, float, float]:
        """Send one job; returns its id, the wall-clock start and the submit seconds."""
        body, content_type = multipart_body(self.next_index, count)
        self.next_index += count
        wall = time.time()
        started = time.perf_counter()
        response = httpx.post(
            f"{self.api_url}/v1/jobs", content=body,
            headers={"Authorization": f"Bearer {self.key}", "Content-Type": content_type},
            timeout=600,
        )  # fmt: skip
        elapsed = time.perf_counter() - started
        if response.status_code != 202:
            raise RuntimeError(f"submit answered {response.status_code}: {response.text[:500]}")
        return str(response.json()["id"]), wall, elapsed

    def wait_for_job(
        self, job_id: str, workers: list[Service], timeout: float, peaks: list[float] | None
    ) -> None:
        deadline = time.monotonic() + timeout
        while True:
            row = self.db.execute(
                "SELECT finished_at, items_succeeded + items_failed + items_cancelled, "
                "item_count FROM jobs WHERE id = %s",
                (job_id,),
            ).fetchone()
            if row is not None and row[0] is not None:
                return
            for worker in workers:
                if worker.process.poll() is not None:
                    raise RuntimeError(f"{worker.name} exited:\n{tail(worker.log_path)}")
            if peaks is not None:
                for position, worker in enumerate(workers):
                    peaks[position] = max(peaks[position], tree_rss_mb(worker.pid))
            if time.monotonic() > deadline:
                done = f"{row[1]} of {row[2]}" if row else "no row"
                raise TimeoutError(f"job {job_id} not finished after {timeout:.0f} s ({done})")
            time.sleep(0.1)

    def statements(self) -> tuple[int, list[tuple[int, bool, str]]]:
        """Statements the service sent since the last reset, and the most frequent ones.

        The total counts top-level statements only (what our processes sent); the list also
        shows nested ones, such as the foreign-key checks Postgres runs for an INSERT.
        """
        base = (
            "FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid "
            "JOIN pg_database d ON d.oid = s.dbid "
            "WHERE r.rolname <> %s AND d.datname = current_database()"
        )
        total = self.db.execute(
            "SELECT coalesce(sum(calls), 0) " + base + " AND s.toplevel", (HARNESS_ROLE,)
        ).fetchone()
        top = self.db.execute(
            "SELECT calls, toplevel, query " + base + " ORDER BY calls DESC LIMIT 12",
            (HARNESS_ROLE,),
        ).fetchall()
        return int(total[0] if total else 0), [
            (int(calls), bool(toplevel), str(query)) for calls, toplevel, query in top
        ]

    def run_job(
        self, label: str, workers: list[Service], count: int, limit: float, limit_basis: str,
        parallelism: int,
    ) -> RunResult:  # fmt: skip
        """Warm up, then submit ``count`` images and measure until the job has ended."""
        # Every thread and pooled connection used, and a tenth of the job: a threads worker
        # went from 91 to 117 MB over its first 1500 items, then grew by under 1 KB per
        # item; the growth figure is meant for the latter, not for the start-up.
        warm_up = max(2 * parallelism, count // 10, 10)
        log(f"{label}: warm-up job of {warm_up} images")
        job_id, _wall, _elapsed = self.submit(warm_up)
        self.wait_for_job(job_id, workers, 300 + warm_up * 2 * self.args.latency, None)
        self.reset_model()
        self.db.execute("SELECT pg_stat_statements_reset()")
        groups = self.cpu_groups(workers)
        start_rss = [tree_rss_mb(worker.pid) for worker in workers]
        peaks = list(start_rss)
        log(f"{label}: submitting {count} images")
        cpu_before = cpu_seconds(groups)
        job_id, wall_start, submit_s = self.submit(count)
        cpu_accepted = cpu_seconds(groups)
        accepted = time.perf_counter()
        log(f"{label}: accepted in {submit_s:.2f} s; waiting for the last result")
        timeout = 600 + 3 * count * max(self.args.latency, 0.02) / max(1, parallelism)
        self.wait_for_job(job_id, workers, timeout, peaks)
        processing_wall = time.perf_counter() - accepted
        cpu_after = cpu_seconds(groups)
        end_rss = [tree_rss_mb(worker.pid) for worker in workers]
        statements, top = self.statements()
        stats = self.model_stats()
        job = self.db.execute(
            "SELECT finished_at, items_failed, dispatched_at FROM jobs WHERE id = %s", (job_id,)
        ).fetchone()
        items = self.db.execute(
            "SELECT started_at, finished_at, model_ms FROM job_items WHERE job_id = %s",
            (job_id,),
        ).fetchall()
        assert job is not None
        finished_at: datetime = job[0]
        first_start = min(row[0] for row in items if row[0] is not None)
        last_finish = max(row[1] for row in items if row[1] is not None)
        own_ms = [
            (row[1] - row[0]).total_seconds() * 1000 - row[2]
            for row in items
            if row[0] is not None and row[1] is not None and row[2] is not None
        ]
        submitted = datetime.fromtimestamp(wall_start, UTC)
        to_last = (finished_at - submitted).total_seconds()
        # Counted from the 202: how long the serial publishing of one message per item took.
        dispatch_s = (job[2] - submitted).total_seconds() - submit_s if job[2] else float("nan")
        for position, worker in enumerate(workers):
            tree = process_tree(process_table(), worker.pid)
            if len(tree) == 1:
                peaks[position] = max(peaks[position], status_kb(worker.pid, "VmHWM") / 1024)
        return RunResult(
            label=label,
            images=count,
            failed=int(job[1]),
            limit=limit,
            limit_basis=limit_basis,
            submit_s=submit_s,
            to_last_s=to_last,
            processing_ips=count / (last_finish - first_start).total_seconds(),
            end_to_end_ips=count / to_last,
            own_ms=own_ms,
            model_ms=[float(row[2]) for row in items if row[2] is not None],
            max_in_flight=int(stats["max_in_flight"]),
            api_peak_mb=status_kb(self.api.pid, "VmHWM") / 1024,
            workers=[
                WorkerMemory(start, end, peak)
                for start, end, peak in zip(start_rss, end_rss, peaks, strict=True)
            ],
            statements=statements,
            top_statements=top,
            submit_cpu={k: cpu_accepted[k] - cpu_before[k] for k in groups},
            processing_cpu={k: cpu_after[k] - cpu_accepted[k] for k in groups},
            processing_wall_s=processing_wall,
            cores=self.cores,
            dispatch_s=dispatch_s,
        )


def split(total: int, parts: int) -> list[int]:
    """``total`` threads over ``parts`` workers, as evenly as possible."""
    return [total // parts + (1 if n < total % parts else 0) for n in range(parts)]


def with_cpu_limit(result: RunResult) -> RunResult:
    """With a 0-latency model the limit is the CPU: cores / CPU-seconds per image."""
    result.limit = result.cores / result.cpu_per_image()
    result.limit_basis = (
        f"CPU: {result.cores} cores / {result.cpu_per_image() * 1000:.1f} CPU-ms per image"
    )
    return result


# --- report --------------------------------------------------------------------------------


def fmt_memory(workers: list[WorkerMemory]) -> tuple[str, str]:
    growth = "; ".join(
        f"{w.start_mb:.0f} → {w.end_mb:.0f} MB ({w.growth * 100:+.1f}%)" for w in workers
    )
    return growth, "; ".join(f"{w.peak_mb:.0f} MB" for w in workers)


def fmt_cpu(cpu: dict[str, float], images: int) -> str:
    parts = ", ".join(f"{name} {seconds * 1000 / images:.1f}" for name, seconds in cpu.items())
    return f"{sum(cpu.values()) * 1000 / images:.1f} ({parts})"


def report(
    args: argparse.Namespace, ours: RunResult, baseline: RunResult | None, command: str
) -> str:
    columns = [ours] + ([baseline] if baseline else [])
    latency_zero = args.latency == 0

    def row(name: str, values: list[str], target: str) -> str:
        return f"| {name} | " + " | ".join(values) + f" | {target} |"

    head = ["| | " + " | ".join(r.label for r in columns) + " | target |"]
    head.append("|---" * (len(columns) + 2) + "|")
    lines = [
        *head,
        row("images", [str(r.images) for r in columns], "3000"),
        row("failed items", [str(r.failed) for r in columns], "0"),
        row("submit (request → 202)", [f"{r.submit_s:.2f} s" for r in columns],
            "< 15 s for 3000"),
        row("dispatch (202 → every message published)",
            [f"{r.dispatch_s:.2f} s" for r in columns], "—"),
        row("time to last result", [f"{r.to_last_s:.1f} s" for r in columns], "—"),
        row("images/s (first start → last finish)",
            [f"{r.processing_ips:.1f}" for r in columns], "—"),
        row("images/s end to end (incl. submit)",
            [f"{r.end_to_end_ips:.1f}" for r in columns],
            "≥ 200 (0-latency model)" if latency_zero else "—"),
        row("limit", [f"{r.limit:.1f}/s ({r.limit_basis})" for r in columns], "—"),
        row("ratio to the limit", [f"{r.ratio:.3f}" for r in columns],
            "—" if latency_zero else "≥ 0.90 (1 s, 64 in flight)"),
        row("model calls in flight, max", [str(r.max_in_flight) for r in columns],
            str(args.concurrency)),
        row("own time per item p50 / p99",
            [f"{percentile(r.own_ms, 0.5):.1f} / {percentile(r.own_ms, 0.99):.1f} ms"
             for r in columns], "—"),
        row("model time per item p50",
            [f"{percentile(r.model_ms, 0.5):.0f} ms" for r in columns], "—"),
        row("API peak RSS (VmHWM)", [f"{r.api_peak_mb:.0f} MB" for r in columns],
            "< 250 MB (100 MB upload: api_upload_rss)"),
        row("worker RSS after warm-up → end", [fmt_memory(r.workers)[0] for r in columns],
            "< +10%"),
        row("worker peak RSS", [fmt_memory(r.workers)[1] for r in columns], "—"),
        row("DB statements per item", [f"{r.statements_per_item:.1f}" for r in columns], "—"),
        row("CPU-ms per image during submit (api, workers, model, postgres, redis)",
            [fmt_cpu(r.submit_cpu, r.images) for r in columns], "—"),
        row("CPU-ms per image after 202 (api, workers, model, postgres, redis)",
            [fmt_cpu(r.processing_cpu, r.images) for r in columns], "—"),
        row("core utilisation after 202", [f"{r.utilisation:.2f}" for r in columns], "—"),
    ]  # fmt: skip
    out = [*lines, ""]
    if args.markdown:
        machine = (
            f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}"
        )
        out = [
            f"### Fake model latency {args.latency:g} s, {args.concurrency} calls in flight",
            "",
            f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine}.",
            "",
            f"    {command}",
            "",
            *out,
        ]
    for result in columns:
        out += [
            f"Statements of the {result.label} run, most frequent first "
            f"({result.statements} sent, {result.statements_per_item:.2f} per item):",
            "",
            "| calls | per item | statement |",
            "|---|---|---|",
        ]
        for calls, toplevel, query in result.top_statements:
            text = " ".join(query.split())
            text = text if len(text) <= 100 else text[:97] + "..."
            nested = "" if toplevel else " (nested)"
            out.append(
                f"| {calls} | {calls / result.images:.3f} | `{text.replace('|', '¦')}`{nested} |"
            )
        out.append("")
    return "\n".join(out)


# --- main ----------------------------------------------------------------------------------


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace, work: Path) -> tuple[RunResult, RunResult | None]:
    with contextlib.ExitStack() as exits:
        log("starting Postgres, Redis, the fake model and the API")
        bench = Bench(exits, args, work)
        limit = args.concurrency / args.latency if args.latency else 0.0
        basis = f"{args.concurrency} in flight / {args.latency:g} s"
        threads = split(args.concurrency, args.workers)
        log(f"starting {args.workers} threads workers ({'+'.join(map(str, threads))} threads)")
        workers = bench.start_workers("threads", threads, "io")
        label = f"ours: {args.workers} x threads, {args.concurrency} in flight"
        ours = bench.run_job(label, workers, args.images, limit, basis, args.concurrency)
        if bench.s3 is not None:
            left = bench.s3.keys()
            log(f"objects left in the bucket after the job: {len(left)}")
            if left:
                raise RuntimeError(f"{len(left)} images left in the bucket, e.g. {left[:3]}")
        if not args.latency:
            ours = with_cpu_limit(ours)
        for worker in workers:
            stop_service(worker)
        baseline = None
        if not args.no_baseline:
            log(f"baseline: one prefork worker, concurrency {bench.cores}")
            workers = bench.start_workers("prefork", [bench.cores], "naive")
            label = f"naive: prefork x {bench.cores}"
            baseline = bench.run_job(
                label, workers, args.baseline_images, limit, basis, bench.cores
            )
            if not args.latency:
                baseline = with_cpu_limit(baseline)
            for worker in workers:
                stop_service(worker)
        return ours, baseline


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--latency", type=float, default=1.0, help="fake model latency, s")
    parser.add_argument("--concurrency", type=int, default=64, help="model calls in flight")
    parser.add_argument("--workers", type=int, default=2, help="threads worker processes")
    parser.add_argument("--baseline-images", type=int, default=200)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--storage", choices=["file", "s3"], default="file")
    parser.add_argument(
        "--markdown", action="store_true",
        help="print a section for docs/benchmarks.md: command, machine, table, statements",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.workers < 1 or args.concurrency < args.workers:
        parser.error("need at least one worker and one thread per worker")
    command = "python -m tests.benchmarks.throughput " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    signal.signal(signal.SIGTERM, _interrupt)
    work = Path(tempfile.mkdtemp(prefix="imageextract-bench-"))
    try:
        ours, baseline = run(args, work)
    except BaseException:
        for path in sorted(work.glob("*.log")):
            print(f"--- {path.name} (last lines)\n{tail(path)}", file=sys.stderr)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(report(args, ours, baseline, command.strip()))


if __name__ == "__main__":
    main()
