"""What a worker needs to know of a job to run its images, read once per job per process.

A job's prompt and options never change after submission, so each worker process reads
them on the job's first image and keeps them; every other image saves a query (and the
prompt, which may be large, crossing the wire again).
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass

from extraction.contract import DocumentMode, ExtractionRequest

MAX_JOBS = 256


@dataclass(frozen=True, slots=True)
class JobSnapshot:
    provider: str
    request: ExtractionRequest
    # Evidence per value (extraction.grounding) for the job's results.
    grounding: bool = False
    # Typed dates and amounts (extraction.normalize).
    normalize: bool = False
    # A PDF's result: one from all its pages, or one per page.
    document_mode: DocumentMode = DocumentMode.DOCUMENT
    # Whose job it is: URL downloads are capped per account.
    account_id: uuid.UUID | None = None


class JobSnapshots:
    def __init__(self) -> None:
        self._jobs: OrderedDict[uuid.UUID, JobSnapshot] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, job_id: uuid.UUID) -> JobSnapshot | None:
        with self._lock:
            found = self._jobs.get(job_id)
            if found is not None:
                self._jobs.move_to_end(job_id)
            return found

    def put(self, job_id: uuid.UUID, snapshot: JobSnapshot) -> None:
        with self._lock:
            self._jobs[job_id] = snapshot
            while len(self._jobs) > MAX_JOBS:
                self._jobs.popitem(last=False)
