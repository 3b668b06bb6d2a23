"""`doppel find` as a library call: embed the query like the gallery, search, compose.

The CLI and the web app both search through find().
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import psycopg

from doppel.composer import render
from doppel.config import DEFAULT_MAX_PIXELS, Settings
from doppel.errors import Remedy, UsageError
from doppel.faces import imaging
from doppel.faces.embed import embedder_for
from doppel.faces.imaging import Photo
from doppel.store.repository import Repository
from doppel.types import EmbeddedFace, Filters, Gallery, QueryResult


@dataclass(frozen=True)
class Query:
    """The photo to search with: its name (for messages), pixels and content hash."""

    name: str
    photo: Photo
    content_hash: str

    @classmethod
    def from_path(cls, path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Query:
        data = imaging.read_file(path)
        name = imaging.path_text(path)
        return cls(
            name, imaging.decode(data, name, max_pixels=max_pixels), imaging.content_hash(data)
        )


@dataclass(frozen=True)
class FindResult:
    gallery: Gallery
    query: str
    photo: Photo
    results: list[QueryResult]
    composite: Path | None
    embed_seconds: float = 0.0
    search_seconds: float = 0.0


# The faces of a query, embedded for a gallery: (gallery, detector) -> faces, largest first.
# find() embeds with the gallery's cached Embedder unless the caller brings its own
# (the web app keeps each upload's faces, so that picking another face costs nothing).
QueryFaces = Callable[[Gallery, str], list[EmbeddedFace]]


def query_detector(gallery: Gallery, override: str | None, default: str) -> str:
    """Galleries of pre-aligned crops (detector skip) still need detection on a query photo."""
    if override:
        return override
    return default if gallery.config.detector == "skip" else gallery.config.detector


def find(
    conn: psycopg.Connection,
    query: Path | Query,
    gallery_name: str | None = None,
    *,
    k: int = 5,
    filters: Filters | None = None,
    exact: bool = False,
    all_faces: bool = False,
    detector: str | None = None,
    default_detector: str = "mtcnn",
    composite: Path | None = None,
    settings: Settings | None = None,
    ef_search: int | None = None,
    faces: QueryFaces | None = None,
) -> FindResult:
    """Search a gallery for the faces most like those in the photo.

    gallery_name None means the only gallery there is. A composite picture needs the
    settings (where the gallery's photos are found again). The query photo itself is left
    out of the matches when the gallery holds it (same file content).
    """
    start = time.perf_counter()
    repo = Repository(conn)
    gallery = repo.pick_gallery(gallery_name)
    filters = filters or Filters()
    if filters.on_attributes and not repo.has_attributes(gallery):
        raise UsageError(
            f"gallery {gallery.name!r} holds no age, sex or race for its faces, so no face "
            "can pass these filters",
            remedy=Remedy.PREDICT_ATTRIBUTES,
        )
    if isinstance(query, Path):
        query = Query.from_path(query, settings.max_pixels if settings else DEFAULT_MAX_PIXELS)
    chosen = query_detector(gallery, detector, default_detector)
    if faces is None:
        embedded = embedder_for(gallery.config).embed_query(
            query.photo, query.name, chosen, all_faces
        )
    else:
        embedded = faces(gallery, chosen)
    searched = time.perf_counter()
    filters = replace(filters, exclude_hashes=(*filters.exclude_hashes, query.content_hash))
    results = [
        QueryResult(face, repo.search(gallery, face.embedding, k, filters, exact, ef_search))
        for face in embedded
    ]
    done = time.perf_counter()
    if composite is not None:
        if settings is None:
            raise ValueError("a composite needs the settings, to find the gallery's photos")
        render(query.photo, results[0], composite, settings)
    return FindResult(
        gallery, query.name, query.photo, results, composite, searched - start, done - searched
    )
