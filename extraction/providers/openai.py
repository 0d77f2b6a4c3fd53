"""Any OpenAI-compatible chat-completions server: OpenAI, vLLM, Ollama, llama.cpp, LM Studio,
Gemini's compatible endpoint, OpenRouter.

Timeouts, connection errors and 5xx are retried with exponential backoff and jitter; 429 waits
for Retry-After. When the retries run out the call fails as a model timeout (if the last try
timed out) or an upstream error.
"""

from __future__ import annotations

import base64
import logging
import random
import time
from typing import Any

import httpx

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


class OpenAIProvider:
    name = "openai"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        headers = {}
        if settings.openai_api_key is not None:
            headers["Authorization"] = f"Bearer {settings.openai_api_key.get_secret_value()}"
        timeout = settings.model_timeout.total_seconds()
        self.client = httpx.Client(
            base_url=str(settings.openai_base_url).rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(
                max_connections=settings.model_concurrency * 2,
                max_keepalive_connections=settings.model_concurrency * 2,
            ),
        )

    def close(self) -> None:
        self.client.close()

    def _body(self, image: PreparedImage, request: ExtractionRequest) -> dict[str, Any]:
        data_url = f"data:{image.media_type};base64,{base64.b64encode(image.data).decode()}"
        system = "You extract information from images. " + _SCENE_INSTRUCTIONS[request.scene]
        if request.json_mode:
            system += " Answer with one JSON value only, no prose and no code fences."
        body: dict[str, Any] = {
            "model": request.model or self.settings.openai_model,
            "messages": [
                {"role": "system", "content": system},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": request.prompt},
                        {"type": "image_url", "image_url": {"url": data_url}},
                    ],
                },
            ],
            "max_tokens": request.max_tokens,
        }
        if request.json_mode:
            body["response_format"] = {"type": "json_object"}
        return body

    def _backoff(self, attempt: int) -> float:
        base = self.settings.model_retry_base.total_seconds()
        cap = self.settings.model_retry_max.total_seconds()
        return float(random.uniform(0, min(cap, base * 2**attempt)))  # noqa: S311 — jitter, not crypto

    def extract(self, image: PreparedImage, request: ExtractionRequest) -> ModelResult:
        body = self._body(image, request)
        last_problem = "no attempt made"
        timed_out = False
        wait = 0.0
        for attempt in range(self.settings.model_max_retries + 1):
            if attempt:
                time.sleep(wait)
            wait = self._backoff(attempt)
            try:
                response = self.client.post("/chat/completions", json=body)
            except httpx.TimeoutException:
                timed_out, last_problem = True, "the model did not answer in time"
                continue
            except httpx.TransportError as error:
                timed_out, last_problem = False, f"could not reach the model: {error}"
                continue
            timed_out = False
            if response.status_code == 429:
                wait = _retry_after(
                    response, default=wait, cap=self.settings.model_retry_max.total_seconds()
                )
                last_problem = "the model server kept answering 429 Too Many Requests"
                continue
            if response.status_code >= 500:
                last_problem = f"the model server answered {response.status_code}"
                continue
            if response.status_code >= 400:
                raise UpstreamError(
                    f"the model server refused the request with {response.status_code}: "
                    f"{response.text[:300]}"
                )
            try:
                return _parse(response)
            except (ValueError, KeyError, IndexError, TypeError) as error:
                last_problem = f"the model server sent a response we cannot read: {error}"
                continue
        attempts = self.settings.model_max_retries + 1
        if timed_out:
            raise ModelTimeout(f"{last_problem} ({attempts} attempts)")
        raise UpstreamError(f"{last_problem} ({attempts} attempts)")


def _retry_after(response: httpx.Response, *, default: float, cap: float) -> float:
    value = response.headers.get("Retry-After", "")
    try:
        return min(max(float(value), 0.0), cap)
    except ValueError:
        return default


def _parse(response: httpx.Response) -> ModelResult:
    payload = response.json()
    content = payload["choices"][0]["message"]["content"]
    if not isinstance(content, str):
        raise TypeError("choices[0].message.content is not text")
    usage = payload.get("usage") or {}
    return ModelResult(
        content=content,
        usage=Usage(
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
        ),
        raw=payload,
    )
