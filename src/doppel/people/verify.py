"""`doppel verify`: are two photos of the same person?"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from doppel.config import FaceOptions
from doppel.errors import UsageError
from doppel.faces.query import Query
from doppel.people import calibration
from doppel.people.calibration import Calibration
from doppel.types import EmbeddedFace, EmbeddingConfig


@dataclass(frozen=True)
class Verification:
    first: str
    second: str
    faces: tuple[EmbeddedFace, EmbeddedFace]  # the largest face of each photo
    similarity: float  # cosine similarity of the two faces
    calibration: Calibration

    @property
    def same(self) -> bool:
        return self.calibration.same(self.similarity)

    @property
    def probability(self) -> float:
        """Calibrated probability that both are the same person (pairs half same, half not)."""
        return self.calibration.probability(self.similarity)

    @property
    def verdict(self) -> str:
        return "same person" if self.same else "different people"


def verify(
    first: Path,
    second: Path,
    config: EmbeddingConfig,
    calibration_file: Path | None = None,
    options: FaceOptions | None = None,
) -> Verification:
    """Embed the largest face of each photo and compare it with the model's threshold."""
    # The threshold is checked first: without one, no model needs loading.
    cal = calibration.for_config(config, calibration_file)
    one, two = Query.from_path(first), Query.from_path(second)
    if one.content_hash == two.content_hash:
        same_file = first.resolve() == second.resolve()
        raise UsageError(
            f"{first} and {second} are "
            + ("the same file" if same_file else "the same picture (identical content)")
            + "; give two different photos"
        )
    from doppel.faces.embed import embedder_for

    embedder = embedder_for(config, options)
    a = embedder.embed_query(one.photo, one.name)[0]
    b = embedder.embed_query(two.photo, two.name)[0]
    u = a.embedding / np.linalg.norm(a.embedding)
    v = b.embedding / np.linalg.norm(b.embedding)
    return Verification(one.name, two.name, (a, b), float(u @ v), cal)
