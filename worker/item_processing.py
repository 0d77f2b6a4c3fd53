"""Images through the model: claim, load, normalise, call, store, delete the files.

A process_items message is a claim token: it lets its task run up to ``budget`` images of
its queue, whichever the fair order (core.jobs.claim_next) puts first when a model thread
frees up, not the images of the job that published it. So a caller's one image goes to the
next free thread even when a nightly batch's messages fill the queue ahead of it. (A message
that carries item ids, as the lease sweep sends, claims exactly those.) The task claims as
the process's model threads free up, runs each image on a model thread, and writes the
outcomes that are ready in one transaction: the items, the job's counters and any refund.
No database session is open while the model works.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import queue
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from core import broker
from core import jobs as jobs_service
from core.broker import Queue, TaskName
from core.errors import ImageExtractError, InvalidModelOutput, StorageUnavailable
from db import jobs as jobs_repository
from db.engine import unit_of_work
from db.models import ItemStatus
from extraction.contract import (
    DocumentMode,
    DocumentPage,
    ExtractionRequest,
    ModelResult,
    PrintedLine,
    Provider,
    Scene,
    Usage,
)
from extraction.grounding import ground, ground_pages
from extraction.images import prepare_image
from extraction.normalize import normalize
from extraction.output import read_answer
from extraction.pdf import PDF_SNIFF_BYTES, count_pages, is_pdf, render_pages
from extraction.schema import schema_of_prompt
from worker.image_fetch import fetch_image
from worker.job_snapshots import JobSnapshot
from worker.runtime import WorkerRuntime

log = logging.getLogger(__name__)

# Outcomes wait at most this long to be written with others (when more are on the way).
WRITE_EVERY = 0.1
# When model threads free up one at a time (all busy), a claim waits this long for this
# many, rather than claiming images one by one: a freed thread idles at most this long.
GATHER_LEAST = 8
GATHER_WAIT = 0.02
# A token may claim up to this many times its budget while its own images keep running.
TOKEN_STRETCH = 4
# A token that could claim nothing while images wait passes its budget on after this long.
PASS_ON_DELAY = 0.5
# Images that could not be read (storage down) are claimed again after this long.
STORAGE_RETRY_DELAY = 2.0
# Writing outcomes through a database restart: tries, and the first pause (doubling).
WRITE_TRIES = 6
WRITE_PAUSE = 0.5

Done = tuple[jobs_repository.ClaimedItem, jobs_service.ItemOutcome]


@dataclass
class _Batch:
    """One task's items: those still to claim (by id, or how many more the token may
    claim), those on a model thread, those done."""

    pending: list[uuid.UUID]
    budget: int = 0
    # Past its budget, a token keeps the threads its images free busy, this many more
    # times: tokens queue first in, first out, and a task that waited for its last images
    # with idle threads would leave a caller's image waiting for the next token.
    stretch: int = 0
    running: int = 0
    done: queue.SimpleQueue[Done] = field(default_factory=queue.SimpleQueue)
    ready: list[Done] = field(default_factory=list)
    ready_since: float = 0.0


def process_items(
    runtime: WorkerRuntime,
    item_ids: Sequence[uuid.UUID],
    *,
    budget: int = 0,
    queue: Queue = Queue.MODEL,
) -> None:
    """Run these items, or (without ids) up to ``budget`` images of ``queue`` in the fair
    order; items done, cancelled, or held by another worker are skipped.

    Safe to run twice: only the holder of an item's latest attempt can write its outcome,
    and a token run twice claims other images or none. When claiming fails (the database
    is away), the items already on the model are finished and written first, then the
    error goes to Celery, which runs the message again later. A token that finds nothing
    to claim while images wait (their accounts are at their cap, or other claims hold
    them) passes its budget on in a new token a moment later.
    """
    batch = _Batch(
        pending=list(item_ids),
        budget=0 if item_ids else budget,
        stretch=0 if item_ids else budget * (TOKEN_STRETCH - 1),
    )
    pool = runtime.model_pool
    claim_error: OperationalError | None = None
    while ((batch.pending or batch.budget) and claim_error is None) or batch.running:
        stretching = not batch.pending and not batch.budget and batch.running > 0
        wanted = len(batch.pending) or batch.budget or (batch.stretch if stretching else 0)
        if wanted and claim_error is None:
            wait = WRITE_EVERY if batch.running or batch.ready else None
            taken = pool.reserve(wanted, wait, least=min(wanted, GATHER_LEAST), gather=GATHER_WAIT)
            if taken:
                take, batch.pending = batch.pending[:taken], batch.pending[taken:]
                try:
                    started = _claim(runtime, take) if take else _claim_next(runtime, queue, taken)
                except OperationalError as error:
                    pool.release(taken)
                    batch.pending = take + batch.pending
                    claim_error = error
                    continue
                except BaseException:
                    pool.release(taken)
                    raise
                pool.release(taken - len(started))
                if not take and stretching:
                    batch.stretch = batch.stretch - len(started) if len(started) == taken else 0
                elif not take:
                    batch.budget -= len(started)
                    if len(started) < taken:  # nothing more to claim now
                        _pass_on(runtime, queue, batch.budget)
                        batch.budget, batch.stretch = 0, 0
                for claimed, snapshot in started:
                    pool.run(_run_and_report, runtime, claimed, snapshot, batch.done)
                batch.running += len(started)
        _collect(batch, block=not batch.pending or claim_error is not None)
        all_in = not batch.running and (not batch.pending or claim_error is not None)
        if batch.ready and (all_in or time.monotonic() - batch.ready_since >= WRITE_EVERY):
            _write(runtime, batch.ready, queue)
            batch.ready = []
    if claim_error is not None:
        raise claim_error


def _collect(batch: _Batch, *, block: bool) -> None:
    """Move finished items to ``ready``; wait for one (briefly) when told to block."""
    while batch.running:
        try:
            if block and not batch.ready:
                item = batch.done.get(timeout=WRITE_EVERY)
            elif block:
                left = WRITE_EVERY - (time.monotonic() - batch.ready_since)
                item = batch.done.get(timeout=max(left, 0.001))
            else:
                item = batch.done.get_nowait()
        except queue.Empty:
            return
        if not batch.ready:
            batch.ready_since = time.monotonic()
        batch.ready.append(item)
        batch.running -= 1
        block = False


def _claim_next(
    runtime: WorkerRuntime, queue: Queue, count: int
) -> list[tuple[jobs_repository.ClaimedItem, JobSnapshot]]:
    now = jobs_service.utcnow()
    with unit_of_work(runtime.session_factory) as session:
        claimed = jobs_service.claim_next(session, runtime.settings, queue, count, now)
        return _with_snapshots(runtime, session, claimed, now)


def _pass_on(runtime: WorkerRuntime, queue: Queue, budget: int) -> None:
    """Give a token's unused budget to a new token, a moment later, if images wait."""
    if budget <= 0:
        return
    with unit_of_work(runtime.session_factory) as session:
        waiting = jobs_service.has_queued_images(session, queue)
    if waiting:
        broker.send(
            TaskName.PROCESS_ITEMS, [], budget, str(queue), queue=queue, countdown=PASS_ON_DELAY
        )


def _claim(
    runtime: WorkerRuntime, item_ids: list[uuid.UUID]
) -> list[tuple[jobs_repository.ClaimedItem, JobSnapshot]]:
    now = jobs_service.utcnow()
    with unit_of_work(runtime.session_factory) as session:
        claimed = jobs_service.claim_with_lease(session, runtime.settings, item_ids, now)
        if len(claimed) < len(item_ids):
            taken = {item.id for item in claimed}
            for item_id in item_ids:
                if item_id not in taken:
                    _fail_if_out_of_attempts(runtime, session, item_id)
        return _with_snapshots(runtime, session, claimed, now)


def _with_snapshots(
    runtime: WorkerRuntime,
    session: Session,
    claimed: list[jobs_repository.ClaimedItem],
    now: datetime,
) -> list[tuple[jobs_repository.ClaimedItem, JobSnapshot]]:
    """The claimed items with their job's snapshot; an item whose job was purged while its
    message waited has none and is left out."""
    started = []
    for item in claimed:
        snapshot = _snapshot(runtime, session, item.job_id, now)
        if snapshot is not None:
            started.append((item, snapshot))
    return started


def _snapshot(
    runtime: WorkerRuntime, session: Session, job_id: uuid.UUID, now: datetime
) -> JobSnapshot | None:
    snapshot = runtime.snapshots.get(job_id)
    if snapshot is not None:
        return snapshot
    job = jobs_repository.get_job(session, job_id)
    if job is None:
        return None
    jobs_service.start_job(session, job, now)
    snapshot = JobSnapshot(
        provider=job.provider,
        request=ExtractionRequest(
            prompt=job.prompt,
            json_mode=job.json_mode,
            scene=Scene(job.scene),
            max_tokens=runtime.settings.max_output_tokens,
            model=job.model,
            schema=schema_of_prompt(job.prompt) if job.json_mode else None,
        ),
        grounding=job.grounding,
        normalize=job.normalize,
        document_mode=DocumentMode(job.document_mode),
        account_id=job.account_id,
    )
    runtime.snapshots.put(job_id, snapshot)
    return snapshot


def _run_and_report(
    runtime: WorkerRuntime,
    claimed: jobs_repository.ClaimedItem,
    snapshot: JobSnapshot,
    done: queue.SimpleQueue[Done],
) -> None:
    done.put((claimed, _run_model(runtime, claimed, snapshot, f"images[{claimed.index}]")))


def _write(runtime: WorkerRuntime, ready: list[Done], queue: Queue) -> None:
    """Store the outcomes, job by job, then delete the files that are no longer needed.

    Images that could not be read because storage is down go back to the queue instead,
    and a token to claim them again follows a moment later. A database that is restarting
    gets a few tries; if it stays away, the items stay running and run again once their
    lease runs out.
    """
    by_job: dict[uuid.UUID, list[tuple[uuid.UUID, int, jobs_service.ItemOutcome]]] = {}
    back, to_ground = [], []
    for claimed, outcome in ready:
        ended = (claimed.id, claimed.attempts, outcome)
        if outcome.requeue:
            back.append(ended)
        elif outcome.to_ground:
            to_ground.append(ended)
        else:
            by_job.setdefault(claimed.job_id, []).append(ended)
    pause = WRITE_PAUSE
    for attempt in range(1, WRITE_TRIES + 1):
        try:
            written: set[uuid.UUID] = set()
            with unit_of_work(runtime.session_factory) as session:
                # A token's images may be of several jobs: their counter rows are updated
                # in one order everywhere, or two writers could wait on each other.
                for job_id in sorted(by_job):
                    written |= jobs_service.record_attempt_outcomes(session, job_id, by_job[job_id])
                released = jobs_service.release_attempts(session, back) if back else []
                if to_ground:
                    jobs_service.hold_for_grounding(
                        session, runtime.settings, to_ground, jobs_service.utcnow()
                    )
            break
        except OperationalError:
            if attempt == WRITE_TRIES:
                log.exception(
                    "could not store %d outcomes; their items run again after their lease",
                    len(ready),
                )
                return
            log.warning("storing %d outcomes failed; trying again", len(ready), exc_info=True)
            time.sleep(pause)
            pause *= 2
    if released:
        broker.send(
            TaskName.PROCESS_ITEMS, [], len(released), str(queue), queue=queue,
            countdown=STORAGE_RETRY_DELAY,
        )  # fmt: skip
    done_with = [
        claimed.storage_key
        for claimed, outcome in ready
        if claimed.id in written and claimed.storage_key and not jobs_service.keeps_file(outcome)
    ]
    runtime.store.delete_many(done_with)


def read_image(
    runtime: WorkerRuntime,
    storage_key: str | None,
    source_url: str | None,
    name: str,
    *,
    account: uuid.UUID | None = None,
) -> bytes:
    """An item's image: its temporary file, or its URL fetched (within the account's URL
    download slots, when given). ImageExtractError when the file is gone or the URL fails;
    StorageUnavailable while image storage is away."""
    if not storage_key:
        return fetch_image(
            runtime.fetch_client, source_url or "",
            max_bytes=runtime.settings.max_image_bytes, name=name,
            account=account, slots=runtime.fetch_slots,
        )  # fmt: skip
    try:
        return runtime.store.read(storage_key)
    except FileNotFoundError as error:
        raise ImageExtractError(f"{name}: its temporary file is gone", input=name) from error


def _run_model(
    runtime: WorkerRuntime, claimed: jobs_repository.ClaimedItem, snapshot: JobSnapshot, name: str
) -> jobs_service.ItemOutcome:
    settings = runtime.settings
    try:
        try:
            data = read_image(
                runtime, claimed.storage_key, claimed.source_url, name,
                account=snapshot.account_id,
            )  # fmt: skip
        except StorageUnavailable as error:
            log.warning("item %s waits for image storage: %s", claimed.id, error.message)
            return jobs_service.ItemOutcome(
                succeeded=False,
                error_code="internal_error",
                error_message=f"{name}: {error.message}; it runs again once storage answers",
                requeue=True,
            )
        provider = runtime.provider(snapshot.provider)
        if is_pdf(data[:PDF_SNIFF_BYTES]):
            return _run_document(runtime, claimed, snapshot, provider, data, name)
        prepared = prepare_image(
            data, max_side=settings.max_image_side, max_pixels=settings.max_image_pixels,
            name=name, budget=runtime.decode_budget,
        )  # fmt: skip
        started = time.perf_counter()
        answer = _answer(snapshot.request, lambda request: provider.extract(prepared, request))
        return _outcome(snapshot, answer, name, started)
    except ImageExtractError as error:
        return jobs_service.ItemOutcome(
            succeeded=False, error_code=error.kind.code, error_message=error.message
        )
    except Exception:
        log.exception("item %s failed unexpectedly", claimed.id)
        return jobs_service.ItemOutcome(
            succeeded=False,
            error_code="internal_error",
            error_message=f"{name}: internal error while processing this image",
        )


@dataclass
class _Answer:
    """A model's answer to one request, asked once more when it did not fit the schema."""

    result: ModelResult
    parsed: Any
    prompt_tokens: int
    completion_tokens: int
    # Set when the answer still did not fit: what was wrong.
    error: InvalidModelOutput | None = None


def _answer(request: ExtractionRequest, ask: Callable[[ExtractionRequest], ModelResult]) -> _Answer:
    result = ask(request)
    answer = _Answer(result, None, result.usage.prompt_tokens, result.usage.completion_tokens)
    if not request.json_mode:
        return answer
    try:
        answer.parsed = read_answer(result.content, request.schema)
    except InvalidModelOutput as problem:
        # Once more, told what was wrong: a model that slipped once usually fits the
        # schema when shown where it did not (as instructor does).
        again = dataclasses.replace(request, feedback=(result.content, problem.message))
        answer.result = ask(again)
        answer.prompt_tokens += answer.result.usage.prompt_tokens
        answer.completion_tokens += answer.result.usage.completion_tokens
        try:
            answer.parsed = read_answer(answer.result.content, request.schema)
        except InvalidModelOutput as error:
            answer.error = error
    return answer


def _outcome(
    snapshot: JobSnapshot,
    answer: _Answer,
    name: str,
    started: float,
    *,
    evidence_of: Callable[
        [Any, Sequence[PrintedLine], Mapping[str, str] | None], dict[str, Any]
    ] = ground,
    content: str | None = None,
    pages: list[dict[str, Any]] | None = None,
) -> jobs_service.ItemOutcome:
    """The outcome of an answer: failed when it never fitted; else with its evidence (read
    here when the provider read the text itself, else on the cpu queue) and typed values."""
    result, parsed = answer.result, answer.parsed
    if answer.error is not None:
        return jobs_service.ItemOutcome(
            succeeded=False, content=result.content, error_code=answer.error.kind.code,
            error_message=f"{name}: {answer.error.message}", prompt_tokens=answer.prompt_tokens,
            completion_tokens=answer.completion_tokens,
        )  # fmt: skip
    evidence = None
    if snapshot.grounding and parsed is not None and result.printed is not None:
        evidence = evidence_of(parsed, result.printed, result.how)
    return jobs_service.ItemOutcome(
        succeeded=True,
        content=result.content if content is None else content,
        parsed=parsed,
        prompt_tokens=answer.prompt_tokens,
        completion_tokens=answer.completion_tokens,
        model_ms=int((time.perf_counter() - started) * 1000),
        evidence=evidence,
        normalized=normalize(parsed) if snapshot.normalize and parsed is not None else None,
        # A remote model's answer: the image is read on the cpu queue for its evidence.
        to_ground=snapshot.grounding and parsed is not None and result.printed is None,
        pages=pages,
    )


def _run_document(
    runtime: WorkerRuntime,
    claimed: jobs_repository.ClaimedItem,
    snapshot: JobSnapshot,
    provider: Provider,
    data: bytes,
    name: str,
) -> jobs_service.ItemOutcome:
    """A PDF: its pages rendered one at a time as the provider takes them, and one result
    filled from them all (document mode) or one result per page (pages mode)."""
    settings = runtime.settings
    count = count_pages(data, name=name, limit=settings.max_pages_per_document)
    if claimed.page_count is None:  # a URL: priced by its pages now that they are known
        with unit_of_work(runtime.session_factory) as session:
            jobs_service.price_fetched_document(session, settings, claimed, count)

    def pages(first: int = 1, last: int | None = None) -> Iterator[DocumentPage]:
        return render_pages(
            data, max_side=settings.max_image_side, name=name, first=first, last=last
        )

    started = time.perf_counter()
    request = snapshot.request
    if snapshot.document_mode == DocumentMode.DOCUMENT:
        answer = _answer(request, lambda asked: provider.extract_pages(pages(), asked))
        return _outcome(snapshot, answer, name, started, pages=_page_list(answer.result))
    answers = []
    for number in range(1, count + 1):
        answer = _answer(request, functools.partial(_ask_page, provider, pages, number))
        if answer.error is not None:
            answer.error = InvalidModelOutput(
                f"page {number}: {answer.error.message}", input=answer.error.input
            )
            return _outcome(snapshot, answer, name, started)
        answers.append(answer)
    whole = _Answer(
        result=ModelResult(
            content="",
            usage=Usage(),
            printed=None if any(a.result.printed is None for a in answers) else tuple(
                line for a in answers for line in a.result.printed or ()
            ),
            page_sources=tuple(
                source for a in answers for source in a.result.page_sources or ()
            ),
            # Page i's paths as ground_pages names them: "[i].total".
            how={
                f"[{index}]{'' if path.startswith('[') else '.'}{path}": rule
                for index, a in enumerate(answers)
                for path, rule in (a.result.how or {}).items()
            },
        ),
        parsed=[a.parsed for a in answers] if request.json_mode else None,
        prompt_tokens=sum(a.prompt_tokens for a in answers),
        completion_tokens=sum(a.completion_tokens for a in answers),
    )  # fmt: skip
    content = json.dumps(
        [a.parsed if request.json_mode else a.result.content for a in answers], ensure_ascii=False
    )
    return _outcome(
        snapshot, whole, name, started, evidence_of=ground_pages, content=content,
        pages=_page_list(whole.result),
    )  # fmt: skip


def _ask_page(
    provider: Provider,
    pages: Callable[[int, int], Iterator[DocumentPage]],
    number: int,
    request: ExtractionRequest,
) -> ModelResult:
    return provider.extract_pages(pages(number, number), request)


def _page_list(result: ModelResult) -> list[dict[str, Any]] | None:
    if result.page_sources is None:
        return None
    return [
        {"page": number, "source": str(source)}
        for number, source in enumerate(result.page_sources, start=1)
    ]


def _fail_if_out_of_attempts(runtime: WorkerRuntime, session: Session, item_id: uuid.UUID) -> None:
    """An item whose attempts are used up and whose last holder vanished ends as failed."""
    item = jobs_repository.get_item(session, item_id)
    if item is None or item.attempts < runtime.settings.max_item_attempts:
        return
    if item.status == ItemStatus.RUNNING and (
        item.lease_expires_at is None or item.lease_expires_at > jobs_service.utcnow()
    ):
        return
    if item.status not in (ItemStatus.QUEUED, ItemStatus.RUNNING):
        return
    outcome = jobs_service.ItemOutcome(
        succeeded=False,
        error_code="internal_error",
        error_message=f"images[{item.index}]: gave up after {item.attempts} attempts",
    )
    jobs_service.record_abandoned_item(session, item.job_id, item.id, outcome)
    if item.storage_key:
        runtime.store.delete(item.storage_key)
