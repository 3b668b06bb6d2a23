"""Pictures the web app sends: photos scaled down and encoded as JPEG."""

from __future__ import annotations

import io
from typing import Any

from doppel.faces.imaging import Photo


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
