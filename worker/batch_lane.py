"""The batch lane: a job with mode batch goes through the provider's Batch API.

Building (build_batches, a task on the model queue): the job's waiting images are taken into
a provider batch row in Postgres (running, no lease), each read, prepared and written as a
request line (the live call's body) into a JSONL file on disk, a new batch started where the
provider's limits (lines, bytes) would be passed. The file is uploaded, the batch created
with our row's id in its metadata, the row marked submitted, and the temporary images
deleted: the provider holds the copy.

Polling (poll_batches, from beat): each submitted batch that is due is asked about; one
whose state did not change is asked half as often next time. When it has ended, its output
and error files are read line by line and each line's outcome recorded as a live item's is
(the same validation, usage, credits, fan-in and finalize). A line that failed, expired or
does not fit the schema runs once more as a live call, or fails with its code (the
batch_failed_lines setting); for that, and for grounding, the image comes back from the
provider's copy of the request line. Then the provider's files are deleted.

Everything is kept in the database: a worker, beat, Redis or Postgres that restarts loses
nothing. A builder that died is taken over (after its lease) and first looks for a batch
it may already have created; an outcome is written only while its item still runs under
the same attempt, so reading a file twice records nothing twice.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import re
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

from core import broker
from core import jobs as jobs_service
from core.broker import TaskName
from core.errors import (
    BatchExpired,
    ImageExtractError,
    InvalidModelOutput,
    StorageUnavailable,
    UpstreamError,
)
from core.storage import key_for
from db import jobs as jobs_repository
from db import provider_batches as batches_repository
from db.engine import unit_of_work
from db.models import Job, JobMode, JobStatus, ProviderBatch, ProviderBatchStatus
from db.provider_batches import BatchItem
from extraction.contract import ExtractionRequest, Scene
from extraction.images import prepare_image
from extraction.normalize import normalize
from extraction.output import read_answer
from extraction.providers.openai import OpenAIProvider
from extraction.providers.openai_batch import BatchState, OpenAIBatches, result_of_line
from extraction.schema import schema_of_prompt
from worker.item_processing import read_image
from worker.runtime import WorkerRuntime

log = logging.getLogger(__name__)

# The key of our row's id in a provider batch's metadata.
METADATA_KEY = "imageextract_batch"
# A builder renews its lease every this many lines.
RENEW_EVERY = 100
# Output lines recorded per transaction.
RECORD_CHUNK = 500
# A batch being polled is hidden from other pollers this long.
POLL_HOLD = timedelta(minutes=5)
POLL_LIMIT = 100
_CUSTOM_ID = re.compile(rb'^\{"custom_id":"([^"]+)"')


def batches_of(runtime: WorkerRuntime, provider: str) -> OpenAIBatches:
    model = runtime.provider(provider)
    if not isinstance(model, OpenAIProvider):
        raise TypeError(f"the {provider} provider has no Batch API")
    return OpenAIBatches(model, runtime.settings.batch_completion_window)


def request_of(job: Job, max_tokens: int) -> ExtractionRequest:
    return ExtractionRequest(
        prompt=job.prompt,
        json_mode=job.json_mode,
        scene=Scene(job.scene),
        max_tokens=max_tokens,
        model=job.model,
        schema=schema_of_prompt(job.prompt) if job.json_mode else None,
    )


# Building


class _LeaseLost(Exception):
    """Another builder took the batch over: this one stops, touching nothing."""


@dataclass
class _Builder:
    runtime: WorkerRuntime
    client: OpenAIBatches
    batch_id: uuid.UUID
    lease: datetime

    def renew(self) -> None:
        settings = self.runtime.settings
        with unit_of_work(self.runtime.session_factory) as session:
            new = jobs_service.utcnow() + settings.batch_build_lease
            if not batches_repository.renew_build(session, self.batch_id, self.lease, new):
                raise _LeaseLost
        self.lease = new


def build_batches(runtime: WorkerRuntime, job_id: uuid.UUID) -> int:
    """Write the job's waiting batch-lane images into provider batches; how many batches
    were submitted. Safe to run twice: each image is taken into one batch only."""
    settings = runtime.settings
    now = jobs_service.utcnow()
    with unit_of_work(runtime.session_factory) as session:
        job = jobs_repository.get_job(session, job_id)
        if job is None or job.mode != JobMode.BATCH:
            return 0
        provider, request = job.provider, request_of(job, settings.max_output_tokens)
        abandoned = batches_repository.take_over_abandoned(
            session, job_id, now, now + settings.batch_build_lease
        )
        for batch in abandoned:
            session.expunge(batch)
    client = batches_of(runtime, provider)
    for batch in abandoned:
        _resume(runtime, client, batch)
    submitted = 0
    while True:
        now = jobs_service.utcnow()
        lease = now + settings.batch_build_lease
        with unit_of_work(runtime.session_factory) as session:
            job = jobs_repository.get_job(session, job_id)
            if job is None or job.status not in (JobStatus.QUEUED, JobStatus.RUNNING):
                break
            jobs_service.start_job(session, job, now)
            batch_id = batches_repository.start_building(session, job_id, provider, now, lease)
            items = batches_repository.assign_items(
                session, job_id, batch_id, settings.batch_max_requests, now=now,
                max_attempts=settings.max_item_attempts,
            )  # fmt: skip
            if not items:
                batches_repository.remove(session, batch_id)
                break
        try:
            submitted += _build(_Builder(runtime, client, batch_id, lease), job_id, items, request)
        except _LeaseLost:
            log.warning("provider batch %s was taken over by another builder", batch_id)
            break
    return submitted


def _build(
    builder: _Builder, job_id: uuid.UUID, items: list[BatchItem], request: ExtractionRequest
) -> int:
    runtime, client, settings = builder.runtime, builder.client, builder.runtime.settings
    written: list[BatchItem] = []
    failed: list[tuple[BatchItem, jobs_service.ItemOutcome]] = []
    left: list[BatchItem] = []
    storage_error: StorageUnavailable | None = None
    with tempfile.TemporaryDirectory(prefix="imageextract-batch-") as folder:
        path = Path(folder) / f"{builder.batch_id}.jsonl"
        size = 0
        with path.open("wb") as out:
            for number, item in enumerate(items):
                if number % RENEW_EVERY == RENEW_EVERY - 1:
                    builder.renew()
                name = f"images[{item.index}]"
                try:
                    data = read_image(runtime, item.storage_key, item.source_url, name)
                    prepared = prepare_image(
                        data, max_side=settings.max_image_side,
                        max_pixels=settings.max_image_pixels, name=name,
                        budget=runtime.decode_budget,
                    )  # fmt: skip
                    del data
                    line = client.request_line(str(item.id), prepared, request)
                except StorageUnavailable as error:
                    storage_error, left = error, items[number:]
                    break
                except ImageExtractError as error:
                    failed.append((item, _failure(error)))
                    continue
                if written and size + len(line) > settings.batch_max_bytes:
                    left = items[number:]
                    break
                out.write(line)
                size += len(line)
                written.append(item)
        builder.renew()
        with unit_of_work(runtime.session_factory) as session:
            batches_repository.release_items(session, [item.id for item in left])
            if failed:
                jobs_service.record_attempt_outcomes(
                    session, job_id,
                    [(item.id, item.attempts, outcome) for item, outcome in failed],
                )  # fmt: skip
            batches_repository.update_batch(
                session, builder.batch_id, request_count=len(written), input_bytes=size
            )
            if not written:
                batches_repository.remove(session, builder.batch_id)
        runtime.store.delete_many(
            [item.storage_key for item, outcome in failed
             if item.storage_key and not jobs_service.keeps_file(outcome)]
        )  # fmt: skip
        if not written:
            if storage_error is not None:
                raise storage_error
            return 0
        try:
            file_id = client.upload(path)
        except UpstreamError:
            _unbuild(runtime, builder.batch_id, written)
            raise
    with unit_of_work(runtime.session_factory) as session:
        batches_repository.update_batch(session, builder.batch_id, input_file_id=file_id)
    builder.renew()
    try:
        state = client.create(
            file_id, {METADATA_KEY: str(builder.batch_id), "imageextract_job": str(job_id)}
        )
    except UpstreamError:
        _delete_quietly(client, file_id)
        _unbuild(runtime, builder.batch_id, written)
        raise
    _submitted(runtime, builder.batch_id, state, written, fence=builder.lease)
    log.info(
        "job %s: provider batch %s submitted with %d images (%d bytes)",
        job_id, state.id, len(written), size,
    )  # fmt: skip
    if storage_error is not None:
        raise storage_error
    return 1


def _failure(error: ImageExtractError, name: str | None = None) -> jobs_service.ItemOutcome:
    message = f"{name}: {error.message}" if name else error.message
    return jobs_service.ItemOutcome(
        succeeded=False, error_code=error.kind.code, error_message=message
    )


def _unbuild(runtime: WorkerRuntime, batch_id: uuid.UUID, items: Sequence[BatchItem]) -> None:
    """The provider did not take the batch: its images wait again for the next build."""
    with unit_of_work(runtime.session_factory) as session:
        batches_repository.release_items(session, [item.id for item in items])
        batches_repository.remove(session, batch_id)


def _delete_quietly(client: OpenAIBatches, file_id: str) -> None:
    try:
        client.delete_file(file_id)
    except UpstreamError as error:
        log.warning("could not delete file %s at the provider: %s", file_id, error.message)


def _submitted(
    runtime: WorkerRuntime,
    batch_id: uuid.UUID,
    state: BatchState,
    items: Sequence[BatchItem],
    *,
    fence: datetime | None,
) -> None:
    """The provider has the batch: note it, then delete the images it holds a copy of."""
    settings = runtime.settings
    now = jobs_service.utcnow()
    pause = settings.batch_poll_interval.total_seconds()
    keys = [item.storage_key for item in items if item.storage_key]
    with unit_of_work(runtime.session_factory) as session:
        if not batches_repository.mark_submitted(
            session, batch_id, fence=fence, provider_batch_id=state.id,
            provider_status=state.status, request_count=state.total or len(items),
            submitted_at=now, in_progress_at=state.in_progress_at, expires_at=state.expires_at,
            next_poll_at=now + timedelta(seconds=pause), poll_seconds=pause,
        ):  # fmt: skip
            raise _LeaseLost
        batches_repository.forget_storage_keys(session, [item.id for item in items])
    runtime.store.delete_many(keys)


def _resume(runtime: WorkerRuntime, client: OpenAIBatches, batch: ProviderBatch) -> None:
    """A batch whose builder died: adopt what the provider got from it, or start over."""
    with unit_of_work(runtime.session_factory) as session:
        items = batches_repository.items_of(session, batch.id)
    if batch.input_file_id:
        found = client.find(METADATA_KEY, str(batch.id))
        if found is not None:
            log.info("provider batch %s of a builder that died is adopted", found.id)
            _submitted(runtime, batch.id, found, items, fence=batch.lease_expires_at)
            return
        _delete_quietly(client, batch.input_file_id)
    _unbuild(runtime, batch.id, items)


# Polling and recording


def poll_batches(runtime: WorkerRuntime) -> int:
    """Ask the provider about every batch that is due; record those that ended. Builds
    whose builder died are sent to be taken over. Returns how many batches were asked."""
    now = jobs_service.utcnow()
    with unit_of_work(runtime.session_factory) as session:
        abandoned = batches_repository.jobs_with_abandoned_builds(session, now)
        due = batches_repository.take_due(session, now, now + POLL_HOLD, POLL_LIMIT)
    for job_id in abandoned:
        broker.send(TaskName.BUILD_BATCHES, str(job_id))
    for batch in due:
        try:
            _poll(runtime, batch)
        except ImageExtractError as error:
            log.warning("provider batch %s: %s", batch.provider_batch_id, error.message)
            _later(runtime, batch, error.message)
        except Exception as error:
            # Asked again later (a database away, a bug): the other batches go on.
            log.exception("provider batch %s could not be polled", batch.provider_batch_id)
            _later(runtime, batch, f"internal error: {error}"[:500])
    return len(due)


def _later(runtime: WorkerRuntime, batch: ProviderBatch, problem: str | None) -> None:
    """Ask again later: the pause doubles each time, up to the max interval."""
    settings = runtime.settings
    pause = min(
        max(batch.poll_seconds, settings.batch_poll_interval.total_seconds()) * 2,
        settings.batch_poll_max_interval.total_seconds(),
    )
    with unit_of_work(runtime.session_factory) as session:
        batches_repository.update_batch(
            session, batch.id, last_error=problem, poll_seconds=pause,
            next_poll_at=jobs_service.utcnow() + timedelta(seconds=pause),
        )  # fmt: skip


def _poll(runtime: WorkerRuntime, batch: ProviderBatch) -> None:
    client = batches_of(runtime, batch.provider)
    if batch.status == ProviderBatchStatus.RECORDED:
        _delete_files(runtime, client, batch)
        return
    provider_id = batch.provider_batch_id or ""
    state = client.retrieve(provider_id)
    if batch.cancel_requested and not state.ended and state.status != "cancelling":
        state = client.cancel(provider_id)
        log.info("provider batch %s cancelled with its job", state.id)
    if state.ended:
        _record(runtime, client, batch, state)
        # (a detached copy: these changes are not written anywhere)
        batch.output_file_id, batch.error_file_id = state.output_file_id, state.error_file_id
        _delete_files(runtime, client, batch)
        return
    settings = runtime.settings
    changed = (state.status, state.completed, state.failed) != (
        batch.provider_status, batch.completed_count, batch.failed_count,
    )  # fmt: skip
    base = settings.batch_poll_interval.total_seconds()
    longest = settings.batch_poll_max_interval.total_seconds()
    pause = base if changed else min(max(batch.poll_seconds, base) * 2, longest)
    with unit_of_work(runtime.session_factory) as session:
        batches_repository.update_batch(
            session, batch.id, provider_status=state.status, completed_count=state.completed,
            failed_count=state.failed, request_count=state.total or batch.request_count,
            in_progress_at=state.in_progress_at, expires_at=state.expires_at, last_error=None,
            next_poll_at=jobs_service.utcnow() + timedelta(seconds=pause), poll_seconds=pause,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class _End:
    item: BatchItem
    outcome: jobs_service.ItemOutcome
    # A failure worth one more try in the live lane.
    retry: bool = False


@dataclass(frozen=True, slots=True)
class _JobView:
    id: uuid.UUID
    request: ExtractionRequest
    grounding: bool
    normalize: bool
    cancelled: bool


def _record(
    runtime: WorkerRuntime, client: OpenAIBatches, batch: ProviderBatch, state: BatchState
) -> None:
    """Record the outcome of each of the batch's images that still waits for one."""
    now = jobs_service.utcnow()
    with unit_of_work(runtime.session_factory) as session:
        job = jobs_repository.get_job(session, batch.job_id)
        waiting = {str(item.id): item for item in batches_repository.items_of(session, batch.id)}
        batches_repository.update_batch(
            session, batch.id, provider_status=state.status, completed_count=state.completed,
            failed_count=state.failed, output_file_id=state.output_file_id,
            error_file_id=state.error_file_id, ended_at=now, last_error=state.errors,
        )  # fmt: skip
        view = (
            _JobView(
                id=job.id,
                request=request_of(job, runtime.settings.max_output_tokens),
                grounding=job.grounding,
                normalize=job.normalize,
                cancelled=batch.cancel_requested or job.status == JobStatus.CANCELLED,
            )
            if job is not None
            else None
        )
    if view is not None and waiting:
        with _InputCopy(runtime, client, batch) as copies:
            for file_id in (state.output_file_id, state.error_file_id):
                if not file_id:
                    continue
                for chunk in _chunks(client.lines(file_id), RECORD_CHUNK):
                    ends = []
                    for line in chunk:
                        item = waiting.pop(str(line.get("custom_id")), None)
                        if item is not None:
                            ends.append(_end_of_line(line, item, view))
                    _write(runtime, view, ends, copies)
            if waiting:
                _write(runtime, view, [_unanswered(item, state) for item in waiting.values()],
                       copies)  # fmt: skip
    with unit_of_work(runtime.session_factory) as session:
        batches_repository.update_batch(
            session, batch.id, status=ProviderBatchStatus.RECORDED,
            recorded_at=jobs_service.utcnow(), next_poll_at=jobs_service.utcnow(),
        )  # fmt: skip
    log.info(
        "provider batch %s ended %s: %d answered, %d failed",
        state.id, state.status, state.completed, state.failed,
    )  # fmt: skip


def _chunks(lines: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    iterator = iter(lines)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _end_of_line(line: dict[str, Any], item: BatchItem, job: _JobView) -> _End:
    """What one output or error line means for its item: the same checks as a live call."""
    name = f"images[{item.index}]"
    try:
        result = result_of_line(line)
    except (UpstreamError, BatchExpired) as problem:
        failure = jobs_service.ItemOutcome(
            succeeded=False,
            error_code=problem.kind.code,
            error_message=f"{name}: {problem.message}",
        )
        return _End(item, failure, retry=True)
    prompt_tokens = result.usage.prompt_tokens
    completion_tokens = result.usage.completion_tokens
    parsed = None
    if job.request.json_mode:
        try:
            parsed = read_answer(result.content, job.request.schema)
        except InvalidModelOutput as problem:
            # Asked again live (told what was wrong), as a live call would be.
            outcome = jobs_service.ItemOutcome(
                succeeded=False, content=result.content, error_code=problem.kind.code,
                error_message=f"{name}: {problem.message}", prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
            )  # fmt: skip
            return _End(item, outcome, retry=True)
    return _End(
        item,
        jobs_service.ItemOutcome(
            succeeded=True,
            content=result.content,
            parsed=parsed,
            normalized=normalize(parsed) if job.normalize and parsed is not None else None,
            to_ground=job.grounding and parsed is not None,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        ),
    )


def _unanswered(item: BatchItem, state: BatchState) -> _End:
    """An image the ended batch has no line for."""
    name = f"images[{item.index}]"
    if state.status == "expired":
        problem: ImageExtractError = BatchExpired(
            f"{name}: the provider did not run it within its window"
        )
    elif state.status == "failed":
        problem = UpstreamError(f"{name}: the provider refused the batch: {state.errors}")
    elif state.status == "cancelled":
        problem = UpstreamError(f"{name}: the provider's batch was cancelled")
    else:
        problem = UpstreamError(f"{name}: the provider's batch ended without an answer for it")
    return _End(item, _failure(problem), retry=True)


def _write(runtime: WorkerRuntime, job: _JobView, ends: Sequence[_End], copies: _InputCopy) -> None:
    """Store a chunk of outcomes in one transaction: answers (or to be grounded first),
    failures (or to the live lane), and cancellations of a cancelled job's images."""
    settings = runtime.settings
    live = settings.batch_failed_lines == "live"
    record: list[_End] = []
    ground: list[_End] = []
    retry: list[_End] = []
    cancel: list[_End] = []
    for end in ends:
        if end.outcome.succeeded:
            (ground if end.outcome.to_ground else record).append(end)
        elif job.cancelled:
            cancel.append(end)
        elif end.retry and live and end.item.attempts < settings.max_item_attempts:
            retry.append(end)
        else:
            record.append(end)
    keys = copies.restore(job.id, [end.item for end in ground + retry])
    # An image that cannot come back (the provider's copy is gone) is recorded as it is.
    for end in list(ground):
        if end.item.source_url is None and end.item.id not in keys:
            ground.remove(end)
            record.append(_End(end.item, _without_grounding(end.outcome)))
    for end in list(retry):
        if end.item.source_url is None and end.item.id not in keys:
            retry.remove(end)
            record.append(end)
    with unit_of_work(runtime.session_factory) as session:
        if record:
            jobs_service.record_attempt_outcomes(
                session, job.id, [(end.item.id, end.item.attempts, end.outcome) for end in record]
            )
        if ground:
            jobs_service.ground_batch_answers(
                session, settings,
                [(end.item.id, end.item.attempts, keys.get(end.item.id), end.outcome)
                 for end in ground],
            )  # fmt: skip
        if retry:
            jobs_service.retry_in_live_lane(
                session, settings,
                [(end.item.id, end.item.attempts, keys.get(end.item.id), end.outcome)
                 for end in retry],
            )  # fmt: skip
        if cancel:
            jobs_service.cancel_batch_items(session, job.id, [end.item.id for end in cancel])


def _without_grounding(outcome: jobs_service.ItemOutcome) -> jobs_service.ItemOutcome:
    return dataclasses.replace(outcome, to_ground=False)


class _InputCopy:
    """The provider's copy of a batch's request lines (its input file), downloaded once
    when an image must come back: for a line that runs again live, or to be grounded."""

    def __init__(self, runtime: WorkerRuntime, client: OpenAIBatches, batch: ProviderBatch):
        self.runtime = runtime
        self.client = client
        self.batch = batch
        self.folder: tempfile.TemporaryDirectory[str] | None = None
        self.path: Path | None = None
        self.lines: dict[str, tuple[int, int]] = {}

    def __enter__(self) -> _InputCopy:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.folder is not None:
            self.folder.cleanup()

    def _load(self) -> Path | None:
        if self.path is not None or self.folder is not None:
            return self.path
        self.folder = tempfile.TemporaryDirectory(prefix="imageextract-batch-input-")
        if not self.batch.input_file_id:
            return None
        path = Path(self.folder.name) / "input.jsonl"
        try:
            self.client.download(self.batch.input_file_id, path)
        except UpstreamError as error:
            log.warning("the input of batch %s cannot be read: %s", self.batch.id, error.message)
            return None
        offset = 0
        with path.open("rb") as stream:
            for line in stream:
                found = _CUSTOM_ID.match(line)
                custom_id = found.group(1).decode() if found else json.loads(line)["custom_id"]
                self.lines[custom_id] = (offset, len(line))
                offset += len(line)
        self.path = path
        return path

    def restore(self, job_id: uuid.UUID, items: Sequence[BatchItem]) -> dict[uuid.UUID, str]:
        """Put the uploaded images of these items back into image storage; their keys."""
        wanted = [item for item in items if item.source_url is None]
        if not wanted:
            return {}
        path = self._load()
        if path is None:
            return {}
        keys: dict[uuid.UUID, str] = {}
        with path.open("rb") as stream:
            for item in wanted:
                place = self.lines.get(str(item.id))
                if place is None:
                    continue
                stream.seek(place[0])
                data = _image_of_line(json.loads(stream.read(place[1])))
                if data is None:
                    continue
                key = key_for(job_id, item.index)
                upload = self.runtime.store.open_for_write(key)
                upload.write(data)
                upload.finish().result()
                keys[item.id] = key
        return keys


def _image_of_line(line: dict[str, Any]) -> bytes | None:
    for message in line.get("body", {}).get("messages", []):
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for part in content:
            url = (part.get("image_url") or {}).get("url", "") if isinstance(part, dict) else ""
            if url.startswith("data:") and "," in url:
                return base64.b64decode(url.split(",", 1)[1])
    return None


def _delete_files(runtime: WorkerRuntime, client: OpenAIBatches, batch: ProviderBatch) -> None:
    """The results are in: the provider's files (the images' copies among them) go."""
    try:
        for file_id in (batch.input_file_id, batch.output_file_id, batch.error_file_id):
            if file_id:
                client.delete_file(file_id)
    except UpstreamError as error:
        _later(runtime, batch, error.message)
        return
    with unit_of_work(runtime.session_factory) as session:
        batches_repository.update_batch(
            session, batch.id, files_deleted_at=jobs_service.utcnow(), next_poll_at=None
        )
