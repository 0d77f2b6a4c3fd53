"""`imageextract submit` with 10,000 small images from a folder, against the real stack.

    python -m tests.benchmarks.submit_client [--images 10000] [--markdown]

Starts Postgres, Redis, the fake model (no latency), the API (3000 images per job, the
default) and the workers, writes ``--images`` distinct small PNGs into a folder, and runs
the command as a subprocess, sampling its RSS every 0.1 s. Checks that it split the folder
into ceil(images / 3000) jobs, that the output file has every image exactly once in input
order, and that each job was reserved once in the ledger. Then, on a second folder, kills
the command with SIGKILL once its upload passes half, runs it again, and checks the same:
no image charged twice, every result once.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests import sample_images
from tests.benchmarks.throughput import ROOT, Bench, log, tree_rss_mb

TEMPLATE = {"width": "Width", "height": "Height"}


def _folder(work: Path, name: str, first: int, count: int) -> Path:
    folder = work / name
    folder.mkdir()
    for index in range(first, first + count):
        (folder / f"{index:06d}.png").write_bytes(sample_images.png_for(index))
    return folder


def _check(bench: Bench, out: Path, folder: Path, jobs_before: int) -> dict[str, Any]:
    names = sorted(path.stem for path in folder.iterdir())
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    ids = [line["id"] for line in lines]
    jobs = {line["job_id"] for line in lines}
    reserves = bench.db.execute(
        "SELECT job_id FROM credit_ledger WHERE kind = 'reserve' ORDER BY id"
    ).fetchall()[jobs_before:]
    return {
        "lines": len(lines),
        "in_input_order_once": ids == names,
        "succeeded": sum(line["status"] == "succeeded" for line in lines),
        "jobs": len(jobs),
        "reserves": len(reserves),
        "reserved_once": sorted(str(row[0]) for row in reserves) == sorted(jobs),
    }


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    with contextlib.ExitStack() as exits:
        log("starting Postgres, Redis, the fake model, the API and the workers")
        bench_args = argparse.Namespace(images=3000, latency=0.0, storage="file")
        bench = Bench(exits, bench_args, work)
        bench.start_workers("threads", [32, 32], "io")
        env = {**bench.env, "IMAGEEXTRACT_URL": bench.api_url, "IMAGEEXTRACT_API_KEY": bench.key}
        template = work / "template.json"
        template.write_text(json.dumps(TEMPLATE))

        def command(folder: Path, out: Path) -> list[str]:
            return [sys.executable, "-m", "cli", "submit", str(folder), "--schema",
                    str(template), "--out", str(out), "--poll-interval", "0.5"]  # fmt: skip

        figures: dict[str, Any] = {"images": args.images}
        folder = _folder(work, "night", 0, args.images)
        out = work / "results.jsonl"
        log(f"submit: {args.images} images")
        started = time.perf_counter()
        process = subprocess.Popen(command(folder, out), env=env, cwd=ROOT,
                                   stderr=subprocess.PIPE, text=True)  # fmt: skip
        peak = 0.0
        while process.poll() is None:
            peak = max(peak, tree_rss_mb(process.pid))
            time.sleep(0.1)
        assert process.stderr is not None
        stderr = process.stderr.read()
        figures["seconds"] = time.perf_counter() - started
        figures["exit"] = process.returncode
        figures["peak_rss_mb"] = peak
        figures["summary"] = stderr.strip().splitlines()[-1] if stderr.strip() else ""
        figures["first"] = _check(bench, out, folder, 0)

        log("submit killed halfway through the upload, then run again")
        jobs_before = figures["first"]["reserves"]
        folder = _folder(work, "again", args.images, args.images)
        out = work / "again.jsonl"
        process = subprocess.Popen(command(folder, out), env=env, cwd=ROOT,
                                   stderr=subprocess.PIPE, text=True)  # fmt: skip
        assert process.stderr is not None
        killed_at = None
        for line in process.stderr:
            if line.startswith("upload: ") and int(line.split()[1].rstrip("%")) >= 50:
                os.kill(process.pid, signal.SIGKILL)
                killed_at = line.strip()
                break
        process.wait()
        figures["killed_at"] = killed_at
        done = subprocess.run(command(folder, out), env=env, cwd=ROOT, capture_output=True,
                              text=True, check=False)  # fmt: skip
        figures["rerun_exit"] = done.returncode
        figures["second"] = _check(bench, out, folder, jobs_before)
        return figures


def report(figures: dict[str, Any], command: str, markdown: bool) -> str:
    first, second = figures["first"], figures["second"]
    rows = [
        ("images", str(figures["images"])),
        ("jobs", f"{first['jobs']} (reserved once each: {first['reserved_once']})"),
        ("result lines", f"{first['lines']}, every image once in input order: "
         f"{first['in_input_order_once']}, succeeded {first['succeeded']}"),
        ("exit status", str(figures["exit"])),
        ("client peak RSS", f"{figures['peak_rss_mb']:.1f} MB"),
        ("wall time", f"{figures['seconds']:.1f} s"),
        ("summary line", figures["summary"]),
        ("killed", f"SIGKILL at `{figures['killed_at']}`, then run again (exit "
         f"{figures['rerun_exit']})"),
        ("after the rerun", f"{second['jobs']} jobs, {second['reserves']} reservations "
         f"(once each: {second['reserved_once']}), {second['lines']} lines, every image once "
         f"in input order: {second['in_input_order_once']}"),
    ]  # fmt: skip
    if not markdown:
        return "\n".join(f"{name:18} {value}" for name, value in rows)
    machine = f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores"
    lines = [f"`{command}` ({machine})", "", "| | |", "|---|---|"]
    return "\n".join(lines + [f"| {name} | {value} |" for name, value in rows])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    command = "python -m tests.benchmarks.submit_client " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    work = Path(tempfile.mkdtemp(prefix="imageextract-submit-bench-"))
    try:
        figures = run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(report(figures, command, args.markdown))
    first, second = figures["first"], figures["second"]
    ok = (
        figures["exit"] == 0 and figures["rerun_exit"] == 0
        and first["in_input_order_once"] and second["in_input_order_once"]
        and first["reserved_once"] and second["reserved_once"]
    )  # fmt: skip
    if not ok:
        sys.exit("the command did not do what it must (see above)")


if __name__ == "__main__":
    main()
