"""``imageextract extract --mode batch``: images on disk through the provider's Batch API.

The images are written as request lines into JSONL files (split at the provider's limits),
uploaded and run as provider batches; this process asks about them until they end (the
poll interval doubling while nothing changes), then reads the answers with the same checks
as a live call. A line that failed, expired or does not fit the schema runs once more as a
live call, or keeps its error (the batch_failed_lines setting). The provider's files are
deleted at the end. Records come out in the order of the entries.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from core.errors import BatchExpired, ImageExtractError, InvalidModelOutput, UpstreamError
from core.settings import Settings
from extraction.batch import BatchEntry, Reader, extract_one, prepare_entry
from extraction.contract import ExtractionRequest, Scene
from extraction.grounding import ground
from extraction.normalize import normalize
from extraction.output import read_answer
from extraction.providers.openai import OpenAIProvider
from extraction.providers.openai_batch import BatchState, OpenAIBatches, result_of_line

log = logging.getLogger(__name__)


def _record(entry: BatchEntry) -> dict[str, Any]:
    return {"id": entry.id, "image": str(entry.image), "output": None, "usage": None,
            "error": None}  # fmt: skip


def _submit_all(
    client: OpenAIBatches,
    settings: Settings,
    entries: Sequence[BatchEntry],
    records: dict[int, dict[str, Any]],
    requests: dict[int, ExtractionRequest],
    *,
    json_mode: bool,
    scene: Scene,
    folder: Path,
) -> list[str]:
    """Write and submit the request lines; the provider's batch ids. An image that cannot
    be read or prepared gets its error at once and no line."""
    submitted: list[str] = []
    part, count, size = 0, 0, 0
    path = folder / "batch-0.jsonl"
    out = path.open("wb")

    def send() -> None:
        out.close()
        if count:
            file_id = client.upload(path)
            submitted.append(client.create(file_id, {"imageextract": "extract"}).id)
        path.unlink(missing_ok=True)

    try:
        for position, entry in enumerate(entries):
            record = records[position] = _record(entry)
            try:
                _data, prepared, request = prepare_entry(
                    settings, entry, json_mode=json_mode, scene=scene
                )
                line = client.request_line(str(position), prepared, request)
            except ImageExtractError as error:
                record["error"] = {"code": error.kind.code, "message": error.message}
                continue
            if count and (
                count >= settings.batch_max_requests or size + len(line) > settings.batch_max_bytes
            ):
                send()
                part, count, size = part + 1, 0, 0
                path = folder / f"batch-{part}.jsonl"
                out = path.open("wb")
            out.write(line)
            count, size = count + 1, size + len(line)
            requests[position] = request
        send()
    finally:
        out.close()
    return submitted


def _wait(
    client: OpenAIBatches,
    settings: Settings,
    batch_ids: Sequence[str],
    progress: Callable[[str], None],
) -> list[BatchState]:
    pause = settings.batch_poll_interval.total_seconds()
    waiting, ended = list(batch_ids), []
    last = ""
    while waiting:
        states = [client.retrieve(batch_id) for batch_id in waiting]
        ended += [state for state in states if state.ended]
        waiting = [state.id for state in states if not state.ended]
        said = "; ".join(
            f"{state.id} {state.status} {state.completed + state.failed}/{state.total}"
            for state in states
        )
        if said != last:
            progress(said)
            pause = settings.batch_poll_interval.total_seconds()
        elif waiting:
            pause = min(pause * 2, settings.batch_poll_max_interval.total_seconds())
        last = said
        if waiting:
            time.sleep(pause)
    return ended


def extract_through_batch_api(
    provider: OpenAIProvider,
    settings: Settings,
    entries: Sequence[BatchEntry],
    *,
    json_mode: bool,
    scene: Scene,
    reader: Reader | None = None,
    typed: bool = False,
    progress: Callable[[str], None] = lambda _said: None,
) -> Iterator[dict[str, Any]]:
    client = OpenAIBatches(provider, settings.batch_completion_window)
    records: dict[int, dict[str, Any]] = {}
    requests: dict[int, ExtractionRequest] = {}
    with tempfile.TemporaryDirectory(prefix="imageextract-extract-") as folder:
        batch_ids = _submit_all(
            client, settings, entries, records, requests, json_mode=json_mode, scene=scene,
            folder=Path(folder),
        )  # fmt: skip
    progress(f"{len(requests)} images sent in {len(batch_ids)} provider batches")
    again: set[int] = set(requests)
    for state in _wait(client, settings, batch_ids, progress):
        for file_id in (state.output_file_id, state.error_file_id):
            for line in client.lines(file_id) if file_id else ():
                position = int(line.get("custom_id", -1))
                if position in again and _read_line(line, records[position], requests[position]):
                    again.discard(position)
        for file_id in (state.input_file_id, state.output_file_id, state.error_file_id):
            if file_id:
                try:
                    client.delete_file(file_id)
                except UpstreamError as error:
                    log.warning("%s", error.message)
    for position in sorted(again):
        if settings.batch_failed_lines == "live":
            records[position] = extract_one(
                provider, settings, entries[position], json_mode=json_mode, scene=scene
            )
        elif records[position]["error"] is None:
            records[position]["error"] = {
                "code": "upstream_error", "message": "the provider's batch has no answer for it",
            }  # fmt: skip
    for position, entry in enumerate(entries):
        record = records[position]
        output = record["output"]
        if json_mode and record["error"] is None and output is not None:
            if reader is not None:
                record["evidence"] = ground(output, reader(entry.image.read_bytes()))
            if typed:
                record["normalized"] = normalize(output)
        yield record


def _read_line(line: dict[str, Any], record: dict[str, Any], request: ExtractionRequest) -> bool:
    """Put an output or error line's outcome on the record; False when it should run again."""
    try:
        result = result_of_line(line)
        output: Any = result.content
        if request.json_mode:
            output = read_answer(result.content, request.schema)
    except (UpstreamError, BatchExpired, InvalidModelOutput) as error:
        record["error"] = {"code": error.kind.code, "message": error.message}
        return False
    record["output"] = output
    record["usage"] = {
        "prompt_tokens": result.usage.prompt_tokens,
        "completion_tokens": result.usage.completion_tokens,
        "total_tokens": result.usage.total_tokens,
    }
    return True
