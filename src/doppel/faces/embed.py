"""Faces in, vectors out: DeepFace detection and recognition behind one small class."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from doppel.errors import NoFaceFound
from doppel.faces import catalog
from doppel.faces.imaging import Photo

# Faces are found on a copy this size (a side); they are cut from the full photo.
DETECT_SIDE = 640


@dataclass(frozen=True)
class EmbeddingConfig:
    """Everything that decides what vector a face gets; galleries record it."""

    model: str
    detector: str
    align: bool = True
    normalization: str = "base"

    @property
    def dimension(self) -> int:
        dim = catalog.spec(self.model, "recognition").dimension
        assert dim is not None
        return dim

    @property
    def key(self) -> str:
        """A stable text key, used to cache embeddings per configuration."""
        return f"{self.model}|{self.detector}|{int(self.align)}|{self.normalization}"


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    w: int
    h: int

    @property
    def area(self) -> int:
        return self.w * self.h


@dataclass(frozen=True)
class DetectedFace:
    """A face found in a photo: its box in file pixels and the aligned crop (BGR, 0..1)."""

    index: int
    box: Box
    confidence: float
    crop: np.ndarray


@dataclass(frozen=True)
class EmbeddedFace:
    index: int
    box: Box
    confidence: float
    embedding: np.ndarray


def _quiet_tensorflow() -> None:
    """Import DeepFace (and so TensorFlow) without its start-up chatter on stderr.

    TensorFlow's C++ side reports CUDA probing through absl before it reads
    TF_CPP_MIN_LOG_LEVEL, so the file descriptor is muted for the import itself.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    if "deepface.DeepFace" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import deepface.DeepFace  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


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
        _quiet_tensorflow()
        from deepface.modules import modeling

        modeling.build_model(task="facial_recognition", model_name=self.config.model)
        self._ready = True

    def detect(self, photo: Photo, detector: str | None = None) -> list[DetectedFace]:
        """Every face in the photo, largest first; an empty list when there is none."""
        detector = detector or self.config.detector
        if detector == "skip":
            height, width = photo.pixels.shape[:2]
            box = Box(0, 0, round(width * photo.scale), round(height * photo.scale))
            return [DetectedFace(0, box, 0.0, photo.bgr)]
        catalog.require(detector, "detector")
        _quiet_tensorflow()
        import cv2
        from deepface.modules import detection, modeling

        bgr = photo.bgr
        height, width = bgr.shape[:2]
        # Find faces on a small copy (detection cost grows with pixels), then cut and
        # align each face from the full-resolution image, as DeepFace does on the file.
        shrink = max(height, width) / DETECT_SIDE if max(height, width) > DETECT_SIDE else 1.0
        small = bgr
        if shrink > 1.0:
            size = (round(width / shrink), round(height / shrink))
            small = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
        regions = modeling.build_model(task="face_detector", model_name=detector).detect_faces(
            small
        )
        if not regions:
            return []
        # The black border lets alignment rotate faces near an edge (DeepFace does the same).
        border_y, border_x = (height // 2, width // 2) if self.config.align else (0, 0)
        padded = cv2.copyMakeBorder(
            bgr, border_y, border_y, border_x, border_x, cv2.BORDER_CONSTANT, value=[0, 0, 0]
        )

        def up(point: tuple[int, int] | None) -> tuple[int, int] | None:
            if point is None:
                return None
            return round(point[0] * shrink) + border_x, round(point[1] * shrink) + border_y

        faces = []
        for region in regions:
            scaled = dataclasses.replace(
                region,
                x=round(region.x * shrink) + border_x,
                y=round(region.y * shrink) + border_y,
                w=round(region.w * shrink),
                h=round(region.h * shrink),
                left_eye=up(region.left_eye),
                right_eye=up(region.right_eye),
                nose=up(region.nose),
                mouth_left=up(region.mouth_left),
                mouth_right=up(region.mouth_right),
            )
            face = detection.extract_face(
                facial_area=scaled,
                img=padded,
                align=self.config.align,
                expand_percentage=0,
                width_border=border_x,
                height_border=border_y,
                detector_backend=detector,
            )
            if face.img.size == 0:
                continue
            k = shrink * photo.scale  # small-copy pixels to file pixels
            box = Box(
                round(region.x * k), round(region.y * k), round(region.w * k), round(region.h * k)
            )
            crop = np.ascontiguousarray(face.img, dtype=np.float32) / 255.0
            faces.append((box, float(region.confidence or 0.0), crop))
        faces.sort(key=lambda face: face[0].area, reverse=True)
        return [DetectedFace(i, box, conf, crop) for i, (box, conf, crop) in enumerate(faces)]

    def embed_crops(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Embed face crops (BGR) in batches; returns an (n, dimension) float32 array."""
        if not crops:
            return np.empty((0, self.config.dimension), dtype=np.float32)
        self.warm_up()
        _quiet_tensorflow()
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
                f"{name}: no face found; try a clearer, front-facing photo "
                "or another detector (--detector)"
            )
        return faces
