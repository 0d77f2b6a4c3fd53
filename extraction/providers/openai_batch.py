"""OpenAI's Batch API (and servers that speak it): request lines, files and batches.

A batch is a JSONL file of request lines, ``{"custom_id", "method", "url", "body"}``, the
body being what a live call sends (OpenAIProvider.body), uploaded with ``POST /v1/files``
(purpose batch) and run with ``POST /v1/batches`` within the completion window at about half
the price. When it ends, its output file has a line per answered request and its error file
a line per failed or expired one, both keyed by ``custom_id``.

Files are sent and read as streams: a 200 MB input file is never held in memory.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import openai

from core.errors import BatchExpired, UpstreamError
from extraction.contract import ExtractionRequest, ModelResult, PreparedImage
from extraction.providers.openai import OpenAIProvider, result_of

log = logging.getLogger(__name__)

ENDPOINT = "/v1/chat/completions"
# The provider's statuses after which nothing more happens to a batch.
ENDED = frozenset({"completed", "failed", "expired", "cancelled"})
# Uploads of an input file: tries (each from the file's start).
UPLOAD_TRIES = 3


@dataclass(frozen=True, slots=True)
class BatchState:
    """What the provider says about one batch."""

    id: str
    status: str
    input_file_id: str | None
    output_file_id: str | None
    error_file_id: str | None
    total: int
    completed: int
    failed: int
    in_progress_at: datetime | None
    expires_at: datetime | None
    # Why a batch failed as a whole (its input was refused), when it did.
    errors: str | None
    metadata: dict[str, str]

    @property
    def ended(self) -> bool:
        return self.status in ENDED


def _when(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), UTC) if value else None


def _state(batch: Any) -> BatchState:
    counts = batch.request_counts
    errors = None
    if batch.errors is not None and batch.errors.data:
        errors = "; ".join(
            f"{error.code}: {error.message}" + (f" (line {error.line})" if error.line else "")
            for error in batch.errors.data[:5]
        )
    return BatchState(
        id=batch.id,
        status=batch.status,
        input_file_id=batch.input_file_id,
        output_file_id=batch.output_file_id,
        error_file_id=batch.error_file_id,
        total=counts.total if counts else 0,
        completed=counts.completed if counts else 0,
        failed=counts.failed if counts else 0,
        in_progress_at=_when(batch.in_progress_at),
        expires_at=_when(batch.expires_at),
        errors=errors,
        metadata=dict(batch.metadata or {}),
    )


def result_of_line(line: dict[str, Any]) -> ModelResult:
    """The answer a line of an output or error file carries. BatchExpired for a request
    the provider did not run within the window, UpstreamError for one that failed."""
    response = line.get("response")
    if isinstance(response, dict) and response.get("status_code") == 200:
        return result_of(response.get("body") or {})
    if isinstance(response, dict):
        body = response.get("body")
        detail = body.get("error", body) if isinstance(body, dict) else body
        message = detail.get("message") if isinstance(detail, dict) else detail
        raise UpstreamError(
            f"the model server answered {response.get('status_code')} to its batch line: {message}"[
                :500
            ]
        )
    failure = line.get("error")
    if not isinstance(failure, dict):
        failure = {}
    if failure.get("code") == "batch_expired":
        raise BatchExpired("the provider did not run it within the batch's window")
    raise UpstreamError(
        f"the batch line failed: {failure.get('code')}: {failure.get('message')}"[:500]
    )


def _failed(what: str, error: Exception) -> UpstreamError:
    if isinstance(error, openai.APIStatusError):
        return UpstreamError(f"{what}: the model server answered {error.status_code}: {error}")
    return UpstreamError(f"{what}: {error}")


class OpenAIBatches:
    """The Batch API of the server the ``openai`` provider talks to, with its client."""

    def __init__(self, provider: OpenAIProvider, completion_window: str = "24h") -> None:
        self.provider = provider
        self.client = provider.client
        self.completion_window = completion_window

    def request_line(
        self, custom_id: str, image: PreparedImage, request: ExtractionRequest
    ) -> bytes:
        line = {
            "custom_id": custom_id,
            "method": "POST",
            "url": ENDPOINT,
            "body": self.provider.body(image, request),
        }
        return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"

    def upload(self, path: Path) -> str:
        """Send a JSONL file (streamed from disk); its file id. Tried again from the start
        of the file: the SDK's own retries would send a stream already read."""
        client = self.client.with_options(max_retries=0)
        for attempt in range(1, UPLOAD_TRIES + 1):
            try:
                with path.open("rb") as stream:
                    created = client.files.create(
                        file=(path.name, stream, "application/jsonl"), purpose="batch"
                    )
                return str(created.id)
            except (openai.APIConnectionError, openai.InternalServerError,
                    openai.RateLimitError) as error:  # fmt: skip
                if attempt == UPLOAD_TRIES:
                    raise _failed("uploading a batch input file", error) from error
                log.warning("uploading a batch input file failed (%s); trying again", error)
            except openai.APIError as error:
                raise _failed("uploading a batch input file", error) from error
        raise AssertionError("unreachable")

    def create(self, input_file_id: str, metadata: dict[str, str]) -> BatchState:
        try:
            batch = self.client.batches.create(
                input_file_id=input_file_id,
                endpoint="/v1/chat/completions",
                completion_window=self.completion_window,  # type: ignore[arg-type]
                metadata=metadata,
            )
        except openai.APIError as error:
            raise _failed("creating a batch", error) from error
        return _state(batch)

    def retrieve(self, batch_id: str) -> BatchState:
        try:
            return _state(self.client.batches.retrieve(batch_id))
        except openai.APIError as error:
            raise _failed(f"asking about batch {batch_id}", error) from error

    def cancel(self, batch_id: str) -> BatchState:
        try:
            return _state(self.client.batches.cancel(batch_id))
        except openai.APIError as error:
            raise _failed(f"cancelling batch {batch_id}", error) from error

    def find(self, key: str, value: str, *, scan: int = 1000) -> BatchState | None:
        """The batch whose metadata has ``key: value``, among the ``scan`` newest: a batch
        created by a builder that died before it could note the batch's id."""
        try:
            for seen, batch in enumerate(self.client.batches.list(limit=100)):
                if seen >= scan:
                    break
                if (batch.metadata or {}).get(key) == value:
                    return _state(batch)
        except openai.APIError as error:
            raise _failed("listing batches", error) from error
        return None

    def lines(self, file_id: str) -> Iterator[dict[str, Any]]:
        """The JSON lines of an output or error file, as they arrive."""
        try:
            with self.client.files.with_streaming_response.content(file_id) as response:
                for text in response.iter_lines():
                    if text.strip():
                        yield json.loads(text)
        except openai.APIError as error:
            raise _failed(f"reading file {file_id}", error) from error

    def download(self, file_id: str, path: Path) -> None:
        try:
            with self.client.files.with_streaming_response.content(file_id) as response:
                response.stream_to_file(path)
        except openai.APIError as error:
            raise _failed(f"reading file {file_id}", error) from error

    def delete_file(self, file_id: str) -> None:
        """Delete a file; one already gone is fine."""
        try:
            self.client.files.delete(file_id)
        except openai.NotFoundError:
            pass
        except openai.APIError as error:
            raise _failed(f"deleting file {file_id}", error) from error
