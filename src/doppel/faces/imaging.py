"""Finding, hashing and decoding photos: EXIF orientation applied, big photos scaled down."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from doppel.errors import UnreadableImage

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})
# Photos are decoded at most this size (a side): enough to cut faces sharply,
# small enough to keep memory bounded. Detection runs on a smaller copy.
MAX_SIDE = 1600


@dataclass(frozen=True)
class Photo:
    """A decoded photo in RGB, possibly scaled down from the file by `scale`."""

    pixels: np.ndarray  # H x W x 3, uint8, RGB
    scale: float  # file pixels per pixel here

    @property
    def bgr(self) -> np.ndarray:
        return np.ascontiguousarray(self.pixels[:, :, ::-1])

    def shrunk(self, max_side: int | None, square: bool = False) -> Photo:
        """This photo scaled down (area averaging) so no side exceeds max_side.

        With square, both sides become max_side, as for a model's input.
        """
        height, width = self.pixels.shape[:2]
        if not max_side or (max(height, width) <= max_side and not square):
            return self
        import cv2

        factor = max(height, width) / max_side
        size = (
            (max_side, max_side)
            if square
            else (max(1, round(width / factor)), max(1, round(height / factor)))
        )
        pixels = cv2.resize(self.pixels, size, interpolation=cv2.INTER_AREA)
        return Photo(pixels, self.scale * factor)


def is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def iter_images(root: Path) -> Iterator[Path]:
    """Every image file under root, recursively, in a stable order."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if is_image_name(path) and not name.startswith("."):
                yield path


def content_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def file_hash(path: Path) -> str:
    try:
        return content_hash(path.read_bytes())
    except OSError as exc:
        raise UnreadableImage(f"{path}: {exc.strerror or exc}") from exc


def decode(data: bytes, name: str = "image", max_side: int | None = MAX_SIDE) -> Photo:
    """Decode image bytes with EXIF orientation applied, scaled so no side exceeds max_side."""
    if data[:8] == _PNG_SIGNATURE:
        photo = _decode_png(data, max_side)
        if photo is not None:
            return photo
    import io

    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            if rotated(img):
                width, height = height, width
            if max_side and max(width, height) > max_side:
                shrink = max(width, height) / max_side
                # JPEG can decode at 1/2, 1/4, 1/8 size directly, much faster.
                img.draft("RGB", (int(img.width / shrink), int(img.height / shrink)))
            rgb = ImageOps.exif_transpose(img).convert("RGB")
            if max_side and max(rgb.size) > max_side:
                rgb.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
            scale = max(width, height) / max(rgb.size)
            pixels = np.asarray(rgb, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise UnreadableImage(f"{name}: not a readable image ({exc})") from exc
    return Photo(pixels=pixels, scale=scale)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _decode_png(data: bytes, max_side: int | None) -> Photo | None:
    """PNG (FFHQ's format) through libspng, else OpenCV: both faster than Pillow.

    libspng (pyspng) decodes a 1024x1024 PNG in about two thirds of OpenCV's time and
    gives RGB directly; it ignores EXIF orientation, so a PNG with an eXIf chunk goes
    to OpenCV, which applies it. None means: let Pillow try (and explain the failure).
    """
    if b"eXIf" not in data:
        try:
            import pyspng

            rgb = pyspng.load(data, format="RGB")
        except (ImportError, RuntimeError, ValueError):
            rgb = None
        if rgb is not None and rgb.ndim == 3 and rgb.dtype == np.uint8:
            return Photo(rgb, 1.0).shrunk(max_side)
    try:
        import cv2
    except ImportError:
        return None
    # IMREAD_COLOR applies EXIF orientation and drops alpha and 16-bit depth.
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        return None
    small = Photo(bgr, 1.0).shrunk(max_side)  # shrink first: then the BGR->RGB copy is small
    return Photo(np.ascontiguousarray(small.pixels[:, :, ::-1]), small.scale)


def rotated(img: object) -> bool:
    try:
        return img.getexif().get(0x0112, 1) in (5, 6, 7, 8)  # type: ignore[attr-defined]
    except Exception:
        return False


def load(path: Path, max_side: int | None = MAX_SIDE) -> Photo:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UnreadableImage(f"{path}: {exc.strerror or exc}") from exc
    return decode(data, str(path), max_side)
