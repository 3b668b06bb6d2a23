"""Photos sent to the web app: checked by content, held a short while in the database."""

from __future__ import annotations

import io
import secrets
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psycopg
from fastapi import HTTPException

from doppel.config import DEFAULT_MAX_PIXELS
from doppel.errors import UnreadableImage
from doppel.faces import imaging
from doppel.faces.imaging import Photo
from doppel.store.uploads import HeldUpload, UploadRows, VectorKey
from doppel.types import DetectedFace

# Formats a browser shows and Pillow decodes without outside help; checked on content.
UPLOAD_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF")
UPLOAD_TTL_S = 15 * 60  # from when it was sent
UPLOADS_HELD = 8  # the most recently used, over all serve processes on a database


@dataclass
class Upload:
    """A photo sent by the user, with what was worked out from it; held in the database
    (UploadStore) unless it came to /api/find."""

    id: str
    name: str
    data: bytes
    content_hash: str
    max_pixels: int = DEFAULT_MAX_PIXELS
    detections: dict[str, list[DetectedFace]] = field(default_factory=dict)
    embeddings: dict[VectorKey, np.ndarray] = field(default_factory=dict)
    held: bool = False  # in the UploadStore, where what is worked out is saved too
    saved: set[object] = field(default_factory=set)  # detectors and vector keys stored
    decoded: Photo | None = field(default=None, repr=False)

    @property
    def photo(self) -> Photo:
        """The pixels, decoded on first use (a search with a known vector needs none)."""
        if self.decoded is None:
            self.decoded = imaging.decode(self.data, self.name, max_pixels=self.max_pixels)
        return self.decoded


Connection = Callable[[], AbstractContextManager[psycopg.Connection]]


class UploadStore:
    """The last few uploads, each forgotten after a while, held in the database so that
    every serve process on it can search them; nothing else touches the disk."""

    def __init__(
        self,
        connection: Connection,
        size: int = UPLOADS_HELD,
        ttl: float = UPLOAD_TTL_S,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.connection, self.size, self.ttl = connection, size, ttl
        self.max_pixels = max_pixels

    def add(self, upload: Upload) -> None:
        held = HeldUpload(
            upload.id,
            upload.name,
            upload.data,
            upload.content_hash,
            dict(upload.detections),
            dict(upload.embeddings),
        )
        with self.connection() as conn:
            UploadRows(conn, self.size, self.ttl).add(held)
        upload.held = True
        upload.saved = {*held.detections, *held.embeddings}

    def save(self, upload: Upload) -> None:
        """Store what was worked out from a held upload since it was read."""
        detectors = [d for d in upload.detections if d not in upload.saved]
        keys = [k for k in upload.embeddings if k not in upload.saved]
        if not upload.held or not (detectors or keys):
            return
        with self.connection() as conn:
            rows = UploadRows(conn, self.size, self.ttl)
            for detector in detectors:
                rows.add_faces(upload.id, detector, upload.detections[detector])
            for key in keys:
                rows.add_vector(upload.id, key, upload.embeddings[key])
        upload.saved.update(detectors, keys)

    def get(self, upload_id: str) -> Upload:
        with self.connection() as conn:
            held = UploadRows(conn, self.size, self.ttl).get(upload_id)
        if held is None:
            raise HTTPException(
                404,
                f"no upload {upload_id!r}: it expired or was never "
                "made; send the photo again to /api/uploads",
            )
        return Upload(
            held.id,
            held.name,
            held.data,
            held.content_hash,
            self.max_pixels,
            held.detections,
            held.embeddings,
            held=True,
            saved={*held.detections, *held.embeddings},
        )

    def forget(self, upload_id: str) -> bool:
        with self.connection() as conn:
            return UploadRows(conn, self.size, self.ttl).forget(upload_id)


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
    return Upload(secrets.token_urlsafe(12), name, data, digest, max_pixels, decoded=photo)


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
