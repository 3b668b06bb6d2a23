"""Cutting a detected face out and levelling its eyes, as DeepFace's `extract_face` does.

The same steps as DeepFace 0.0.103's `deepface.modules.detection.extract_face` (box
clipped, the face's surroundings taken with a black margin, rotated about their centre so
the eyes are level, the box projected into the rotated picture), written here because
importing that module also imports DeepFace's downloader stack (gdown, BeautifulSoup,
requests): a quarter of a second of every cold `doppel find`. A test compares the crops
with DeepFace's own on real photos, pixel for pixel.
"""

from __future__ import annotations

import numpy as np

Point = tuple[int, int]


def extract_face(
    img: np.ndarray,
    x: int,
    y: int,
    w: int,
    h: int,
    left_eye: Point,
    right_eye: Point,
    align: bool = True,
) -> np.ndarray:
    """The face's crop from img (box and eyes in img's pixels), eyes level when align."""
    # Clip the box first: a negative index would count from the far side.
    w = max(0, min(img.shape[1], x + w) - max(0, x))
    h = max(0, min(img.shape[0], y + h) - max(0, y))
    x, y = max(0, x), max(0, y)
    if not align:
        return img[int(y) : int(y + h), int(x) : int(x + w)]
    around, margin_x, margin_y = _surroundings(img, x, y, w, h)
    turned, angle = _level_eyes(around, left_eye, right_eye)
    x1, y1, x2, y2 = _project(
        (margin_x, margin_y, margin_x + w, margin_y + h), angle, around.shape[:2]
    )
    return turned[int(y1) : int(y2), int(x1) : int(x2)]


def _surroundings(img: np.ndarray, x: int, y: int, w: int, h: int) -> tuple[np.ndarray, int, int]:
    """The box grown by half its size on each side, black where it leaves the image."""
    margin_x, margin_y = int(0.5 * w), int(0.5 * h)
    x1, y1 = x - margin_x, y - margin_y
    x2, y2 = x + w + margin_x, y + h + margin_y
    if x1 >= 0 and y1 >= 0 and x2 <= img.shape[1] and y2 <= img.shape[0]:
        return img[y1:y2, x1:x2], margin_x, margin_y
    inside = img[max(0, y1) : min(img.shape[0], y2), max(0, x1) : min(img.shape[1], x2)]
    out = np.zeros((h + 2 * margin_y, w + 2 * margin_x, img.shape[2]), dtype=img.dtype)
    top, left = max(0, margin_y - y), max(0, margin_x - x)
    out[top : top + inside.shape[0], left : left + inside.shape[1]] = inside
    return out, margin_x, margin_y


def _level_eyes(img: np.ndarray, left_eye: Point, right_eye: Point) -> tuple[np.ndarray, float]:
    """img rotated about its centre so the line between the eyes is horizontal."""
    import cv2

    if img.shape[0] == 0 or img.shape[1] == 0:
        return img, 0.0
    angle = float(np.degrees(np.arctan2(left_eye[1] - right_eye[1], left_eye[0] - right_eye[0])))
    height, width = img.shape[:2]
    matrix = cv2.getRotationMatrix2D((width // 2, height // 2), angle, 1.0)
    turned = cv2.warpAffine(
        img,
        matrix,
        (width, height),
        flags=cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )
    return turned, angle


def _project(
    box: tuple[int, int, int, int], angle: float, size: tuple[int, ...]
) -> tuple[int, int, int, int]:
    """Where the box (x1, y1, x2, y2) lands after rotating a picture of size (h, w)."""
    sign = 1 if angle >= 0 else -1
    angle = abs(angle) % 360
    if angle == 0:
        return box
    radians = angle * np.pi / 180
    height, width = size[0], size[1]
    cx = (box[0] + box[2]) / 2 - width / 2
    cy = (box[1] + box[3]) / 2 - height / 2
    nx = cx * np.cos(radians) + cy * sign * np.sin(radians) + width / 2
    ny = -cx * sign * np.sin(radians) + cy * np.cos(radians) + height / 2
    half_w, half_h = (box[2] - box[0]) / 2, (box[3] - box[1]) / 2
    return (
        max(int(nx - half_w), 0),
        max(int(ny - half_h), 0),
        min(int(nx + half_w), width),
        min(int(ny + half_h), height),
    )
