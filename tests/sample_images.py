"""Small images made on the fly; their size encodes their position so order can be checked."""

from __future__ import annotations

import io

from PIL import Image


def size_for(index: int) -> tuple[int, int]:
    return 16 + index % 100, 16 + index // 100


def png_for(index: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size_for(index), (index % 256, 80, 160)).save(out, "PNG")
    return out.getvalue()


def jpeg_for(index: int, size: tuple[int, int] | None = None) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size or size_for(index), (200, index % 256, 40)).save(out, "JPEG")
    return out.getvalue()
