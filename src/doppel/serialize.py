"""A match as plain JSON-ready data: the one shape that `find --json` and the web API share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from doppel.types import Box, Match


def box_fields(box: Box | None) -> dict[str, int] | None:
    return None if box is None else {"x": box.x, "y": box.y, "w": box.w, "h": box.h}


def match_fields(match: Match) -> dict[str, Any]:
    """Rank, similarity and distance (rounded to 6 places), the strength (probability,
    words, whether the face is probably the query person's own; None where the pipeline
    has no calibration), and the face's source, file name, attributes, person (name,
    else "person N") and box. The web API adds the URLs of its pictures."""
    face = match.face
    strength = match.strength
    return {
        "rank": match.rank,
        "similarity": round(match.similarity, 6),
        "distance": round(match.distance, 6),
        "probability": round(strength.probability, 4) if strength else None,
        "strength": strength.words if strength else None,
        "probably_query_person": strength.same_person if strength else None,
        "face_id": face.id,
        "source": face.source,
        "name": Path(face.source).name or face.source,
        "age": face.age,
        "sex": face.sex,
        "race": face.race,
        "person_id": face.person_id,
        "person": face.person,
        "box": box_fields(face.box),
    }
