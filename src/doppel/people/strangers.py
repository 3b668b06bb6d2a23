"""Doppelganger mode: a search that leaves out the query person's own faces.

The query person is the gallery's person of the very photo, or the person whose mean
face the query face would join, as clustering would; and any face at or above the
model's same-person threshold is taken for them too. `search.find` calls
`leave_out_own` once and searches each query face with the filters it gives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import psycopg

from doppel.people import calibration, clustering
from doppel.people.calibration import Calibration
from doppel.store.marks import FaceMarks
from doppel.store.people import PeopleStore
from doppel.store.people_edits import PeopleEditor
from doppel.types import EmbeddedFace, Filters, Gallery


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


def leave_out_own(
    conn: psycopg.Connection,
    gallery: Gallery,
    faces: Sequence[EmbeddedFace],
    content_hashes: Sequence[str],
    filters: Filters,
    cal: Calibration,
    one_per_person: bool,
) -> tuple[list[Filters], Strangers]:
    """Each query face's filters in doppelganger mode, and what the mode left out.

    A face's filters leave out its own people, the people hidden from answers
    (`people hide`, unnamed) and every face at or above the same-person threshold.
    """
    hidden = tuple(PeopleEditor(conn).hidden_people(gallery))
    people: list[int] = []
    each: list[Filters] = []
    for face in faces:
        threshold, own = own_people(conn, gallery, face.embedding, content_hashes, cal=cal)
        people.extend(p for p in own if p not in people)
        each.append(
            replace(
                filters,
                exclude_people=(*filters.exclude_people, *own, *hidden),
                below_similarity=threshold,
            )
        )
    names = tuple(FaceMarks(conn).person_labels(tuple(people)).values())
    return each, Strangers(
        cal.threshold, tuple(people), gallery.config.model, names, one_per_person
    )


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
    if cal is None:
        cal = calibration.for_config(gallery.config, calibration_file)
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
