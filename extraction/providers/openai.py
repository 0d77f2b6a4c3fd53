"""Any OpenAI-compatible chat-completions server: OpenAI, vLLM, Ollama, llama.cpp, LM Studio,
Gemini's compatible endpoint, OpenRouter; through the official ``openai`` SDK.

The SDK retries timeouts, connection errors, 429 (after its Retry-After) and 5xx with
exponential backoff, ``IMAGEEXTRACT_MODEL_MAX_RETRIES`` times, over a pooled connection.
When the retries run out the call fails as ``model_timeout`` (the last try timed out) or
``upstream_error``.

In JSON mode with a schema, the answer is constrained by ``response_format: json_schema``
(strict) where the server takes it. A server that refuses it (400 naming response_format or
json_schema) gets ``json_object`` from then on, and one that refuses that too gets the
prompt alone; ``IMAGEEXTRACT_OPENAI_RESPONSE_FORMAT`` starts lower for servers known not to
take it.

A multi-page document (``extract_pages``) is one request with an image per page, or, past
``IMAGEEXTRACT_PDF_PAGES_PER_REQUEST`` pages, one request per chunk of pages with the
answers merged (extraction.merge).
"""

from __future__ import annotations

import base64
import dataclasses
import itertools
import json
import logging
import threading
from collections.abc import Callable, Iterable, Sized
from typing import Any, Literal

import openai

from core.errors import InvalidModelOutput, InvalidRequest, ModelTimeout, UpstreamError
from core.settings import Settings
from extraction.contract import (
    DocumentPage,
    ExtractionRequest,
    ModelResult,
    PageSource,
    PreparedImage,
    Scene,
    Usage,
)
from extraction.merge import join_texts, merge_answers
from extraction.output import read_answer

log = logging.getLogger(__name__)

_SCENE_INSTRUCTIONS = {
    Scene.GENERAL: "The images are business documents such as invoices, receipts, "
    "reimbursement forms and cost lists.",
    Scene.MEDICAL: "The images are medical documents such as medical records, test reports, "
    "prescriptions, cost statements and charge lists.",
}

ResponseFormat = Literal["json_schema", "json_object", "none"]
# From the most constrained to none: what a server that refuses one gets next.
_FORMATS: tuple[ResponseFormat, ...] = ("json_schema", "json_object", "none")


class OpenAIProvider:
    name = "openai"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        timeout = settings.model_timeout.total_seconds()
        self.client = openai.OpenAI(
            base_url=str(settings.openai_base_url).rstrip("/"),
            # Servers without keys (vLLM, Ollama) still get a header the SDK insists on.
            api_key=(
                settings.openai_api_key.get_secret_value()
                if settings.openai_api_key is not None
                else "none"
            ),
            timeout=openai.Timeout(timeout, connect=min(timeout, 10.0)),
            # The SDK's pool keeps up to 100 idle connections: more than our model threads.
            max_retries=settings.model_max_retries,
        )
        self._format: ResponseFormat = settings.openai_response_format
        self._lock = threading.Lock()

    def close(self) -> None:
        self.client.close()

    def _messages(
        self, request: ExtractionRequest, shown: list[dict[str, Any]], document: str | None
    ) -> list[Any]:
        """The chat: the instructions, then the prompt and ``shown`` (the image parts, a
        document's pages each after its "Page N:"). ``document`` tells the model what the
        images are of a document; None for a single image."""
        system = "You extract information from images. " + _SCENE_INSTRUCTIONS[request.scene]
        if document is not None:
            system += " " + document
        if request.json_mode:
            system += " Answer with one JSON value only, no prose and no code fences."
            if request.schema is not None:
                unseen = "the image does not show" if document is None else "the pages do not show"
                system += (
                    f" The answer must fit this JSON Schema; use null for a value {unseen}: "
                    f"{json.dumps(request.schema, ensure_ascii=False)}"
                )
        messages: list[Any] = [
            {"role": "system", "content": system},
            {"role": "user", "content": [{"type": "text", "text": request.prompt}, *shown]},
        ]
        if request.feedback is not None:
            previous, problems = request.feedback
            messages.append({"role": "assistant", "content": previous})
            messages.append(
                {
                    "role": "user",
                    "content": f"That answer cannot be used: {problems}. Answer again with "
                    "JSON that fits the schema exactly.",
                }
            )
        return messages

    def _response_format(
        self, request: ExtractionRequest, level: ResponseFormat
    ) -> dict[str, Any] | None:
        if not request.json_mode or level == "none":
            return None
        schema = request.schema
        if level == "json_schema" and schema is not None and schema.get("type") == "object":
            return {
                "type": "json_schema",
                "json_schema": {"name": "extraction", "schema": schema, "strict": True},
            }
        return {"type": "json_object"}

    def body(
        self, image: PreparedImage, request: ExtractionRequest, level: ResponseFormat | None = None
    ) -> dict[str, Any]:
        """The chat-completions request body for this image: what a live call sends, and
        what a batch request line carries (extraction.providers.openai_batch)."""
        return self._body(request, [_image_part(image)], None, level)

    def _body(
        self,
        request: ExtractionRequest,
        shown: list[dict[str, Any]],
        document: str | None,
        level: ResponseFormat | None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model or self.settings.openai_model,
            "messages": self._messages(request, shown, document),
            "max_tokens": request.max_tokens,
        }
        response_format = self._response_format(request, level or self._format)
        if response_format is not None:
            body["response_format"] = response_format
        return body

    def extract(self, image: PreparedImage, request: ExtractionRequest) -> ModelResult:
        return self._complete(request, lambda level: self.body(image, request, level))

    def extract_pages(
        self, pages: Iterable[DocumentPage], request: ExtractionRequest
    ) -> ModelResult:
        """One answer from all of a document's pages, each page an image.

        A document of at most ``pdf_pages_per_request`` pages is one request: the prompt,
        then each page's image after a "Page N:" line, in page order. A longer one is sent
        in chunks of that many pages, one request each, every chunk told which pages of the
        document it holds and to fill only what they show; the answers are merged into one:

        - In JSON mode, objects merge key by key: the first chunk's value of a key that is
          not null or empty wins, and a later chunk only fills what earlier ones left null
          or empty. Arrays are concatenated in page order (line items running over pages);
          a top-level answer that is not an object or array is the first non-null one.
          Each chunk's answer is read (repaired, fitted to the schema) before the merge; a
          chunk whose answer does not fit is asked once more, told what was wrong, and one
          that still does not fails the document as ``invalid_model_output``.
        - Without JSON mode the texts are joined in page order, separated by a blank line.

        Pages are taken from ``pages`` one chunk at a time: no more than one chunk's images
        are held at once. A sized ``pages`` (a list, or a lazy sequence with ``len``) lets
        the model hear how many pages the document has. Usage is the sum over every
        request; a request that fails fails the whole document with its error.
        """
        size = self.settings.pdf_pages_per_request
        total = len(pages) if isinstance(pages, Sized) else None
        remaining = iter(pages)
        results: list[ModelResult] = []
        answers: list[Any] = []
        taken = chunks = 0
        while chunk := tuple(itertools.islice(remaining, size)):
            # A short first chunk means the iterator ran out: the whole document is here.
            whole = taken == 0 and (len(chunk) < size or total == len(chunk))
            taken += len(chunk)
            chunks += 1
            if whole:
                results.append(self._ask_pages(chunk, request, None))
            else:
                results.extend(self._ask_part(chunk, request, total, answers))
            # Let go of this chunk's images before the next chunk's pages are rendered.
            del chunk
        if not results:
            raise InvalidRequest("the document has no pages")
        if chunks == 1:
            # Nothing to merge: the answer as the model gave it, as for a single image.
            content = results[-1].content
        elif request.json_mode:
            content = json.dumps(merge_answers(answers), ensure_ascii=False)
        else:
            content = join_texts(result.content for result in results)
        return ModelResult(
            content=content,
            usage=Usage(
                prompt_tokens=sum(result.usage.prompt_tokens for result in results),
                completion_tokens=sum(result.usage.completion_tokens for result in results),
            ),
            raw={"requests": len(results), "responses": [result.raw for result in results]},
            page_sources=(PageSource.IMAGE,) * taken,
        )

    def _ask_part(
        self,
        chunk: tuple[DocumentPage, ...],
        request: ExtractionRequest,
        total: int | None,
        answers: list[Any],
    ) -> list[ModelResult]:
        """Asks about one chunk of a longer document; in JSON mode its answer, read and
        fitted to the schema, goes to ``answers`` (asked once more when it does not fit)."""
        first, last = chunk[0].number, chunk[-1].number
        note = _part_note(first, last, total, request.json_mode)
        # The caller's feedback is about a merged answer, not this chunk's: a chunk is
        # read here and asked again on its own.
        part = dataclasses.replace(request, feedback=None)
        result = self._ask_pages(chunk, part, note)
        if not request.json_mode:
            return [result]
        try:
            answers.append(read_answer(result.content, request.schema))
            return [result]
        except InvalidModelOutput as problem:
            again = dataclasses.replace(part, feedback=(result.content, problem.message))
            retried = self._ask_pages(chunk, again, note)
        try:
            answers.append(read_answer(retried.content, request.schema))
        except InvalidModelOutput as error:
            raise InvalidModelOutput(f"pages {first}-{last}: {error.message}") from error
        return [result, retried]

    def _ask_pages(
        self, chunk: tuple[DocumentPage, ...], request: ExtractionRequest, note: str | None
    ) -> ModelResult:
        shown: list[dict[str, Any]] = []
        for page in chunk:
            shown.append({"type": "text", "text": f"Page {page.number}:"})
            shown.append(_image_part(page.image))
        document = "The images are the pages of one document, in order." if note is None else note
        return self._complete(request, lambda level: self._body(request, shown, document, level))

    def _complete(
        self, request: ExtractionRequest, body_at: Callable[[ResponseFormat], dict[str, Any]]
    ) -> ModelResult:
        """One chat completion of the body ``body_at`` builds for a response-format level,
        stepping down the levels a server refuses; the SDK's errors as ours."""
        while True:
            level = self._format
            try:
                completion = self.client.chat.completions.create(**body_at(level))
            except openai.APITimeoutError as error:
                raise ModelTimeout(self._gave_up("the model did not answer in time")) from error
            except openai.APIConnectionError as error:
                raise UpstreamError(self._gave_up(f"could not reach the model: {error}")) from error
            except openai.BadRequestError as error:
                if request.json_mode and level != "none" and _refuses_format(error):
                    self._step_down(level, error)
                    continue
                raise UpstreamError(_refused(error)) from error
            except openai.RateLimitError as error:
                raise UpstreamError(
                    self._gave_up("the model server kept answering 429 Too Many Requests")
                ) from error
            except openai.InternalServerError as error:
                raise UpstreamError(
                    self._gave_up(f"the model server answered {error.status_code}")
                ) from error
            except openai.APIStatusError as error:
                raise UpstreamError(_refused(error)) from error
            except (openai.APIResponseValidationError, json.JSONDecodeError, ValueError) as error:
                raise UpstreamError(
                    f"the model server sent a response we cannot read: {error}"
                ) from error
            return result_of(completion.model_dump())

    def _gave_up(self, problem: str) -> str:
        return f"{problem} ({self.settings.model_max_retries + 1} attempts)"

    def _step_down(self, level: ResponseFormat, error: openai.APIStatusError) -> None:
        with self._lock:
            if self._format == level:
                self._format = _FORMATS[_FORMATS.index(level) + 1]
                log.warning(
                    "the model server refused response_format %s (%s); using %s from now on",
                    level, _message(error), self._format,
                )  # fmt: skip


def _image_part(image: PreparedImage) -> dict[str, Any]:
    data_url = f"data:{image.media_type};base64,{base64.b64encode(image.data).decode()}"
    return {"type": "image_url", "image_url": {"url": data_url}}


def _part_note(first: int, last: int, total: int | None, json_mode: bool) -> str:
    """What a chunk of a longer document is told about itself. Without ``total`` (pages
    given lazily, not counted) the model hears only that other pages may exist."""
    of = f"a document of {total} pages" if total is not None else "one document"
    fill = (
        "fill in only what these pages show and use null for the rest."
        if json_mode
        else "answer only from what these pages show."
    )
    return (
        f"The images are pages {first}-{last} of {of}, in order; any other pages are sent "
        f"separately, so {fill}"
    )


def _message(error: openai.APIStatusError) -> str:
    body = error.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:300]
    return error.response.text[:300]


def _refuses_format(error: openai.APIStatusError) -> bool:
    text = _message(error).lower()
    return "response_format" in text or "json_schema" in text or "json_object" in text


def _refused(error: openai.APIStatusError) -> str:
    return f"the model server refused the request with {error.status_code}: {_message(error)}"


def result_of(body: dict[str, Any]) -> ModelResult:
    """A chat completion (its JSON body) as our result: the text and the token counts."""
    try:
        content = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as error:
        raise UpstreamError(
            f"the model server sent a response we cannot read: no {error}"
        ) from error
    if not isinstance(content, str):
        raise UpstreamError("the model server sent no text in choices[0].message.content")
    usage = body.get("usage") or {}
    return ModelResult(
        content=content,
        usage=Usage(
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
        ),
        raw=body,
    )
