"""Face crops in, vectors out: DeepFace recognition models behind one small class.

DeepFace's own preprocessing (resize with black padding, normalisation) prepares each
crop; the network then runs on the runtime `doppel.faces.sessions` picks: OpenVINO or ONNX
Runtime for the Keras models (no TensorFlow import), DeepFace's dlib client for Dlib on
DeepFace-style crops, and for Dlib on its five-point chips (`doppel.faces.dlibface`)
dlib's ResNet written as ONNX (`doppel.faces.dlibonnx`), dlib itself as the fallback.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from doppel.config import FaceOptions
from doppel.errors import NoFaceFound, Remedy
from doppel.faces import catalog, dlibface, networks, sessions
from doppel.faces.detect import detect_faces, warm_up_detector
from doppel.faces.imaging import Photo
from doppel.types import DetectedFace, EmbeddedFace, EmbeddingConfig


class Embedder:
    """Detects faces and embeds them with one configuration; loads models on first use."""

    def __init__(
        self,
        config: EmbeddingConfig,
        batch_size: int = 32,
        threads: int | None = None,
        options: FaceOptions | None = None,
    ) -> None:
        spec = catalog.spec(config.model, "recognition")
        detector = catalog.spec(config.detector, "detector")
        self.config = dataclasses.replace(config, model=spec.name, detector=detector.name)
        catalog.check_config(self.config)
        self.batch_size = batch_size
        # The runtime and where missing weights come from (Settings.face_options): the
        # one way to choose them; they travel with the Embedder into worker processes.
        self.options = options or FaceOptions()
        self.threads = threads  # the model's threads; None lets the runtime decide
        self._network: sessions.Network | None = None
        self._client: Any = None  # DeepFace's client, for models that are not Keras networks
        self._ready = False

    @property
    def runtime_label(self) -> str:
        """The runtime the model runs on once loaded ("OpenVINO", "dlib", ...)."""
        if self._network is not None:
            return self._network.candidate.label
        return "dlib" if self._client is not None else "not loaded"

    @property
    def dimension(self) -> int:
        """The length of this model's vectors."""
        return catalog.dimension(self.config.model)

    @property
    def input_size(self) -> int:
        size = catalog.spec(self.config.model, "recognition").input_size
        assert size is not None
        return size

    def warm_up(self) -> None:
        """Check weights and build the models now rather than on the first face."""
        if self._ready:
            return
        catalog.require(self.config.model, "recognition", self.options)
        catalog.require(self.config.detector, "detector", self.options)
        graph = networks.recognition_graph(self.config.model)
        if self.config.model == "Dlib" and self._five_point:
            weights = catalog.weights_path("Dlib", "recognition", self.options)
            graph = networks.dlib_graph(weights)
        if graph is not None:
            self._network = sessions.load(graph, self.options.runtime, threads=self.threads)
        else:
            # Dlib: DeepFace's client wraps dlib itself; building it imports no TensorFlow.
            from deepface.modules import modeling

            self._client = modeling.build_model(
                task="facial_recognition", model_name=self.config.model
            )
        if self._five_point:
            dlibface.load(self.options, self.config.detector)
        warm_up_detector(self.config.detector, self.options)
        self._ready = True

    def detect(self, photo: Photo, detector: str | None = None) -> list[DetectedFace]:
        """Every face in the photo, largest first; an empty list when there is none."""
        return detect_faces(
            photo,
            detector or self.config.detector,
            self.options,
            self.config.align,
            alignment=self.config.alignment,
        )

    @property
    def _five_point(self) -> bool:
        return self.config.align and self.config.alignment == "five-point"

    def embed_crops(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Embed face crops (BGR) in batches; returns an (n, dimension) float32 array."""
        if not crops:
            return np.empty((0, self.dimension), dtype=np.float32)
        if self.config.flip:
            # The mirror image is the same person; averaging the two vectors evens out
            # what the model reads differently on the left and the right of a face.
            both = self._embed(list(crops) + [np.ascontiguousarray(c[:, ::-1]) for c in crops])
            return (both[: len(crops)] + both[len(crops) :]) / 2
        return self._embed(crops)

    def _embed(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        self.warm_up()
        if self.config.model == "Dlib" and self._five_point:
            # dlib's chips are already the model's 150x150 input: straight to the network.
            assert self._network is not None
            chips = [_to_rgb8(c) for c in crops]
            step = self.batch_size
            return np.vstack(
                [
                    dlibface.describe(chips[i : i + step], self._network)
                    for i in range(0, len(chips), step)
                ]
            )
        out: list[np.ndarray] = []
        for start in range(0, len(crops), self.batch_size):
            batch = self.preprocess(crops[start : start + self.batch_size])
            if self._network is not None:
                vectors = self._network(batch)[0]
            else:
                vectors = np.asarray(self._client.forward(batch), dtype=np.float32)
            out.append(np.asarray(vectors, dtype=np.float32).reshape(len(batch), -1))
        return np.vstack(out)

    def preprocess(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Crops as the model takes them, by DeepFace's own functions, as
        `DeepFace.represent(..., detector_backend="skip")` does: the crop resized into the
        model's square input with black padding (values to 0..1), then normalised."""
        from deepface.modules import preprocessing

        side = self.input_size
        return np.concatenate(
            [
                preprocessing.normalize_input(
                    preprocessing.resize_image(np.asarray(crop), (side, side)),
                    self.config.normalization,
                )
                for crop in crops
            ]
        )

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


def _to_rgb8(crop: np.ndarray) -> np.ndarray:
    """A BGR 0..1 crop back to the RGB uint8 chip it was made from (exactly: rounded)."""
    if crop.dtype == np.uint8:
        return np.ascontiguousarray(crop[:, :, ::-1])
    return np.ascontiguousarray(np.rint(crop[:, :, ::-1] * 255.0).clip(0, 255).astype(np.uint8))


@lru_cache(maxsize=8)
def embedder_for(config: EmbeddingConfig, options: FaceOptions | None = None) -> Embedder:
    """One Embedder per configuration (and options) per process, so models load once."""
    return Embedder(config, options=options)
