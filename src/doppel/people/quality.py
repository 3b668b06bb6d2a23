"""The people's quality gate: the floor below which a face is searchable but in no person,
each gallery's own floor where one is set, and `doppel gallery stats`' quality
distribution.

The floor was chosen by measurement (docs/benchmarks.md, section 13, "The quality
gate"): on lfw-dev and on lfw-dev faces scaled down into larger scenes, with the Dlib
model on dlib's detector.
"""

from __future__ import annotations

import math

import psycopg

from doppel.errors import UsageError
from doppel.store.quality import QualityStats, QualityStore
from doppel.store.repository import Repository
from doppel.types import Gallery, QualityFloor

# Sharpness alone: on lfw-dev photos pasted small (and half of them blurred) into scenes it
# raised B-cubed precision from 0.855 to 0.966 while leaving out 1 of lfw-dev's 572 faces.
# A floor on size did less for more faces (dlib finds no face under about 36 pixels, and
# a small face blown up to 150 pixels is blurred too), one on frontalness or the
# detector's confidence cost lfw-dev faces without helping the scenes.
QUALITY_FLOOR = QualityFloor(sharpness=8.0)


def floor_of(conn: psycopg.Connection, gallery: Gallery) -> QualityFloor:
    """The floor a gallery's faces are gated by: its own (`doppel people floor`), else
    the shipped QUALITY_FLOOR."""
    stored = QualityStore(conn).stored_floor(gallery)
    return QUALITY_FLOOR if stored is None else stored


def set_floor(
    conn: psycopg.Connection, gallery_name: str | None, floor: QualityFloor | None
) -> QualityStats:
    """Give the gallery its own floor (None: back to the shipped one) and say how many
    faces are below it now. Faces already in a person stay there until a recluster;
    faces placed from now on are gated by the new floor."""
    for name, value in vars(floor or QUALITY_FLOOR).items():
        if value is not None and not math.isfinite(value):
            raise UsageError(f"the quality floor's {name} must be a number, not {value}")
    if floor is not None and floor.frontalness is not None and floor.frontalness > 1:
        raise UsageError("frontalness is at most 1 (a face looking straight on); use 0 to 1")
    gallery = Repository(conn).pick_gallery(gallery_name)
    QualityStore(conn).store_floor(gallery, floor)
    return gallery_quality(conn, gallery.name)


def gallery_quality(conn: psycopg.Connection, gallery_name: str | None) -> QualityStats:
    """The quality of a gallery's faces: each measure's quantiles and the faces below its
    floor."""
    gallery = Repository(conn).pick_gallery(gallery_name)
    return QualityStore(conn).stats(gallery, floor_of(conn, gallery))
