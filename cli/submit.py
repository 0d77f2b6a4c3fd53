"""``imageextract submit`` and ``imageextract jobs``: a remote server's client, for the night's
scans (through the SDK, ``imageextract.Client``).

``submit`` splits the inputs into jobs by the server's limits (``GET /v1/account``), sends
each with an Idempotency-Key made from the inputs and the chunk (the same command run again
after a crash gets the jobs it already made, and pays nothing twice), shows a progress bar
per phase (upload bytes, images done), writes every result as its job ends, in input order,
and sums up (the credits charged count only the jobs this run made). Exit status: 0 when
every image succeeded, 2 when some failed (listed), 1 on an error.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import click

from api.results_csv import CsvResults
from cli.exit_status import Command, UsageError, echo_failures, exit_for
from cli.progress import Phase
from core.errors import ImageExtractError
from extraction.batch import BatchEntry, entries_from_manifest, entries_from_paths
from extraction.pdf import PDF_SNIFF_BYTES, count_pages, is_pdf
from imageextract import APIError, Client, Job
from imageextract.requests import prompt_with_schema

# Room kept under the job byte limit for part headers and fields.
PART_OVERHEAD = 512


@dataclass
class Chunk:
    """Entries sent as one job (positions in the input), and the job once sent."""

    prompt: str
    positions: list[int] = field(default_factory=list)
    size: int = 0
    # Images and PDF pages: the server's max_images_per_job counts both.
    units: int = 0
    key: str = ""
    job: Job | None = None
    # The Idempotency-Key found a job an earlier run made (and was charged for).
    existed: bool = False
    written: bool = False


def _client(url: str | None, key: str | None) -> Client:
    try:
        return Client(url, key)
    except ValueError as error:
        raise UsageError(f"{error} (or give --url / --key)") from error


def _plan(
    entries: list[BatchEntry], limits: Any, identity: str, options: dict[str, Any]
) -> tuple[list[Chunk], dict[int, dict[str, str]]]:
    """Jobs within the server's limits, in input order (a new one where the prompt changes),
    and the images refused here (missing, or larger than an image may be)."""
    chunks: list[Chunk] = []
    refused: dict[int, dict[str, str]] = {}
    for position, entry in enumerate(entries):
        try:
            size = entry.image.stat().st_size
        except OSError as error:
            refused[position] = {"code": "missing_field",
                                 "message": f"{entry.image}: {error.strerror}"}  # fmt: skip
            continue
        if size > limits.max_image_bytes:
            refused[position] = {
                "code": "image_too_large",
                "message": f"{entry.image} is {size} bytes; the server takes at most "
                f"{limits.max_image_bytes} per image",
            }
            continue
        try:
            units = _units(entry, limits)
        except ImageExtractError as error:
            refused[position] = {"code": error.kind.code, "message": error.message}
            continue
        chunk = chunks[-1] if chunks else None
        if (
            chunk is None
            or chunk.prompt != entry.prompt
            or chunk.units + units > limits.max_images_per_job
            or chunk.size + size + PART_OVERHEAD > limits.max_job_bytes
        ):
            chunk = Chunk(prompt=entry.prompt)
            chunks.append(chunk)
        chunk.positions.append(position)
        chunk.size += size + PART_OVERHEAD
        chunk.units += units
    for number, chunk in enumerate(chunks):
        digest = hashlib.sha256(f"imageextract-submit/1\n{identity}\n{number}\n".encode())
        digest.update(json.dumps({"prompt": chunk.prompt, **options}, sort_keys=True).encode())
        for position in chunk.positions:
            path = entries[position].image.resolve()
            stat = path.stat()
            digest.update(f"\n{path}\t{stat.st_size}\t{stat.st_mtime_ns}".encode())
        chunk.key = f"submit-{digest.hexdigest()[:48]}"
    return chunks, refused


def _units(entry: BatchEntry, limits: Any) -> int:
    """What an entry counts towards a job's limit: 1 for an image, its pages for a PDF
    (counted here, so that no job is cut where the server would refuse it)."""
    with entry.image.open("rb") as file:
        head = file.read(PDF_SNIFF_BYTES)
    if not is_pdf(head):
        return 1
    most = min(limits.max_pages_per_document, limits.max_images_per_job)
    return count_pages(entry.image.read_bytes(), name=str(entry.image), limit=most)


class _Sink:
    """Where result lines go: JSON Lines (a file or stdout) and/or CSV."""

    def __init__(self, out: TextIO | None, table: CsvResults | None) -> None:
        self.out = out
        self.table = table
        self.by_status: Counter[str] = Counter()
        self.failures: list[tuple[str, str, str]] = []

    def write(self, record: dict[str, Any]) -> None:
        status = record.get("status") or "failed"
        self.by_status[status] += 1
        if status != "succeeded":
            error = record.get("error") or {}
            self.failures.append((str(record["id"]), str(error.get("code") or status),
                                  str(error.get("message") or "")))  # fmt: skip
        if self.out is not None:
            self.out.write(json.dumps(record, ensure_ascii=False) + "\n")
            self.out.flush()
        if self.table is not None:
            self.table.write(record)


def _write_job(sink: _Sink, entries: list[BatchEntry], chunk: Chunk) -> None:
    assert chunk.job is not None  # noqa: S101 — written only once sent
    for item in chunk.job.results():
        entry = entries[chunk.positions[item.index]]
        sink.write({"id": entry.id, "image": str(entry.image), "job_id": chunk.job.id,
                    **item.model_dump(mode="json")})  # fmt: skip
    chunk.written = True


def _write_refused(sink: _Sink, entries: list[BatchEntry], refused: dict[int, dict[str, str]],
                   positions: Iterator[int]) -> None:  # fmt: skip
    for position in positions:
        if position in refused:
            entry = entries[position]
            sink.write({"id": entry.id, "image": str(entry.image), "job_id": None,
                        "status": "failed", "error": refused.pop(position)})  # fmt: skip


@click.command(cls=Command)
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help='JSON Lines: {"id"?, "image", "prompt"?} per line.')  # fmt: skip
@click.option("--prompt", help="What to extract; may hold a JSON template.")
@click.option("--schema", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A JSON template or JSON Schema file (JSON mode follows).")  # fmt: skip
@click.option("--json/--no-json", "json_mode", default=None, help="Results as JSON.")
@click.option("--priority", type=click.Choice(["interactive", "normal", "batch"]))
@click.option("--mode", type=click.Choice(["live", "batch"]),
              help="batch: through the provider's Batch API, within 24 h, cheaper.")  # fmt: skip
@click.option("--document-mode", type=click.Choice(["document", "pages"]),
              help="PDFs: one result per document (default) or one per page.")  # fmt: skip
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Result lines (JSON Lines); default: stdout unless --csv.")  # fmt: skip
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Results as CSV, the template's keys as columns.")  # fmt: skip
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Wait for the results, or print the jobs and stop.")  # fmt: skip
@click.option("--url", envvar="IMAGEEXTRACT_URL", help="The server [IMAGEEXTRACT_URL].")
@click.option("--key", envvar="IMAGEEXTRACT_API_KEY", help="API key [IMAGEEXTRACT_API_KEY].")
@click.option("--poll-interval", type=float, default=1.0, show_default=True)
def submit(
    paths: tuple[Path, ...],
    manifest: Path | None,
    prompt: str | None,
    schema: Path | None,
    json_mode: bool | None,
    priority: str | None,
    mode: str | None,
    document_mode: str | None,
    out: Path | None,
    csv_path: Path | None,
    wait: bool,
    url: str | None,
    key: str | None,
    poll_interval: float,
) -> None:
    """Send images (files, folders or a manifest) to a server and write their results.

    Large inputs are split into jobs by the server's limits. Run the same command again
    after a crash: jobs already sent are found again (Idempotency-Key), not paid twice.
    """
    if schema is not None:
        prompt = prompt_with_schema(prompt, schema)
        json_mode = True if json_mode is None else json_mode
    if manifest is not None:
        try:
            entries = entries_from_manifest(manifest, prompt)
        except ValueError as error:
            raise UsageError(str(error)) from error
        identity = f"manifest:{manifest.resolve()}"
    elif paths:
        if not prompt:
            raise UsageError("give --prompt or --schema")
        entries = entries_from_paths(paths, prompt)
        identity = "paths:" + "\n".join(str(path.resolve()) for path in paths)
    else:
        raise UsageError("give PATHS or --manifest")
    if not entries:
        raise UsageError("no images found")
    try:
        options = {"json_mode": json_mode, "priority": priority, "mode": mode,
                   "document_mode": document_mode}  # fmt: skip
        failed = _submit(entries, identity, options, out, csv_path, wait, url, key,
                         poll_interval)  # fmt: skip
    except APIError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)
    exit_for(failed)


def _submit(
    entries: list[BatchEntry],
    identity: str,
    options: dict[str, Any],
    out: Path | None,
    csv_path: Path | None,
    wait: bool,
    url: str | None,
    key: str | None,
    poll_interval: float,
) -> bool:
    """Returns whether some image failed. ``options``: the jobs' fields (json_mode,
    priority, mode, document_mode; None: the server's default)."""
    json_mode = options["json_mode"]
    with _client(url, key) as client:
        limits = client.account.get().limits
        chunks, refused = _plan(entries, limits, identity, options)
        click.echo(f"{len(entries)} images in {len(chunks)} jobs", err=True)
        mark = _newest_ledger_entry(client)
        _upload(client, entries, chunks, options)
        _mark_jobs_that_existed(client, chunks, mark)
        if not wait:
            for chunk in chunks:
                assert chunk.job is not None  # noqa: S101
                click.echo(f"{chunk.job.id}\t{chunk.job.status}\t{len(chunk.positions)} images")
            existed = sum(chunk.existed for chunk in chunks)
            if existed:
                click.echo(f"{existed} of {_job_count(len(chunks))} already existed, sent by an "
                           "earlier run (not charged again)", err=True)  # fmt: skip
            return bool(refused)
        with ExitStack() as files:
            jsonl: TextIO | None = None
            if out is not None:
                jsonl = files.enter_context(out.open("w"))
            elif csv_path is None:
                jsonl = sys.stdout
            table = None
            if csv_path is not None:
                stream = files.enter_context(csv_path.open("w", newline=""))
                table = CsvResults(
                    stream, entries[0].prompt, bool(json_mode), base=["id", "image", "job_id"],
                    by_page=options.get("document_mode") == "pages",
                )  # fmt: skip
            sink = _Sink(jsonl, table)
            _follow(entries, chunks, refused, sink, poll_interval)
        _summary(chunks, sink)
        return bool(sink.failures)


def _upload(
    client: Client, entries: list[BatchEntry], chunks: list[Chunk], options: dict[str, Any]
) -> None:
    total = sum(chunk.size for chunk in chunks)
    phase = Phase("upload", total, "B")
    before = 0
    for chunk in chunks:

        def progress(sent: int, _total: int, base: int = before) -> None:
            phase.update(base + sent)

        chunk.job = client.jobs.create(
            [entries[position].image for position in chunk.positions], chunk.prompt,
            idempotency_key=chunk.key, on_upload=progress,
            **{name: value for name, value in options.items() if value is not None},
        )  # fmt: skip
        before += chunk.size
        phase.update(before)
    phase.finish()


def _newest_ledger_entry(client: Client) -> str | None:
    """The account's newest credit movement, before this run sends anything."""
    return next((str(entry.id) for entry in client.account.ledger(page_size=1)), None)


def _mark_jobs_that_existed(client: Client, chunks: list[Chunk], mark: str | None) -> None:
    """Tell the jobs this run made from those its Idempotency-Keys found made already.

    The server answers both alike, so the credit ledger tells: a job made now has its
    reservation among the movements since ``mark``; one found again was reserved before.
    (The ledger's order is that of its rows, where the jobs' times may be whole seconds.)
    """
    reserved_now: set[str] = set()
    for entry in client.account.ledger(page_size=500):
        if str(entry.id) == mark:
            break
        if entry.kind == "reserve" and entry.job_id is not None:
            reserved_now.add(str(entry.job_id))
    for chunk in chunks:
        assert chunk.job is not None  # noqa: S101 — marked once sent
        chunk.existed = chunk.job.id not in reserved_now


def _follow(
    entries: list[BatchEntry],
    chunks: list[Chunk],
    refused: dict[int, dict[str, str]],
    sink: _Sink,
    poll_interval: float,
) -> None:
    """Poll the jobs; write each one's results once it and those before it have ended."""
    phase = Phase("images", sum(len(chunk.positions) for chunk in chunks), "images")
    position = 0
    while True:
        done = 0
        for chunk in chunks:
            assert chunk.job is not None  # noqa: S101
            if not chunk.job.ended:
                chunk.job.refresh()
            counts = chunk.job.data.counts
            done += counts.succeeded + counts.failed + counts.cancelled
        phase.update(done)
        for chunk in chunks:
            assert chunk.job is not None  # noqa: S101
            if chunk.written:
                continue
            if not chunk.job.ended:
                break
            _write_refused(sink, entries, refused, iter(range(position, chunk.positions[0])))
            _write_job(sink, entries, chunk)
            position = chunk.positions[-1] + 1
        if all(chunk.written for chunk in chunks):
            break
        time.sleep(poll_interval)
    _write_refused(sink, entries, refused, iter(range(position, len(entries))))
    phase.finish()


def _job_count(count: int) -> str:
    return f"{count} job" if count == 1 else f"{count} jobs"


def _summary(chunks: list[Chunk], sink: _Sink) -> None:
    """What the images came to, and what this run charged: nothing for the jobs an earlier
    run made (found again by their Idempotency-Keys), which are said apart."""
    succeeded = sink.by_status["succeeded"]
    images = sum(sink.by_status.values())
    jobs = [chunk.job for chunk in chunks if chunk.job is not None and not chunk.existed]
    found = [chunk.job for chunk in chunks if chunk.job is not None and chunk.existed]
    charged = sum(job.data.credits.captured for job in jobs)
    line = f"{succeeded} of {images} images succeeded; {charged} credits charged"
    if jobs:
        line += f" over {_job_count(len(jobs))}"
    if found:
        earlier = sum(job.data.credits.captured for job in found)
        line += (f"; {_job_count(len(found))} already existed, sent by an earlier run "
                 f"({earlier} credits charged then)")  # fmt: skip
    click.echo(line, err=True)
    echo_failures(sink.failures)


@click.group()
@click.option("--url", envvar="IMAGEEXTRACT_URL", help="The server [IMAGEEXTRACT_URL].")
@click.option("--key", envvar="IMAGEEXTRACT_API_KEY", help="API key [IMAGEEXTRACT_API_KEY].")
@click.pass_context
def jobs(context: click.Context, url: str | None, key: str | None) -> None:
    """The account's jobs on a server: list, show, cancel, retry, results."""
    context.obj = context.with_resource(_client(url, key))


def _job(context: click.Context, job_id: str) -> Job:
    client: Client = context.obj
    try:
        return client.jobs.get(job_id)
    except APIError as error:
        raise click.ClickException(str(error)) from error


@jobs.command("list")
@click.option("--status")
@click.option("--limit", type=int, default=20, show_default=True)
@click.pass_context
def list_jobs(context: click.Context, status: str | None, limit: int) -> None:
    """The newest jobs: id, status, images done of all, created."""
    client: Client = context.obj
    for number, job in enumerate(client.jobs.list(status=status)):
        if number >= limit:
            break
        done = job.items_succeeded + job.items_failed + job.items_cancelled
        click.echo(
            f"{job.id}\t{job.status}\t{done}/{job.item_count}\t{job.created_at:%Y-%m-%d %H:%M}"
        )


@jobs.command()
@click.argument("job_id")
@click.pass_context
def show(context: click.Context, job_id: str) -> None:
    """The job as JSON."""
    click.echo(_job(context, job_id).data.model_dump_json(indent=2))


@jobs.command()
@click.argument("job_id")
@click.pass_context
def cancel(context: click.Context, job_id: str) -> None:
    """Cancel: images not sent to the model yet never are."""
    _act(_job(context, job_id), Job.cancel)


@jobs.command()
@click.argument("job_id")
@click.pass_context
def retry(context: click.Context, job_id: str) -> None:
    """Run the job's failed images again (those whose failure may pass)."""
    _act(_job(context, job_id), Job.retry)


def _act(job: Job, action: Callable[[Job], Job]) -> None:
    try:
        action(job)
    except APIError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"{job.id}\t{job.status}")


@jobs.command()
@click.argument("job_id")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def results(context: click.Context, job_id: str, out: Path | None) -> None:
    """The job's results as JSON Lines, in input order (those ended so far)."""
    job = _job(context, job_id)
    with ExitStack() as files:
        stream: TextIO = files.enter_context(out.open("w")) if out is not None else sys.stdout
        for item in job.results():
            stream.write(item.model_dump_json() + "\n")
