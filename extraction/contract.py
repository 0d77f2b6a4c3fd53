"""The extraction domain's contract: what goes into a model and what comes out.

``Scene`` is the vocabulary of a request (the API and the job service use it too);
``Provider`` is the one interface every model provider implements.

A provider turns a prepared image and a prompt into content plus token usage. It raises
``core.errors.ImageExtractError`` subclasses (``ModelTimeout``, ``UpstreamError``,
``InvalidModelOutput``) when it cannot, so the item fails with the right code.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


class Scene(enum.StrEnum):
    GENERAL = "general"
    MEDICAL = "medical"


@dataclass(frozen=True, slots=True)
class PreparedImage:
    """An image after normalisation: EXIF-rotated, converted and downscaled."""

    data: bytes
    media_type: str  # "image/png" or "image/jpeg"
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class ExtractionRequest:
    prompt: str
    json_mode: bool = False
    scene: Scene = Scene.GENERAL
    max_tokens: int = 8192
    model: str | None = None
    # In JSON mode: the JSON Schema the answer must fit (extraction.schema.schema_of_prompt),
    # None when the prompt asks for no particular shape.
    schema: dict[str, Any] | None = None
    # Asking again: the previous answer and what was wrong with it.
    feedback: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class PrintedLine:
    """One line of printed text as OCR read it (or a PDF's text layer gave it): its box as
    fractions of its page's width and height (x0, y0, x1, y1, top-left origin), the OCR's
    confidence (1.0 for a text layer), and in a multi-page document its page (1-based)."""

    text: str
    box: tuple[float, float, float, float]
    confidence: float
    page: int | None = None


class PageSource(enum.StrEnum):
    """How a document page was read: its PDF text layer, OCR of its picture, or (a remote
    model) the picture alone."""

    TEXT_LAYER = "text_layer"
    OCR = "ocr"
    IMAGE = "image"


@dataclass(frozen=True, slots=True)
class DocumentPage:
    """One page of a document (a PDF), rendered for the model.

    ``text`` is the page's own text layer as lines, when it has a real one (a born-digital
    PDF, or a scan with an OCR layer); None for a page that is only a picture.
    """

    number: int  # 1-based
    image: PreparedImage
    text: tuple[PrintedLine, ...] | None = None


class DocumentMode(enum.StrEnum):
    """A multi-page document gives one result filled from all its pages (``document``),
    or one result per page (``pages``)."""

    DOCUMENT = "document"
    PAGES = "pages"


@dataclass(frozen=True, slots=True)
class ModelResult:
    content: str
    usage: Usage
    raw: dict[str, Any] = field(default_factory=dict)
    # The printed text the provider read, when it reads it itself (the local engine): the
    # evidence of its values is found there, without a second OCR pass.
    printed: tuple[PrintedLine, ...] | None = None
    # A document's pages in order, each with how it was read (extract_pages only).
    page_sources: tuple[PageSource, ...] | None = None
    # How the provider found each value, by its path ("total", "items[0].name"), when it
    # can say (the local engine's rules): each value's confidence is reckoned from it.
    how: Mapping[str, str] | None = None


class Provider(Protocol):
    """Prepared image + prompt + options -> content, usage, raw response.

    Implementations are created once per process and must be safe to call from several
    threads at once.
    """

    name: str

    def extract(self, image: PreparedImage, request: ExtractionRequest) -> ModelResult: ...

    def extract_pages(
        self, pages: Iterable[DocumentPage], request: ExtractionRequest
    ) -> ModelResult:
        """One result filled from all of a document's pages together. ``pages`` may be a
        generator that renders each page as it is asked for: a provider takes them one at
        a time and keeps no more pixels than it must (the local engine keeps a page's
        lines, not its picture). ``printed`` lines carry their page."""
        ...

    def close(self) -> None: ...
