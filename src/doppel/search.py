"""`doppel find` as a library call: embed the query like the gallery, search, compose.

The CLI and the web app both search through find().
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psycopg

from doppel.composer import render
from doppel.faces import imaging
from doppel.faces.embed import embedder_for
from doppel.faces.imaging import Photo
from doppel.store.repository import DEFAULT_EF_SEARCH, Repository
from doppel.types import Filters, Gallery, QueryResult


@dataclass(frozen=True)
class FindResult:
    gallery: Gallery
    query: str
    photo: Photo
    results: list[QueryResult]
    composite: Path | None


def query_detector(gallery: Gallery, override: str | None, default: str) -> str:
    """Galleries of pre-aligned crops (detector skip) still need detection on a query photo."""
    if override:
        return override
    return default if gallery.config.detector == "skip" else gallery.config.detector


def find(
    conn: psycopg.Connection,
    photo_path: Path,
    gallery_name: str,
    *,
    k: int = 5,
    filters: Filters | None = None,
    exact: bool = False,
    all_faces: bool = False,
    detector: str | None = None,
    default_detector: str = "mtcnn",
    composite: Path | None = None,
    ef_search: int = DEFAULT_EF_SEARCH,
) -> FindResult:
    """Search the gallery for the faces most like those in the photo."""
    repo = Repository(conn)
    gallery = repo.gallery(gallery_name)
    photo = imaging.load(photo_path)
    embedder = embedder_for(gallery.config)
    faces = embedder.embed_query(
        photo, str(photo_path), query_detector(gallery, detector, default_detector), all_faces
    )
    filters = filters or Filters()
    # Leave the query photo itself out when the gallery holds it.
    own_hash = imaging.file_hash(photo_path)
    filters = Filters(
        filters.sex,
        filters.races,
        filters.age_min,
        filters.age_max,
        (*filters.exclude_hashes, own_hash),
    )
    results = [
        QueryResult(face, repo.search(gallery, face.embedding, k, filters, exact, ef_search))
        for face in faces
    ]
    if composite is not None:
        render(photo, results[0], composite)
    return FindResult(gallery, str(photo_path), photo, results, composite)
