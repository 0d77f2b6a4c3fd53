"""PDFs: scanned documents through ``imageextract serve``, and adbuy-dev as PDFs.

    .venv/bin/python -m tests.benchmarks.documents [--pages 30] [--big-pages 200]
        [--set adbuy] [--limit N] [--dpi 150] [--skip-serve] [--skip-pages-mode] [--skip-adbuy]
        [--keep DIR]

1. A ``--pages``-page scanned invoice (letter pages at 150 dpi, pictures only, about 25
   lines each: items with amounts, the total on the last page) made with
   ``tests.sample_pdfs.scanned_pdf``, submitted to ``imageextract serve`` (a real process on
   a free port with a fresh data dir and HOME: SQLite, filesystem broker, local engine, the
   workers it starts itself) with a JSON template prompt in JSON mode; document mode, then
   (unless ``--skip-pages-mode``) ``document_mode=pages``.
2. A ``--big-pages``-page scanned document of a few lines a page (0 skips it) to the same
   serve: the memory a long document takes.
3. Every image of ``../shared/data/<set>-dev`` (``--set``, default adbuy) as a one-page PDF
   holding the picture at ``--dpi`` (150, adbuy's resolution) without a text layer, read by
   the local engine in this process as a PNG and as a PDF, both scored by
   ``../shared/eval/score.py``. No expected value is printed.

Figures (printed as markdown; progress goes to stderr):

- submit: the POST's start to its 202. job wall: the job's ``created_at`` to its
  ``finished_at`` (the server's clock). s per page: job wall / pages.
- API peak RSS: serve's own process (uvicorn runs in it), the larger of its VmRSS sampled
  every 0.2 s and its VmHWM, which is reset (``/proc/<pid>/clear_refs``) before each job.
- workers peak RSS: the highest sum of VmRSS over every descendant of serve (io worker,
  cpu worker and its prefork children, beat) sampled every 0.2 s during the job; pages
  shared between processes count once per process. largest worker process: the highest
  peak of one of them.
- fields right: invoice_no, date and total of the answer against the values this script
  printed on the pages.
- adbuy: mean strict per field, PNG vs PDF; s per document: median wall time of one
  document, read to parsed JSON (the PDF's includes rendering its page).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from core.settings import Settings
from extraction.batch import BatchEntry, extract_one
from extraction.contract import Scene
from extraction.providers.registry import create_provider
from tests import stack
from tests.benchmarks.local_engine import entries_for, score, warm_up
from tests.sample_pdfs import scanned_pdf

PROMPT = 'Extract {"invoice_no": "Invoice Number", "date": "Date", "total": "Total"}'
LINES_PER_PAGE = 25
ENDED = {"succeeded", "partially_succeeded", "failed", "cancelled"}
SAMPLE_SECONDS = 0.2
POLL_SECONDS = 0.5
# A job gets this long, plus PAGE_SECONDS a page, before the benchmark gives up on it.
JOB_SECONDS = 120.0
PAGE_SECONDS = 20.0
SERVE_START_SECONDS = 180.0
SERVE_STOP_SECONDS = 60.0
MAX_ACCURACY_GAP = 0.02
MB = 1024 * 1024
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

_PRODUCTS = [
    "Hex bolt M8 x 40 zinc (box of 100)", "Pallet stretch wrap 18 in", "Safety gloves nitrile L",
    "Cable ties 300 mm black (1000)", "Shop towels blue (roll)", "Hydraulic hose 3/8 in x 50 ft",
    "LED high bay fixture 150 W", "Corrugated box 18 x 12 x 12", "Forklift battery water kit",
    "Industrial degreaser 5 gal", "Packing tape 2 in clear (36)", "Steel shelving unit 72 in",
    "Anti-fatigue mat 3 x 5 ft", "Hand truck convertible", "Zip bags 6 x 9 in (1000)",
]  # fmt: skip


@dataclass(frozen=True)
class Document:
    """A generated PDF and the values this script printed on it."""

    label: str
    data: bytes
    pages: int
    expected: dict[str, str]


def _money(value: Decimal) -> str:
    return f"{value:,.2f}"


def invoice_document(pages: int, seed: int = 26) -> Document:
    """A ``pages``-page invoice of LINES_PER_PAGE lines a page: a header on the first page,
    a continuation heading on the others, item lines with amounts, and the subtotal, tax
    and total at the end of the last."""
    rng = random.Random(seed)
    number, date = f"INV-2026-{rng.randrange(1000, 9999)}", "03/14/2026"
    columns = "Item      Description                              Qty   Unit price      Amount"
    subtotal = Decimal(0)
    printed: list[list[str]] = []
    for page in range(1, pages + 1):
        if page == 1:
            lines = [
                "Harbor Industrial Supply Co.",
                "1200 Harbor Blvd, Oakland, CA 94607   Tel (510) 555-0142",
                "",
                "INVOICE",
                f"Invoice Number: {number}",
                f"Date: {date}",
                "Bill to: Northwind Traders, 88 Pine St, Denver, CO 80202",
                f"Terms: Net 30                                    Page 1 of {pages}",
                "",
                columns,
            ]
        else:
            lines = [
                f"Harbor Industrial Supply Co.   Invoice {number} (continued)",
                f"Page {page} of {pages}",
                "",
                columns,
            ]
        footer = 5 if page == pages else 0
        while len(lines) < LINES_PER_PAGE - footer:
            quantity = rng.randrange(1, 49)
            unit = Decimal(rng.randrange(250, 48000)) / 100
            amount = unit * quantity
            subtotal += amount
            lines.append(
                f"{rng.randrange(10000, 99999)}   {rng.choice(_PRODUCTS)}   {quantity}   "
                f"{_money(unit)}   {_money(amount)}"
            )
        printed.append(lines)
    tax = (subtotal * Decimal("0.0825")).quantize(Decimal("0.01"))
    total = subtotal + tax
    printed[-1] += [
        "",
        f"Subtotal: {_money(subtotal)}",
        f"Sales tax (8.25%): {_money(tax)}",
        f"Total: ${_money(total)}",
        "Thank you for your business.",
    ]
    expected = {"invoice_no": number, "date": date, "total": _money(total)}
    return Document(f"{pages}-page invoice", scanned_pdf(printed), pages, expected)


def long_document(pages: int, seed: int = 27) -> Document:
    """A ``pages``-page invoice of a few lines a page (every page different, as a scan's
    are): the number and date on the first page, the total on the last."""
    rng = random.Random(seed)
    number, date = f"INV-2026-{rng.randrange(1000, 9999)}", "05/02/2026"
    total = Decimal(0)
    printed: list[list[str]] = []
    for page in range(1, pages + 1):
        quantity, unit = rng.randrange(1, 49), Decimal(rng.randrange(250, 48000)) / 100
        total += unit * quantity
        item = (
            f"Line {page}: {rng.choice(_PRODUCTS)}   {quantity} x {_money(unit)}   "
            f"{_money(unit * quantity)}"
        )
        if page == 1:
            lines = [
                f"Harbor Industrial Supply Co.   Page 1 of {pages}",
                f"Invoice Number: {number}",
                f"Date: {date}",
                item,
            ]
        else:
            lines = [f"Invoice {number} (continued)   Page {page} of {pages}", item]
        if page == pages:
            lines.append(f"Total: ${_money(total)}")
        printed.append(lines)
    expected = {"invoice_no": number, "date": date, "total": _money(total)}
    return Document(f"{pages}-page long document", scanned_pdf(printed), pages, expected)


def fields_right(expected: dict[str, str], parsed: Any) -> int:
    if not isinstance(parsed, dict):
        return 0

    def plain(value: Any) -> str:
        return re.sub(r"[^0-9A-Z.]", "", str(value).upper())

    return sum(plain(parsed.get(name)) == plain(value) for name, value in expected.items())


# --- processes and their memory ------------------------------------------------------------


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of a process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: the fields start after the last ")".
    rest = text[text.rindex(")") + 2 :].split()
    return int(rest[1]), int(rest[19])


def descendants(root: int) -> dict[int, tuple[int, int]]:
    """Every process under ``root``, by pid, with its parent's pid and its start time."""
    table: dict[int, tuple[int, int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (found := _stat(int(entry.name))) is not None:
            table[int(entry.name)] = found
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found_below: dict[int, tuple[int, int]] = {}
    pending = list(children.get(root, []))
    while pending:
        pid = pending.pop()
        found_below[pid] = table[pid]
        pending.extend(children.get(pid, []))
    return found_below


def rss_bytes(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE
    except (OSError, IndexError):
        return 0


def hwm_bytes(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def reset_hwm(pid: int) -> bool:
    """Reset the process's VmHWM to its current RSS (Linux 4.0+, our own processes)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def role_of(pid: int, parent: int, root: int) -> str:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    if b"cpu@%h" in command:
        # The prefork pool's children run the local engine, each with its own models.
        return "cpu worker" if parent == root else "cpu pool child"
    if b"io@%h" in command:
        return "io worker"
    return "beat" if b"beat" in command else "?"


@dataclass
class Peaks:
    api: int = 0
    workers: int = 0
    # The tree's sum when the job was submitted: what the workers hold idle.
    workers_before: int = 0
    # The highest RSS of each worker process, by (pid, start time), with its role.
    processes: dict[tuple[int, int], tuple[str, int]] = field(default_factory=dict)

    @property
    def largest(self) -> tuple[str, int]:
        return max(self.processes.values(), key=lambda value: value[1], default=("-", 0))

    def by_role(self) -> str:
        """Each process's peak in MB, grouped by role: "cpu pool child 651 + 640, ..."."""
        roles: dict[str, list[int]] = {}
        for role, peak in self.processes.values():
            roles.setdefault(role, []).append(peak)
        return ", ".join(
            f"{role} " + " + ".join(f"{peak / MB:.0f}" for peak in sorted(peaks, reverse=True))
            for role, peaks in sorted(roles.items())
        )


class Sampler:
    """Samples the RSS of serve and of its process tree every SAMPLE_SECONDS in a thread;
    every process seen is remembered in ``seen`` for the clean-up. Each process's VmHWM is
    reset on entry and read on exit, so a peak between two samples counts too."""

    def __init__(self, root: int, seen: dict[int, int]) -> None:
        self.root = root
        self.seen = seen
        self.peaks = Peaks()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._reset: set[int] = set()

    def __enter__(self) -> Sampler:
        for pid in [self.root, *descendants(self.root)]:
            if reset_hwm(pid):
                self._reset.add(pid)
        self._sample()
        self.peaks.workers_before = self.peaks.workers
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sample()
        if self.root in self._reset:
            self.peaks.api = max(self.peaks.api, hwm_bytes(self.root))
        for (pid, started), (role, peak) in list(self.peaks.processes.items()):
            if pid in self._reset and _alive_as(pid, started):
                self.peaks.processes[(pid, started)] = (role, max(peak, hwm_bytes(pid)))

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self._sample()

    def _sample(self) -> None:
        self.peaks.api = max(self.peaks.api, rss_bytes(self.root))
        tree = descendants(self.root)
        self.seen.update((pid, started) for pid, (_, started) in tree.items())
        total = 0
        for pid, (parent, started) in tree.items():
            rss = rss_bytes(pid)
            total += rss
            key = (pid, started)
            role, peak = self.peaks.processes.get(key) or (role_of(pid, parent, self.root), 0)
            self.peaks.processes[key] = (role, max(peak, rss))
        self.peaks.workers = max(self.peaks.workers, total)


@dataclass(frozen=True)
class Serve:
    url: str
    key: str
    pid: int
    log: Path
    seen: dict[int, int]


def _embedded_env(data_dir: Path, home: Path, **settings: str) -> dict[str, str]:
    # No IMAGEEXTRACT_ variable of ours leaks in: serve runs its defaults, the embedded mode.
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEEXTRACT_")}
    env.pop("XDG_DATA_HOME", None)
    env.update({"HOME": str(home), "IMAGEEXTRACT_DATA_DIR": str(data_dir)})
    env.update({f"IMAGEEXTRACT_{name.upper()}": value for name, value in settings.items()})
    return env


def _wait_until(ready: Callable[[], bool], seconds: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} after {seconds:.0f} s; serve's log ends:\n{_tail(log)}")
        time.sleep(0.1)


def _tail(log: Path, chars: int = 4000) -> str:
    try:
        return log.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def _alive_as(pid: int, started: int) -> bool:
    found = _stat(pid)
    return found is not None and found[1] == started


@contextlib.contextmanager
def serve_process(work: Path, **settings: str) -> Iterator[Serve]:
    """``imageextract serve`` on a free port with a fresh data dir and HOME under ``work``,
    once its workers are ready; stopped on leaving (SIGTERM, then SIGKILL after
    SERVE_STOP_SECONDS), with any process of its tree that outlived it killed by pid."""
    data_dir, home = work / "data", work / "home"
    home.mkdir(parents=True)
    port = stack.free_port()
    log = work / "serve.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", "--port", str(port), "--log-level", "info"],
        env=_embedded_env(data_dir, home, **settings),
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
        # A session of its own: Ctrl-C reaches only us, and we stop serve ourselves.
        start_new_session=True,
    )  # fmt: skip
    seen: dict[int, int] = {}
    try:
        key_file = data_dir / "api-key"

        def started() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"serve exited with {process.returncode}:\n{_tail(log)}")
            text = log.read_text(errors="replace")
            return (
                key_file.exists()
                and re.search(r"io@\S+ ready\.", text) is not None
                and re.search(r"cpu@\S+ ready\.", text) is not None
            )

        _wait_until(started, SERVE_START_SECONDS, "serve's workers are not ready", log)
        stack.wait_for_port(port, timeout=SERVE_START_SECONDS)
        seen.update((pid, started) for pid, (_, started) in descendants(process.pid).items())
        yield Serve(f"http://127.0.0.1:{port}", key_file.read_text().strip(), process.pid, log,
                    seen)  # fmt: skip
    finally:
        seen.update((pid, started) for pid, (_, started) in descendants(process.pid).items())
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(SERVE_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        # Its children die with it (PR_SET_PDEATHSIG); this catches any that did not.
        for pid, started_at in seen.items():
            if _alive_as(pid, started_at):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)


# --- jobs through serve --------------------------------------------------------------------


@dataclass
class JobRun:
    document: Document
    mode: str
    status: str = "timed out"
    submit_s: float = float("nan")
    wall_s: float = float("nan")
    sources: str = "-"
    right: int = 0
    error: str | None = None
    parsed: Any = None
    peaks: Peaks = field(default_factory=Peaks)

    @property
    def seconds_per_page(self) -> float:
        return self.wall_s / self.document.pages


def run_job(serve: Serve, document: Document, mode: str) -> JobRun:
    """Submit the document, poll until the job ends (or its deadline), read its item."""
    run = JobRun(document, mode)
    headers = {"Authorization": f"Bearer {serve.key}"}
    with (
        httpx.Client(base_url=serve.url, headers=headers, timeout=60) as client,
        Sampler(serve.pid, serve.seen) as sampler,
    ):
        started = time.perf_counter()
        response = client.post(
            "/v1/jobs",
            files=[("images", ("document.pdf", document.data, "application/pdf"))],
            data={"prompt": PROMPT, "json_mode": "true", "document_mode": mode},
            timeout=300,
        )
        run.submit_s = time.perf_counter() - started
        if response.status_code != 202:
            run.status, run.error = f"refused ({response.status_code})", response.text[:500]
            run.peaks = sampler.peaks
            return run
        job_id = response.json()["id"]
        deadline = time.monotonic() + JOB_SECONDS + PAGE_SECONDS * document.pages
        job: dict[str, Any] = {}
        while time.monotonic() < deadline:
            job = client.get(f"/v1/jobs/{job_id}").raise_for_status().json()
            if job["status"] in ENDED:
                break
            time.sleep(POLL_SECONDS)
    run.peaks = sampler.peaks
    if job.get("status") not in ENDED:
        return run
    run.status = job["status"]
    run.wall_s = (
        datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["created_at"])
    ).total_seconds()
    with httpx.Client(base_url=serve.url, headers=headers, timeout=60) as client:
        item = client.get(f"/v1/jobs/{job_id}/items").raise_for_status().json()["items"][0]
    counts = Counter(page["source"] for page in item.get("pages") or [])
    run.sources = ", ".join(f"{source} {count}" for source, count in counts.most_common()) or "-"
    if item["error"]:
        run.error = f"{item['error']['code']}: {item['error']['message']}"
    parsed = run.parsed = item["parsed"]
    if mode == "pages" and isinstance(parsed, list):
        # One answer a page: each value counts as right when some page's answer has it.
        run.right = sum(
            any(fields_right({name: value}, answer) for answer in parsed)
            for name, value in document.expected.items()
        )
    else:
        run.right = fields_right(document.expected, parsed)
    return run


def serve_part(work: Path, pages: int, big_pages: int, pages_mode: bool) -> list[JobRun]:
    documents = [invoice_document(pages)]
    if big_pages:
        documents.append(long_document(big_pages))
    # serve runs with the default limits (its environment has no IMAGEEXTRACT_ variable).
    max_bytes = Settings.model_fields["max_image_bytes"].default
    for document in documents:
        size = len(document.data)
        print(f"{document.label}: {size / MB:.1f} MB", file=sys.stderr, flush=True)
        if size > max_bytes:
            raise SystemExit(
                f"{document.label} is {size / MB:.1f} MB, over IMAGEEXTRACT_MAX_IMAGE_BYTES "
                f"({max_bytes / MB:.0f} MB): use fewer pages"
            )
    limits = {"max_pages_per_document": str(max(500, pages, big_pages))}
    runs: list[JobRun] = []
    with serve_process(work / "serve", **limits) as serve:
        warm = run_job(serve, invoice_document(1, seed=1), "document")
        if warm.status != "succeeded":
            raise RuntimeError(
                f"the warm-up job ended {warm.status}: {warm.error}\n{_tail(serve.log)}"
            )
        plan = [(documents[0], "document")]
        if pages_mode:
            plan.append((documents[0], "pages"))
        plan += [(document, "document") for document in documents[1:]]
        for document, mode in plan:
            print(f"serve: {document.label}, document_mode={mode}", file=sys.stderr, flush=True)
            runs.append(run_job(serve, document, mode))
            if runs[-1].status in ("timed out", "failed") or runs[-1].status.startswith("refused"):
                print(f"serve's log ends:\n{_tail(serve.log)}", file=sys.stderr)
    return runs


def serve_report(runs: list[JobRun]) -> str:
    def mb(value: int) -> str:
        return f"{value / MB:.0f} MB"

    def largest(run: JobRun) -> str:
        role, peak = run.peaks.largest
        return f"{mb(peak)} ({role})"

    rows: list[tuple[str, Callable[[JobRun], str], str]] = [
        ("pages", lambda r: str(r.document.pages), ""),
        ("file", lambda r: f"{len(r.document.data) / MB:.1f} MB", "< 20 MB"),
        ("status", lambda r: r.status, "succeeded"),
        ("pages' sources", lambda r: r.sources, ""),
        ("fields right (of 3)", lambda r: str(r.right), ""),
        ("submit (request → 202)", lambda r: f"{r.submit_s:.2f} s", ""),
        ("job wall (created → finished)", lambda r: f"{r.wall_s:.1f} s", ""),
        ("s per page", lambda r: f"{r.seconds_per_page:.2f}", ""),
        ("API peak RSS", lambda r: mb(r.peaks.api), "< 250 MB"),
        ("workers RSS at submit (tree sum)", lambda r: mb(r.peaks.workers_before), ""),
        ("workers peak RSS (tree sum)", lambda r: mb(r.peaks.workers), "< 1.5 GB"),
        ("largest worker process", largest, ""),
        ("peak per worker process (MB)", lambda r: r.peaks.by_role(), ""),
    ]
    heads = [f"{r.document.label}, {r.mode}" for r in runs]
    lines = [
        "| | " + " | ".join(heads) + " | target |",
        "|---|" + "---|" * len(runs) + "---|",
    ]
    lines += [f"| {name} | " + " | ".join(show(r) for r in runs) + f" | {target} |"
              for name, show, target in rows]  # fmt: skip
    lines += [f"\n{r.document.label}, {r.mode}: {r.error}" for r in runs if r.error]
    for r in runs:
        # The documents are this script's own: what was printed on them may be shown.
        if r.mode == "document" and r.right < len(r.document.expected):
            answer = r.parsed if isinstance(r.parsed, dict) else {}
            wrong = [
                f"{name} printed {value!r}, answered {answer.get(name)!r}"
                for name, value in r.document.expected.items()
                if not fields_right({name: value}, r.parsed)
            ]
            lines.append(f"\n{r.document.label}, {r.mode}: " + "; ".join(wrong))
    return "\n".join(lines)


# --- a labelled set as PDFs ----------------------------------------------------------------


@dataclass
class SetComparison:
    name: str
    documents: int
    dpi: int
    png_seconds: list[float]
    pdf_seconds: list[float]
    png_failed: int
    pdf_failed: int
    pdf_sources: Counter[str]
    differing: int
    png_summary: dict[str, Any]
    pdf_summary: dict[str, Any]


def as_pdf(image: Path, folder: Path, dpi: int) -> Path:
    """A one-page PDF holding the picture at ``dpi``, without a text layer."""
    target = folder / f"{image.stem}.pdf"
    with Image.open(image) as picture:
        page = picture if picture.mode in ("RGB", "L") else picture.convert("RGB")
        out = io.BytesIO()
        page.save(out, "PDF", resolution=dpi)
    target.write_bytes(out.getvalue())
    return target


def scored_labels(labels: Path, kept: set[str], work: Path) -> Path:
    """The labels of the documents that ran: score.py counts a missing one as wrong."""
    subset = work / "labels.jsonl"
    subset.write_text(
        "".join(
            line + "\n"
            for line in labels.read_text().splitlines()
            if line.strip() and str(json.loads(line)["id"]) in kept
        )
    )
    return subset


def set_part(name: str, limit: int | None, dpi: int, work: Path) -> SetComparison:
    labels, entries = entries_for(name, limit)
    folder = work / f"{name}-pdf"
    folder.mkdir(parents=True, exist_ok=True)
    pdfs = [BatchEntry(e.id, as_pdf(e.image, folder, dpi), e.prompt) for e in entries]
    settings = Settings()
    # The worker's own path to the provider, as local_engine.py makes it.
    provider = create_provider("local", settings)
    png_seconds: list[float] = []
    pdf_seconds: list[float] = []
    failed = Counter[str]()
    sources = Counter[str]()
    differing = 0
    try:
        warm_up(provider)
        png_out, pdf_out = work / f"{name}-png.jsonl", work / f"{name}-pdf.jsonl"
        with png_out.open("w") as png_sink, pdf_out.open("w") as pdf_sink:
            # PNG and PDF of each document in turn, so a busy moment costs both alike.
            for number, (png, pdf) in enumerate(zip(entries, pdfs, strict=True), start=1):
                records = {}
                for kind, entry, sink in (("png", png, png_sink), ("pdf", pdf, pdf_sink)):
                    record = extract_one(
                        provider, settings, entry, json_mode=True, scene=Scene.GENERAL
                    )
                    (png_seconds if kind == "png" else pdf_seconds).append(record["seconds"])
                    failed[kind] += record["error"] is not None
                    sink.write(json.dumps(record, ensure_ascii=False) + "\n")
                    records[kind] = record
                sources.update(page["source"] for page in records["pdf"].get("pages") or [])
                differing += records["png"]["output"] != records["pdf"]["output"]
                print(f"{name}: {number}/{len(entries)}", file=sys.stderr, flush=True)
    finally:
        provider.close()
    subset = scored_labels(labels, {entry.id for entry in entries}, work)
    return SetComparison(
        name, len(entries), dpi, png_seconds, pdf_seconds, failed["png"], failed["pdf"],
        sources, differing, score(subset, png_out), score(subset, pdf_out),
    )  # fmt: skip


def set_report(result: SetComparison) -> str:
    png, pdf = result.png_summary, result.pdf_summary
    gap = pdf["mean_strict"] - png["mean_strict"]
    lines = [
        f"{result.documents} documents; the PDFs hold each picture at {result.dpi} dpi "
        "(Pillow, JPEG inside, no text layer); pages' sources: "
        + (", ".join(f"{s} {n}" for s, n in result.pdf_sources.most_common()) or "-")
        + f"; documents whose answers differ between PNG and PDF: {result.differing}",
        "",
        "| field | PNG strict | PDF strict | PDF - PNG | n |",
        "|---|---|---|---|---|",
    ]
    for name in sorted(png["fields"]):
        a, b = png["fields"][name]["strict"], pdf["fields"][name]["strict"]
        lines.append(f"| {name} | {a:.3f} | {b:.3f} | {b - a:+.3f} | {png['fields'][name]['n']} |")
    met = "yes" if abs(gap) <= MAX_ACCURACY_GAP else "no"
    lines += [
        f"| **mean** | {png['mean_strict']:.3f} | {pdf['mean_strict']:.3f} | {gap:+.3f} "
        f"(target within {MAX_ACCURACY_GAP}: {met}) | |",
        "",
        "| | PNG | PDF |",
        "|---|---|---|",
        f"| failed | {result.png_failed} | {result.pdf_failed} |",
        f"| s per document (median) | {statistics.median(result.png_seconds):.2f} "
        f"| {statistics.median(result.pdf_seconds):.2f} |",
        f"| s per document (mean) | {statistics.fmean(result.png_seconds):.2f} "
        f"| {statistics.fmean(result.pdf_seconds):.2f} |",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--pages", type=int, default=30, help="pages of the invoice (part 1)")
    parser.add_argument(
        "--big-pages", type=int, default=200,
        help="pages of the long document (part 2); 0 skips it",
    )  # fmt: skip
    parser.add_argument("--skip-serve", action="store_true", help="skip parts 1 and 2")
    parser.add_argument(
        "--skip-pages-mode", action="store_true",
        help="part 1 in document mode only, not document_mode=pages too",
    )  # fmt: skip
    parser.add_argument("--skip-adbuy", action="store_true", help="skip part 3")
    parser.add_argument("--set", choices=["adbuy", "sroie", "funsd"], default="adbuy")
    parser.add_argument("--limit", type=int, default=None, help="first N documents of the set")
    parser.add_argument("--dpi", type=int, default=150, help="resolution of the set's PDFs")
    parser.add_argument(
        "--keep", type=Path, default=None,
        help="folder to keep part 3's predictions in (for score.py --errors)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.pages < 1 or args.big_pages < 0:
        parser.error("--pages must be at least 1 and --big-pages at least 0")
    # SIGTERM unwinds like Ctrl-C, so serve is stopped and the temporary folder removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    cores = os.cpu_count() or 1
    report = [
        "## PDFs",
        "",
        f"{cores} cores, Python {sys.version.split()[0]}, "
        f"{datetime.now().astimezone():%Y-%m-%d %H:%M %Z}.",
    ]
    work = Path(tempfile.mkdtemp(prefix="imageextract-documents-"))
    try:
        if not args.skip_serve:
            runs = serve_part(work, args.pages, args.big_pages, not args.skip_pages_mode)
            report += [
                "",
                "### Scanned PDFs through `imageextract serve` (local engine, embedded mode)",
                "",
                serve_report(runs),
            ]
        if not args.skip_adbuy:
            folder = args.keep or work / "set"
            folder.mkdir(parents=True, exist_ok=True)
            result = set_part(args.set, args.limit, args.dpi, folder)
            report += [
                "",
                f"### {args.set}-dev as PDFs, local engine in this process",
                "",
                set_report(result),
            ]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n".join(report))


if __name__ == "__main__":
    main()
