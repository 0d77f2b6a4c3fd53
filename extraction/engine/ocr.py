"""Text recognition with the RapidOCR models that ship inside the ``rapidocr`` wheel.

One ``TextRecognizer`` per process: loading the ONNX sessions takes a second or two and a
few hundred MB, so the provider keeps one and reuses it. Calls are serialised by a lock;
one recognition at a time per process keeps memory flat, and the worker scales across
cores with processes rather than threads.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

# Detection works on the image scaled so its longer side is at most this many pixels.
# Receipts and forms keep text 15-30 px tall at this size, which the detector handles well;
# larger sizes cost time in proportion to the area without finding more text (measured on
# receipts: 1280 px gave 1.53 s a receipt, 1184 px 1.46 s, at about the same accuracy).
DETECTION_SIDE = 1184

# Narrowest input the recogniser pads a text crop to (ratio 160/48). The wheel's default
# (320) pads short fragments such as "RM" or "8.50" to four times their width.
RECOGNITION_MIN_WIDTH = 160
# Crops recognised together (padded to the widest of them): the wheel's default of 6 pads
# more than it saves; 3 took 1.61 CPU-s a receipt where 6 took 1.70 and 16 took 2.00.
RECOGNITION_BATCH = 3


@dataclass(frozen=True, slots=True)
class OcrLine:
    """One recognised text fragment: its text, its box in image pixels, and a confidence."""

    text: str
    quad: tuple[tuple[float, float], ...]
    confidence: float

    @property
    def left(self) -> float:
        return min(p[0] for p in self.quad)

    @property
    def right(self) -> float:
        return max(p[0] for p in self.quad)

    @property
    def top(self) -> float:
        return min(p[1] for p in self.quad)

    @property
    def bottom(self) -> float:
        return max(p[1] for p in self.quad)

    @property
    def angle(self) -> float:
        """Slope of the box's top edge in radians (0 for horizontal text)."""
        (x0, y0), (x1, y1) = self.quad[0], self.quad[1]
        return math.atan2(y1 - y0, x1 - x0) if x1 != x0 else 0.0


# Character-weighted recognition confidence of an upright page is about 0.98 on clean
# scans and above 0.9 on noisy ones; the same pages read upside down score about 0.7.
UPRIGHT_CONFIDENCE = 0.85
# A turned reading replaces the first only when it is clearly more confident.
_BETTER_BY = 0.05
# Pages with fewer text lines than this are not turned (too little to judge by).
_MIN_LINES_TO_TURN = 3


def text_confidence(lines: list[OcrLine]) -> float:
    """Mean recognition confidence, weighted by each line's length."""
    chars = sum(len(line.text) for line in lines)
    return sum(line.confidence * len(line.text) for line in lines) / chars if chars else 0.0


@dataclass(frozen=True, slots=True)
class Reading:
    """Text lines read from an image, in the coordinates of the image turned by ``turn``
    degrees counter-clockwise (0 when it was upright), and the image's own size."""

    lines: list[OcrLine]
    turn: int
    size: tuple[int, int]

    @property
    def upright_size(self) -> tuple[int, int]:
        width, height = self.size
        return (height, width) if self.turn in (90, 270) else (width, height)

    def to_image(self, x: float, y: float) -> tuple[float, float]:
        """A point of the upright page in the coordinates of the image as it was sent."""
        width, height = self.size
        if self.turn == 90:
            return width - y, x
        if self.turn == 180:
            return width - x, height - y
        if self.turn == 270:
            return y, height - x
        return x, y


def _flatten(image: Image.Image) -> Image.Image:
    """RGB with any transparency composited on white (transparent pixels often hide black)."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _default_threads() -> int:
    # One intra-op thread: the CPU queue runs one worker process per core, and
    # onnxruntime's spin-waiting threads slow every process down once cores are shared
    # (measured: 2.7 s/receipt with one thread vs 5.4 s with two on a busy 2-core host).
    # Pass ``threads=2`` for lower latency on an otherwise idle machine.
    return 1


# The longer side at which a page where nothing was found is looked at again (recognise).
_SPARSE_PAGE_SIDE = 960


class TextRecognizer:
    """RapidOCR detection + recognition, created once and shared by every call."""

    def __init__(
        self,
        *,
        threads: int | None = None,
        detection_side: int = DETECTION_SIDE,
        recognition_batch: int = RECOGNITION_BATCH,
    ) -> None:
        # Imported here so that importing the engine package stays cheap for the API process.
        from rapidocr import RapidOCR

        threads = threads or _default_threads()
        params: dict[str, Any] = {
            "Global.log_level": "error",
            # Upright documents are the norm (EXIF rotation happens before us); the angle
            # classifier also flips some short fragments wrongly.
            "Global.use_cls": False,
            "EngineConfig.onnxruntime.intra_op_num_threads": threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
            "Det.limit_type": "max",
            "Det.limit_side_len": detection_side,
            "Rec.rec_img_shape": [3, 48, RECOGNITION_MIN_WIDTH],
            "Rec.rec_batch_num": recognition_batch,
        }
        self._ocr = RapidOCR(params=params)
        self._lock = threading.Lock()

    def recognise(self, image: Image.Image) -> list[OcrLine]:
        """Return the text fragments of ``image`` (any mode) in detection order.

        A large page where detection finds nothing at all is looked at once more, smaller:
        the detector misses a lone line on an otherwise blank page (a last page that prints
        only its total) at its usual scale and finds it at a smaller one. Pages with text
        never pay for this."""
        lines = self._recognise(image)
        if lines or max(image.size) <= _SPARSE_PAGE_SIDE:
            return lines
        scale = _SPARSE_PAGE_SIDE / max(image.size)
        small = image.resize(
            (max(1, round(image.width * scale)), max(1, round(image.height * scale))),
            Image.Resampling.LANCZOS,
        )
        return [
            OcrLine(
                text=line.text,
                quad=tuple((x / scale, y / scale) for x, y in line.quad),
                confidence=line.confidence,
            )
            for line in self._recognise(small)
        ]

    def _recognise(self, image: Image.Image) -> list[OcrLine]:
        rgb = _flatten(image)
        # RapidOCR takes BGR arrays, like OpenCV.
        pixels = np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1])
        with self._lock:
            result = self._ocr(pixels)
        boxes = getattr(result, "boxes", None)
        texts = getattr(result, "txts", None)
        scores = getattr(result, "scores", None)
        if boxes is None or texts is None or scores is None:
            return []
        lines: list[OcrLine] = []
        for box, text, score in zip(boxes, texts, scores, strict=False):
            cleaned = str(text).strip()
            if not cleaned:
                continue
            quad = tuple((float(x), float(y)) for x, y in np.asarray(box).tolist())
            lines.append(OcrLine(text=cleaned, quad=quad, confidence=float(score)))
        return lines

    def recognise_upright(self, image: Image.Image) -> Reading:
        """Recognise ``image`` the right way up, turning it first when it was scanned
        sideways or upside down.

        Upright text reads with high confidence. A page turned a quarter shows text lines
        as tall boxes; one turned half-way reads as low-confidence gibberish. Only then is
        the page turned and read again, and the reading with the better confidence kept:
        an upright page costs nothing extra.
        """
        lines = self.recognise(image)
        reading = Reading(lines, 0, image.size)
        words = [line for line in lines if len(line.text) >= 3]
        if len(words) < _MIN_LINES_TO_TURN:
            return reading
        confidence = text_confidence(lines)
        tall = sum(1 for line in words if line.bottom - line.top > 1.5 * (line.right - line.left))
        sideways = tall > len(words) / 2
        tries: tuple[int, ...]
        if sideways:
            # The recogniser turns tall crops a quarter counter-clockwise, so a page read
            # confidently as tall boxes was turned clockwise: a quarter back fixes it.
            tries = (90, 270) if confidence >= UPRIGHT_CONFIDENCE else (270, 90)
        elif confidence < UPRIGHT_CONFIDENCE:
            tries = (180,)
        else:
            return reading
        best, best_confidence = reading, -1.0 if sideways else confidence
        for angle in tries:
            turned = self.recognise(image.rotate(angle, expand=True))
            turned_confidence = text_confidence(turned)
            if turned_confidence > best_confidence + _BETTER_BY:
                best, best_confidence = Reading(turned, angle, image.size), turned_confidence
            if best_confidence >= UPRIGHT_CONFIDENCE:
                break
        return best

    def warm_up(self) -> None:
        """Load the ONNX sessions now rather than on the first document."""
        blank = Image.new("RGB", (64, 32), "white")
        self.recognise(blank)
