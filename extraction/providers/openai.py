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
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from typing import Any, Literal

import openai

from core.errors import ModelTimeout, UpstreamError
from core.settings import Settings
from extraction.contract import ExtractionRequest, ModelResult, PreparedImage, Scene, Usage

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

    def _messages(self, image: PreparedImage, request: ExtractionRequest) -> list[Any]:
        data_url = f"data:{image.media_type};base64,{base64.b64encode(image.data).decode()}"
        system = "You extract information from images. " + _SCENE_INSTRUCTIONS[request.scene]
        if request.json_mode:
            system += " Answer with one JSON value only, no prose and no code fences."
            if request.schema is not None:
                system += (
                    " The answer must fit this JSON Schema; use null for a value the image "
                    f"does not show: {json.dumps(request.schema, ensure_ascii=False)}"
                )
        messages: list[Any] = [
            {"role": "system", "content": system},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": request.prompt},
                    {"type": "image_url", "image_url": {"url": data_url}},
                ],
            },
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
        body: dict[str, Any] = {
            "model": request.model or self.settings.openai_model,
            "messages": self._messages(image, request),
            "max_tokens": request.max_tokens,
        }
        response_format = self._response_format(request, level or self._format)
        if response_format is not None:
            body["response_format"] = response_format
        return body

    def extract(self, image: PreparedImage, request: ExtractionRequest) -> ModelResult:
        while True:
            level = self._format
            try:
                completion = self.client.chat.completions.create(**self.body(image, request, level))
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
