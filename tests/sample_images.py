"""Images made on the fly: small ones whose size encodes their position so order can be
checked, and printed pages for the OCR engine to read."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

SANS = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
SANS_BOLD = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")


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


def font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans (bold) at ``size``; Pillow's own font where DejaVu is not installed."""
    path = SANS_BOLD if bold else SANS
    if path.exists():
        return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size=size)


def printed_page(
    lines: list[tuple[int, int, str]], size: tuple[int, int] = (900, 640), font_size: int = 28
) -> Image.Image:
    """A white page with each ``(x, y, text)`` printed in black at that pixel."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    face = font(font_size)
    for x, y, text in lines:
        draw.text((x, y), text, fill="black", font=face)
    return image
