"""The extraction domain's contract: what goes into a model and what comes out.

``Scene`` is the vocabulary of a request (the API and the job service use it too);
``Provider`` is the one interface every model provider implements.

A provider turns a prepared image and a prompt into content plus token usage. It raises
``core.errors.ImageExtractError`` subclasses (``ModelTimeout``, ``UpstreamError``,
``InvalidModelOutput``) when it cannot, so the item fails with the right code.
"""

from __future__ import annotations

import enum
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
    """One line of printed text as OCR read it: its box as fractions of the image's width
    and height (x0, y0, x1, y1, top-left origin) and the OCR's confidence."""

    text: str
    box: tuple[float, float, float, float]
    confidence: float


@dataclass(frozen=True, slots=True)
class ModelResult:
    content: str
    usage: Usage
    raw: dict[str, Any] = field(default_factory=dict)
    # The printed text the provider read, when it reads it itself (the local engine): the
    # evidence of its values is found there, without a second OCR pass.
    printed: tuple[PrintedLine, ...] | None = None


class Provider(Protocol):
    """Prepared image + prompt + options -> content, usage, raw response.

    Implementations are created once per process and must be safe to call from several
    threads at once.
    """

    name: str

    def extract(self, image: PreparedImage, request: ExtractionRequest) -> ModelResult: ...

    def close(self) -> None: ...
