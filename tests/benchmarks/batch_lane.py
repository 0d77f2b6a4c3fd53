"""A 3000-image job with mode batch through the fake model's Batch API, on the real stack.

    python -m tests.benchmarks.batch_lane [--images 3000] [--image-kb 0] [--delay 5]
        [--storage file|s3] [--markdown]

Starts Postgres, Redis, the fake OpenAI-compatible model (its Batch API runs a batch's
lines ``--delay`` seconds after it is created), the API under uvicorn, one threads worker
for the model queue, one for the default queue, and beat (asking about open batches every
second). Submits one multipart job of ``--images`` distinct PNGs (``--image-kb`` > 0: JPEGs
of noise of about that size each, to make the JSONL file large; the job's 100 MB limit
applies), waits for its end, and reports:

- every image's outcome recorded exactly once (the job's counters against its items), the
  live lane's model calls (0 unless a line failed), the batch lines the model ran;
- credits: reserved, captured and refunded in the ledger, at the batch price per image;
- temporary images left in storage, and files left at the provider, once the job ended;
- peak RSS of the API and of each worker process tree, sampled every 0.1 s from the submit
  to the job's end (building, uploading, polling and recording included);
- phases, from the job's rows: submit; building and uploading (job created to the last
  provider batch submitted); the provider's delay; recording (batch ended to recorded).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from tests.benchmarks.throughput import (
    PROMPT,
    Bench,
    log,
    multipart_body,
    start_service,
    stop_service,
    tail,
    tree_rss_mb,
    wait_for_log,
)


def noise_body(count: int, kilobytes: int, fields: dict[str, str]) -> tuple[bytes, str]:
    """``count`` distinct JPEGs of noise, about ``kilobytes`` each: pixels that compress
    badly, so the request lines are as large as the images."""
    boundary = uuid.uuid4().hex
    side = max(16, int((kilobytes * 1024 / 1.2) ** 0.5))
    generator = random.Random(7)
    base = Image.effect_noise((side, side), 90).convert("RGB")
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in (("prompt", PROMPT), ("json_mode", "true"), *fields.items())
    ]
    for index in range(count):
        out = io.BytesIO()
        image = base.rotate(generator.random() * 360)
        image.putpixel((0, 0), (index % 256, index // 256 % 256, 7))
        image.save(out, "JPEG", quality=92)
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="images"; '
            f'filename="scan{index:05d}.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'.encode()
            + out.getvalue()
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    with contextlib.ExitStack() as exits:
        log("starting Postgres, Redis, the fake model and the API")
        args.latency = 0.0
        bench = Bench(exits, args, work)
        bench.env.update({
            "IMAGEEXTRACT_BATCH_POLL_INTERVAL": "PT1S",
            "IMAGEEXTRACT_BATCH_POLL_MAX_INTERVAL": "PT5S",
        })  # fmt: skip
        httpx.post(f"{bench.model_url}/_control", json={"batch_delay": args.delay}, timeout=10)
        workers = bench.start_workers("threads", [32], "batch")
        beat = start_service(
            "beat",
            [sys.executable, "-m", "celery", "-A", "worker.celery_app", "beat", "--loglevel",
             "INFO", "--schedule", str(work / "beat-schedule")],
            bench.env, work,
        )  # fmt: skip
        exits.callback(stop_service, beat)
        wait_for_log(beat, "Starting")
        fields = {"mode": "batch"}
        if args.image_kb:
            body, content_type = noise_body(args.images, args.image_kb, fields)
        else:
            body, content_type = multipart_body(0, args.images, fields)
        log(f"submitting {args.images} images ({len(body) / 2**20:.1f} MB) with mode batch")
        peaks = {"api": 0.0, **{worker.name: 0.0 for worker in workers}}
        started = time.perf_counter()
        response = httpx.post(
            f"{bench.api_url}/v1/jobs", content=body,
            headers={"Authorization": f"Bearer {bench.key}", "Content-Type": content_type},
            timeout=600,
        )  # fmt: skip
        submit_s = time.perf_counter() - started
        if response.status_code != 202:
            raise RuntimeError(f"submit answered {response.status_code}: {response.text[:500]}")
        job_id = response.json()["id"]
        deadline = time.monotonic() + args.timeout
        while True:
            peaks["api"] = max(peaks["api"], tree_rss_mb(bench.api.pid))
            for worker in workers:
                peaks[worker.name] = max(peaks[worker.name], tree_rss_mb(worker.pid))
                if worker.process.poll() is not None:
                    raise RuntimeError(f"{worker.name} exited:\n{tail(worker.log_path)}")
            row = bench.db.execute(
                "SELECT finished_at FROM jobs WHERE id = %s", (job_id,)
            ).fetchone()
            if row is not None and row[0] is not None:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} not finished after {args.timeout} s")
            time.sleep(0.1)
        total_s = time.perf_counter() - started
        # The provider's files go right after the results are in.
        files_left = -1
        for _ in range(100):
            files_left = bench.model_stats()["batches"]["files"]
            if files_left == 0:
                break
            time.sleep(0.1)
        job = bench.db.execute(
            "SELECT status, item_count, items_succeeded, items_failed, items_cancelled, "
            "credits_per_image, created_at FROM jobs WHERE id = %s", (job_id,),
        ).fetchone()  # fmt: skip
        by_status = dict(
            bench.db.execute(
                "SELECT status, count(*) FROM job_items WHERE job_id = %s GROUP BY status",
                (job_id,),
            ).fetchall()
        )
        ledger = dict(
            bench.db.execute(
                "SELECT kind, sum(amount) FROM credit_ledger WHERE job_id = %s GROUP BY kind",
                (job_id,),
            ).fetchall()
        )
        batches = bench.db.execute(
            "SELECT request_count, input_bytes, provider_status, submitted_at, ended_at, "
            "recorded_at FROM provider_batches WHERE job_id = %s ORDER BY created_at", (job_id,),
        ).fetchall()  # fmt: skip
        assert job is not None
        stored = bench.s3.keys() if bench.s3 is not None else [
            str(path) for path in (work / "data" / "images").rglob("*") if path.is_file()
        ]  # fmt: skip
        calls = bench.model_stats()["calls"]
        return {
            "images": args.images,
            "request_mb": len(body) / 2**20,
            "status": job[0],
            "succeeded": by_status.get("succeeded", 0),
            "failed": by_status.get("failed", 0),
            "recorded_twice": job[2]
            - by_status.get("succeeded", 0)
            + job[3]
            - by_status.get("failed", 0),
            "lost": job[1] - sum(by_status.get(s, 0) for s in ("succeeded", "failed", "cancelled")),
            "live_calls": calls.get("ok", 0),
            "batch_lines": calls.get("batch_ok", 0),
            "price_per_image": job[5],
            "ledger": ledger,
            "temporary_files_left": len(stored),
            "provider_files_left": files_left,
            "batches": [(b[0], b[1] / 2**20, b[2]) for b in batches],
            "peaks": peaks,
            "submit_s": submit_s,
            "build_upload_s": (max(b[3] for b in batches) - job[6]).total_seconds(),
            "record_s": max((b[5] - b[4]).total_seconds() for b in batches),
            "total_s": total_s,
        }


def report(figures: dict[str, Any], command: str, markdown: bool) -> str:
    peaks = figures["peaks"]
    ledger = figures["ledger"]
    batches = ", ".join(f"{n} lines / {mb:.1f} MB ({s})" for n, mb, s in figures["batches"])
    rows = [
        ("images", f"{figures['images']} ({figures['request_mb']:.1f} MB request)"),
        ("job status", figures["status"]),
        ("outcomes recorded", f"{figures['succeeded']} succeeded, {figures['failed']} failed, "
         f"{figures['lost']} lost, {figures['recorded_twice']} recorded twice"),
        ("provider batches", batches),
        ("batch lines run by the model", str(figures["batch_lines"])),
        ("live model calls", str(figures["live_calls"])),
        ("credits", f"per image {figures['price_per_image']}; reserved {ledger.get('reserve')}, "
         f"captured {ledger.get('capture', 0)}, refunded {ledger.get('refund', 0)}"),
        ("temporary images left", str(figures["temporary_files_left"])),
        ("provider files left", str(figures["provider_files_left"])),
        ("peak RSS", ", ".join(f"{name} {mb:.1f} MB" for name, mb in peaks.items())),
        ("submit", f"{figures['submit_s']:.2f} s"),
        ("building and uploading", f"{figures['build_upload_s']:.2f} s"),
        ("recording (batch ended → recorded)", f"{figures['record_s']:.2f} s"),
        ("submit → job ended", f"{figures['total_s']:.2f} s"),
    ]  # fmt: skip
    if not markdown:
        return "\n".join(f"{name:38} {value}" for name, value in rows)
    machine = f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores"
    lines = [f"`{command}` ({machine})", "", "| | |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--image-kb", type=int, default=0, help="noise JPEGs of this size")
    parser.add_argument("--delay", type=float, default=5.0, help="the provider's delay, s")
    parser.add_argument("--storage", choices=["file", "s3"], default="file")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    command = "python -m tests.benchmarks.batch_lane " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    work = Path(tempfile.mkdtemp(prefix="imageextract-batch-bench-"))
    try:
        figures = run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(report(figures, command, args.markdown))
    problems = [
        figures["lost"], figures["recorded_twice"], figures["temporary_files_left"],
        figures["live_calls"], figures["provider_files_left"],
    ]  # fmt: skip
    if any(problems) or figures["status"] != "succeeded":
        sys.exit("the batch job did not end as it must (see above)")


if __name__ == "__main__":
    main()
