"""Job rules shared by the API and the workers: submission, item outcomes, fan-in, end.

Services only flush; the caller's unit of work commits, and tasks queued here are sent
after that commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from core import broker
from core import credits as credits_service
from core import webhooks as webhooks_service
from core.broker import Queue, TaskName
from core.errors import (
    Conflict,
    ErrorKind,
    Gone,
    InvalidRequest,
    MissingField,
    TooManyImages,
    TooManyPages,
)
from core.settings import PROVIDERS, Settings
from core.storage import ImageStore
from db import jobs as jobs_repository
from db import provider_batches as provider_batches_repository
from db.models import Account, ItemStatus, Job, JobMode, JobPriority, JobStatus, Lane
from extraction.contract import DocumentMode, Scene


def utcnow() -> datetime:
    return datetime.now(UTC)


# Providers with a Batch API: their jobs may ask for mode batch (worker.batch_lane).
BATCH_PROVIDERS = ("openai",)


def price_per_image(settings: Settings, mode: JobMode = JobMode.LIVE) -> int:
    if mode == JobMode.BATCH:
        return settings.resolved_batch_price_per_image
    return settings.credits_per_image


def item_price(settings: Settings, image: StagedImage, mode: JobMode = JobMode.LIVE) -> int:
    """An image's price, or a document's: its pages at the price per page."""
    if image.page_count is None:
        return price_per_image(settings, mode)
    return image.page_count * settings.resolved_credits_per_page


@dataclass(frozen=True, slots=True)
class JobOptions:
    prompt: str
    json_mode: bool = False
    scene: Scene = Scene.GENERAL
    model: str | None = None
    webhook_url: str | None = None
    metadata: dict[str, Any] | None = None
    api: str = "native"
    # None: the API decides (interactive when its caller waits for the answer, else normal).
    priority: JobPriority | None = None
    # None: the results_ttl setting.
    results_ttl_seconds: int | None = None
    # Evidence per value; None: on for the local provider (its OCR already knows where each
    # value is printed), off for remote models (it costs an OCR pass per image).
    grounding: bool | None = None
    # Typed dates and amounts beside the printed values.
    normalize: bool = False
    # batch: through the provider's Batch API, within its completion window, at the batch
    # price (worker.batch_lane).
    mode: JobMode = JobMode.LIVE
    # A PDF's result: one from all its pages (document), or one per page (pages).
    document_mode: DocumentMode = DocumentMode.DOCUMENT


@dataclass(frozen=True, slots=True)
class StagedImage:
    """One input image as accepted by the API: a stored file, or a URL to fetch later."""

    index: int
    source_kind: str
    source_name: str | None = None
    source_url: str | None = None
    storage_key: str | None = None
    byte_size: int | None = None
    sha256: str | None = None
    media_type: str | None = None
    # A document's pages (a PDF); None: an image, or a URL not fetched yet.
    page_count: int | None = None


def model_queue(provider: str) -> Queue:
    return Queue.CPU if provider == "local" else Queue.MODEL


def batch_size(settings: Settings, queue: Queue) -> int:
    """Images per process_items message. The local engine takes one: a process runs one
    image at a time on a core, so a batch would keep the other cores idle."""
    return 1 if queue == Queue.CPU else settings.dispatch_batch_size


def submit_job(
    session: Session,
    settings: Settings,
    account: Account,
    options: JobOptions,
    images: list[StagedImage],
    *,
    job_id: uuid.UUID | None = None,
) -> Job:
    """Create the job and its items in the caller's transaction; dispatch after commit."""
    if not options.prompt.strip():
        raise MissingField("prompt is required", input="prompt")
    if not images:
        raise MissingField("at least one image is required", input="images")
    if len(images) > settings.max_images_per_job:
        raise TooManyImages(
            f"{len(images)} images sent; a job takes at most {settings.max_images_per_job}",
            input="images",
        )
    documents = [image for image in images if image.page_count is not None]
    pages = sum(image.page_count or 1 for image in images)
    if pages > settings.max_images_per_job:
        raise TooManyPages(
            f"{pages} pages and images sent ({len(documents)} documents); a job takes at most "
            f"{settings.max_images_per_job}, each page of a document counted",
            input="images",
        )
    if documents and options.mode == JobMode.BATCH:
        first = documents[0]
        raise InvalidRequest(
            f"images[{first.index}] is a PDF: documents run live, not through the provider's "
            "Batch API; send them with mode live",
            input=f"images[{first.index}]",
        )
    if options.mode == JobMode.BATCH and settings.model_provider not in BATCH_PROVIDERS:
        raise InvalidRequest(
            f"mode batch needs a provider with a Batch API ({', '.join(BATCH_PROVIDERS)}); "
            f"this server runs the {settings.model_provider} provider: use mode live",
            input="mode",
        )
    job = Job(
        id=job_id or uuid.uuid4(),
        account_id=account.id,
        status=JobStatus.QUEUED,
        api=options.api,
        priority=options.priority or JobPriority.NORMAL,
        prompt=options.prompt,
        json_mode=options.json_mode,
        grounding=(
            options.grounding
            if options.grounding is not None
            else settings.model_provider == "local"
        ),
        normalize=options.normalize,
        scene=options.scene,
        model=options.model,
        provider=settings.model_provider,
        mode=options.mode,
        document_mode=options.document_mode,
        webhook_url=options.webhook_url,
        user_metadata=options.metadata,
        item_count=len(images),
        total_bytes=sum(image.byte_size or 0 for image in images),
        credits_per_image=price_per_image(settings, options.mode),
        results_ttl_seconds=options.results_ttl_seconds
        or int(settings.results_ttl.total_seconds()),
        credits_reserved=settings.credits_per_job
        + sum(item_price(settings, image, options.mode) for image in images),
        created_at=utcnow(),
    )
    rows = [
        {
            "id": uuid.uuid4(),
            "index": image.index,
            "status": ItemStatus.QUEUED,
            "lane": Lane.BATCH if options.mode == JobMode.BATCH else Lane.LIVE,
            "source_kind": image.source_kind,
            "source_name": image.source_name,
            "source_url": image.source_url,
            "storage_key": image.storage_key,
            "byte_size": image.byte_size,
            "sha256": image.sha256,
            "media_type": image.media_type,
            "page_count": image.page_count,
            "credits": item_price(settings, image, options.mode),
        }
        for image in images
    ]
    jobs_repository.add_job(session, job, rows)
    credits_service.reserve(session, account.id, job.id, job.credits_reserved)
    broker.enqueue_after_commit(session, TaskName.DISPATCH_JOB, str(job.id))
    return job


def cancel_job(session: Session, job: Job) -> list[str]:
    """Cancel a job: queued items never reach the model; running ones finish and are kept.

    Returns the storage keys of the cancelled items, to delete once the commit succeeds.
    """
    if JobStatus(job.status).is_terminal:
        raise Conflict(f"job {job.id} has already ended as {job.status}", input="job_id")
    now = utcnow()
    # Items before the job, the order every other transaction locks them in: a worker
    # claiming an item holds it while it marks the job running.
    cancelled = jobs_repository.cancel_queued_items(session, job.id, now)
    jobs_repository.set_job_cancelled(session, job.id, now)
    # Its provider batches are cancelled at the provider by the next poll; what the provider
    # finished before that is kept (and charged), the rest is cancelled and refunded.
    provider_batches_repository.request_cancel(session, job.id, now)
    progress = jobs_repository.add_to_job_counters(
        session, job.id, cancelled=len(cancelled), refund=sum(c for _i, _k, c in cancelled)
    )
    credits_service.refund(
        session, progress.account_id, job.id, progress.refunded, note="cancelled images"
    )
    if progress.complete:
        broker.enqueue_after_commit(session, TaskName.FINALIZE_JOB, str(job.id))
    session.refresh(job)
    return [key for _id, key, _credits in cancelled if key]


@dataclass(frozen=True, slots=True)
class ItemOutcome:
    """How one attempt at an item ended."""

    succeeded: bool
    content: str | None = None
    parsed: Any = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model_ms: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    # The image could not be read because image storage is unavailable: the item goes back
    # to the queue, this attempt not counted, rather than ending.
    requeue: bool = False
    # With grounding: where each value is printed (extraction.grounding.ground).
    evidence: dict[str, Any] | None = None
    # With normalize: typed dates and amounts (extraction.normalize.normalize).
    normalized: dict[str, Any] | None = None
    # The answer is in but its evidence is not: the image goes to the cpu queue to be read
    # (a remote model's answer with grounding on) before the item ends.
    to_ground: bool = False
    # A document's pages and how each was read: [{"page": 1, "source": "ocr"}, ...].
    pages: list[dict[str, Any]] | None = None
    # When the attempt ended; outcomes are written a moment later, several at once.
    finished_at: datetime = field(default_factory=utcnow)


def _outcome_values(outcome: ItemOutcome) -> dict[str, Any]:
    return {
        "status": ItemStatus.SUCCEEDED if outcome.succeeded else ItemStatus.FAILED,
        "finished_at": outcome.finished_at,
        "content": outcome.content,
        "parsed": outcome.parsed,
        "prompt_tokens": outcome.prompt_tokens,
        "completion_tokens": outcome.completion_tokens,
        "error_code": outcome.error_code,
        "error_message": outcome.error_message,
        "model_ms": outcome.model_ms,
        "evidence": outcome.evidence,
        "normalized": outcome.normalized,
        "pages": outcome.pages,
    }


def record_abandoned_item(
    session: Session, job_id: uuid.UUID, item_id: uuid.UUID, outcome: ItemOutcome
) -> bool:
    """End an item given up on after its last holder vanished, and count it towards the
    job, exactly once: from queued or running, whoever held it."""
    if not jobs_repository.finish_item(
        session,
        item_id,
        from_statuses=[ItemStatus.QUEUED, ItemStatus.RUNNING],
        attempt=None,
        values=_outcome_values(outcome),
    ):
        return False
    fan_in_outcomes(session, job_id, [(item_id, outcome)])
    return True


def hold_for_grounding(
    session: Session,
    settings: Settings,
    attempts: Sequence[tuple[uuid.UUID, int, ItemOutcome]],
    now: datetime,
) -> list[tuple[uuid.UUID, int]]:
    """Keep the model's answers on their items, still running under the same attempt with
    a fresh lease, and queue ground_items for them (after commit) on the cpu queue.
    Returns the items held. An item whose grounding never ends runs again after its lease,
    as any item whose worker vanished."""
    held = jobs_repository.store_answers(
        session,
        [(item_id, attempt, _outcome_values(outcome)) for item_id, attempt, outcome in attempts],
        lease_until=now + settings.item_lease,
    )
    # One message per image: each is an OCR pass of about a second, spread over the cores.
    for item_id, attempt in held:
        broker.enqueue_after_commit(
            session, TaskName.GROUND_ITEMS, str(item_id), attempt, queue=Queue.CPU
        )
    return held


def ground_batch_answers(
    session: Session,
    settings: Settings,
    answers: Sequence[tuple[uuid.UUID, int, str | None, ItemOutcome]],
) -> None:
    """Batch-lane answers whose evidence is still to come: their image (put back in
    storage: ``key``) is read on the cpu queue, as a live answer's is (hold_for_grounding)."""
    moved = set(
        provider_batches_repository.to_live_lane(
            session, [(item_id, attempt, key, "", "") for item_id, attempt, key, _o in answers],
            queued=False,
        )
    )  # fmt: skip
    hold_for_grounding(
        session, settings,
        [(item_id, attempt, outcome) for item_id, attempt, _k, outcome in answers
         if item_id in moved],
        utcnow(),
    )  # fmt: skip


def retry_in_live_lane(
    session: Session,
    settings: Settings,
    failures: Sequence[tuple[uuid.UUID, int, str | None, ItemOutcome]],
) -> None:
    """Batch-lane images whose line failed run once more as live calls: queued in the live
    lane (their image put back in storage: ``key``), the failure kept on them meanwhile,
    and claim tokens sent once this commits."""
    moved = provider_batches_repository.to_live_lane(
        session,
        [
            (item_id, attempt, key, outcome.error_code or "", outcome.error_message or "")
            for item_id, attempt, key, outcome in failures
        ],
        queued=True,
    )
    size = batch_size(settings, Queue.MODEL)
    for start in range(0, len(moved), size):
        broker.enqueue_after_commit(
            session, TaskName.PROCESS_ITEMS, [], min(size, len(moved) - start), str(Queue.MODEL),
            queue=Queue.MODEL,
        )  # fmt: skip


def cancel_batch_items(session: Session, job_id: uuid.UUID, item_ids: Sequence[uuid.UUID]) -> None:
    """A cancelled job's images that its provider batch did not run: cancelled, refunded,
    and counted towards the job."""
    cancelled, credits = provider_batches_repository.cancel_items(
        session, item_ids, utcnow(), "the job was cancelled before the provider ran this image"
    )
    if not cancelled:
        return
    progress = jobs_repository.add_to_job_counters(
        session, job_id, cancelled=cancelled, refund=credits
    )
    credits_service.refund(
        session, progress.account_id, job_id, progress.refunded, note="cancelled images"
    )
    if progress.complete:
        broker.enqueue_after_commit(session, TaskName.FINALIZE_JOB, str(job_id))


def release_attempts(
    session: Session, attempts: Sequence[tuple[uuid.UUID, int, ItemOutcome]]
) -> list[uuid.UUID]:
    """Put running attempts back in the queue, uncounted, with the reason on the item (its
    image could not be read: storage is down). Returns the items put back."""
    return jobs_repository.release_attempts(
        session,
        [(item_id, attempt, outcome.error_message or "") for item_id, attempt, outcome in attempts],
    )


def record_attempt_outcomes(
    session: Session, job_id: uuid.UUID, attempts: Sequence[tuple[uuid.UUID, int, ItemOutcome]]
) -> set[uuid.UUID]:
    """Store the outcomes of a job's attempts and count them towards the job, exactly once.

    An item's UPDATE only matches while it is still running under that attempt, so a
    duplicate delivery that ran late changes nothing. One counter UPDATE (the fan-in)
    covers them all, and the job's last item queues finalize_job. Returns the items
    whose outcome was stored.
    """
    written = set(
        jobs_repository.finish_attempts(
            session,
            [
                jobs_repository.ItemEnd(item_id, attempt, _outcome_values(outcome))
                for item_id, attempt, outcome in attempts
            ],
        )
    )
    if written:
        fan_in_outcomes(
            session,
            job_id,
            [(item_id, outcome) for item_id, _a, outcome in attempts if item_id in written],
        )
    return written


def fan_in_outcomes(
    session: Session, job_id: uuid.UUID, ended: Sequence[tuple[uuid.UUID, ItemOutcome]]
) -> None:
    """The fan-in: add ended items to the job's counters in one UPDATE that returns them,
    refund the failed ones (each its own price), and queue finalize_job (after commit) when
    this was the last.

    No chord: the counter lives in Postgres, so a redelivered message or a dead worker
    cannot make the job end twice or never (see ARCHITECTURE.md)."""
    outcomes = [outcome for _id, outcome in ended]
    succeeded = sum(1 for outcome in outcomes if outcome.succeeded)
    failed = [item_id for item_id, outcome in ended if not outcome.succeeded]
    progress = jobs_repository.add_to_job_counters(
        session,
        job_id,
        succeeded=succeeded,
        failed=len(failed),
        prompt_tokens=sum(outcome.prompt_tokens for outcome in outcomes),
        completion_tokens=sum(outcome.completion_tokens for outcome in outcomes),
        refund=jobs_repository.credits_of(session, failed),
    )
    credits_service.refund(
        session, progress.account_id, job_id, progress.refunded, note="failed images"
    )
    if progress.complete:
        broker.enqueue_after_commit(session, TaskName.FINALIZE_JOB, str(job_id))


def price_fetched_document(
    session: Session, settings: Settings, claimed: jobs_repository.ClaimedItem, pages: int
) -> None:
    """A URL that turned out to be a PDF costs its pages: reserve the difference from the
    image price it was accepted at (InsufficientCredits when the balance cannot cover it:
    the item then fails and its price so far is refunded). Called once its pages are
    counted and before any model call."""
    price = pages * settings.resolved_credits_per_page
    extra = price - claimed.credits
    if not jobs_repository.price_document(
        session, claimed.id, claimed.attempts, page_count=pages, credits=price
    ):
        return  # no longer this attempt's: its outcome will not be written either
    job = jobs_repository.get_job(session, claimed.job_id)
    if job is None:
        return
    if extra > 0:
        credits_service.reserve(session, job.account_id, job.id, extra)
        jobs_repository.add_reserved(session, job.id, extra)
    elif extra < 0:
        credits_service.refund(session, job.account_id, job.id, -extra, note="document pages")
        jobs_repository.add_reserved(session, job.id, extra)


def mark_dispatched(session: Session, job_id: uuid.UUID) -> None:
    """Every queued item of the job has had its message sent."""
    jobs_repository.mark_dispatched(session, job_id, utcnow())


def claim_with_lease(
    session: Session, settings: Settings, item_ids: Sequence[uuid.UUID], now: datetime
) -> list[jobs_repository.ClaimedItem]:
    """Claim the items for this worker: each claimable one (queued, or running with its
    lease run out, and attempts left) becomes running under a new attempt number, leased
    for ``item_lease``. Rows another transaction holds are skipped, not waited for
    (``FOR UPDATE SKIP LOCKED``), so a duplicate message or a cancel never blocks here.
    Only the holder of the latest attempt may record an outcome."""
    return jobs_repository.claim_items(
        session,
        list(item_ids),
        now=now,
        lease_until=now + settings.item_lease,
        max_attempts=settings.max_item_attempts,
    )


PRIORITY_RANKS = {priority.value: priority.rank for priority in JobPriority}


def providers_of(queue: Queue) -> list[str]:
    """The providers whose images the workers of ``queue`` run."""
    return [provider for provider in PROVIDERS if model_queue(provider) == queue]


def _fair_key(candidate: jobs_repository.ClaimCandidate, account: int, job: int) -> tuple[Any, ...]:
    return (JobPriority(candidate.priority).rank, account, job, candidate.created_at)


def claim_next(
    session: Session, settings: Settings, queue: Queue, count: int, now: datetime
) -> list[jobs_repository.ClaimedItem]:
    """Claim up to ``count`` queued images of ``queue``'s providers, in the fair order, each
    with an attempt and a lease as claim_with_lease gives them.

    The order, image by image: the job's priority (interactive, normal, batch); then the
    account with the fewest images in flight; then, within it, the job with the fewest in
    flight; then the oldest job. An account at its ``max_in_flight`` gets none. A nightly
    batch therefore never holds a caller who waits: the next free model thread goes to the
    caller's image, whatever messages are ahead of it in the broker.
    """
    candidates = {
        candidate.job_id: candidate
        for candidate in jobs_repository.claim_candidates(session, providers_of(queue))
    }
    accounts = {c.account_id: c.account_running for c in candidates.values()}
    jobs = {c.job_id: c.job_running for c in candidates.values()}
    claimed: list[jobs_repository.ClaimedItem] = []
    while len(claimed) < count and candidates:
        # Pick the images still wanted one at a time, counting each pick as in flight.
        picks: dict[uuid.UUID, int] = {}
        for _ in range(count - len(claimed)):
            open_ = [
                c
                for c in candidates.values()
                if c.max_in_flight is None or accounts[c.account_id] < c.max_in_flight
            ]
            if not open_:
                break
            best = min(open_, key=lambda c: _fair_key(c, accounts[c.account_id], jobs[c.job_id]))
            picks[best.job_id] = picks.get(best.job_id, 0) + 1
            accounts[best.account_id] += 1
            jobs[best.job_id] += 1
        if not picks:
            break
        for job_id, wanted in picks.items():
            candidate = candidates[job_id]
            if candidate.max_in_flight is not None:
                # The count above was read without a lock: recount under the account's.
                running = jobs_repository.lock_account_running(session, candidate.account_id)
                room = max(candidate.max_in_flight - running, 0)
                if room < wanted:
                    accounts[candidate.account_id] -= wanted - room
                    wanted = room
                if not wanted:
                    candidates.pop(job_id)
                    continue
            got = jobs_repository.claim_from_job(
                session,
                job_id,
                wanted,
                now=now,
                lease_until=now + settings.item_lease,
                max_attempts=settings.max_item_attempts,
            )
            claimed.extend(got)
            if len(got) < wanted:
                # Out of queued images (or the rest is held by another claim): not again
                # in this claim, and what it did not give is not in flight.
                candidate = candidates.pop(job_id)
                accounts[candidate.account_id] -= wanted - len(got)
    return claimed


def has_queued_images(session: Session, queue: Queue) -> bool:
    """Some job of ``queue``'s providers has an image waiting (its account may be at its
    cap: the image still needs a token once a slot frees)."""
    return bool(jobs_repository.claim_candidates(session, providers_of(queue)))


def start_job(session: Session, job: Job, now: datetime) -> None:
    """A queued job's first image was claimed: the job is running from now."""
    if job.status == JobStatus.QUEUED:
        jobs_repository.mark_job_running(session, job.id, now)


def final_status(job: Job) -> JobStatus:
    if job.status == JobStatus.CANCELLED:
        return JobStatus.CANCELLED
    if job.items_succeeded == job.item_count:
        return JobStatus.SUCCEEDED
    if job.items_succeeded > 0:
        return JobStatus.PARTIALLY_SUCCEEDED
    return JobStatus.FAILED


def is_ready_to_finalize(session: Session, job_id: uuid.UUID) -> bool:
    """Every item of the job has ended and the job has not been finalized yet."""
    job = jobs_repository.get_job(session, job_id)
    return job is not None and job.finished_at is None and job.items_finished >= job.item_count


def finalize_job(session: Session, settings: Settings, job_id: uuid.UUID) -> Job | None:
    """Give a job whose items have all ended its final status and settle its credits.

    Safe to run twice: a job that already has ``finished_at`` is left as it is.
    """
    job = jobs_repository.get_job(session, job_id)
    if job is None or job.finished_at is not None or job.items_finished < job.item_count:
        return None
    # Failed and cancelled images were refunded as they ended; what is left is spent.
    to_capture = job.credits_reserved - job.credits_refunded - job.credits_captured
    now = utcnow()
    settled = jobs_repository.set_job_finished(
        session,
        job.id,
        status=final_status(job),
        now=now,
        values={
            "credits_captured": job.credits_captured + to_capture,
            # Kept on the row so the retention sweep finds expired jobs by index.
            "results_expire_at": now + timedelta(seconds=job.results_ttl_seconds),
        },
    )
    if settled:
        credits_service.capture(session, job.account_id, job.id, to_capture)
    session.refresh(job)
    if settled:
        webhooks_service.enqueue_job_event(session, settings, job)
    return job


# Failures worth running again: the model or the network, not the image itself.
RETRYABLE_CODES = tuple(
    sorted({kind.code for kind in ErrorKind if kind.value.retryable} | {"image_fetch_failed"})
)


def keeps_file(outcome: ItemOutcome) -> bool:
    """A failed image whose failure may pass keeps its file for /retry (for a while)."""
    return not outcome.succeeded and outcome.error_code in RETRYABLE_CODES


def retry_failed_items(session: Session, store: ImageStore, job: Job) -> int:
    """Run a job's retryable failed images again, reserving credits for those only.

    Images whose bytes are gone (an upload past the retention of failed images) are left
    as they are. Returns how many images were queued again.
    """
    if job.purged_at is not None:
        raise Gone(f"job {job.id} was purged; its images are gone", input="job_id")
    if job.finished_at is None:
        raise Conflict(f"job {job.id} is still {job.status}; retry once it ends", input="job_id")
    stored = store.job_files(job.id)
    candidates = [
        item
        for item in jobs_repository.retryable_failed_items(session, job.id, RETRYABLE_CODES)
        if item.source_url or (item.storage_key and item.storage_key in stored)
    ]
    if not candidates:
        raise Conflict(
            f"job {job.id} has no failed image that can run again (failures of the image "
            "itself, such as corrupt_image, would fail again)",
            input="job_id",
        )
    # The checks above read rows unlocked, and a double click sends two retries at once.
    # Items before the job, then the account, the order every other transaction locks them
    # in: only items still failed are requeued (another retry may have taken them), and
    # only an ended job is reopened; either refusal rolls the whole retry back.
    requeued = jobs_repository.requeue_failed_items(session, [item.id for item in candidates])
    candidates = [item for item in candidates if item.id in requeued]
    # Each at the price it was accepted at (a document: its pages), whatever the price now.
    price_now = sum(item.credits for item in candidates)
    if not candidates or not jobs_repository.reopen_job(
        session, job.id, retried=len(candidates), extra_credits=price_now
    ):
        raise Conflict(f"job {job.id} is being retried already; retry once it ends", input="job_id")
    credits_service.reserve(session, job.account_id, job.id, price_now)
    broker.enqueue_after_commit(session, TaskName.DISPATCH_JOB, str(job.id))
    session.refresh(job)
    return len(candidates)


def purge_job(session: Session, settings: Settings, job: Job) -> None:
    """Remove a job's results and images now; a running job is cancelled first.

    Images already with the model finish there, but their results are dropped. The
    caller deletes the job's folder in image storage once this commits.
    """
    if job.purged_at is not None:
        return
    provider_batches_repository.request_cancel(session, job.id, utcnow())
    if job.finished_at is None:
        if job.status in (JobStatus.QUEUED, JobStatus.RUNNING):
            jobs_repository.set_job_cancelled(session, job.id, utcnow())
        dropped, credits = jobs_repository.cancel_unfinished_items(session, job.id, utcnow())
        progress = jobs_repository.add_to_job_counters(
            session, job.id, cancelled=dropped, refund=credits
        )
        credits_service.refund(
            session, progress.account_id, job.id, progress.refunded, note="purged images"
        )
        finalize_job(session, settings, job.id)
    jobs_repository.delete_items(session, job.id)
    jobs_repository.mark_purged(session, job.id, utcnow())
    session.refresh(job)


def purge_expired_jobs(session: Session, settings: Settings, limit: int) -> list[uuid.UUID]:
    """Purge up to ``limit`` ended jobs whose results TTL ran out; returns their ids (to
    delete their files). Only ids are read to find them, so keep ``limit`` small."""
    purged: list[uuid.UUID] = []
    for job_id in jobs_repository.jobs_past_retention(session, utcnow(), limit):
        job = jobs_repository.get_job(session, job_id)
        if job is not None:
            purge_job(session, settings, job)
            purged.append(job_id)
    return purged
