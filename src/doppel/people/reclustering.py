"""What a recluster keeps of the people before it: the ids, names and covers a user
knows them by, the people said to be two, and the faces put into a person by hand."""

from __future__ import annotations

from collections import Counter

import numpy as np

from doppel.people import clustering
from doppel.people.calibration import Calibration
from doppel.store.people import PeopleStore
from doppel.store.people_rows import GalleryFaces
from doppel.types import Gallery


def keep_apart(
    labels: np.ndarray,
    old: np.ndarray,
    vectors: np.ndarray,
    photos: np.ndarray,
    apart: set[tuple[int, int]],
    cal: Calibration,
) -> np.ndarray:
    """A recluster never joins two people the user said are different.

    A new group holding faces of both is grouped again by linkage that will not join
    their faces; its largest part keeps the label, the others become new people
    (when they have enough faces) or stay in none.
    """
    if not apart:
        return labels
    labels = labels.copy()
    unit = clustering.normalise(vectors)
    next_label = int(labels.max(initial=-1)) + 1
    for a, b in sorted(apart):
        both = set(labels[old == a].tolist()) & set(labels[old == b].tolist())
        for label in sorted(both - {clustering.UNASSIGNED}):
            members = np.flatnonzero(labels == label)
            side = np.where(old[members] == a, 1, np.where(old[members] == b, 2, 0))
            against = (side[:, None] * side[None, :]) == 2
            parts = clustering.constrained_linkage(
                unit[members], photos[members], cal.cluster.link, against
            )
            groups = sorted((members[parts == p] for p in np.unique(parts)), key=len, reverse=True)
            for group in groups[1:]:
                if len(group) >= cal.cluster.min_faces:
                    labels[group] = next_label
                    next_label += 1
                else:
                    labels[group] = clustering.UNASSIGNED
    return labels


def keep_ids(
    before: GalleryFaces, free: np.ndarray, labels: np.ndarray, covers: dict[int, int]
) -> tuple[np.ndarray, dict[int, int]]:
    """After a recluster, each new group that is mostly one old person takes its id.

    "Mostly": more than half of the group's faces were that person's, and the group
    holds more of that person's faces than any other group (on a tie, the group that
    holds the person's cover, the face the user knows it by). Returns the labels with
    those groups renamed to the old ids (other groups get labels above every old id,
    so none is taken for an old one) and label -> old id.
    """
    old = before.person[free]
    offset = int(max(before.person.max(initial=-1), labels.max(initial=-1))) + 1
    labels = np.where(labels >= 0, labels + offset, labels)
    placed = (labels >= 0) & (old >= 0)
    pairs, counts = np.unique(
        np.stack([labels[placed], old[placed]], axis=1), axis=0, return_counts=True
    )
    size = dict(zip(*np.unique(labels[labels >= 0], return_counts=True), strict=True))
    cover_label = dict(zip(before.ids[free].tolist(), labels.tolist(), strict=True))
    holds_cover = np.array(
        [cover_label.get(covers.get(int(person), -1)) == int(label) for label, person in pairs],
        dtype=bool,
    ).reshape(-1)
    kept: dict[int, int] = {}
    taken: set[int] = set()
    for k in np.lexsort((~holds_cover, -counts)):
        label, person = int(pairs[k, 0]), int(pairs[k, 1])
        if label in kept or person in taken or 2 * counts[k] <= size[label]:
            continue
        kept[label] = person
        taken.add(person)
    mapped = np.array([kept.get(int(x), int(x)) for x in labels], dtype=np.int64)
    return mapped, kept


def pinned_people(faces: GalleryFaces) -> dict[int, list[int]]:
    """Person id -> its pinned faces (ids, ascending): people a recluster keeps."""
    out: dict[int, list[int]] = {}
    for face in np.flatnonzero(faces.pinned):
        out.setdefault(int(faces.person[face]), []).append(int(faces.ids[face]))
    return out


def beside_pinned(
    faces: GalleryFaces, free: np.ndarray, labels: np.ndarray, photos: np.ndarray
) -> np.ndarray:
    """A group that took the id of a person with pinned faces leaves out its faces of
    the photos those pinned faces are in: one photo's faces are two people."""
    held = {
        (int(faces.person[face]), int(photos[face]))
        for face in np.flatnonzero(faces.pinned & (photos >= 0))
    }
    if not held:
        return labels
    clash = [
        (int(label), int(photo)) in held
        for label, photo in zip(labels.tolist(), photos[free].tolist(), strict=True)
    ]
    return np.where(np.asarray(clash, dtype=bool), clustering.UNASSIGNED, labels)


def lost_covers(
    store: PeopleStore,
    gallery: Gallery,
    ids: np.ndarray,
    labels: np.ndarray,
    keeping: set[int],
    pinned: dict[int, list[int]],
) -> list[int]:
    """Kept people whose cover face is no longer theirs: they need a new cover.

    keeping: the people that outlive the run; pinned: their pinned faces, which stay."""
    if not keeping:
        return []
    person_of = dict(zip(ids.tolist(), labels.tolist(), strict=True))
    for pid, faces in pinned.items():
        person_of.update(dict.fromkeys(faces, pid))
    lost = []
    for person in store.people(gallery):
        if person.id in keeping:
            cover = person.cover.id if person.cover else None
            if cover is None or person_of.get(cover) != person.id:
                lost.append(person.id)
    return lost


def carried_names(
    store: PeopleStore,
    gallery: Gallery,
    before: GalleryFaces,
    free: np.ndarray,
    labels: np.ndarray,
    kept: set[int],
) -> dict[int, str]:
    """New label -> the name of the old named person whose faces it mostly holds.

    People that kept their id (kept) keep their own name and take no other.
    """
    named = {p.id: p.name for p in store.people(gallery) if p.name and p.id not in kept}
    if not named:
        return {}
    old = before.person[free]
    votes: Counter[tuple[int, int]] = Counter()
    for new, previous in zip(labels.tolist(), old.tolist(), strict=True):
        if new >= 0 and previous in named and new not in kept:
            votes[(previous, new)] += 1
    names: dict[int, str] = {}
    taken: set[int] = set()
    for (previous, new), _ in votes.most_common():
        if previous not in taken and new not in names:
            names[new] = named[previous]
            taken.add(previous)
    return names
