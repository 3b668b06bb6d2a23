"""The face models doppel supports, where their weights live, and how to install them.

Missing weights are downloaded on first use (DeepFace's published files), with a
progress bar, into a `.part` file renamed when complete; `DOPPEL_OFFLINE=1` forbids it.
How the Keras networks among them are built for conversion to a faster runtime lives in
`doppel.faces.networks`.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from doppel import config
from doppel.config import FaceOptions
from doppel.errors import Remedy, UnknownModel, WeightsMissing
from doppel.faces.fetch import NETWORK_TIMEOUT, FetchFailed, fetch

if TYPE_CHECKING:
    from doppel.types import EmbeddingConfig

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
    input_size: int | None = None  # square side the network takes (recognition, attributes)
    size: int | None = None  # bytes of the published weights file, where known
    sha256: str | None = None  # its SHA-256, where known
    convertible: bool = False  # a Keras network doppel can run without TensorFlow
    # A recognition model's own pipeline for new galleries (galleries keep theirs):
    detector: str = "mtcnn"
    alignment: str = "eyes"  # see EmbeddingConfig.alignment
    flip: bool = False
    chosen_by: str = ""  # the measurement (or the outside source) behind those defaults


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
            convertible=True,
            chosen_by=(
                "not measurable here (no weights offline). DeepFace's published LFW "
                "benchmark (cosine, aligned): retinaface 98.4%, mtcnn 97.6%, dlib 97.0%; "
                "mtcnn is the best of those that work offline"
            ),
        ),
        ModelSpec(
            "Facenet",
            "recognition",
            128,
            "facenet_weights.h5",
            _RELEASES + "facenet_weights.h5",
            input_size=160,
            convertible=True,
        ),
        ModelSpec(
            "ArcFace",
            "recognition",
            512,
            "arcface_weights.h5",
            _RELEASES + "arcface_weights.h5",
            input_size=112,
            convertible=True,
        ),
        ModelSpec(
            "Dlib",
            "recognition",
            128,
            "dlib_face_recognition_resnet_model_v1.dat",
            "https://dlib.net/files/dlib_face_recognition_resnet_model_v1.dat.bz2",
            "weights ship with face_recognition_models; works offline",
            input_size=150,
            detector="dlib",
            alignment="five-point",
            flip=True,
            chosen_by=(
                "lfw-dev (572 photos, 100 people), leave-one-out rank-1 / verification at "
                "0.07: dlib detector + five-point chip + mirror average 99.8% / 96.7%; "
                "without the mirror 99.3% / 95.1%; DeepFace's own pipeline, dlib 96.3% / "
                "88.3%, mtcnn 81.5% / 84.2% (benchmarks/bench_accuracy.py)"
            ),
        ),
        ModelSpec(
            "VGG-Face",
            "recognition",
            4096,
            "vgg_face_weights.h5",
            _RELEASES + "vgg_face_weights.h5",
            input_size=224,
            convertible=True,
        ),
        ModelSpec(
            "GhostFaceNet",
            "recognition",
            512,
            "ghostfacenet_v1.h5",
            "https://github.com/HamadYA/GhostFaceNets/releases/download/v1.2/GhostFaceNet_W1.3_S1_ArcFace.h5",
            input_size=112,
            convertible=True,
        ),
        ModelSpec(
            "mtcnn",
            "detector",
            None,
            None,
            None,
            "Facenet512's default; weights ship with the mtcnn package",
        ),
        ModelSpec(
            "dlib",
            "detector",
            None,
            "shape_predictor_5_face_landmarks.dat",
            "https://dlib.net/files/shape_predictor_5_face_landmarks.dat.bz2",
            "Dlib's default: dlib's HOG detector, then (only where it finds no face) the "
            "full-size photo, 2x upsampling and the mmod CNN; weights ship with "
            "face_recognition_models",
        ),
        ModelSpec(
            "mmod",
            "detector",
            None,
            "mmod_human_face_detector.dat",
            "https://dlib.net/files/mmod_human_face_detector.dat.bz2",
            "dlib's CNN detector: finds turned faces HOG misses, 10-50x HOG's CPU; "
            "five-point alignment only",
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
            "Age",
            "attributes",
            None,
            "age_model_weights.h5",
            _RELEASES + "age_model_weights.h5",
            input_size=224,
            convertible=True,
        ),
        ModelSpec(
            "Gender",
            "attributes",
            None,
            "gender_model_weights.h5",
            _RELEASES + "gender_model_weights.h5",
            input_size=224,
            convertible=True,
        ),
        ModelSpec(
            "Race",
            "attributes",
            None,
            "race_model_single_batch.h5",
            _RELEASES + "race_model_single_batch.h5",
            input_size=224,
            convertible=True,
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
    return config.deepface_home() / ".deepface" / "weights"


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
        "mmod_human_face_detector.dat": frm.cnn_face_detector_model_location(),
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


def weights_path(name: str, kind: str | None, options: FaceOptions) -> Path:
    """The weights file of a model (installed, bundled or downloaded), for loading it."""
    path = require(name, kind, options)
    if path is None or not path.is_file():
        raise _missing(spec(name, kind), "it has no weights file")
    return path


ALIGNMENTS = ("eyes", "five-point")
# Detectors doppel runs itself through dlib; DeepFace's alignment knows nothing of mmod.
FIVE_POINT_ONLY = frozenset({"mmod"})


def dimension(model: str) -> int:
    """The length of a recognition model's vectors."""
    found = spec(model, "recognition").dimension
    assert found is not None  # every recognition model has one
    return found


def default_config(model: str, detector: str | None = None) -> EmbeddingConfig:
    """The configuration a new gallery of this model gets: the model's measured pipeline.

    A detector named by the user replaces the model's own; the alignment and mirror
    averaging stay the model's (five-point alignment works with any detector's box).
    """
    from doppel.types import EmbeddingConfig

    recognition = spec(model, "recognition")
    found = spec(detector or recognition.detector, "detector")
    if found.name == "skip":
        return EmbeddingConfig(recognition.name, "skip", align=False, flip=recognition.flip)
    alignment = "five-point" if found.name in FIVE_POINT_ONLY else recognition.alignment
    return EmbeddingConfig(
        recognition.name, found.name, True, alignment=alignment, flip=recognition.flip
    )


def config_for(
    model: str, detector: str | None, existing: EmbeddingConfig | None
) -> EmbeddingConfig:
    """The configuration to embed with: an existing gallery's own when the user asked for
    nothing else, so galleries made under older defaults keep growing the way they began."""
    if existing is not None:
        same_model = spec(model, "recognition").name == existing.model
        if same_model and (
            detector is None or spec(detector, "detector").name == existing.detector
        ):
            return existing
    return default_config(model, detector)


def check_config(config: EmbeddingConfig) -> None:
    """Refuse a configuration doppel cannot run."""
    if config.alignment not in ALIGNMENTS:
        raise UnknownModel(
            f"unknown alignment {config.alignment!r}; doppel knows {', '.join(ALIGNMENTS)}"
        )
    if config.detector in FIVE_POINT_ONLY and config.alignment != "five-point" and config.align:
        raise UnknownModel(f"the {config.detector} detector works with five-point alignment only")


def all_status() -> list[ModelStatus]:
    return [model_status(name, spec.kind) for name, spec in MODELS.items()]


def require(name: str, kind: str | None, options: FaceOptions) -> Path | None:
    """Make a model's weights available to DeepFace: present, linked from the package that
    ships them, or downloaded (as the options allow, from where they say); else explain in
    one line how to install them."""
    model = spec(name, kind)
    if model.weights is None:
        return None
    target = weights_dir() / model.weights
    if target.is_file():
        return target
    bundled = _bundled(model.weights)
    if bundled is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink():
            target.unlink()  # dangling: the package it pointed into has moved
        with contextlib.suppress(FileExistsError):  # another process linked it first
            target.symlink_to(bundled)
        return target
    return download(model, options)


def source_url(model: ModelSpec, options: FaceOptions) -> str | None:
    """Where the weights come from: DOPPEL_WEIGHTS_URL/FILE, else the published address."""
    if model.weights is None:
        return None
    if options.weights_url:
        return options.weights_url.rstrip("/") + "/" + model.weights
    return model.url


def _missing(model: ModelSpec, why: str) -> WeightsMissing:
    assert model.weights is not None
    return WeightsMissing(
        f"{model.name} weights are missing: {model.weights} is not in {weights_dir()}"
        f" ({why}); download it from {model.url}",
        remedy=Remedy.INSTALL_WEIGHTS,
        model=model.name,
    )


def download(
    model: ModelSpec,
    options: FaceOptions,
    progress: bool = True,
    timeout: float = NETWORK_TIMEOUT,
) -> Path:
    """Download a model's weights into DeepFace's folder (doppel.faces.fetch: through a
    `.part` file that is renamed only when complete, as long as announced, the known
    size, the known hash)."""
    assert model.weights is not None
    url = source_url(model, options)
    if options.offline:
        raise _missing(model, "downloads are off: DOPPEL_OFFLINE is set")
    if url is None or not url.endswith(model.weights):
        raise _missing(model, "doppel does not download this file itself")
    target = weights_dir() / model.weights
    try:
        fetch(url, target, size=model.size, sha256=model.sha256, progress=progress, timeout=timeout)
    except FetchFailed as exc:
        raise _missing(model, str(exc)) from None
    return target


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
