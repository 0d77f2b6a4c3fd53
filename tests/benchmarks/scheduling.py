"""Fair scheduling on the real stack: head of line, fair share, and the claim statement.

    .venv/bin/python -m tests.benchmarks.scheduling [--latency 1.0] [--concurrency 64]

The stack of the throughput benchmark (Postgres, Redis, the fake model at ``--latency``,
the API, two threads workers with ``--concurrency`` model calls in flight in all):

- head of line: account A submits 3000 images; 2 s later account B submits one. B's job,
  from its submit to its ``finished_at``. Then the same with an ``interactive`` job of A
  behind A's own ``normal`` 3000 images.
- fair share: A and B submit 1500 images each at once. While both run (from the later
  first start to the earlier last finish), each one's share of the images finished.
- ten accounts submit 300 images each at once: Jain's fairness index over their images
  finished per second while all run, (sum x)^2 / (n sum x^2).
- the claim at 50 active jobs x 3000 queued images (rows written by SQL, no worker
  running): the plans of the candidate query and of the claim from one job, and their
  p99 over 200 runs (each claim rolled back).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from tests.benchmarks.throughput import Bench, _interrupt, log, multipart_body, tail


class Scheduling:
    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.keys: dict[str, str] = {}
        self.index = 0

    def account(self, name: str) -> str:
        if name not in self.keys:
            self.bench.cli("accounts", "create", name, "--credits", "10000000")
            self.keys[name] = self.bench.cli("keys", "create", name).strip().splitlines()[-1]
        return self.keys[name]

    def submit(self, account: str, count: int, **fields: str) -> tuple[str, float]:
        body, content_type = multipart_body(self.index, count, fields)
        self.index += count
        wall = time.time()
        response = httpx.post(
            f"{self.bench.api_url}/v1/jobs", content=body, timeout=600,
            headers={"Authorization": f"Bearer {self.account(account)}",
                     "Content-Type": content_type},
        )  # fmt: skip
        if response.status_code != 202:
            raise RuntimeError(f"submit answered {response.status_code}: {response.text[:300]}")
        return str(response.json()["id"]), wall

    def finished(self, job_id: str, timeout: float = 900) -> float:
        deadline = time.monotonic() + timeout
        while True:
            row = self.bench.db.execute(
                "SELECT extract(epoch FROM finished_at) FROM jobs WHERE id = %s", (job_id,)
            ).fetchone()
            if row and row[0] is not None:
                return float(row[0])
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} not finished after {timeout} s")
            time.sleep(0.05)

    def window_rates(self, jobs: list[str]) -> list[float]:
        """Images finished per second by each job while all of them were running."""
        spans = [
            self.bench.db.execute(
                "SELECT extract(epoch FROM min(started_at)), extract(epoch FROM max(finished_at))"
                " FROM job_items WHERE job_id = %s",
                (job,),
            ).fetchone()
            for job in jobs
        ]
        start = max(float(span[0]) for span in spans if span)
        end = min(float(span[1]) for span in spans if span)
        rates = []
        for job in jobs:
            row = self.bench.db.execute(
                "SELECT count(*) FROM job_items WHERE job_id = %s AND finished_at >= "
                "to_timestamp(%s) AND finished_at <= to_timestamp(%s)",
                (job, start, end),
            ).fetchone()
            rates.append(int(row[0]) / (end - start) if row else 0.0)
        return rates


def head_of_line(runs: Scheduling, *, same_account: bool) -> tuple[float, float]:
    batch, _ = runs.submit("a", 3000)
    time.sleep(2)
    if same_account:
        single, submitted = runs.submit("a", 1, priority="interactive")
    else:
        single, submitted = runs.submit("b", 1)
    single_seconds = runs.finished(single) - submitted
    batch_seconds = runs.finished(batch) - submitted + 2
    return single_seconds, batch_seconds


def jain(rates: list[float]) -> float:
    return sum(rates) ** 2 / (len(rates) * sum(rate * rate for rate in rates))


def claim_at_scale(bench: Bench, jobs: int, images: int) -> list[str]:
    """Write ``jobs`` running jobs of ``images`` queued rows each, then time the claim."""
    db = bench.db
    account = db.execute("SELECT id FROM accounts WHERE name = 'a'").fetchone()
    assert account is not None
    for number in range(jobs):
        job_id = uuid.uuid4()
        db.execute(
            "INSERT INTO jobs (id, account_id, status, api, priority, prompt, json_mode, scene,"
            " provider, item_count, items_succeeded, items_failed, items_cancelled, total_bytes,"
            " prompt_tokens, completion_tokens, credits_per_image, credits_reserved,"
            " credits_captured, credits_refunded, results_ttl_seconds, created_at)"
            " VALUES (%s, %s, 'running', 'native', %s, 'x', false, 'general', 'openai', %s,"
            " 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 604800, now())",
            (job_id, account[0], ("normal", "batch", "interactive")[number % 3], images),
        )
        db.execute(
            "INSERT INTO job_items (id, job_id, index, status, source_kind, attempts,"
            " prompt_tokens, completion_tokens) SELECT gen_random_uuid(), %s, n, 'queued',"
            " 'url', 0, 0, 0 FROM generate_series(0, %s - 1) AS n",
            (job_id, images),
        )
    db.execute("ANALYZE")
    from db.jobs import _CLAIM_CANDIDATES  # the statement itself, as the workers send it

    candidates_sql = (
        str(_CLAIM_CANDIDATES)
        .replace("IN (__[POSTCOMPILE_providers])", "IN ('openai')")
        .replace("IN :providers", "IN ('openai')")
    )
    claim_sql = (
        "UPDATE job_items SET status = 'running', attempts = attempts + 1,"
        " lease_expires_at = now() + interval '10 minutes', started_at = now()"
        " WHERE id IN (SELECT id FROM job_items WHERE job_id = %s AND status = 'queued'"
        " AND attempts < 3 ORDER BY index LIMIT 16 FOR UPDATE SKIP LOCKED)"
        " RETURNING id"
    )
    first_job = db.execute(
        "SELECT id FROM jobs WHERE status = 'running' ORDER BY created_at LIMIT 1"
    ).fetchone()
    assert first_job is not None
    plans = [
        "\n".join(row[0] for row in db.execute("EXPLAIN ANALYZE " + candidates_sql)),
        "\n".join(row[0] for row in db.execute("EXPLAIN ANALYZE " + claim_sql, (first_job[0],))),
    ]
    timings: dict[str, list[float]] = {"candidates": [], "claim": []}
    for _ in range(200):
        started = time.perf_counter()
        db.execute(candidates_sql).fetchall()
        timings["candidates"].append((time.perf_counter() - started) * 1000)
        with db.transaction(force_rollback=True):
            started = time.perf_counter()
            db.execute(claim_sql, (first_job[0],)).fetchall()
            timings["claim"].append((time.perf_counter() - started) * 1000)
    lines = [
        f"{name}: p50 {statistics.median(values):.2f} ms, "
        f"p99 {sorted(values)[int(len(values) * 0.99) - 1]:.2f} ms"
        for name, values in timings.items()
    ]
    return [*lines, "", "candidate query plan:", plans[0], "", "claim plan:", plans[1]]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    # What Bench reads of the throughput benchmark's arguments.
    args.images, args.workers = 3000, 2
    signal.signal(signal.SIGTERM, _interrupt)
    work = Path(tempfile.mkdtemp(prefix="imageextract-sched-"))
    try:
        with contextlib.ExitStack() as exits:
            log("starting Postgres, Redis, the fake model and the API")
            bench = Bench(exits, args, work)
            half = args.concurrency // 2
            workers = bench.start_workers("threads", [half, args.concurrency - half], "io")
            runs = Scheduling(bench)
            log("head of line: 3000 images of A, then 1 of B")
            single, whole = head_of_line(runs, same_account=False)
            print(f"| another account's 1 image behind 3000 | {single:.2f} s | "
                  f"(A's 3000: {whole:.1f} s) | <= 3 s |")  # fmt: skip
            log("head of line: 3000 normal images of A, then 1 interactive of A")
            single, whole = head_of_line(runs, same_account=True)
            print(f"| an interactive image behind the same account's 3000 | {single:.2f} s | "
                  f"(the 3000: {whole:.1f} s) | <= 3 s |")  # fmt: skip
            log("fair share: 1500 of A and 1500 of B at once")
            pair = [runs.submit(name, 1500)[0] for name in ("a", "b")]
            for job in pair:
                runs.finished(job)
            rates = runs.window_rates(pair)
            shares = [rate / sum(rates) for rate in rates]
            print(f"| two accounts, 1500 each | A {shares[0]:.1%}, B {shares[1]:.1%} "
                  f"({rates[0]:.1f} / {rates[1]:.1f} images/s) | | 50 % ± 10 % |")  # fmt: skip
            log("fair share: ten accounts, 300 each")
            ten = [runs.submit(f"t{number}", 300)[0] for number in range(10)]
            for job in ten:
                runs.finished(job)
            rates = runs.window_rates(ten)
            print(f"| ten accounts, 300 each | Jain's index {jain(rates):.3f} "
                  f"(images/s {min(rates):.1f} to {max(rates):.1f}) | | >= 0.95 |")  # fmt: skip
            for worker in workers:
                subprocess.run(["kill", "-TERM", str(worker.pid)], check=False)
            log("the claim at 50 jobs x 3000 queued images")
            for line in claim_at_scale(bench, 50, 3000):
                print(line)
    except BaseException:
        for path in sorted(work.glob("*.log")):
            print(f"--- {path.name} (last lines)\n{tail(path)}", file=sys.stderr)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
