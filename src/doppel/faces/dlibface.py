"""dlib's own face models, called directly: no DeepFace, no TensorFlow.

The Dlib recognition model (a ResNet giving 128 numbers) was trained on dlib's own
alignment: five landmarks (the corners of the eyes and the base of the nose) mapped
onto a 150-pixel chip with a quarter of padding. Fed that chip it ranks the right
person first far more often than fed DeepFace's crop (the detector's box, rotated so
the eyes are level), whose position moves with the HOG detector's 8-pixel grid.
Measured in benchmarks/bench_accuracy.py; the figures are in docs/benchmarks.md.
Detection, landmarks and chips are dlib's; the ResNet itself runs on ONNX Runtime
(`doppel.faces.dlibonnx`), and `describe` takes it as a callable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from doppel.config import FaceOptions
from doppel.faces import catalog

CHIP_SIZE = 150  # the recognition model's input side
CHIP_PADDING = 0.25  # dlib's default border around the landmarks
# mmod sees the photo upsampled until its longer side reaches this (faces of about
# 80 pixels there are its smallest); more would cost four times per doubling.
MMOD_SIDE = 500


@dataclass(frozen=True)
class Found:
    """A face box in the pixels of the image searched, with the detector's score."""

    left: int
    top: int
    right: int
    bottom: int
    score: float

    def scaled(self, factor: float) -> Found:
        return Found(
            round(self.left * factor),
            round(self.top * factor),
            round(self.right * factor),
            round(self.bottom * factor),
            self.score,
        )


@lru_cache(maxsize=1)
def _hog() -> Any:
    import dlib

    return dlib.get_frontal_face_detector()


# The options say where missing weights come from; a process normally has one.
@lru_cache(maxsize=2)
def _mmod(options: FaceOptions) -> Any:
    import dlib

    path = catalog.weights_path("mmod", "detector", options)
    return dlib.cnn_face_detection_model_v1(str(path))


def forget_mmod() -> None:
    """Drop the CNN detector, so the next photo gets a fresh one (after an error)."""
    _mmod.cache_clear()


@lru_cache(maxsize=2)
def _landmarks(options: FaceOptions) -> Any:
    import dlib

    return dlib.shape_predictor(str(catalog.weights_path("dlib", "detector", options)))


def load(options: FaceOptions, detector: str | None = None) -> None:
    """Load the landmark model (and a detector) now, not on first use."""
    _landmarks(options)
    if detector == "dlib":
        _hog()
    elif detector == "mmod":
        _mmod(options)


def hog(rgb: np.ndarray, upsample: int = 1) -> list[Found]:
    """dlib's HOG detector; upsampling once finds faces down to about 40 pixels."""
    rects, scores, _ = _hog().run(rgb, upsample, 0.0)
    return [
        Found(r.left(), r.top(), r.right(), r.bottom(), float(s))
        for r, s in zip(rects, scores, strict=True)
    ]


def mmod(rgb: np.ndarray, options: FaceOptions) -> list[Found]:
    """dlib's CNN detector, which also finds faces turned too far for HOG."""
    upsample = 1 if max(rgb.shape[:2]) < MMOD_SIDE else 0
    return [
        Found(d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom(), float(d.confidence))
        for d in _mmod(options)(rgb, upsample)
    ]


def chip(rgb: np.ndarray, box: Found, options: FaceOptions) -> np.ndarray:
    """The face in the box, aligned on its five landmarks: 150x150 RGB uint8."""
    return chip_and_landmarks(rgb, box, options)[0]


def chip_and_landmarks(
    rgb: np.ndarray, box: Found, options: FaceOptions
) -> tuple[np.ndarray, np.ndarray]:
    """The aligned chip and the five landmarks in the image's pixels, (5, 2) float:
    the two corners of one eye, the two of the other, the base of the nose."""
    import dlib

    rect = dlib.rectangle(box.left, box.top, box.right, box.bottom)
    shape = _landmarks(options)(rgb, rect)
    points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
    return np.asarray(dlib.get_face_chip(rgb, shape, CHIP_SIZE, CHIP_PADDING)), points


def describe(
    chips: Sequence[np.ndarray], network: Callable[[np.ndarray], list[np.ndarray]]
) -> np.ndarray:
    """The Dlib model's 128 numbers for each 150x150 RGB uint8 chip: (n, 128) float32.

    The chips go through the network as one batch (a face and its mirror image cost one
    call); `network` takes (n, 150, 150, 3) float32 pixel values, as
    `doppel.faces.networks.dlib_graph` loaded by `doppel.faces.sessions` does."""
    if not chips:
        return np.empty((0, 128), dtype=np.float32)
    batch = np.stack([np.asarray(c, dtype=np.float32) for c in chips])
    return np.asarray(network(batch)[0], dtype=np.float32).reshape(len(chips), -1)
