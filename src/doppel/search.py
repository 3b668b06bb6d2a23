"""`doppel find` as a library call: embed the query like the gallery, search, compose.

The CLI and the web app both search through find().
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import psycopg

from doppel.composer import render
from doppel.config import DEFAULT_MAX_PIXELS, FaceOptions, Settings
from doppel.duplicates import dhash, pictures
from doppel.errors import NotCalibrated, Remedy, UsageError
from doppel.faces import imaging
from doppel.faces.embed import embedder_for
from doppel.faces.imaging import Photo
from doppel.people import calibration as people_calibration
from doppel.people.calibration import Calibration
from doppel.store.marks import FaceMarks
from doppel.store.repository import Repository
from doppel.templates import TemplateCheck
from doppel.types import EmbeddedFace, Filters, Gallery, Match, QueryResult, describe


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
    names: tuple[str, ...] = ()  # those people's names, else "person N"
    one_per_person: bool = True  # at most one face of each stranger (not --all-photos)

    def _own(self) -> str:
        return ", ".join(self.names or tuple(f"person {p}" for p in self.people))

    def caption(self) -> str:
        """The short form, under the query face of the composite."""
        own = self._own()
        return f"left out: {own + ', ' if own else ''}similarity >= {self.threshold:.3f}"

    def describe(self) -> str:
        own = self._own()
        each = "; one face per person" if self.one_per_person else ""
        return (
            f"strangers only: left out {own + ' and ' if own else ''}faces with similarity "
            f">= {self.threshold:.4f} ({self.model}'s same-person threshold){each}"
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


# Over 80 lines: one use case with many options, each a few lines, in the order a
# search runs (gallery, calibration, photos, embedding, search, picture).
def find(
    conn: psycopg.Connection,
    query: QueryPhotos,
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
    faces: QueryFaces | Sequence[QueryFaces] | None = None,
    strangers: bool = False,
    calibration_file: Path | None = None,
    threshold: float | None = None,
    all_photos: bool = False,
) -> FindResult:
    """Search a gallery for the faces most like those in the photo (or photos).

    gallery_name None means the only gallery there is. A composite picture needs the
    settings (where the gallery's photos are found again). The query photos themselves
    are left out of the matches when the gallery holds them (same file content).
    Several photos are one person's: checked with the same-person threshold and
    combined into one template (templates.py); faces, if given, is then one per photo.
    Each match carries its strength where the pipeline is calibrated; threshold
    overrides the calibrated same-person threshold for this search.
    strangers: doppelganger mode; leave out the query person's own faces, those of
    the person the query face belongs to (the gallery's person of this very photo,
    or the person whose mean face it would join) and any face at or above the
    model's same-person threshold; and show at most one face of each other person
    (unless all_photos). k faces still come back when k strangers exist.
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
    # A missing threshold fails before any embedding, where strangers mode needs one.
    cal = pipeline_calibration(gallery, calibration_file, threshold, required=strangers)
    max_pixels = settings.max_pixels if settings else DEFAULT_MAX_PIXELS
    queries = [
        q if isinstance(q, Query) else Query.from_path(q, max_pixels)
        for q in (query if isinstance(query, Sequence) else [query])
    ]
    if not queries:
        raise UsageError("no photo to search with")
    if len(queries) > 1 and all_faces:
        raise UsageError(
            "several photos make one query of one face each; search every face of one photo alone"
        )
    chosen = query_detector(gallery, detector, default_detector)
    options = settings.face_options if settings is not None else FaceOptions()
    per_photo: list[list[EmbeddedFace]] = []
    for number, one in enumerate(queries):
        bring = faces[number] if isinstance(faces, Sequence) else faces
        if bring is not None:
            per_photo.append(bring(gallery, chosen))
        else:
            per_photo.append(
                embedder_for(gallery.config, options).embed_query(
                    one.photo, one.name, chosen, all_faces and len(queries) == 1
                )
            )
    check = None
    if len(queries) == 1:
        embedded = per_photo[0]
    else:
        embedded, check = _template(queries, per_photo, cal, gallery.config.model)
    searched = time.perf_counter()
    hashes = tuple(q.content_hash for q in queries)
    filters = replace(filters, exclude_hashes=(*filters.exclude_hashes, *hashes))
    # What a copy of a query photo looks like: its photo's hash and its face's vector.
    photo_hashes = [dhash(q.photo.pixels) for q in queries]
    template_marks = [
        (h, _unit(found[0].embedding)) for h, found in zip(photo_hashes, per_photo, strict=True)
    ]
    results = []
    mode = None
    for face in embedded:
        face_filters = filters
        if strangers:
            assert cal is not None
            face_filters, mode = _leave_out_own(conn, gallery, face, hashes, filters, mode, cal)
        marks = template_marks if len(queries) > 1 else [(photo_hashes[0], _unit(face.embedding))]
        matches = _search(
            repo,
            gallery,
            face,
            k,
            face_filters,
            exact,
            ef_search,
            cal if strangers and not all_photos else None,
            marks,
        )
        if cal is not None:
            matches = [
                replace(m, strength=people_calibration.strength(cal, m.similarity, strangers))
                for m in matches
            ]
        results.append(QueryResult(face, matches))
    if mode is not None:
        mode = replace(
            mode,
            names=tuple(FaceMarks(conn).person_labels(mode.people).values()),
            one_per_person=not all_photos,
        )
    done = time.perf_counter()
    if composite is not None:
        if settings is None:
            raise ValueError("a composite needs the settings, to find the gallery's photos")
        title, note = ("query: strangers only", mode.caption()) if mode else ("query", "")
        if len(queries) > 1:
            title = f"{title} ({len(queries)} photos)"
        render(queries[0].photo, results[0], composite, settings, title, note)
    return FindResult(
        gallery,
        queries[0].name if len(queries) == 1 else f"{len(queries)} photos",
        queries[0].photo,
        results,
        composite,
        searched - start,
        done - searched,
        mode,
        cal,
        tuple(q.name for q in queries),
        check,
    )


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
    k: int,
    filters: Filters,
    exact: bool,
    ef_search: int | None,
    one_each: Calibration | None,
    query_marks: Sequence[tuple[int, np.ndarray]],
) -> list[Match]:
    """The k nearest faces without copies of one picture or of a query photo, and with
    one_each (strangers mode) at most one per person; more candidates are fetched
    while the faces set aside leave fewer than k."""
    want = min(k * WIDEN if one_each else 2 * k + 2, MAX_CANDIDATES)
    while True:
        found = repo.search(gallery, face.embedding, want, filters, exact, ef_search)
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


def _leave_out_own(
    conn: psycopg.Connection,
    gallery: Gallery,
    face: EmbeddedFace,
    content_hashes: Sequence[str],
    filters: Filters,
    mode: Strangers | None,
    cal: Calibration,
) -> tuple[Filters, Strangers]:
    """Doppelganger mode's filters for one query face, and the mode with its people added."""
    from doppel.store.people_edits import PeopleEditor

    threshold, own = own_people(conn, gallery, face.embedding, content_hashes, cal=cal)
    before = mode.people if mode else ()
    people = (*before, *(p for p in own if p not in before))
    # Hidden people (`people hide`) are left out of strangers' answers too, unnamed.
    hidden = tuple(PeopleEditor(conn).hidden_people(gallery))
    face_filters = replace(
        filters,
        exclude_people=(*filters.exclude_people, *own, *hidden),
        below_similarity=threshold,
    )
    return face_filters, Strangers(threshold, people, gallery.config.model)


def own_people(
    conn: psycopg.Connection,
    gallery: Gallery,
    vector: np.ndarray,
    content_hash: str | Sequence[str],
    calibration_file: Path | None = None,
    cal: Calibration | None = None,
) -> tuple[float, tuple[int, ...]]:
    """The same-person threshold, and the people a query face is taken to belong to.

    Those are the people of the very photos when the gallery holds them, and the person
    whose mean face is close enough for the face to join it, as clustering would.
    """
    from doppel.people import clustering
    from doppel.store.people import PeopleStore

    if cal is None:
        cal = people_calibration.for_config(gallery.config, calibration_file)
    store = PeopleStore(conn)
    own: list[int] = []
    for digest in [content_hash] if isinstance(content_hash, str) else content_hash:
        own.extend(p for p in store.people_of_content(gallery, digest) if p not in own)
    means = store.person_means(gallery)
    if means:
        unit = clustering.normalise(np.asarray(vector)[None, :])[0]
        ids = list(means)
        scores = clustering.normalise(np.vstack([means[i] for i in ids])) @ unit
        best = int(np.argmax(scores))
        if scores[best] >= cal.cluster.join and ids[best] not in own:
            own.append(ids[best])
    return cal.threshold, tuple(own)
