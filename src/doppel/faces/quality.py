"""How well a detected face can be told apart: its size, sharpness and frontalness.

Measured where faces are detected (`doppel.faces.detect`), stored with each face, and
read by `doppel people`'s quality gate (a face below the floor is searchable but in
no person) and by `doppel gallery stats`.

- size: the shorter side of the face's box, in the pixels of the photo as decoded (at
  most `imaging.MAX_SIDE` on a side): the detail the model had to work with.
- sharpness: the variance of the Laplacian of the aligned face in grey (0..255), the
  face first brought to SHARPNESS_SIDE pixels so that every detector's crop is judged
  at one scale. A small face, blown up to that size, is blurred as well.
- frontalness: from the two eye centres and the nose, 1 - 2 |o|, clipped to 0..1,
  where o is the nose's offset along the line between the eyes from their midpoint,
  divided by the eye distance. A face looking at the camera has its nose on the
  midpoint (1); one turned until the nose stands in front of an eye gives 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from doppel.types import FaceQuality

SHARPNESS_SIDE = 150  # the five-point chip's side: those chips are measured as they are

Point = Sequence[float]


def sharpness(face: np.ndarray) -> float:
    """Variance of the Laplacian of a face crop (RGB or BGR; uint8, or float in 0..1)."""
    pixels = np.asarray(face)
    if pixels.dtype != np.uint8:
        pixels = np.rint(pixels.astype(np.float32) * 255.0).clip(0, 255).astype(np.uint8)
    if pixels.size == 0:
        return 0.0
    if pixels.shape[:2] == (SHARPNESS_SIDE, SHARPNESS_SIDE):
        # The default pipeline's chips, and every query of it: numpy alone, since
        # importing cv2 would cost each search 20 MB and a tenth of a second.
        grey = pixels if pixels.ndim == 2 else _grey(pixels)
    else:
        grey = _grey_at_side(pixels)
    level = grey.astype(np.float64)
    # OpenCV's Laplacian (ksize 1): the 3 x 3 cross, the border reflected without
    # repeating the edge (numpy's "reflect").
    edged = np.pad(level, 1, mode="reflect")
    laplacian = (
        edged[:-2, 1:-1] + edged[2:, 1:-1] + edged[1:-1, :-2] + edged[1:-1, 2:] - 4.0 * level
    )
    return float(laplacian.var())


def _grey(pixels: np.ndarray) -> np.ndarray:
    """BT.601 grey in OpenCV's fixed-point weights, (4899 R + 9617 G + 1868 B) / 2^14:
    within one level of its cvtColor, a figure under 0.01% apart on lfw-dev chips."""
    channels = pixels[..., :3].astype(np.uint32)
    weighted = channels[..., 0] * 4899 + channels[..., 1] * 9617 + channels[..., 2] * 1868
    return ((weighted + 8192) >> 14).astype(np.uint8)


def _grey_at_side(pixels: np.ndarray) -> np.ndarray:
    """Another size of crop in grey at SHARPNESS_SIDE, by OpenCV's resizing (PIL's differs
    by up to half the figure); the pipelines that make such crops load cv2 anyway."""
    import cv2

    grey = pixels if pixels.ndim == 2 else cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
    shrinking = min(grey.shape) > SHARPNESS_SIDE
    return cv2.resize(
        grey,
        (SHARPNESS_SIDE, SHARPNESS_SIDE),
        interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR,
    )


def frontalness(eye_a: Point, eye_b: Point, nose: Point) -> float | None:
    """1 - 2 |nose offset along the eye line| / eye distance, in 0..1 (None: no eyes)."""
    a, b, n = (np.asarray(p, dtype=np.float64) for p in (eye_a, eye_b, nose))
    axis = b - a
    distance = float(np.hypot(*axis))
    if distance < 1e-6:
        return None
    offset = float(np.dot(n - (a + b) / 2, axis)) / distance**2
    return float(np.clip(1.0 - 2.0 * abs(offset), 0.0, 1.0))


def measure(
    face: np.ndarray,
    side: float,
    eyes: tuple[Point, Point] | None = None,
    nose: Point | None = None,
) -> FaceQuality:
    """A face's quality from its aligned crop, its box's shorter side (decoded pixels)
    and, where the detector gives them, its eye centres and nose."""
    front = frontalness(eyes[0], eyes[1], nose) if eyes is not None and nose is not None else None
    front = None if front is None else round(front, 3)
    return FaceQuality(max(0, round(side)), round(sharpness(face), 2), front)
