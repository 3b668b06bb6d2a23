"""Pictures the web app sends: photos scaled down and encoded as JPEG."""

from __future__ import annotations

import io
from typing import Any

from doppel.faces.imaging import Photo
from doppel.types import Box


def jpeg(image: Any, quality: int = 88) -> bytes:
    """A Pillow image as JPEG bytes."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def scaled(photo: Photo, side: int) -> Any:
    """The photo as a Pillow image no larger than side on either edge."""
    from PIL import Image

    image = Image.fromarray(photo.pixels)
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    return image


def outlined(image: Any, photo: Photo, box: Box) -> Any:
    """The scaled photo with the face's box (in the file's pixels) drawn on it."""
    from PIL import ImageDraw

    per_file_pixel = image.width / (photo.pixels.shape[1] * photo.scale)
    x, y = box.x * per_file_pixel, box.y * per_file_pixel
    w, h = box.w * per_file_pixel, box.h * per_file_pixel
    line = max(2, round(image.width / 300))
    draw = ImageDraw.Draw(image)
    draw.rectangle([x - line, y - line, x + w + line, y + h + line], outline="white", width=1)
    draw.rectangle([x, y, x + w, y + h], outline=(47, 111, 237), width=line)
    return image
