"""Photos sent to the web app: checked by content, held in memory a short while."""

from __future__ import annotations

import io
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from fastapi import HTTPException

from doppel.config import DEFAULT_MAX_PIXELS
from doppel.errors import UnreadableImage
from doppel.faces import imaging
from doppel.faces.imaging import Photo
from doppel.types import DetectedFace

# Formats a browser shows and Pillow decodes without outside help; checked on content.
UPLOAD_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF")
UPLOAD_TTL_S = 15 * 60
UPLOADS_HELD = 8


@dataclass
class Upload:
    """A photo sent by the user, held in memory with what was worked out from it."""

    id: str
    name: str
    data: bytes
    content_hash: str
    photo: Photo
    created: float = field(default_factory=time.monotonic)
    detections: dict[str, list[DetectedFace]] = field(default_factory=dict)
    embeddings: dict[tuple[str, str, int], np.ndarray] = field(default_factory=dict)


class UploadStore:
    """The last few uploads, each forgotten after a while; nothing touches the disk."""

    def __init__(self, size: int = UPLOADS_HELD, ttl: float = UPLOAD_TTL_S) -> None:
        self.size, self.ttl = size, ttl
        self._items: OrderedDict[str, Upload] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, upload: Upload) -> None:
        with self._lock:
            self._expire()
            self._items[upload.id] = upload
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def get(self, upload_id: str) -> Upload:
        with self._lock:
            self._expire()
            upload = self._items.get(upload_id)
            if upload is None:
                raise HTTPException(
                    404,
                    f"no upload {upload_id!r}: it expired or was never "
                    "made; send the photo again to /api/uploads",
                )
            self._items.move_to_end(upload_id)
            return upload

    def forget(self, upload_id: str) -> bool:
        with self._lock:
            return self._items.pop(upload_id, None) is not None

    def _expire(self) -> None:
        now = time.monotonic()
        for key in [k for k, u in self._items.items() if now - u.created > self.ttl]:
            del self._items[key]


def read_image(data: bytes, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> Photo:
    """Decode an upload, accepting only the image formats browsers show (by content).

    Its size is checked from its header first, as for every image doppel decodes, so
    an oversized photo is called too large, not "not an image".
    """
    from PIL import UnidentifiedImageError

    if not data:
        raise UnreadableImage(f"{name}: the file is empty; choose a photo")
    Image = imaging.pillow()
    try:
        with Image.open(io.BytesIO(data), formats=UPLOAD_FORMATS) as img:
            width, height = img.size
            imaging.check_pixels(width, height, name, max_pixels)
            img.verify()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise UnreadableImage(
            f"{name}: not an image (JPEG, PNG, WebP, BMP or GIF expected, "
            "judged by its content, not its name)"
        ) from None
    return imaging.decode(data, name, max_pixels=max_pixels)


def take_upload(data: bytes, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> Upload:
    """A new upload of these bytes, decoded (or refused) now."""
    photo = read_image(data, name, max_pixels)
    digest = imaging.content_hash(data)
    return Upload(secrets.token_urlsafe(12), name, data, digest, photo)


def keep(upload: Upload, folder: Path | None) -> str | None:
    """Write the upload into folder (named by its content), when a folder is given."""
    if folder is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    name = Path(upload.name)
    suffix = name.suffix.lower() if imaging.is_image_name(name) else ".img"
    path = folder / f"{upload.content_hash}{suffix}"
    path.write_bytes(upload.data)
    return str(path)
