"""Multi-page documents through the openai provider, against the fake OpenAI-compatible
server on loopback: how many requests a document costs, what comes back when a long one is
sent in chunks, and that a failing request fails the document with our error codes."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from core.errors import InvalidModelOutput, InvalidRequest, ModelTimeout, UpstreamError
from core.settings import Settings
from extraction.contract import DocumentPage, ExtractionRequest, PageSource, PreparedImage
from extraction.output import read_answer
from extraction.providers.openai import OpenAIProvider
from extraction.schema import schema_of_prompt
from tests.sample_images import jpeg_for, png_for, size_for

PROMPT = (
    'Read the document into {"width": "Width", "height": "Height", "pages": "Pages", '
    '"page_sizes": [{"width": "Page width", "height": "Page height"}]}'
)
SCHEMA = schema_of_prompt(PROMPT)


def page(number: int, data: bytes | None = None) -> DocumentPage:
    """Page ``number`` as the fake model sees it: an image whose size encodes the number."""
    width, height = size_for(number)
    if number % 2:
        image = PreparedImage(data or png_for(number), "image/png", width, height)
    else:
        image = PreparedImage(data or jpeg_for(number), "image/jpeg", width, height)
    return DocumentPage(number=number, image=image)


def document(count: int) -> list[DocumentPage]:
    return [page(number) for number in range(1, count + 1)]


def sizes(first: int, last: int) -> list[dict[str, int]]:
    return [{"width": size_for(n)[0], "height": size_for(n)[1]} for n in range(first, last + 1)]


def pages_answer(first: int, count: int) -> dict[str, Any]:
    """What the fake model answers for ``count`` pages starting at page ``first``."""
    width, height = size_for(first)
    return {
        "width": width,
        "height": height,
        "pages": count,
        "page_sizes": sizes(first, first + count - 1),
    }


@pytest.fixture
def provider(model_server: str) -> Iterator[OpenAIProvider]:
    settings = Settings(
        openai_base_url=f"{model_server}/v1",
        model_timeout=timedelta(seconds=1),
        model_max_retries=2,
        pdf_pages_per_request=8,
    )
    provider = OpenAIProvider(settings)
    yield provider
    provider.close()


def _stats(model_server: str) -> dict[str, Any]:
    return dict(httpx.get(f"{model_server}/_stats", timeout=5).json())


def _generated(count: int) -> Iterator[DocumentPage]:
    # A generator, as a PDF renderer hands pages over: nothing says how many will come.
    return (page(number) for number in range(1, count + 1))


@pytest.mark.parametrize(
    ("pages", "count"),
    [(document, 3), (_generated, 8)],
    ids=["3-page list", "8-page generator"],
)
def test_a_document_up_to_the_chunk_size_is_one_request_with_every_page(
    provider: OpenAIProvider,
    model_server: str,
    pages: Callable[[int], Iterable[DocumentPage]],
    count: int,
) -> None:
    request = ExtractionRequest(prompt="Read", json_mode=True)
    result = provider.extract_pages(pages(count), request)
    assert json.loads(result.content) == pages_answer(1, count)
    assert result.page_sources == (PageSource.IMAGE,) * count
    assert result.raw["requests"] == 1
    stats = _stats(model_server)
    assert stats["images"] == [count]
    assert stats["calls"] == {"ok": 1}
    # The fake bills 85 prompt tokens per image: every page was paid for.
    assert result.usage.prompt_tokens >= 85 * count
    assert result.usage.completion_tokens > 0


def test_a_long_document_goes_in_chunks_whose_answers_merge(
    provider: OpenAIProvider, model_server: str
) -> None:
    request = ExtractionRequest(prompt=PROMPT, json_mode=True, schema=SCHEMA)
    result = provider.extract_pages(document(20), request)

    stats = _stats(model_server)
    assert stats["images"] == [8, 8, 4]
    assert stats["formats"] == {"json_schema": 3}
    assert result.raw["requests"] == 3
    assert result.page_sources == (PageSource.IMAGE,) * 20
    # The template asks for text: numbers come back as text, fitted to the schema.
    merged = read_answer(result.content, SCHEMA)
    width, height = size_for(1)
    assert merged["width"] == str(width)
    assert merged["height"] == str(height)
    # Each chunk saw its own pages; the first chunk's count is the one kept.
    assert merged["pages"] == "8"
    # Every page's row is there once, in page order.
    assert merged["page_sizes"] == [
        {"width": str(size["width"]), "height": str(size["height"])} for size in sizes(1, 20)
    ]
    billed = result.raw["responses"]
    assert result.usage.prompt_tokens == sum(r["usage"]["prompt_tokens"] for r in billed)
    assert result.usage.completion_tokens == sum(r["usage"]["completion_tokens"] for r in billed)
    assert result.usage.prompt_tokens >= 85 * 20


def test_without_json_mode_the_chunks_texts_are_joined_in_page_order(
    provider: OpenAIProvider, model_server: str
) -> None:
    result = provider.extract_pages(_generated(20), ExtractionRequest(prompt="Describe"))
    parts = result.content.split("\n\n")

    def described(first: int, last: int) -> str:
        shown = ", ".join(f"{s['width']}x{s['height']}" for s in sizes(first, last))
        return f"{last - first + 1} images of {shown} pixels."

    assert parts == [described(1, 8), described(9, 16), described(17, 20)]
    assert _stats(model_server)["formats"] == {"none": 3}


class CountedBytes(bytes):
    """A page image's bytes that count themselves while alive."""

    alive = 0
    most_alive = 0

    def __new__(cls, data: bytes) -> CountedBytes:
        made = super().__new__(cls, data)
        CountedBytes.alive += 1
        CountedBytes.most_alive = max(CountedBytes.most_alive, CountedBytes.alive)
        return made

    def __del__(self) -> None:
        CountedBytes.alive -= 1


def test_pages_are_rendered_only_as_each_chunk_is_sent(
    provider: OpenAIProvider, model_server: str
) -> None:
    answered_before: list[int] = []

    def rendered() -> Iterator[DocumentPage]:
        for number in range(1, 21):
            # How many requests the model had answered when this page was asked for.
            answered_before.append(sum(_stats(model_server)["calls"].values()))
            yield page(number, CountedBytes(png_for(number) if number % 2 else jpeg_for(number)))

    CountedBytes.alive = CountedBytes.most_alive = 0
    result = provider.extract_pages(rendered(), ExtractionRequest(prompt="Read", json_mode=True))

    assert answered_before == [0] * 8 + [1] * 8 + [2] * 4
    assert CountedBytes.most_alive <= 8
    assert json.loads(result.content)["page_sizes"] == sizes(1, 20)


def test_a_chunk_whose_answer_is_not_json_is_asked_again_on_its_own(
    provider: OpenAIProvider, model_server: str, fake_model: Callable[..., Any]
) -> None:
    fake_model(malformed_next=1)
    result = provider.extract_pages(document(20), ExtractionRequest(prompt="Read", json_mode=True))
    assert json.loads(result.content)["page_sizes"] == sizes(1, 20)
    stats = _stats(model_server)
    assert stats["images"] == [8, 8, 8, 4]
    # Four answers, the first of them malformed: only the first chunk was asked twice.
    assert stats["calls"] == {"malformed": 1, "ok": 4}
    assert result.raw["requests"] == 4


def test_a_chunk_that_never_answers_json_fails_the_document_naming_its_pages(
    provider: OpenAIProvider, fake_model: Callable[..., Any]
) -> None:
    fake_model(malformed_rate=1.0)
    with pytest.raises(InvalidModelOutput, match="pages 1-8: the model did not return valid JSON"):
        provider.extract_pages(document(20), ExtractionRequest(prompt="Read", json_mode=True))


def test_a_server_failing_midway_fails_the_whole_document_and_stops_rendering(
    provider: OpenAIProvider, model_server: str, fake_model: Callable[..., Any]
) -> None:
    produced: list[int] = []

    def rendered() -> Iterator[DocumentPage]:
        for number in range(1, 21):
            if number == 9:
                fake_model(error_rate=1.0)  # the server breaks after the first chunk
            produced.append(number)
            yield page(number)

    with pytest.raises(UpstreamError, match="answered 500 \\(3 attempts\\)"):
        provider.extract_pages(rendered(), ExtractionRequest(prompt="Read", json_mode=True))
    stats = _stats(model_server)
    assert stats["calls"] == {"ok": 1, "error": 3}
    assert stats["images"] == [8, 8, 8, 8]
    assert produced == list(range(1, 17))


def test_a_model_that_never_answers_fails_the_document_as_timeout(
    provider: OpenAIProvider, fake_model: Callable[..., Any]
) -> None:
    fake_model(timeout_rate=1.0, hang=3)
    with pytest.raises(ModelTimeout, match="did not answer in time"):
        provider.extract_pages(document(3), ExtractionRequest(prompt="Read"))


def test_a_server_that_refuses_json_schema_gets_json_object_for_documents_too(
    provider: OpenAIProvider, model_server: str, fake_model: Callable[..., Any]
) -> None:
    fake_model(json_schema=0)
    request = ExtractionRequest(prompt=PROMPT, json_mode=True, schema=SCHEMA)
    result = provider.extract_pages(document(3), request)
    assert read_answer(result.content, SCHEMA)["page_sizes"] == [
        {"width": str(size["width"]), "height": str(size["height"])} for size in sizes(1, 3)
    ]
    stats = _stats(model_server)
    assert stats["formats"] == {"json_schema": 1, "json_object": 1}
    assert stats["calls"] == {"format_refused": 1, "ok": 1}


def test_a_document_without_pages_is_refused(provider: OpenAIProvider, model_server: str) -> None:
    with pytest.raises(InvalidRequest, match="no pages"):
        provider.extract_pages([], ExtractionRequest(prompt="Read"))
    assert _stats(model_server)["calls"] == {}
