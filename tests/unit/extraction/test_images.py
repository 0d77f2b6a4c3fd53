"""Image preparation: formats, rotation, downscaling, and poison inputs."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from core.errors import CorruptImage, ImageTooLarge, UnsupportedImageFormat
from extraction.images import prepare_image
from tests.sample_images import jpeg_for, png_for


def prepare(data: bytes, max_side: int = 2048):  # type: ignore[no-untyped-def]
    return prepare_image(data, max_side=max_side, max_pixels=100_000_000, name="images[4]")


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def test_small_png_and_jpeg_pass_through_unchanged() -> None:
    for data, media_type in ((png_for(3), "image/png"), (jpeg_for(3), "image/jpeg")):
        prepared = prepare(data)
        assert prepared.data == data
        assert prepared.media_type == media_type


@pytest.mark.parametrize("fmt", ["BMP", "WEBP", "GIF", "TIFF"])
def test_other_formats_are_converted_to_png(fmt: str) -> None:
    prepared = prepare(_encode(Image.new("RGB", (40, 30), "red"), fmt))
    assert prepared.media_type == "image/png"
    assert Image.open(io.BytesIO(prepared.data)).size == (40, 30)


def test_heic_is_converted() -> None:
    pillow_heif = pytest.importorskip("pillow_heif")
    if not pillow_heif.libheif_info().get("HEIF"):
        pytest.skip("this libheif build has no HEIF encoder to make a sample")
    prepared = prepare(_encode(Image.new("RGB", (64, 48), "blue"), "HEIF"))
    assert prepared.media_type == "image/png"
    assert (prepared.width, prepared.height) == (64, 48)


def test_exif_rotation_is_applied() -> None:
    image = Image.new("RGB", (60, 20), "white")
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    prepared = prepare(_encode(image, "JPEG", exif=exif))
    assert (prepared.width, prepared.height) == (20, 60)


def test_large_images_are_downscaled() -> None:
    prepared = prepare(jpeg_for(0, size=(4000, 1000)), max_side=1000)
    assert (prepared.width, prepared.height) == (1000, 250)
    assert prepared.media_type == "image/jpeg"


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares a size in its header but carries almost no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + _chunk(b"IEND", b"")
    )


def test_png_declaring_50000_by_50000_is_refused_before_decoding() -> None:
    with pytest.raises(ImageTooLarge, match="50000x50000"):
        prepare(_png_header_only(50000, 50000))


def test_decompression_bomb_is_refused() -> None:
    # A real, tiny file that decodes to 12000 x 12000 pixels.
    bomb = _encode(Image.new("L", (12000, 12000), 0), "PNG", optimize=True)
    assert len(bomb) < 200_000
    with pytest.raises(ImageTooLarge):
        prepare_image(bomb, max_side=2048, max_pixels=50_000_000, name="images[0]")


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (jpeg_for(1, size=(200, 200))[:300], CorruptImage),
        (b"\xff\xd8\xff\xe0" + b"garbage" * 50, CorruptImage),
        (b"\x89PNG\r\n\x1a\n" + b"not really a png" * 10, CorruptImage),
        (b"GIF89a" + bytes(20), CorruptImage),
        (b"", CorruptImage),
        (b"%PDF-1.4", UnsupportedImageFormat),
    ],
    ids=[
        "truncated-jpeg",
        "garbage-with-jpeg-header",
        "fake-png",
        "gif-header-only",
        "empty",
        "pdf",
    ],
)
def test_poison_inputs_fail_with_their_code(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"images\[4\]") as raised:
        prepare(data)
    # The message is for the caller: no repr of our in-memory file ("<_io.BytesIO object at").
    assert "object at 0x" not in str(raised.value)


def test_formats_we_do_not_sniff_but_pillow_reads_become_png() -> None:
    prepared = prepare(_encode(Image.new("RGB", (30, 20), "green"), "PPM"))
    assert prepared.media_type == "image/png"
    assert (prepared.width, prepared.height) == (30, 20)
