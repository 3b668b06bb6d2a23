"""`doppel people`: group a gallery's faces into people, name them, merge them, take faces out."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psycopg

from doppel.errors import EmptyGallery, UsageError
from doppel.people import calibration, clustering, reclustering
from doppel.people.calibration import Calibration
from doppel.people.quality import floor_of
from doppel.store.people import PeopleStore
from doppel.store.people_edits import PeopleEditor
from doppel.store.people_rows import Edit, GalleryFaces, Person
from doppel.store.quality import QualityStore
from doppel.store.repository import Repository
from doppel.types import Face, Gallery, QualityFloor

# Neighbours per face in the clustering graph: enough to hold a person's faces in
# the photo libraries this is for, few enough that 70,000 faces take minutes.
NEIGHBOURS = 20
# Fewer free faces than this find their neighbours among themselves by blocked exact
# matrix products; more ask the HNSW index. The products are the faster up to here:
# 70,000 faces take about a minute on two cores, where one index walk per face took
# twenty (benchmarks.md); they grow with the square of the faces, the walks linearly.
EXACT_BELOW = 150_000


@dataclass(frozen=True)
class ClusterReport:
    gallery: Gallery
    calibration: Calibration
    faces: int  # faces in the gallery
    considered: int  # faces that were free to place this time
    joined: int  # of those, faces that joined a person known before
    new_people: int
    people: int  # people in the gallery now
    unassigned: int  # faces in no person now (taken-out faces included)
    excluded: int  # faces taken out of a person by hand
    seconds: float
    low_quality: int = 0  # faces in no person because they are below the quality floor


@dataclass(frozen=True)
class PeopleListing:
    gallery: Gallery
    people: list[Person]
    members: dict[int, list[Face]]  # person id -> faces
    unassigned: list[Face]  # faces in no person, the low-quality ones apart
    low_quality: list[Face] = field(default_factory=list)  # in no person: below the floor
    floor: QualityFloor = QualityFloor()  # the gallery's quality floor


# Long: the steps of one run (faces, neighbours, grouping, ids kept, names, covers,
# writing) read in their order here; each step is a helper below.
def cluster_gallery(
    conn: psycopg.Connection,
    gallery_name: str | None,
    *,
    recluster: bool = False,
    calibration_file: Path | None = None,
    neighbours: int = NEIGHBOURS,
    exact_below: int = EXACT_BELOW,
    progress: Callable[[int, int], None] | None = None,
    floor: QualityFloor | None = None,
) -> ClusterReport:
    """Place the gallery's free faces into people: join known people, found new ones.

    Incremental by default: faces already in a person stay there, new faces join the
    person whose mean face is close enough, and the rest are grouped among themselves.
    recluster forgets every person and groups all faces again; names carry over to
    the new person holding most of a named person's faces. Faces taken out of a
    person by hand are never placed; faces put into one by hand (pinned) never move,
    and their people outlive a recluster. Neighbours come from the gallery's HNSW index,
    or, for fewer than exact_below free faces, from one exact matrix product.
    Faces below the gallery's quality floor are never placed (a recluster takes them out).
    """
    start = time.perf_counter()
    repo = Repository(conn)
    gallery = repo.pick_gallery(gallery_name)
    cal = calibration.for_config(gallery.config, calibration_file)
    store = PeopleStore(conn)
    everything = store.faces(gallery)
    if len(everything.ids) == 0:
        raise EmptyGallery(f"gallery {gallery.name!r} has no faces yet")
    free = ~everything.excluded & ~everything.pinned & ((everything.person < 0) | recluster)
    floor = floor_of(conn, gallery) if floor is None else floor
    low = np.isin(everything.ids, QualityStore(conn).below_floor(gallery, floor))
    # Below the floor: searchable but in no person; a recluster takes them out of theirs.
    dropped = everything.ids[free & low & (everything.person >= 0)]
    free &= ~low
    known = {} if recluster else _means(everything)
    photos = clustering.photo_codes(everything.photos)
    taken = {} if recluster else _photos_taken(everything, photos)
    ids = everything.ids[free]
    joined = new_people = 0
    if len(ids):
        vectors = everything.vectors[free]
        if len(ids) >= exact_below:
            repo.ensure_index(gallery)
        # A valid index answers; without one (a background build still running) the
        # neighbours come from blocked matrix products instead of per-face exact scans.
        if len(ids) < exact_below or not repo.has_index(gallery):
            graph, sims = _exact_graph(vectors, neighbours)
        else:
            near = store.neighbours(
                gallery,
                ids.tolist(),
                neighbours,
                unassigned_only=not recluster,
                progress=progress,
            )
            graph, _ = _arrays(ids, near, neighbours)
            sims = _exact_similarities(vectors, graph)
        labels = clustering.cluster(vectors, graph, sims, cal.cluster, known, photos[free], taken)
        kept: dict[int, int] = {}
        if recluster:
            labels = reclustering.keep_apart(
                labels,
                everything.person[free],
                vectors,
                photos[free],
                PeopleEditor(conn).apart(gallery),
                cal,
            )
            covers_before = {
                person.id: person.cover.id for person in store.people(gallery) if person.cover
            }
            labels, kept = reclustering.keep_ids(everything, free, labels, covers_before)
            labels = reclustering.beside_pinned(everything, free, labels, photos)
        new_labels = sorted(set(labels[labels >= 0].tolist()) - set(known) - set(kept.values()))
        joined = int(np.isin(labels, list(known)).sum()) if known else 0
        new_people = len(new_labels)
        pinned = reclustering.pinned_people(everything) if recluster else {}
        lost = reclustering.lost_covers(
            store, gallery, ids, labels, {*kept.values(), *pinned}, pinned
        )
        covers = _covers(ids, vectors, labels, [*new_labels, *lost])
        covers.update({p: pinned[p][0] for p in lost if p not in covers and p in pinned})
        names = (
            reclustering.carried_names(
                store, gallery, everything, free, labels, {*kept.values(), *pinned}
            )
            if recluster
            else {}
        )
        store.save(
            gallery,
            ids.tolist() + dropped.tolist(),
            labels.tolist() + [clustering.UNASSIGNED] * len(dropped),
            new_labels,
            covers,
            names,
            recluster,
            keep=[*kept.values(), *pinned],
        )
    after = store.people(gallery)
    placed = sum(person.faces for person in after)
    return ClusterReport(
        gallery,
        cal,
        len(everything.ids),
        len(ids),
        joined,
        new_people,
        len(after),
        len(everything.ids) - placed,
        int(everything.excluded.sum()),
        time.perf_counter() - start,
        int((low & ((everything.person < 0) | np.isin(everything.ids, dropped))).sum()),
    )


def _photos_taken(faces: GalleryFaces, photos: np.ndarray) -> dict[int, set[int]]:
    """Person id -> the photos (codes) of its faces, for photos with more than one face."""
    taken: dict[int, set[int]] = {}
    for face in np.flatnonzero((faces.person >= 0) & (photos >= 0)):
        taken.setdefault(int(faces.person[face]), set()).add(int(photos[face]))
    return taken


def _means(faces: GalleryFaces) -> dict[int, np.ndarray]:
    placed = faces.person >= 0
    return clustering.centroids(clustering.normalise(faces.vectors[placed]), faces.person[placed])


def _arrays(
    ids: np.ndarray, near: dict[int, list[tuple[int, float]]], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Neighbour lists as (n, k) row numbers into ids (-1: none or not free) and similarities."""
    row = {int(face): i for i, face in enumerate(ids)}
    graph = np.full((len(ids), k), -1, dtype=np.int64)
    sims = np.full((len(ids), k), -1.0, dtype=np.float32)
    for i, face in enumerate(ids):
        kept = [(row[n], s) for n, s in near.get(int(face), []) if n in row][:k]
        for j, (n, s) in enumerate(kept):
            graph[i, j], sims[i, j] = n, s
    return graph, sims


def _exact_graph(vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each face's k nearest among these faces, padded with -1 when there are fewer."""
    graph = np.full((len(vectors), k), -1, dtype=np.int64)
    sims = np.full((len(vectors), k), -1.0, dtype=np.float32)
    if len(vectors) > 1:
        near, close = clustering.exact_neighbours(vectors, k)
        graph[:, : near.shape[1]], sims[:, : near.shape[1]] = near, close
    return graph, sims


def _exact_similarities(vectors: np.ndarray, graph: np.ndarray) -> np.ndarray:
    """Cosine similarities of each face to its neighbours at full precision (-1: none)."""
    unit = clustering.normalise(vectors)
    sims = np.einsum("id,ikd->ik", unit, unit[np.maximum(graph, 0)])
    return np.where(graph >= 0, sims, -1.0).astype(np.float32)


def _covers(
    ids: np.ndarray, vectors: np.ndarray, labels: np.ndarray, new_labels: list[int]
) -> dict[int, int]:
    """For each new person, the face nearest its mean face: its most typical picture."""
    unit = clustering.normalise(vectors)
    wanted = np.isin(labels, new_labels)
    if not wanted.any():
        return {}
    means = clustering.centroids(unit, np.where(wanted, labels, clustering.UNASSIGNED))
    score = np.einsum("id,id->i", unit, np.vstack([means.get(int(x), unit[0]) for x in labels]))
    covers: dict[int, int] = {}
    best: dict[int, float] = {}
    for face in np.flatnonzero(wanted):
        label = int(labels[face])
        if score[face] > best.get(label, -2.0):
            best[label], covers[label] = float(score[face]), int(ids[face])
    return covers


def list_people(
    conn: psycopg.Connection, gallery_name: str | None, *, hidden: bool = True
) -> PeopleListing:
    """The gallery's people, most faces first, with their faces and the faces in no
    person, and the gallery's quality floor; hidden=False leaves hidden people out."""
    gallery = Repository(conn).pick_gallery(gallery_name)
    store = PeopleStore(conn)
    members = store.members(gallery)
    unassigned = members.pop(None, [])
    floor = floor_of(conn, gallery)
    low = set(QualityStore(conn).below_floor(gallery, floor)) if unassigned else set()
    return PeopleListing(
        gallery,
        [p for p in store.people(gallery) if hidden or not p.hidden],
        {pid: faces for pid, faces in members.items() if pid is not None},
        [face for face in unassigned if face.id not in low],
        [face for face in unassigned if face.id in low],
        floor,
    )


def find_person(listing: PeopleListing, conn: psycopg.Connection, person_id: int) -> Person:
    """A person of the listing (hidden ones included), or the store's UnknownPerson."""
    for person in listing.people:
        if person.id == person_id:
            return person
    return PeopleStore(conn).person(listing.gallery, person_id)


def name_person(
    conn: psycopg.Connection, gallery_name: str | None, person_id: int, name: str
) -> Person:
    gallery = Repository(conn).pick_gallery(gallery_name)
    name = name.strip()
    if not name:
        raise UsageError("a person's name cannot be empty")
    return PeopleStore(conn).rename(gallery, person_id, name)


def merge_people(
    conn: psycopg.Connection, gallery_name: str | None, keep: int, other: int
) -> Person:
    """Put other's faces into keep (keep's id and name stay)."""
    gallery = Repository(conn).pick_gallery(gallery_name)
    return PeopleStore(conn).merge(gallery, keep, other)


def take_out(
    conn: psycopg.Connection, gallery_name: str | None, person_id: int, faces: list[str]
) -> int:
    """Take faces (ids or sources) out of a person; they stay out at every later clustering."""
    gallery = Repository(conn).pick_gallery(gallery_name)
    store = PeopleEditor(conn)
    store.person(gallery, person_id)
    return store.take_out(gallery, person_id, store.resolve_faces(gallery, faces))


def move_faces(
    conn: psycopg.Connection, gallery_name: str | None, faces: list[str], to: int | None
) -> Person:
    """Put faces (ids or sources) into a person, or a new one (to=None); undone by restore."""
    gallery = Repository(conn).pick_gallery(gallery_name)
    store = PeopleEditor(conn)
    person = store.move(gallery, store.resolve_faces(gallery, faces), to)
    return store.person(gallery, person)


def restore(conn: psycopg.Connection, gallery_name: str | None, edit: int | None) -> Edit:
    """Undo a merge, a taking out or a move (default: the latest not undone)."""
    gallery = Repository(conn).pick_gallery(gallery_name)
    return PeopleEditor(conn).restore(gallery, edit)


def edits(conn: psycopg.Connection, gallery_name: str | None) -> list[Edit]:
    """The edits that `restore` can undo, latest first."""
    gallery = Repository(conn).pick_gallery(gallery_name)
    return PeopleEditor(conn).edits(gallery)


def hide_person(
    conn: psycopg.Connection, gallery_name: str | None, person_id: int, hidden: bool = True
) -> Person:
    gallery = Repository(conn).pick_gallery(gallery_name)
    return PeopleEditor(conn).set_hidden(gallery, person_id, hidden)


def set_cover(
    conn: psycopg.Connection, gallery_name: str | None, person_id: int, face: str
) -> Person:
    """Make a face (an id or a source) the person's cover."""
    gallery = Repository(conn).pick_gallery(gallery_name)
    store = PeopleEditor(conn)
    found = store.resolve_faces(gallery, [face])
    return store.set_cover(gallery, person_id, found[0])
