"""Faces in a photo: boxes in file pixels and aligned crops, DeepFace's way or dlib's.

mtcnn runs as doppel's own TensorFlow-free copy of its pipeline (`doppel.faces.mtcnn`)
unless the runtime is tensorflow; dlib, mmod and opencv need no TensorFlow either; the
other detectors load it through DeepFace. Five-point alignment (the Dlib model's own)
cuts dlib's face chip from any detector's box (`doppel.faces.dlibface`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from doppel.config import FaceOptions
from doppel.errors import DetectorFailed, DoppelError
from doppel.faces import catalog, dlibface, quality
from doppel.faces.align import extract_face
from doppel.faces.conversion import quiet_tensorflow
from doppel.faces.imaging import MAX_ASPECT, MIN_FACE_SIDE, Photo
from doppel.types import Box, DetectedFace, FaceQuality

# Faces are found on a copy this size (a side); they are cut from the full photo.
DETECT_SIDE = 640
# DeepFace detectors whose code imports no TensorFlow.
WITHOUT_TENSORFLOW = frozenset({"dlib", "opencv", "skip"})


def warm_up_detector(detector: str, options: FaceOptions) -> None:
    """Load the detector's networks now rather than on the first photo."""
    if detector == "mtcnn" and options.runtime != "tensorflow":
        from doppel.faces import networks

        networks.mtcnn_detector(options.runtime)


def _regions(bgr: np.ndarray, detector: str, runtime: str) -> list[Any]:
    """DeepFace's FacialAreaRegion for each face the detector finds in a BGR image."""
    if detector == "mtcnn" and runtime != "tensorflow":
        from deepface.models.Detector import FacialAreaRegion

        from doppel.faces import networks

        found = networks.mtcnn_detector(runtime).detect(np.ascontiguousarray(bgr[:, :, ::-1]))
        return [
            FacialAreaRegion(
                x=f.x,
                y=f.y,
                w=f.w,
                h=f.h,
                left_eye=f.left_eye,
                right_eye=f.right_eye,
                confidence=f.confidence,
                nose=f.nose,
            )
            for f in found
        ]
    if detector not in WITHOUT_TENSORFLOW:
        quiet_tensorflow()
    from deepface.modules import modeling

    return list(modeling.build_model(task="face_detector", model_name=detector).detect_faces(bgr))


def detect_faces(
    photo: Photo,
    detector: str,
    options: FaceOptions,
    align: bool = True,
    alignment: str = "eyes",
) -> list[DetectedFace]:
    """Every face in the photo, largest first; an empty list when there is none.

    A native detector's failure on this photo is a DetectorFailed, never a crash
    later: the photo is passed over and the next one works.
    """
    height, width = photo.pixels.shape[:2]
    if detector == "skip":
        box = Box(0, 0, round(width * photo.scale), round(height * photo.scale))
        return [DetectedFace(0, box, 0.0, photo.bgr)]
    if min(height, width) < MIN_FACE_SIDE or max(height, width) > MAX_ASPECT * min(height, width):
        # Photos decoded by doppel never get here (imaging.check_face_room); a picture
        # made in memory might, and dlib's CNN detector corrupts memory on thin ones.
        return []
    try:
        if align and alignment == "five-point":
            return five_point_faces(photo, detector, options)
        return _eye_aligned_faces(photo, detector, options, align)
    except DoppelError:
        raise
    except Exception as exc:
        if not _native_failure(exc):
            raise
        # dlib's CNN keeps buffers between calls; a fresh one starts from clean state.
        dlibface.forget_mmod()
        reason = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise DetectorFailed(f"the {detector} detector failed on this photo ({reason})") from exc


def _native_failure(exc: BaseException) -> bool:
    """An error raised by a detector's compiled code (dlib, OpenCV), not by doppel's."""
    module = type(exc).__module__ or ""
    return isinstance(exc, RuntimeError) or module.startswith(("cv2", "dlib", "_dlib"))


# Over 60 lines: shrink, detect, then cut and align each face from the full image, in
# the order DeepFace does it; the steps share the scale and border they work in.
def _eye_aligned_faces(
    photo: Photo, detector: str, options: FaceOptions, align: bool
) -> list[DetectedFace]:
    """DeepFace's way: the detector's box, rotated so the eyes are level."""
    catalog.require(detector, "detector", options)
    import cv2

    bgr = photo.bgr
    height, width = bgr.shape[:2]
    # Find faces on a small copy (detection cost grows with pixels), then cut and
    # align each face from the full-resolution image, as DeepFace does on the file.
    shrink = max(height, width) / DETECT_SIDE if max(height, width) > DETECT_SIDE else 1.0
    small = bgr
    if shrink > 1.0:
        size = (max(1, round(width / shrink)), max(1, round(height / shrink)))
        small = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
    regions = _regions(small, detector, options.runtime)
    if not regions:
        return []
    # The black border lets alignment rotate faces near an edge (DeepFace does the same).
    border_y, border_x = (height // 2, width // 2) if align else (0, 0)
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
        if scaled.left_eye is not None and scaled.right_eye is not None:
            # DeepFace's extract_face, restated (doppel.faces.align) to spare its imports.
            cut = extract_face(
                padded,
                scaled.x,
                scaled.y,
                scaled.w,
                scaled.h,
                scaled.left_eye,
                scaled.right_eye,
                align,
            )
        else:  # DeepFace finds the eyes with OpenCV first
            from deepface.modules import detection

            cut = detection.extract_face(
                facial_area=scaled,
                img=padded,
                align=align,
                expand_percentage=0,
                width_border=border_x,
                height_border=border_y,
                detector_backend=detector,
            ).img
        if cut.size == 0:
            continue
        k = shrink * photo.scale  # small-copy pixels to file pixels
        box = Box(
            round(region.x * k), round(region.y * k), round(region.w * k), round(region.h * k)
        )
        crop = np.ascontiguousarray(cut, dtype=np.float32) / 255.0
        faces.append((box, float(region.confidence or 0.0), crop, _quality(region, shrink, cut)))
    faces.sort(key=lambda face: face[0].area, reverse=True)
    return [DetectedFace(i, *face) for i, face in enumerate(faces)]


def _quality(region: Any, shrink: float, cut: np.ndarray) -> FaceQuality:
    """A DeepFace-style region's quality: its box in decoded pixels, the crop's
    sharpness, frontalness where the detector gives the eyes and the nose."""
    eyes = (region.left_eye, region.right_eye)
    nose = getattr(region, "nose", None)
    known = eyes[0] is not None and eyes[1] is not None
    rgb = np.ascontiguousarray(cut[:, :, ::-1])  # the crop is BGR
    return quality.measure(rgb, min(region.w, region.h) * shrink, eyes if known else None, nose)


def _shrunk(pixels: np.ndarray) -> tuple[np.ndarray, float]:
    """A copy no side of which exceeds DETECT_SIDE, and its pixels-to-photo factor."""
    height, width = pixels.shape[:2]
    if max(height, width) <= DETECT_SIDE:
        return pixels, 1.0
    import cv2

    shrink = max(height, width) / DETECT_SIDE
    size = (max(1, round(width / shrink)), max(1, round(height / shrink)))
    return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA), shrink


def _dlib_boxes(rgb: np.ndarray, detector: str, options: FaceOptions) -> list[dlibface.Found]:
    """dlib's detectors, in photo pixels. For "dlib": HOG on the small copy, and only
    when that finds nothing, HOG on the whole photo (a small face in a big photo) or
    upsampled twice (a small photo), then the mmod CNN (a turned face): the extra cost
    falls on faceless photos alone."""
    small, shrink = _shrunk(rgb)
    if detector == "mmod":
        return [box.scaled(shrink) for box in dlibface.mmod(small, options)]
    found = [box.scaled(shrink) for box in dlibface.hog(small)]
    if not found:
        found = dlibface.hog(rgb) if shrink > 1.0 else dlibface.hog(rgb, upsample=2)
    if not found:
        found = [box.scaled(shrink) for box in dlibface.mmod(small, options)]
    return found


def _other_boxes(photo: Photo, detector: str, options: FaceOptions) -> list[dlibface.Found]:
    """Another detector's boxes (mtcnn, retinaface, ...), in photo pixels."""
    catalog.require(detector, "detector", options)
    small, shrink = _shrunk(photo.bgr)
    regions = _regions(small, detector, options.runtime)
    return [
        dlibface.Found(r.x, r.y, r.x + r.w, r.y + r.h, float(r.confidence or 0.0)).scaled(shrink)
        for r in regions
    ]


def five_point_faces(photo: Photo, detector: str, options: FaceOptions) -> list[DetectedFace]:
    """Faces aligned the way the Dlib model was trained: dlib's five landmarks, found in
    the detector's box on the full photo, mapped onto a 150-pixel chip.

    The detector looks at a copy at most DETECT_SIDE pixels wide (its cost grows with
    pixels); landmarks and chip come from the photo itself, so no sharpness is lost.
    """
    rgb = np.ascontiguousarray(photo.pixels)
    if detector in ("dlib", "mmod"):
        boxes = _dlib_boxes(rgb, detector, options)
    else:
        boxes = _other_boxes(photo, detector, options)
    height, width = rgb.shape[:2]
    visible = []
    for found in boxes:
        # Boxes may reach past the photo's edge; the part inside decides "largest", so a
        # face cut by the edge does not win over a whole face in the middle.
        left, top = max(0, found.left), max(0, found.top)
        right, bottom = min(width, found.right), min(height, found.bottom)
        k = photo.scale
        box = Box(
            round(left * k), round(top * k), round((right - left) * k), round((bottom - top) * k)
        )
        visible.append((box, found, min(right - left, bottom - top)))
    visible.sort(key=lambda seen: seen[0].area, reverse=True)
    faces = []
    for index, (box, found, side) in enumerate(visible):
        chip, points = dlibface.chip_and_landmarks(rgb, found, options)
        eyes = (points[0:2].mean(axis=0), points[2:4].mean(axis=0))
        measured = quality.measure(chip, side, eyes, points[4])
        # Crops travel as BGR in 0..1 like DeepFace's; dlibface rounds them back exactly.
        crop = np.ascontiguousarray(chip[:, :, ::-1], dtype=np.float32) / 255.0
        faces.append(DetectedFace(index, box, found.score, crop, measured))
    return faces
