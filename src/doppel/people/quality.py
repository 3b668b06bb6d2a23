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

# Sharpness alone: on lfw-dev photos pasted small (and half of them blurred) into scenes it
# raised B-cubed precision from 0.855 to 0.966 while leaving out 1 of lfw-dev's 572 faces.
# A floor on size did less for more faces (dlib finds no face under about 36 pixels, and
# a small face blown up to 150 pixels is blurred too), one on frontalness or the
# detector's confidence cost lfw-dev faces without helping the scenes.
QUALITY_FLOOR = QualityFloor(sharpness=8.0)


def gallery_quality(
    conn: psycopg.Connection, gallery_name: str | None, floor: QualityFloor = QUALITY_FLOOR
) -> QualityStats:
    """The quality of a gallery's faces: each measure's quantiles and the faces below the
    floor."""
    gallery = Repository(conn).pick_gallery(gallery_name)
    return QualityStore(conn).stats(gallery, floor)
