"""Normalising an input image before a model sees it.

Sniffs the real format, refuses decompression bombs before decoding, decodes fully so a
truncated or garbage file fails here (not in the model), applies EXIF rotation, converts
formats a model may not take (HEIC, WebP, BMP, TIFF, GIF) and downscales large images.
"""

from __future__ import annotations

import io
import re
import warnings
from contextlib import ExitStack

import pillow_heif
from PIL import Image, ImageOps, UnidentifiedImageError

from core.errors import CorruptImage, ImageTooLarge, UnsupportedImageFormat
from core.image_formats import SNIFF_BYTES, ImageFormat, sniff
from extraction.contract import PreparedImage
from extraction.pixel_budget import PixelBudget

pillow_heif.register_heif_opener()

# Our own pixel check below runs first; Pillow's guard would only warn up to 2x its limit.
Image.MAX_IMAGE_PIXELS = None

_EXIF_ORIENTATION = 0x0112


def _reason(error: Exception) -> str:
    """Pillow's message without the in-memory file's repr it names ("cannot identify image
    file <_io.BytesIO object at 0x7f…>"), which tells the caller nothing."""
    return re.sub(r"\s*<_io\.\w+ object at 0x[0-9a-f]+>", "", str(error)) or type(error).__name__


def prepare_image(
    data: bytes, *, max_side: int, max_pixels: int, name: str, budget: PixelBudget | None = None
) -> PreparedImage:
    """Decode, check, rotate and downscale; ``name`` identifies the image in errors.

    With ``budget``, the image's pixels (from its header) are held from it, waiting for
    room if need be, from just before decoding until the prepared image is made.
    """
    with ExitStack() as held:
        return _prepare(data, max_side=max_side, max_pixels=max_pixels, name=name,
                        budget=budget, held=held)  # fmt: skip


def _prepare(
    data: bytes,
    *,
    max_side: int,
    max_pixels: int,
    name: str,
    budget: PixelBudget | None,
    held: ExitStack,
) -> PreparedImage:
    if not data:
        raise CorruptImage(f"{name} is empty (0 bytes)", input=name)
    fmt = sniff(data[:SNIFF_BYTES])
    # The format Pillow recognised from the header, for one sniff() does not know.
    claimed = fmt.value.upper() if fmt is not None else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(io.BytesIO(data))
            claimed = claimed or image.format
            width, height = image.size
            if width * height > max_pixels:
                raise ImageTooLarge(
                    f"{name} is {width}x{height} pixels, over the limit of {max_pixels} pixels",
                    input=name,
                )
            if budget is not None:
                held.enter_context(budget.hold(width * height))
            image.load()
    except ImageTooLarge:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as error:
        if claimed is None:
            raise UnsupportedImageFormat(
                f"{name} is not an image format we read (PNG, JPEG, WebP, HEIC, HEIF, BMP, "
                "GIF, TIFF, or another format Pillow decodes)",
                input=name,
            ) from error
        raise CorruptImage(
            f"{name} claims to be {claimed} but cannot be decoded: {_reason(error)}", input=name
        ) from error

    rotated = image.getexif().get(_EXIF_ORIENTATION, 1) not in (1, None)
    too_big = max(width, height) > max_side
    if fmt in (ImageFormat.JPEG, ImageFormat.PNG) and not rotated and not too_big:
        return PreparedImage(data=data, media_type=fmt.media_type, width=width, height=height)

    image = ImageOps.exif_transpose(image)
    if too_big:
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    # Formats we do not sniff but Pillow decodes (PPM, TGA, ICO...) become PNG below.
    if fmt == ImageFormat.JPEG or (
        image.mode in ("RGB", "L") and fmt != ImageFormat.PNG and too_big
    ):
        image.convert("RGB").save(out, "JPEG", quality=90)
        media_type = "image/jpeg"
    else:
        if image.mode not in ("RGB", "RGBA", "L", "LA"):
            image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
        # Fast compression: the bytes live only as long as the model call.
        image.save(out, "PNG", compress_level=1)
        media_type = "image/png"
    return PreparedImage(
        data=out.getvalue(), media_type=media_type, width=image.width, height=image.height
    )
