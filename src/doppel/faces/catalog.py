"""The face models doppel supports, where their weights live, and how to install them."""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from doppel.errors import Remedy, UnknownModel, WeightsMissing

_RELEASES = "https://github.com/serengil/deepface_models/releases/download/v1.0/"


@dataclass(frozen=True)
class ModelSpec:
    """A DeepFace model: what it does, its output size and its weights file."""

    name: str
    kind: str  # "recognition", "detector" or "attributes"
    dimension: int | None
    weights: str | None
    url: str | None
    note: str = ""
    input_size: int | None = None  # square side the recognition model takes


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec(
            "Facenet512",
            "recognition",
            512,
            "facenet512_weights.h5",
            _RELEASES + "facenet512_weights.h5",
            "default; best accuracy for its cost",
            input_size=160,
        ),
        ModelSpec(
            "Facenet",
            "recognition",
            128,
            "facenet_weights.h5",
            _RELEASES + "facenet_weights.h5",
            input_size=160,
        ),
        ModelSpec(
            "ArcFace",
            "recognition",
            512,
            "arcface_weights.h5",
            _RELEASES + "arcface_weights.h5",
            input_size=112,
        ),
        ModelSpec(
            "Dlib",
            "recognition",
            128,
            "dlib_face_recognition_resnet_model_v1.dat",
            "https://dlib.net/files/dlib_face_recognition_resnet_model_v1.dat.bz2",
            "weights ship with face_recognition_models; works offline",
            input_size=150,
        ),
        ModelSpec(
            "VGG-Face",
            "recognition",
            4096,
            "vgg_face_weights.h5",
            _RELEASES + "vgg_face_weights.h5",
            input_size=224,
        ),
        ModelSpec(
            "GhostFaceNet",
            "recognition",
            512,
            "ghostfacenet_v1.h5",
            "https://github.com/HamadYA/GhostFaceNets/releases/download/v1.2/GhostFaceNet_W1.3_S1_ArcFace.h5",
            input_size=112,
        ),
        ModelSpec(
            "mtcnn",
            "detector",
            None,
            None,
            None,
            "default detector; weights ship with the mtcnn package",
        ),
        ModelSpec(
            "dlib",
            "detector",
            None,
            "shape_predictor_5_face_landmarks.dat",
            "https://dlib.net/files/shape_predictor_5_face_landmarks.dat.bz2",
            "weights ship with face_recognition_models; fast, misses small faces",
        ),
        ModelSpec(
            "retinaface",
            "detector",
            None,
            "retinaface.h5",
            _RELEASES + "retinaface.h5",
            "most accurate, slowest on CPU",
        ),
        ModelSpec(
            "opencv",
            "detector",
            None,
            None,
            None,
            "fastest, least accurate; needs Haar cascade files (Debian: opencv-data)",
        ),
        ModelSpec(
            "skip",
            "detector",
            None,
            None,
            None,
            "no detection: for pre-aligned face crops such as FFHQ",
        ),
        ModelSpec(
            "Age", "attributes", None, "age_model_weights.h5", _RELEASES + "age_model_weights.h5"
        ),
        ModelSpec(
            "Gender",
            "attributes",
            None,
            "gender_model_weights.h5",
            _RELEASES + "gender_model_weights.h5",
        ),
        ModelSpec(
            "Race",
            "attributes",
            None,
            "race_model_single_batch.h5",
            _RELEASES + "race_model_single_batch.h5",
        ),
    ]
}

RECOGNITION_MODELS = [name for name, spec in MODELS.items() if spec.kind == "recognition"]
DETECTORS = [name for name, spec in MODELS.items() if spec.kind == "detector"]


@dataclass(frozen=True)
class ModelStatus:
    spec: ModelSpec
    path: Path | None
    present: bool


def weights_dir() -> Path:
    """DeepFace's weights folder: $DEEPFACE_HOME/.deepface/weights (home by default)."""
    home = os.environ.get("DEEPFACE_HOME") or str(Path.home())
    return Path(home) / ".deepface" / "weights"


def spec(name: str, kind: str | None = None) -> ModelSpec:
    """Look a model up by name (any letter case), optionally of one kind only."""
    for key, value in MODELS.items():
        if key == name and kind in (None, value.kind):
            return value
    for key, value in MODELS.items():
        if key.lower() == name.lower() and kind in (None, value.kind):
            return value
    what = {"recognition": "face recognition model", "detector": "face detector"}.get(
        kind or "", "model or detector"
    )
    raise UnknownModel(f"unknown {what} {name!r}", remedy=Remedy.LIST_MODELS)


def _bundled(file_name: str) -> Path | None:
    """The copy of a dlib weights file that face_recognition_models ships, if installed."""
    try:
        import face_recognition_models as frm
    except ImportError:
        return None
    bundled = {
        "dlib_face_recognition_resnet_model_v1.dat": frm.face_recognition_model_location(),
        "shape_predictor_5_face_landmarks.dat": frm.pose_predictor_five_point_model_location(),
    }
    path = bundled.get(file_name)
    return Path(path) if path and Path(path).is_file() else None


def model_status(name: str, kind: str | None = None) -> ModelStatus:
    model = spec(name, kind)
    if model.weights is None:
        return ModelStatus(model, None, True)
    target = weights_dir() / model.weights
    if target.is_file():
        return ModelStatus(model, target, True)
    bundled = _bundled(model.weights)
    return ModelStatus(model, bundled, bundled is not None)


def all_status() -> list[ModelStatus]:
    return [model_status(name, spec.kind) for name, spec in MODELS.items()]


def require(name: str, kind: str | None = None) -> None:
    """Make a model's weights available to DeepFace, or explain how to install them."""
    model = spec(name, kind)
    if model.weights is None:
        return
    target = weights_dir() / model.weights
    if target.is_file():
        return
    bundled = _bundled(model.weights)
    if bundled is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink():
            target.unlink()  # dangling: the package it pointed into has moved
        with contextlib.suppress(FileExistsError):  # another process linked it first
            target.symlink_to(bundled)
        return
    if os.environ.get("DOPPEL_ALLOW_DOWNLOAD", "") not in ("", "0"):
        return  # DeepFace downloads it on first use.
    raise WeightsMissing(
        f"{model.name} weights are missing: {model.weights} is not in {target.parent}; "
        f"download it from {model.url}",
        remedy=Remedy.INSTALL_WEIGHTS,
        model=model.name,
    )


def install(name: str, source: Path) -> Path:
    """Copy a downloaded weights file where DeepFace looks for it."""
    model = spec(name)
    if model.weights is None or model.name != name:
        # "dlib" the detector and "Dlib" the model differ only in case.
        model = next((m for m in MODELS.values() if m.name == name and m.weights), model)
    if model.weights is None:
        raise UnknownModel(f"{model.name} needs no weights file")
    if not source.is_file():
        raise WeightsMissing(f"{source} is not a file")
    if source.suffix == ".bz2":
        raise WeightsMissing(f"{source} is compressed; unpack it first (bunzip2 {source})")
    target = weights_dir() / model.weights
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(target.suffix + ".part")
    shutil.copyfile(source, tmp)
    tmp.replace(target)
    return target
