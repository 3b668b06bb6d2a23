"""Turning a face's recorded source (a path or a URL) back into pixels for pictures."""

from __future__ import annotations

from pathlib import Path

from doppel import imaging
from doppel.errors import DoppelError
from doppel.imaging import Photo


def load_source(source: str, max_side: int = 1024) -> Photo | None:
    """The photo a face came from, or None when it cannot be had any more."""
    path = Path(source)
    if not path.is_file():
        return None
    try:
        return imaging.load(path, max_side=max_side)
    except DoppelError:
        return None
