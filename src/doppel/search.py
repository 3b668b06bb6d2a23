"""`doppel find` as a library call: embed the query like the gallery, search, compose.

The CLI and the web app both search through find().
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import psycopg

from doppel.composer import render
from doppel.config import DEFAULT_MAX_PIXELS, FaceOptions, Settings
from doppel.errors import Remedy, UsageError
from doppel.faces import imaging
from doppel.faces.embed import embedder_for
from doppel.faces.imaging import Photo
from doppel.people import calibration as people_calibration
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
class Strangers:
    """How doppelganger mode left the query person out: whose faces, and above what."""

    threshold: float  # faces at least this similar to the query are taken for the same person
    people: tuple[int, ...]  # people taken for the query's own, whose faces were left out
    model: str

    def caption(self) -> str:
        """The short form, under the query face of the composite."""
        own = ", ".join(f"person {p}" for p in self.people)
        return f"left out: {own + ', ' if own else ''}similarity >= {self.threshold:.3f}"

    def describe(self) -> str:
        own = ", ".join(f"person {p}" for p in self.people)
        return (
            f"strangers only: left out {own + ' and ' if own else ''}faces with similarity "
            f">= {self.threshold:.3f} ({self.model}'s same-person threshold)"
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
    strangers: Strangers | None = None


# The faces of a query, embedded for a gallery: (gallery, detector) -> faces, largest first.
# find() embeds with the gallery's cached Embedder unless the caller brings its own
# (the web app keeps each upload's faces, so that picking another face costs nothing).
QueryFaces = Callable[[Gallery, str], list[EmbeddedFace]]


def query_detector(gallery: Gallery, override: str | None, default: str | None) -> str:
    """Galleries of pre-aligned crops (detector skip) still need detection on a query photo:
    the given default, else the gallery model's own detector."""
    if override:
        return override
    if gallery.config.detector != "skip":
        return gallery.config.detector
    from doppel.faces import catalog

    return default or catalog.spec(gallery.config.model, "recognition").detector


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
    default_detector: str | None = None,
    composite: Path | None = None,
    settings: Settings | None = None,
    ef_search: int | None = None,
    faces: QueryFaces | None = None,
    strangers: bool = False,
    calibration_file: Path | None = None,
) -> FindResult:
    """Search a gallery for the faces most like those in the photo.

    gallery_name None means the only gallery there is. A composite picture needs the
    settings (where the gallery's photos are found again). The query photo itself is left
    out of the matches when the gallery holds it (same file content).
    strangers: doppelganger mode; leave out the query person's own faces, those of
    the person the query face belongs to (the gallery's person of this very photo,
    or the person whose mean face it would join) and any face at or above the
    model's same-person threshold. k faces still come back when k strangers exist.
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
    if calibration_file is None and settings is not None:
        calibration_file = settings.calibration_file
    if strangers:  # a missing threshold fails before any embedding
        people_calibration.for_config(gallery.config, calibration_file)
    if isinstance(query, Path):
        query = Query.from_path(query, settings.max_pixels if settings else DEFAULT_MAX_PIXELS)
    chosen = query_detector(gallery, detector, default_detector)
    if faces is None:
        options = settings.face_options if settings is not None else FaceOptions()
        embedded = embedder_for(gallery.config, options).embed_query(
            query.photo, query.name, chosen, all_faces
        )
    else:
        embedded = faces(gallery, chosen)
    searched = time.perf_counter()
    filters = replace(filters, exclude_hashes=(*filters.exclude_hashes, query.content_hash))
    results = []
    mode = None
    for face in embedded:
        face_filters = filters
        if strangers:
            face_filters, mode = _leave_out_own(
                conn, gallery, face, query, filters, mode, calibration_file
            )
        matches = repo.search(gallery, face.embedding, k, face_filters, exact, ef_search)
        results.append(QueryResult(face, matches))
    done = time.perf_counter()
    if composite is not None:
        if settings is None:
            raise ValueError("a composite needs the settings, to find the gallery's photos")
        title, note = ("query: strangers only", mode.caption()) if mode else ("query", "")
        render(query.photo, results[0], composite, settings, title, note)
    return FindResult(
        gallery,
        query.name,
        query.photo,
        results,
        composite,
        searched - start,
        done - searched,
        mode,
    )


def _leave_out_own(
    conn: psycopg.Connection,
    gallery: Gallery,
    face: EmbeddedFace,
    query: Query,
    filters: Filters,
    mode: Strangers | None,
    calibration_file: Path | None,
) -> tuple[Filters, Strangers]:
    """Doppelganger mode's filters for one query face, and the mode with its people added."""
    threshold, own = own_people(conn, gallery, face.embedding, query.content_hash, calibration_file)
    before = mode.people if mode else ()
    people = (*before, *(p for p in own if p not in before))
    face_filters = replace(
        filters, exclude_people=(*filters.exclude_people, *own), below_similarity=threshold
    )
    return face_filters, Strangers(threshold, people, gallery.config.model)


def own_people(
    conn: psycopg.Connection,
    gallery: Gallery,
    vector: np.ndarray,
    content_hash: str,
    calibration_file: Path | None = None,
) -> tuple[float, tuple[int, ...]]:
    """The same-person threshold, and the people a query face is taken to belong to.

    Those are the people of the very photo when the gallery holds it, and the person
    whose mean face is close enough for the face to join it, as clustering would.
    """
    from doppel.people import calibration, clustering
    from doppel.store.people import PeopleStore

    cal = calibration.for_config(gallery.config, calibration_file)
    store = PeopleStore(conn)
    own = store.people_of_content(gallery, content_hash)
    means = store.person_means(gallery)
    if means:
        unit = clustering.normalise(np.asarray(vector)[None, :])[0]
        ids = list(means)
        scores = clustering.normalise(np.vstack([means[i] for i in ids])) @ unit
        best = int(np.argmax(scores))
        if scores[best] >= cal.cluster.join and ids[best] not in own:
            own.append(ids[best])
    return cal.threshold, tuple(own)
