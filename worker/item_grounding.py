"""Evidence for a remote model's answer: the image read by the OCR engine we ship, on the
cpu queue, once per image, then every value of the answer matched against what is printed
(extraction.grounding). The item ends here: its answer was kept on it, still running under
the model's attempt, by core.jobs.hold_for_grounding.

An image that cannot be read for its evidence (gone, undecodable, its URL failing now) ends
with its answer and no evidence; while image storage is away it waits, as the model's
images do.
"""

from __future__ import annotations

import logging
import uuid

from core import broker
from core import jobs as jobs_service
from core.broker import Queue, TaskName
from core.errors import ImageExtractError, StorageUnavailable
from db import jobs as jobs_repository
from db.engine import unit_of_work
from db.models import ItemStatus
from extraction.contract import DocumentMode
from extraction.grounding import ground, ground_pages
from extraction.pdf import PDF_SNIFF_BYTES, is_pdf, render_pages
from extraction.providers.local import LocalProvider
from worker.item_processing import STORAGE_RETRY_DELAY, read_image
from worker.runtime import WorkerRuntime

log = logging.getLogger(__name__)


def ground_item(runtime: WorkerRuntime, item_id: uuid.UUID, attempt: int) -> None:
    with unit_of_work(runtime.session_factory) as session:
        item = jobs_repository.get_item(session, item_id)
        if item is None or item.status != ItemStatus.RUNNING or item.attempts != attempt:
            return  # ended meanwhile (cancelled, or run again after its lease)
        job = jobs_repository.get_job(session, item.job_id)
        by_page = job is not None and job.document_mode == DocumentMode.PAGES
        session.expunge(item)
    name = f"images[{item.index}]"
    evidence = None
    try:
        data = read_image(runtime, item.storage_key, item.source_url, name)
        reader = runtime.provider("local")
        if not isinstance(reader, LocalProvider):
            raise TypeError("the local provider is the one that reads printed text")
        if is_pdf(data[:PDF_SNIFF_BYTES]):
            pages = render_pages(data, max_side=runtime.settings.max_image_side, name=name)
            printed, _sources = reader.read_pages(pages)
            evidence = (ground_pages if by_page else ground)(item.parsed, printed)
        else:
            evidence = ground(item.parsed, reader.read(data))
    except StorageUnavailable as error:
        log.warning("item %s waits for image storage to be grounded: %s", item_id, error.message)
        broker.send(
            TaskName.GROUND_ITEMS, str(item_id), attempt, queue=Queue.CPU,
            countdown=STORAGE_RETRY_DELAY,
        )  # fmt: skip
        return
    except ImageExtractError as error:
        log.warning("item %s ends without evidence: %s", item_id, error)
    outcome = jobs_service.ItemOutcome(
        succeeded=True,
        content=item.content,
        parsed=item.parsed,
        prompt_tokens=item.prompt_tokens,
        completion_tokens=item.completion_tokens,
        model_ms=item.model_ms,
        evidence=evidence,
        normalized=item.normalized,
        pages=item.pages,
    )
    with unit_of_work(runtime.session_factory) as session:
        written = jobs_service.record_attempt_outcomes(
            session, item.job_id, [(item.id, attempt, outcome)]
        )
    if written and item.storage_key:
        runtime.store.delete(item.storage_key)
