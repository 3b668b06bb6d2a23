"""The mtcnn detector without TensorFlow: the mtcnn package's three networks, converted
once, and its pipeline (image pyramid, proposals, refinement, suppression) in numpy.

The pipeline follows the mtcnn package (1.0) step by step, so the boxes and eye points
equal what DeepFace's mtcnn detector returns (a test compares them on real photos):
TensorFlow's area resize is OpenCV's INTER_AREA (equal within float rounding), its
crop_and_resize is bilinear sampling with zeros outside the image, done here.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# What the mtcnn package uses by default (and so DeepFace).
MIN_FACE = 20
SCALE_FACTOR = 0.709
PNET_THRESHOLD, RNET_THRESHOLD, ONET_THRESHOLD = 0.6, 0.7, 0.8
PNET_NMS_SCALE, PNET_NMS_ALL, RNET_NMS, ONET_NMS = 0.5, 0.7, 0.7, 0.7


@dataclass(frozen=True)
class Detection:
    """A face as DeepFace's mtcnn detector reports it: box and eyes in pixels."""

    x: int
    y: int
    w: int
    h: int
    confidence: float
    left_eye: tuple[int, int]  # DeepFace's naming: the person's left eye
    right_eye: tuple[int, int]
    nose: tuple[int, int] | None = None  # for frontalness (doppel.faces.quality)


def weights_folder() -> Path:
    """The mtcnn package's weights (pnet.lz4, rnet.lz4, onet.lz4), found without importing
    the package, whose import loads TensorFlow."""
    found = importlib.util.find_spec("mtcnn")
    if found is None or not found.submodule_search_locations:
        raise FileNotFoundError("the mtcnn package is not installed")
    return Path(next(iter(found.submodule_search_locations))) / "assets" / "weights"


def normalise(rgb: np.ndarray) -> np.ndarray:
    return (rgb.astype(np.float32) - 127.5) / 128


def _resize_area(img: np.ndarray, height: int, width: int) -> np.ndarray:
    import cv2

    return cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)


def crop_and_resize(img: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Patches of size x size sampled bilinearly over each box (x1, y1, x2, y2 in pixels of
    a grid whose corners are 0 and W, H), zero where a sample falls outside the image."""
    height, width = img.shape[:2]
    steps = np.arange(size, dtype=np.float64) / (size - 1)
    # TensorFlow's boxes are fractions of the image; the sample grid spans them on the
    # pixel centres 0 .. side-1.
    ys = (boxes[:, 1, None] / height + steps * (boxes[:, 3, None] - boxes[:, 1, None]) / height) * (
        height - 1
    )
    xs = (boxes[:, 0, None] / width + steps * (boxes[:, 2, None] - boxes[:, 0, None]) / width) * (
        width - 1
    )
    y0 = np.floor(ys).astype(np.int64)
    x0 = np.floor(xs).astype(np.int64)
    dy = (ys - y0)[:, :, None, None].astype(np.float32)
    dx = (xs - x0)[:, None, :, None].astype(np.float32)
    y1 = np.clip(np.ceil(ys).astype(np.int64), 0, height - 1)
    x1 = np.clip(np.ceil(xs).astype(np.int64), 0, width - 1)
    y0c, x0c = np.clip(y0, 0, height - 1), np.clip(x0, 0, width - 1)
    rows0, rows1 = y0c[:, :, None], y1[:, :, None]
    cols0, cols1 = x0c[:, None, :], x1[:, None, :]
    top = img[rows0, cols0] + (img[rows0, cols1] - img[rows0, cols0]) * dx
    bottom = img[rows1, cols0] + (img[rows1, cols1] - img[rows1, cols0]) * dx
    out = top + (bottom - top) * dy
    inside = ((ys >= 0) & (ys <= height - 1))[:, :, None] & ((xs >= 0) & (xs <= width - 1))[
        :, None, :
    ]
    out[~inside] = 0
    return out.astype(np.float32)


def _overlap(boxes: np.ndarray, method: str) -> np.ndarray:
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    iw = np.maximum(
        0,
        np.minimum(boxes[None, :, 2], boxes[:, None, 2])
        - np.maximum(boxes[None, :, 0], boxes[:, None, 0]),
    )
    ih = np.maximum(
        0,
        np.minimum(boxes[None, :, 3], boxes[:, None, 3])
        - np.maximum(boxes[None, :, 1], boxes[:, None, 1]),
    )
    inter = iw * ih
    if method == "union":
        return inter / (area[:, None] + area[None, :] - inter)
    return inter / np.minimum(area[:, None], area[None, :])


def _by_score(rows: np.ndarray) -> np.ndarray:
    return rows[np.argsort(rows[:, 4])[::-1]]


def suppress(rows: np.ndarray, threshold: float, method: str = "union") -> np.ndarray:
    """mtcnn's suppression on rows ranked best first: a box stays unless a box ranked above
    it (kept or not) overlaps it by more than threshold."""
    if len(rows) == 0:
        return rows
    over = np.triu(_overlap(rows[:, :4], method) > threshold, k=1)
    return rows[~over.any(axis=0)]


def _square(rows: np.ndarray) -> np.ndarray:
    rows = rows.copy()
    w, h = rows[:, 2] - rows[:, 0], rows[:, 3] - rows[:, 1]
    side = np.maximum(w, h)
    rows[:, 0] += w * 0.5 - side * 0.5
    rows[:, 1] += h * 0.5 - side * 0.5
    rows[:, 2] = rows[:, 0] + side
    rows[:, 3] = rows[:, 1] + side
    return rows


def _refine(rows: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    rows = rows.copy()
    w = rows[:, 2] - rows[:, 0] + 1
    h = rows[:, 3] - rows[:, 1] + 1
    rows[:, :4] += offsets * np.stack([w, h, w, h], axis=-1)
    return rows


class Mtcnn:
    """Runs the three networks (callables: NHWC float32 batch -> outputs) on one image."""

    def __init__(self, pnet, rnet, onet) -> None:  # type: ignore[no-untyped-def]
        self.pnet, self.rnet, self.onet = pnet, rnet, onet

    def scales(self, height: int, width: int) -> np.ndarray:
        count = round(-((np.log(min(width, height) / 12) / np.log(SCALE_FACTOR)) + 1))
        return (12 / MIN_FACE) * SCALE_FACTOR ** np.arange(count)

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Faces in an RGB image, as DeepFace's mtcnn detector lists them."""
        height, width = rgb.shape[:2]
        img = normalise(rgb)
        # Rows: x1, y1, x2, y2, score (then ten landmark coordinates after ONet).
        rows = self._proposals(img, height, width)
        if len(rows) == 0:
            return []
        regression, score = self.rnet(crop_and_resize(img, rows, 24))
        rows[:, 4] = score[:, 1]
        rows = _refine(rows, regression)
        rows = rows[rows[:, 4] > RNET_THRESHOLD]
        rows = _square(suppress(_by_score(rows), RNET_NMS))
        if len(rows) == 0:
            return []
        regression, marks, score = self.onet(crop_and_resize(img, rows, 48))
        marks = marks.astype(np.float64)
        w = rows[:, 2:3] - rows[:, 0:1] + 1
        h = rows[:, 3:4] - rows[:, 1:2] + 1
        marks[:, 0:5] = w * marks[:, 0:5] + rows[:, 0:1] - 1
        marks[:, 5:10] = h * marks[:, 5:10] + rows[:, 1:2] - 1
        rows[:, 4] = score[:, 1]
        rows = np.concatenate([_refine(rows, regression), marks], axis=1)
        rows = rows[rows[:, 4] > ONET_THRESHOLD]
        rows = suppress(_by_score(rows), ONET_NMS, "min")
        rows[:, [0, 2]] = np.clip(rows[:, [0, 2]], 0, width - 1)
        rows[:, [1, 3]] = np.clip(rows[:, [1, 3]], 0, height - 1)
        return [_detection(row) for row in rows]

    def _proposals(self, img: np.ndarray, height: int, width: int) -> np.ndarray:
        """PNet's candidate boxes over the image pyramid, squared, after suppression."""
        proposals = []
        for scale in self.scales(height, width):
            scaled = _resize_area(img, int(height * scale), int(width * scale))
            regression, score = self.pnet(scaled[None])
            face = score[0, :, :, 1]
            ys, xs = np.nonzero(face > PNET_THRESHOLD)
            reg = regression[0, ys, xs].astype(np.float64)
            x1, y1 = xs * 2.0 + 1, ys * 2.0 + 1
            x2, y2 = xs * 2.0 + 12, ys * 2.0 + 12
            side = 11.0
            rows = np.stack(
                [
                    x1 + reg[:, 0] * side,
                    y1 + reg[:, 1] * side,
                    x2 + reg[:, 2] * side,
                    y2 + reg[:, 3] * side,
                    face[ys, xs],
                ],
                axis=1,
            )
            rows = _by_score(rows)
            rows[:, :4] /= scale
            proposals.append(suppress(rows, PNET_NMS_SCALE))
        rows = np.concatenate(proposals) if proposals else np.empty((0, 5))
        return _square(suppress(_by_score(rows), PNET_NMS_ALL))


def _detection(row: np.ndarray) -> Detection:
    """One row of ONet's output (box, score, ten landmark coordinates) as a Detection."""
    x, y, w, h = np.round([row[0], row[1], row[2] - row[0], row[3] - row[1]]).astype(int)
    eyes = np.round(row[5:15]).astype(int)
    # DeepFace swaps mtcnn's eye names (mtcnn names them as seen in the image).
    return Detection(
        int(x),
        int(y),
        int(w),
        int(h),
        float(row[4]),
        left_eye=(int(eyes[1]), int(eyes[6])),
        right_eye=(int(eyes[0]), int(eyes[5])),
        nose=(int(eyes[2]), int(eyes[7])),
    )


# Boxes (x1, y1, x2, y2) on the check photo for the refinement networks' sample patches:
# the face, looser, tighter, off-centre, and the whole picture.
SAMPLE_BOXES = (
    (178, 110, 351, 330),
    (150, 90, 380, 350),
    (190, 130, 330, 300),
    (100, 100, 300, 300),
    (0, 0, 511, 599),
    (250, 200, 330, 280),
    (178, 110, 351, 283),
    (200, 120, 360, 280),
)


def pnet_sample(rgb: np.ndarray) -> np.ndarray:
    """The proposal network's check input: the photo at one pyramid scale."""
    img = normalise(rgb)
    return _resize_area(img, int(img.shape[0] * 0.3), int(img.shape[1] * 0.3))[None]


def patch_sample(rgb: np.ndarray, size: int) -> np.ndarray:
    """The refinement networks' check input: patches of the photo as the pipeline cuts them."""
    return crop_and_resize(normalise(rgb), np.asarray(SAMPLE_BOXES, dtype=np.float64), size)
