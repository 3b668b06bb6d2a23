"""Help with people: pairs that are probably one person, splitting one that is two,
and pairs the user said are different."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psycopg

from doppel import sources
from doppel.composer import Tile, compose_rows
from doppel.config import Settings
from doppel.errors import UsageError
from doppel.people import calibration, clustering
from doppel.store.people_edits import PeopleEditor
from doppel.store.people_rows import Person
from doppel.store.repository import Repository
from doppel.types import Gallery

NEAREST = 5  # other people looked at for each person
PICTURE_FACES = 5  # faces of each person in a suggestion's picture
STRICTER = 0.02  # split: above the clustering's link similarity by this much


@dataclass(frozen=True)
class Suggestion:
    rank: int
    first: Person
    second: Person
    similarity: float  # of the two people's mean faces
    probability: float  # calibrated P(same person) of that similarity
    picture: Path | None


def suggest(
    conn: psycopg.Connection,
    gallery_name: str | None,
    k: int = 10,
    *,
    calibration_file: Path | None = None,
    out_dir: Path | None = None,
    settings: Settings | None = None,
) -> list[Suggestion]:
    """The k pairs of people likeliest to be one, by the calibrated probability of
    their mean faces. Pairs said to be apart, pairs with faces in one photo and
    hidden people are left out. With out_dir, one picture per pair (a row each)."""
    gallery = Repository(conn).pick_gallery(gallery_name)
    cal = calibration.for_config(gallery.config, calibration_file)
    store = PeopleEditor(conn)
    people = {p.id: p for p in store.people(gallery) if not p.hidden}
    means = {pid: m for pid, m in store.person_means(gallery).items() if pid in people}
    if len(means) < 2:
        return []
    ids = np.array(list(means))
    unit = clustering.normalise(np.vstack([means[i] for i in ids.tolist()]))
    near, sims = clustering.exact_neighbours(unit, min(NEAREST, len(ids) - 1))
    skip = store.apart(gallery) | store.shared_photos(gallery)
    pairs: dict[tuple[int, int], float] = {}
    for row, (others, values) in enumerate(zip(near, sims, strict=True)):
        for other, value in zip(others.tolist(), values.tolist(), strict=True):
            a, b = sorted((int(ids[row]), int(ids[other])))
            if (a, b) not in skip:
                pairs[(a, b)] = float(value)
    best = sorted(pairs.items(), key=lambda item: -item[1])[:k]
    out = []
    for rank, ((a, b), value) in enumerate(best, 1):
        picture = None
        if out_dir is not None and settings is not None:
            picture = _picture(store, gallery, people[a], people[b], out_dir, rank, settings)
        out.append(Suggestion(rank, people[a], people[b], value, cal.probability(value), picture))
    return out


def _picture(
    store: PeopleEditor,
    gallery: Gallery,
    first: Person,
    second: Person,
    out_dir: Path,
    rank: int,
    settings: Settings,
) -> Path:
    from doppel.outputs import make_folder

    members = store.members(gallery)
    rows = []
    for person in (first, second):
        faces = members.get(person.id, [])[:PICTURE_FACES]
        tiles = [
            Tile(sources.load_source(f.source, settings, 640), f.box, f"face {f.id}") for f in faces
        ]
        rows.append((f"{person.label} (id {person.id}, {person.faces} faces)", tiles))
    path = make_folder(out_dir) / f"suggestion-{rank:02d}-{first.id}-{second.id}.png"
    compose_rows(rows, path)
    return path


def keep_apart(conn: psycopg.Connection, gallery_name: str | None, first: int, second: int) -> None:
    """Remember that two people are different: never suggested again."""
    gallery = Repository(conn).pick_gallery(gallery_name)
    PeopleEditor(conn).keep_apart(gallery, first, second)


def split(
    conn: psycopg.Connection,
    gallery_name: str | None,
    person_id: int,
    faces: list[str] | None = None,
    *,
    stricter: float = STRICTER,
    calibration_file: Path | None = None,
) -> list[Person]:
    """Divide a person: the named faces become a new person, or, without names, the
    person is grouped again at a stricter cut and each sub-group but the largest
    becomes a new person. Each new person is a move, which `restore` undoes.
    Returns the person and the new ones."""
    gallery = Repository(conn).pick_gallery(gallery_name)
    store = PeopleEditor(conn)
    person = store.person(gallery, person_id)
    everything = store.faces(gallery)
    mine = everything.person == person_id
    if faces:
        chosen = store.resolve_faces(gallery, faces)
        outside = sorted(set(chosen) - set(everything.ids[mine].tolist()))
        if outside:
            listed = ", ".join(str(face) for face in outside)
            raise UsageError(f"face {listed} is not in {person.label} (id {person_id})")
        parts = [chosen]
    else:
        cal = calibration.for_config(gallery.config, calibration_file)
        ids, vectors = everything.ids[mine], clustering.normalise(everything.vectors[mine])
        if len(ids) < 2:
            raise UsageError(f"{person.label} (id {person_id}) has one face; nothing to split")
        photos = clustering.photo_codes(everything.photos[mine])
        labels = clustering.constrained_linkage(vectors, photos, cal.cluster.link + stricter)
        groups = sorted(
            (ids[labels == label].tolist() for label in np.unique(labels)), key=len, reverse=True
        )
        parts = groups[1:]
    made = [store.move(gallery, part, None) for part in parts if part]
    return [store.person(gallery, pid) for pid in (person_id, *made)]
