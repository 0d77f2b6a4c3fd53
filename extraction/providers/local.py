"""The ``local`` provider: the embedded OCR engine, no network and no GPU.

The ONNX models load on the first call (a second or two) and stay for the provider's
life; the provider is created once per worker process, after fork.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from extraction.contract import (
    DocumentPage,
    ExtractionRequest,
    ModelResult,
    PageSource,
    PreparedImage,
    PrintedLine,
)
from extraction.engine.document import (
    EngineResult,
    extract_document,
    extract_pages,
    read_image,
    read_page,
)
from extraction.engine.ocr import TextRecognizer

# Longer side of the image at which the grounding reader looks for text (see read).
GROUNDING_DETECTION_SIDE = 960


class LocalProvider:
    """Runs ``extraction.engine`` in-process. Safe to call from several threads."""

    name = "local"

    def __init__(self, *, threads: int | None = None) -> None:
        self._threads = threads
        self._recognizer: TextRecognizer | None = None
        self._reader: TextRecognizer | None = None
        self._lock = threading.Lock()

    def _engine(self) -> TextRecognizer:
        with self._lock:
            if self._recognizer is None:
                self._recognizer = TextRecognizer(threads=self._threads)
            return self._recognizer

    def extract(self, image: PreparedImage, request: ExtractionRequest) -> ModelResult:
        """Decode the prepared image and fill the prompt's schema from its text.

        Raises ``core.errors.CorruptImage`` when the bytes do not decode.
        """
        result = extract_document(
            image.data,
            request.prompt,
            request.scene,
            request.json_mode,
            recognizer=self._engine(),
        )
        return _model_result(result)

    def extract_pages(
        self, pages: Iterable[DocumentPage], request: ExtractionRequest
    ) -> ModelResult:
        """Fill the prompt's schema from all of a document's pages together: each page
        from its text layer when it has one, else by OCR, taken one at a time. Raises
        ``core.errors.CorruptImage`` when a page image does not decode."""
        result = extract_pages(
            pages,
            request.prompt,
            request.scene,
            request.json_mode,
            recognizer=self._engine(),
        )
        return _model_result(result, document=True)

    def read(self, data: bytes) -> tuple[PrintedLine, ...]:
        """The printed text of an image, for grounding another model's answer. Raises
        ``core.errors.CorruptImage`` when the bytes do not decode.

        Its own recognizer detects text on a smaller scale than extraction does: finding
        where a known value is printed needs less than reading a page cold (on receipts
        0.960 of the values boxed on their line either way, at 1.46 CPU-s instead of 1.61).
        """
        return read_image(data, self._grounding_reader()).printed

    def read_pages(
        self, pages: Iterable[DocumentPage]
    ) -> tuple[tuple[PrintedLine, ...], tuple[PageSource, ...]]:
        """``read`` for a document: every page's printed text (from its text layer when it
        has one, else read like ``read``) with its page number, and how each page was read.
        Pages are taken one at a time; only their lines are kept."""
        printed: list[PrintedLine] = []
        sources: list[PageSource] = []
        for page in pages:
            # A document with a text layer on every page never loads the grounding reader.
            reader = self._grounding_reader() if page.text is None else None
            reading = read_page(page, reader)
            printed.extend(reading.printed)
            sources.append(reading.source)
        return tuple(printed), tuple(sources)

    def _grounding_reader(self) -> TextRecognizer:
        with self._lock:
            if self._reader is None:
                self._reader = TextRecognizer(
                    threads=self._threads, detection_side=GROUNDING_DETECTION_SIDE
                )
            return self._reader

    def warm_up(self) -> None:
        """Load the models now, so the first image does not wait for them."""
        self._engine().warm_up()

    def close(self) -> None:
        """Drop the ONNX sessions; the next call would load them again."""
        with self._lock:
            self._recognizer = None
            self._reader = None


def _model_result(result: EngineResult, *, document: bool = False) -> ModelResult:
    """The engine's answer as a provider's: content, usage, the text it read and how it
    found each value; for a document also how each page was read."""
    raw: dict[str, object] = {
        "model": "local-ocr",
        "fragments": result.fragments,
        "seconds": round(result.seconds, 3),
    }
    if document:
        raw["pages"] = len(result.page_sources)
    return ModelResult(
        content=result.content,
        usage=result.usage,
        raw=raw,
        printed=result.printed,
        page_sources=result.page_sources if document else None,
        how=result.how,
    )
