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


# Bytes of an image's start that declared_size() looks at: a JPEG's size comes after its
# EXIF and ICC segments (up to 64 KB each), the other formats' within 30 bytes.
HEADER_BYTES = 256 * 1024

# JPEG start-of-frame markers (C4, C8 and CC are other segments); each holds the size.
_JPEG_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length: TEM, RST0-7, SOI.
_JPEG_BARE = frozenset({0x01, *range(0xD0, 0xD9)})


def declared_size(fmt: ImageFormat, head: bytes) -> tuple[int, int] | None:
    """The width and height an image's header claims, from its first bytes (``head``, up
    to HEADER_BYTES); None for other formats or when the header is not within ``head``.

    Read by hand, not with a decoder: it costs microseconds and never reads pixels, so the
    API can refuse a small file that claims billions of pixels before anything is charged.
    """
    if fmt == ImageFormat.PNG and head[12:16] == b"IHDR" and len(head) >= 24:
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if fmt == ImageFormat.GIF and len(head) >= 10:
        return int.from_bytes(head[6:8], "little"), int.from_bytes(head[8:10], "little")
    if fmt == ImageFormat.BMP and len(head) >= 26:
        if int.from_bytes(head[14:18], "little") == 12:  # OS/2: 16-bit sides
            return int.from_bytes(head[18:20], "little"), int.from_bytes(head[20:22], "little")
        width = int.from_bytes(head[18:22], "little", signed=True)
        height = int.from_bytes(head[22:26], "little", signed=True)
        return abs(width), abs(height)  # a negative height is a top-down bitmap
    if fmt == ImageFormat.WEBP:
        return _webp_size(head)
    if fmt == ImageFormat.JPEG:
        return _jpeg_size(head)
    return None


def _webp_size(head: bytes) -> tuple[int, int] | None:
    kind, data = head[12:16], head[20:]
    if kind == b"VP8X" and len(data) >= 10:
        return int.from_bytes(data[4:7], "little") + 1, int.from_bytes(data[7:10], "little") + 1
    if kind == b"VP8L" and len(data) >= 5 and data[0] == 0x2F:
        bits = int.from_bytes(data[1:5], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8 " and len(data) >= 10 and data[3:6] == b"\x9d\x01\x2a":
        return (
            int.from_bytes(data[6:8], "little") & 0x3FFF,
            int.from_bytes(data[8:10], "little") & 0x3FFF,
        )
    return None


def _jpeg_size(head: bytes) -> tuple[int, int] | None:
    position = 2
    while position + 4 <= len(head):
        if head[position] != 0xFF:
            return None
        marker = head[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in _JPEG_BARE:
            position += 2
            continue
        if marker in _JPEG_FRAMES:
            if position + 9 > len(head):
                return None
            height = int.from_bytes(head[position + 5 : position + 7], "big")
            return int.from_bytes(head[position + 7 : position + 9], "big"), height
        if marker in (0xD9, 0xDA):  # end of image, or scan data before any frame
            return None
        position += 2 + int.from_bytes(head[position + 2 : position + 4], "big")
    return None
