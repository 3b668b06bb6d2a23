"""A photo to search or compare with: its name for messages, its pixels and its content hash."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from doppel.config import DEFAULT_MAX_PIXELS
from doppel.faces import imaging
from doppel.faces.imaging import Photo


@dataclass(frozen=True)
class Query:
    """The photo to search with: its name (for messages), pixels and content hash."""

    name: str
    photo: Photo
    content_hash: str

    @classmethod
    def from_bytes(cls, data: bytes, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> Query:
        return cls(
            name, imaging.decode(data, name, max_pixels=max_pixels), imaging.content_hash(data)
        )

    @classmethod
    def from_path(cls, path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Query:
        return cls.from_bytes(imaging.read_file(path), imaging.path_text(path), max_pixels)
