"""The ``local`` provider: the embedded OCR engine, no network and no GPU.

The ONNX models load on the first call (a second or two) and stay for the provider's
life; the provider is created once per worker process, after fork.
"""

from __future__ import annotations

import threading

from extraction.contract import ExtractionRequest, ModelResult, PreparedImage, PrintedLine
from extraction.engine.document import decode_image, extract_document, printed_lines
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
        raw = {
            "model": "local-ocr",
            "fragments": result.fragments,
            "seconds": round(result.seconds, 3),
        }
        return ModelResult(
            content=result.content, usage=result.usage, raw=raw, printed=result.printed
        )

    def read(self, data: bytes) -> tuple[PrintedLine, ...]:
        """The printed text of an image, for grounding another model's answer. Raises
        ``core.errors.CorruptImage`` when the bytes do not decode.

        Its own recognizer detects text on a smaller scale than extraction does: finding
        where a known value is printed needs less than reading a page cold (on receipts
        0.960 of the values boxed on their line either way, at 1.46 CPU-s instead of 1.61).
        """
        with self._lock:
            if self._reader is None:
                self._reader = TextRecognizer(
                    threads=self._threads, detection_side=GROUNDING_DETECTION_SIDE
                )
            reader = self._reader
        picture = decode_image(data)
        return printed_lines(reader.recognise_upright(picture))

    def warm_up(self) -> None:
        """Load the models now, so the first image does not wait for them."""
        self._engine().warm_up()

    def close(self) -> None:
        """Drop the ONNX sessions; the next call would load them again."""
        with self._lock:
            self._recognizer = None
            self._reader = None
