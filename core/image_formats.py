"""Recognising an image format from its first bytes, never from its name or content type."""

from __future__ import annotations

import enum


class ImageFormat(enum.StrEnum):
    JPEG = "jpeg"
    PNG = "png"
    BMP = "bmp"
    WEBP = "webp"
    HEIC = "heic"
    HEIF = "heif"
    GIF = "gif"
    TIFF = "tiff"

    @property
    def media_type(self) -> str:
        return f"image/{self.value}"


# How many leading bytes sniff() needs.
SNIFF_BYTES = 32

_HEIC_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"}
_HEIF_BRANDS = {b"mif1", b"msf1", b"mif2", b"avif", b"avis"}


def sniff(head: bytes) -> ImageFormat | None:
    if head.startswith(b"\xff\xd8\xff"):
        return ImageFormat.JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return ImageFormat.PNG
    if head.startswith(b"BM") and len(head) >= 14:
        return ImageFormat.BMP
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return ImageFormat.WEBP
    if head.startswith((b"GIF87a", b"GIF89a")):
        return ImageFormat.GIF
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return ImageFormat.TIFF
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _HEIC_BRANDS:
            return ImageFormat.HEIC
        if brand in _HEIF_BRANDS:
            return ImageFormat.HEIF
    return None


SUPPORTED_FORMATS = tuple(ImageFormat)
