"""The openai provider (the official SDK) against the fake OpenAI-compatible server on
loopback: our error codes keep their meaning, and answers are constrained by the schema."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from core.errors import ModelTimeout, UpstreamError
from core.settings import Settings
from extraction.contract import ExtractionRequest, PreparedImage
from extraction.providers.openai import OpenAIProvider
from extraction.schema import schema_of_prompt
from tests.sample_images import png_for, size_for

IMAGE = PreparedImage(data=png_for(7), media_type="image/png", width=23, height=16)


@pytest.fixture
def provider(model_server: str) -> Iterator[OpenAIProvider]:
    settings = Settings(
        openai_base_url=f"{model_server}/v1",
        model_timeout=timedelta(seconds=1),
        model_max_retries=2,
    )
    provider = OpenAIProvider(settings)
    yield provider
    provider.close()


def _calls(model_server: str) -> dict[str, int]:
    return dict(httpx.get(f"{model_server}/_stats").json()["calls"])


def test_returns_content_and_usage(provider: OpenAIProvider) -> None:
    result = provider.extract(IMAGE, ExtractionRequest(prompt="Read", json_mode=True))
    width, height = size_for(7)
    assert json.loads(result.content) == {"width": width, "height": height}
    assert result.usage.prompt_tokens > 0
    assert result.usage.completion_tokens > 0


def test_an_empty_key_in_the_environment_means_no_key(
    model_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # docker-compose's ${IMAGEEXTRACT_OPENAI_API_KEY:-} is an empty string when no key is
    # set, as for a vLLM or Ollama server; the SDK refuses an empty key outright.
    monkeypatch.setenv("IMAGEEXTRACT_OPENAI_API_KEY", "")
    settings = Settings(openai_base_url=f"{model_server}/v1", model_provider="openai")
    assert settings.openai_api_key is None
    provider = OpenAIProvider(settings)
    try:
        result = provider.extract(IMAGE, ExtractionRequest(prompt="Read", json_mode=True))
    finally:
        provider.close()
    width, height = size_for(7)
    assert json.loads(result.content) == {"width": width, "height": height}


def test_a_setting_is_read_from_the_file_its_file_variable_names(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydantic_settings import SettingsError

    secret = tmp_path / "openai_api_key"
    secret.write_text("sk-from-a-file\n")
    monkeypatch.delenv("IMAGEEXTRACT_OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("IMAGEEXTRACT_OPENAI_API_KEY_FILE", str(secret))
    key = Settings().openai_api_key
    assert key is not None
    assert key.get_secret_value() == "sk-from-a-file"
    monkeypatch.setenv("IMAGEEXTRACT_OPENAI_API_KEY", "sk-other")
    with pytest.raises(SettingsError, match="not both"):
        Settings()
    monkeypatch.delenv("IMAGEEXTRACT_OPENAI_API_KEY")
    monkeypatch.setenv("IMAGEEXTRACT_OPENAI_API_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(SettingsError, match="IMAGEEXTRACT_OPENAI_API_KEY_FILE: cannot read"):
        Settings()


def test_server_errors_are_retried_until_success(
    provider: OpenAIProvider, model_server: str, fake_model: Callable[..., Any]
) -> None:
    fake_model(fail_next=2)
    result = provider.extract(IMAGE, ExtractionRequest(prompt="Read"))
    assert "23x16" in result.content
    assert _calls(model_server) == {"error": 2, "ok": 1}


def test_429_waits_for_retry_after(
    provider: OpenAIProvider, model_server: str, fake_model: Callable[..., Any]
) -> None:
    fake_model(rate_limit_next=1, retry_after=1)
    started = time.monotonic()
    provider.extract(IMAGE, ExtractionRequest(prompt="Read"))
    assert time.monotonic() - started >= 1.0
    assert _calls(model_server) == {"rate_limited": 1, "ok": 1}


def test_errors_past_the_retries_fail_as_upstream_error(
    provider: OpenAIProvider, model_server: str, fake_model: Callable[..., Any]
) -> None:
    fake_model(error_rate=1.0)
    with pytest.raises(UpstreamError, match="answered 500"):
        provider.extract(IMAGE, ExtractionRequest(prompt="Read"))
    assert _calls(model_server) == {"error": 3}


def test_a_model_that_never_answers_fails_as_timeout(
    provider: OpenAIProvider, fake_model: Callable[..., Any]
) -> None:
    fake_model(timeout_rate=1.0, hang=3)
    with pytest.raises(ModelTimeout, match="did not answer in time"):
        provider.extract(IMAGE, ExtractionRequest(prompt="Read"))


def test_an_unreadable_response_body_is_an_upstream_error(
    provider: OpenAIProvider, fake_model: Callable[..., Any]
) -> None:
    fake_model(broken_body_rate=1.0)
    with pytest.raises(UpstreamError, match="cannot read"):
        provider.extract(IMAGE, ExtractionRequest(prompt="Read"))


def test_a_refusal_other_than_the_format_is_an_upstream_error_naming_it(
    provider: OpenAIProvider, model_server: str
) -> None:
    empty = PreparedImage(data=b"", media_type="image/png", width=1, height=1)
    with pytest.raises(UpstreamError, match="refused the request with 400"):
        provider.extract(empty, ExtractionRequest(prompt="Read"))
    assert _calls(model_server) == {"bad_request": 1}


SCHEMA = schema_of_prompt('Read {"width": "Width", "height": "Height"}')


def test_a_schema_goes_as_a_strict_json_schema(provider: OpenAIProvider, model_server: str) -> None:
    request = ExtractionRequest(prompt="Read", json_mode=True, schema=SCHEMA)
    provider.extract(IMAGE, request)
    assert httpx.get(f"{model_server}/_stats").json()["formats"] == {"json_schema": 1}


def test_a_server_that_refuses_json_schema_gets_json_object_from_then_on(
    provider: OpenAIProvider, model_server: str, fake_model: Callable[..., Any]
) -> None:
    fake_model(json_schema=0)
    request = ExtractionRequest(prompt="Read", json_mode=True, schema=SCHEMA)
    width, height = size_for(7)
    assert json.loads(provider.extract(IMAGE, request).content) == {
        "width": width, "height": height,
    }  # fmt: skip
    provider.extract(IMAGE, request)
    stats = httpx.get(f"{model_server}/_stats").json()
    assert stats["formats"] == {"json_schema": 1, "json_object": 2}
    assert stats["calls"] == {"format_refused": 1, "ok": 2}


def test_without_a_schema_json_mode_asks_for_a_json_object(
    provider: OpenAIProvider, model_server: str
) -> None:
    provider.extract(IMAGE, ExtractionRequest(prompt="Read", json_mode=True))
    provider.extract(IMAGE, ExtractionRequest(prompt="Read"))
    formats = httpx.get(f"{model_server}/_stats").json()["formats"]
    assert formats == {"json_object": 1, "none": 1}
