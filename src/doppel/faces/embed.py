"""Face crops in, vectors out: DeepFace recognition models behind one small class."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from doppel.errors import NoFaceFound, Remedy
from doppel.faces import catalog
from doppel.faces.detect import detect_faces
from doppel.faces.imaging import Photo
from doppel.faces.runtime import quiet_tensorflow
from doppel.types import DetectedFace, EmbeddedFace, EmbeddingConfig


class Embedder:
    """Detects faces and embeds them with one configuration; loads models on first use."""

    def __init__(self, config: EmbeddingConfig, batch_size: int = 32) -> None:
        spec = catalog.spec(config.model, "recognition")
        detector = catalog.spec(config.detector, "detector")
        self.config = EmbeddingConfig(spec.name, detector.name, config.align, config.normalization)
        self.batch_size = batch_size
        self._ready = False

    @property
    def input_size(self) -> int:
        size = catalog.spec(self.config.model, "recognition").input_size
        assert size is not None
        return size

    def warm_up(self) -> None:
        """Check weights and build the models now rather than on the first face."""
        if self._ready:
            return
        catalog.require(self.config.model, "recognition")
        catalog.require(self.config.detector, "detector")
        quiet_tensorflow()
        from deepface.modules import modeling

        modeling.build_model(task="facial_recognition", model_name=self.config.model)
        self._ready = True

    def detect(self, photo: Photo, detector: str | None = None) -> list[DetectedFace]:
        """Every face in the photo, largest first; an empty list when there is none."""
        return detect_faces(photo, detector or self.config.detector, self.config.align)

    def embed_crops(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Embed face crops (BGR) in batches; returns an (n, dimension) float32 array."""
        if not crops:
            return np.empty((0, self.config.dimension), dtype=np.float32)
        self.warm_up()
        quiet_tensorflow()
        from deepface import DeepFace

        out: list[np.ndarray] = []
        for start in range(0, len(crops), self.batch_size):
            batch = list(crops[start : start + self.batch_size])
            result = DeepFace.represent(
                img_path=batch,
                model_name=self.config.model,
                detector_backend="skip",
                normalization=self.config.normalization,
                enforce_detection=False,
            )
            # DeepFace returns a flat list for one image and a list per image otherwise.
            rows = [result] if len(batch) == 1 else result
            out.extend(np.asarray(row[0]["embedding"], dtype=np.float32) for row in rows)
        return np.vstack(out)

    def embed_photo(
        self, photo: Photo, all_faces: bool = False, detector: str | None = None
    ) -> list[EmbeddedFace]:
        """Detect and embed the largest face (or every face) of a photo."""
        faces = self.detect(photo, detector)
        if not all_faces:
            faces = faces[:1]
        vectors = self.embed_crops([face.crop for face in faces])
        return [
            EmbeddedFace(face.index, face.box, face.confidence, vector)
            for face, vector in zip(faces, vectors, strict=True)
        ]

    def embed_query(
        self, photo: Photo, name: str, detector: str | None = None, all_faces: bool = False
    ) -> list[EmbeddedFace]:
        """Like embed_photo, for a query: no face is an error, not an empty list."""
        faces = self.embed_photo(photo, all_faces, detector)
        if not faces:
            raise NoFaceFound(
                f"{name}: no face found; try a clearer, front-facing photo",
                remedy=Remedy.OTHER_DETECTOR,
            )
        return faces


@lru_cache(maxsize=8)
def embedder_for(config: EmbeddingConfig) -> Embedder:
    """One Embedder per configuration per process, so models load once."""
    return Embedder(config)
