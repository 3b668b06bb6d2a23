"""What the SQL of people hands back: a person, a journalled edit, a gallery's faces as arrays."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np

from doppel.types import Face


@dataclass(frozen=True)
class Person:
    id: int
    name: str | None
    cover: Face | None
    faces: int
    hidden: bool = False  # left out of lists and of strangers mode's answers

    @property
    def label(self) -> str:
        """What a person is called on screen: the name, else the number."""
        return self.name or f"person {self.id}"


@dataclass(frozen=True)
class Edit:
    """A hand edit of people, as journalled for `restore`."""

    id: int
    kind: str  # merge, remove, move
    person_id: int | None  # merge: the person kept; remove, move: the person the faces left
    other_id: int | None  # merge: the person merged away; move: the person the faces went to
    face_ids: list[int]
    undone: bool
    created_at: datetime


@dataclass(frozen=True)
class GalleryFaces:
    """Every face of a gallery as arrays, for clustering."""

    ids: np.ndarray  # int64 face ids, ascending
    vectors: np.ndarray  # float32 (n, dimension)
    person: np.ndarray  # int64 person id, -1 where none
    excluded: np.ndarray  # bool: taken out of a person by hand; clustering leaves it alone
    photos: np.ndarray  # object: each face's photo (its source); one photo's faces are two people
    pinned: np.ndarray  # bool: put into its person by hand; clustering never moves it
