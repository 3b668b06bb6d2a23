"""The people's quality gate: the floor below which a face is searchable but in no person,
and `doppel gallery stats`' quality distribution.

The floor was chosen by measurement (docs/benchmarks.md, section 13, "The quality
gate"): on lfw-dev and on lfw-dev faces scaled down into larger scenes, with the Dlib
model on dlib's detector.
"""

from __future__ import annotations

import psycopg

from doppel.store.quality import QualityStats, QualityStore
from doppel.store.repository import Repository
from doppel.types import QualityFloor

QUALITY_FLOOR = QualityFloor(size=40, sharpness=10.0)


def gallery_quality(
    conn: psycopg.Connection, gallery_name: str | None, floor: QualityFloor = QUALITY_FLOOR
) -> QualityStats:
    """The quality of a gallery's faces: each measure's quantiles and the faces below the
    floor."""
    gallery = Repository(conn).pick_gallery(gallery_name)
    return QualityStore(conn).stats(gallery, floor)
