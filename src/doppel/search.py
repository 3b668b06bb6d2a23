"""`doppel find` as a library call: embed the query like the gallery, search, compose.

The CLI and the web app both search through find(), a few named steps in the order a
search runs: the gallery, its calibration, the photos, their faces, the search of
each face (strangers mode through doppel.people.strangers), the composite.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import psycopg

from doppel.composer import render
from doppel.config import DEFAULT_MAX_PIXELS, FaceOptions, Settings
from doppel.duplicates import dhash, pictures
from doppel.errors import NotCalibrated, Remedy, UsageError
from doppel.faces.embed import embedder_for
from doppel.faces.imaging import Photo
from doppel.faces.query import Query
from doppel.people import calibration as people_calibration
from doppel.people import strangers as doppelgangers
from doppel.people.calibration import Calibration
from doppel.people.strangers import Strangers
from doppel.store.marks import FaceMarks
from doppel.store.repository import Repository
from doppel.templates import TemplateCheck
from doppel.types import EmbeddedFace, Filters, Gallery, Match, QueryResult, describe


@dataclass(frozen=True)
class SearchRequest:
    """What a search asks for, built once by a front end and read by each step of find().

    gallery None means the only gallery there is. detector is the query's detector (None:
    the gallery's own); default_detector serves galleries of pre-aligned crops. A
    composite picture needs find()'s settings (where the gallery's photos are found
    again). threshold overrides the calibrated same-person threshold for this search;
    calibration_file None: the settings' one. strangers: doppelganger mode, at most one
    face of each other person unless all_photos.
    """

    gallery: str | None = None
    k: int = 5
    filters: Filters = field(default_factory=Filters)
    exact: bool = False
    all_faces: bool = False
    detector: str | None = None
    default_detector: str | None = None
    ef_search: int | None = None
    composite: Path | None = None
    strangers: bool = False
    all_photos: bool = False
    threshold: float | None = None
    calibration_file: Path | None = None


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
    # The pipeline's calibration (threshold and probability fit) the strengths come
    # from; None: not calibrated, the matches carry similarity only.
    calibration: Calibration | None = None
    photos: tuple[str, ...] = ()  # the photos that made the query (several: a template)
    template: TemplateCheck | None = None

    @property
    def not_calibrated(self) -> str:
        """What a front end says when matches carry no strength."""
        return (
            f"no same-person calibration for {describe(self.gallery.config)}: "
            "similarity only, no strength"
        )


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


QueryPhotos = Path | Query | Sequence[Path | Query]
# Matches fetched per match asked for, when some of them may be set aside (one face
# per stranger); more are fetched while too few are left and more exist.
WIDEN = 5
MAX_CANDIDATES = 1000


def find(
    conn: psycopg.Connection,
    query: QueryPhotos,
    request: SearchRequest | None = None,
    *,
    settings: Settings | None = None,
    faces: QueryFaces | Sequence[QueryFaces] | None = None,
) -> FindResult:
    """Search a gallery for the faces most like those in the photo (or photos).

    The query photos themselves are left out of the matches when the gallery holds
    them (same file content). Several photos are one person's: checked with the
    same-person threshold and combined into one template (templates.py); faces, if
    given, is then one per photo. Each match carries its strength where the pipeline
    is calibrated. In strangers mode the query person's own faces are left out
    (doppel.people.strangers) and k faces still come back when k strangers exist.
    """
    request = request or SearchRequest()
    start = time.perf_counter()
    repo = Repository(conn)
    gallery = _gallery(repo, request)
    calibration_file = request.calibration_file
    if calibration_file is None and settings is not None:
        calibration_file = settings.calibration_file
    # A missing threshold fails before any embedding, where strangers mode needs one.
    cal = pipeline_calibration(
        gallery, calibration_file, request.threshold, required=request.strangers
    )
    queries = _queries(query, request, settings.max_pixels if settings else DEFAULT_MAX_PIXELS)
    per_photo = _embed(gallery, queries, request, settings, faces)
    check = None
    if len(queries) == 1:
        embedded = per_photo[0]
    else:
        embedded, check = _template(queries, per_photo, cal, gallery.config.model)
    searched = time.perf_counter()
    results, mode = _search_faces(repo, gallery, queries, per_photo, embedded, request, cal)
    done = time.perf_counter()
    if request.composite is not None:
        _compose(queries, results[0], request.composite, settings, mode)
    return FindResult(
        gallery,
        queries[0].name if len(queries) == 1 else f"{len(queries)} photos",
        queries[0].photo,
        results,
        request.composite,
        searched - start,
        done - searched,
        mode,
        cal,
        tuple(q.name for q in queries),
        check,
    )


def _gallery(repo: Repository, request: SearchRequest) -> Gallery:
    """The gallery searched, refused when the filters ask for what none of its faces has."""
    gallery = repo.pick_gallery(request.gallery)
    if request.filters.on_attributes and not repo.has_attributes(gallery):
        raise UsageError(
            f"gallery {gallery.name!r} holds no age, sex or race for its faces, so no face "
            "can pass these filters",
            remedy=Remedy.PREDICT_ATTRIBUTES,
        )
    return gallery


def _queries(query: QueryPhotos, request: SearchRequest, max_pixels: int) -> list[Query]:
    """The query photos, read and decoded."""
    queries = [
        q if isinstance(q, Query) else Query.from_path(q, max_pixels)
        for q in (query if isinstance(query, Sequence) else [query])
    ]
    if not queries:
        raise UsageError("no photo to search with")
    if len(queries) > 1 and request.all_faces:
        raise UsageError(
            "several photos make one query of one face each; search every face of one photo alone"
        )
    return queries


def _embed(
    gallery: Gallery,
    queries: Sequence[Query],
    request: SearchRequest,
    settings: Settings | None,
    faces: QueryFaces | Sequence[QueryFaces] | None,
) -> list[list[EmbeddedFace]]:
    """Each photo's faces, embedded as the gallery's are (or brought by the caller)."""
    chosen = query_detector(gallery, request.detector, request.default_detector)
    options = settings.face_options if settings is not None else FaceOptions()
    per_photo: list[list[EmbeddedFace]] = []
    for number, one in enumerate(queries):
        bring = faces[number] if isinstance(faces, Sequence) else faces
        if bring is not None:
            per_photo.append(bring(gallery, chosen))
        else:
            per_photo.append(
                embedder_for(gallery.config, options).embed_query(
                    one.photo, one.name, chosen, request.all_faces and len(queries) == 1
                )
            )
    return per_photo


def _search_faces(
    repo: Repository,
    gallery: Gallery,
    queries: Sequence[Query],
    per_photo: Sequence[list[EmbeddedFace]],
    embedded: Sequence[EmbeddedFace],
    request: SearchRequest,
    cal: Calibration | None,
) -> tuple[list[QueryResult], Strangers | None]:
    """Each query face's matches, with their strengths; in strangers mode, what it left out."""
    hashes = tuple(q.content_hash for q in queries)
    filters = replace(request.filters, exclude_hashes=(*request.filters.exclude_hashes, *hashes))
    each = [filters] * len(embedded)
    mode = None
    if request.strangers and embedded:
        assert cal is not None
        each, mode = doppelgangers.leave_out_own(
            repo.conn, gallery, embedded, hashes, filters, cal, not request.all_photos
        )
    # What a copy of a query photo looks like: its photo's hash and its face's vector.
    photo_hashes = [dhash(q.photo.pixels) for q in queries]
    template_marks = [
        (h, _unit(found[0].embedding)) for h, found in zip(photo_hashes, per_photo, strict=True)
    ]
    one_each = cal if request.strangers and not request.all_photos else None
    results = []
    for face, face_filters in zip(embedded, each, strict=True):
        marks = template_marks if len(queries) > 1 else [(photo_hashes[0], _unit(face.embedding))]
        matches = _search(repo, gallery, face, request, face_filters, one_each, marks)
        if cal is not None:
            matches = [
                replace(
                    m, strength=people_calibration.strength(cal, m.similarity, request.strangers)
                )
                for m in matches
            ]
        results.append(QueryResult(face, matches))
    return results, mode


def _compose(
    queries: Sequence[Query],
    first: QueryResult,
    composite: Path,
    settings: Settings | None,
    mode: Strangers | None,
) -> None:
    """The composite picture of the first query face and its matches."""
    if settings is None:
        raise ValueError("a composite needs the settings, to find the gallery's photos")
    title, note = ("query: strangers only", mode.caption()) if mode else ("query", "")
    if len(queries) > 1:
        title = f"{title} ({len(queries)} photos)"
    render(queries[0].photo, first, composite, settings, title, note)


def pipeline_calibration(
    gallery: Gallery, calibration_file: Path | None, threshold: float | None, required: bool
) -> Calibration | None:
    """The gallery pipeline's calibration, its threshold overridden when one is given;
    None where there is none and it is not required."""
    try:
        cal = people_calibration.for_config(gallery.config, calibration_file)
    except NotCalibrated:
        if required:
            raise
        return None
    return cal.with_threshold(threshold) if threshold is not None else cal


def _template(
    queries: Sequence[Query],
    per_photo: Sequence[list[EmbeddedFace]],
    cal: Calibration | None,
    model: str,
) -> tuple[list[EmbeddedFace], TemplateCheck]:
    """The largest face of each photo, checked to be one person and combined."""
    from doppel import templates

    largest = [found[0] for found in per_photo]
    vectors = np.vstack([f.embedding for f in largest])
    check = templates.check(
        [q.name for q in queries], vectors, cal.threshold if cal is not None else None
    )
    templates.require_one_person(check, model)
    first = largest[0]
    face = EmbeddedFace(
        first.index,
        first.box,
        min(f.confidence for f in largest),
        templates.combine(vectors),
    )
    return [face], check


def _unit(vector: np.ndarray) -> np.ndarray:
    v = np.asarray(vector, dtype=np.float64)
    return v / np.linalg.norm(v)


def _search(
    repo: Repository,
    gallery: Gallery,
    face: EmbeddedFace,
    request: SearchRequest,
    filters: Filters,
    one_each: Calibration | None,
    query_marks: Sequence[tuple[int, np.ndarray]],
) -> list[Match]:
    """The k nearest faces without copies of one picture or of a query photo, and with
    one_each (strangers mode) at most one per person; more candidates are fetched
    while the faces set aside leave fewer than k."""
    k = request.k
    want = min(k * WIDEN if one_each else 2 * k + 2, MAX_CANDIDATES)
    while True:
        found = repo.search(
            gallery, face.embedding, want, filters, request.exact, request.ef_search
        )
        kept = _distinct(repo, found, query_marks, one_each.threshold if one_each else None)
        if len(kept) >= k or len(found) < want or want >= MAX_CANDIDATES:
            break
        want = min(want * WIDEN, MAX_CANDIDATES)
    return [replace(m, rank=rank) for rank, m in enumerate(kept[:k], start=1)]


def _distinct(
    repo: Repository,
    matches: list[Match],
    query_marks: Sequence[tuple[int, np.ndarray]],
    person_threshold: float | None,
) -> list[Match]:
    """The matches in order, less copies (duplicates.pictures) of a query photo or of a
    match kept before; with person_threshold, also less a second face of one person: by
    the gallery's people where faces have one, else by the threshold between matches."""
    marks = FaceMarks(repo.conn).marks([m.face.id for m in matches])
    seen_people: set[int] = set()
    loose: list[np.ndarray] = []  # kept faces without a person
    kept: list[Match] = []
    units = [_unit(marks[m.face.id][0]) for m in matches]
    # Copies among all the candidates, the ones below a match too: a crop and a resized
    # copy can be one picture only through an original that ranks below both.
    picture = pictures(
        [(marks[m.face.id][1], u) for m, u in zip(matches, units, strict=True)], query_marks
    )
    shown: set[int] = set()
    for m, u, p in zip(matches, units, picture, strict=True):
        if p < 0 or p in shown:
            continue
        if person_threshold is not None:
            if m.face.person_id is not None:
                if m.face.person_id in seen_people:
                    continue
                seen_people.add(m.face.person_id)
            elif any(float(u @ other) >= person_threshold for other in loose):
                continue
            else:
                loose.append(u)
        kept.append(m)
        shown.add(p)
    return kept
