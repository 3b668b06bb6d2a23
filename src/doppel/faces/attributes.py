"""Age, sex and race of faces with DeepFace's attribute models, for ingest and filters.

DeepFace's Age, Gender and Race models are VGG-Face networks ending in a softmax. Each
runs on the runtime `doppel.faces.sessions` picks, as the recognition networks do: ONNX
Runtime by default, with no TensorFlow import; TensorFlow when asked, or when the
converted copy fails its check against TensorFlow. DeepFace's own post-processing then
reads the probabilities (its framework-free helpers and labels, imported without
TensorFlow): the apparent age is the expected value over the 101 age classes, sex and
race are the most probable of DeepFace's labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from doppel.config import DEFAULT_MAX_PIXELS, FaceOptions
from doppel.errors import NoFaceFound, Remedy
from doppel.faces import catalog, imaging
from doppel.types import Filters

if TYPE_CHECKING:
    from doppel.faces.sessions import Network

# DeepFace's attribute models take DeepFace's eye-level crops, as mtcnn's.
ATTRIBUTES_DETECTOR = "mtcnn"

ATTRIBUTE_MODELS = ("Age", "Gender", "Race")
INPUT_SIDE = 224
SEX_OF = {"Woman": "F", "Man": "M"}


class AttributePredictor:
    """DeepFace's Age, Gender and Race models; weights are checked before anything loads,
    the networks load on first use."""

    def __init__(
        self,
        batch_size: int = 16,
        options: FaceOptions | None = None,
        threads: int | None = None,
    ) -> None:
        # The runtime and where missing weights come from (Settings.face_options), as
        # the Embedder takes them.
        self.options = options or FaceOptions()
        for name in ATTRIBUTE_MODELS:
            catalog.require(name, "attributes", self.options)
        self.batch_size = batch_size
        self.threads = threads  # the networks' threads; None lets the runtime decide
        self._networks: dict[str, Network] | None = None

    @property
    def runtime_labels(self) -> dict[str, str]:
        """The runtime each model runs on once loaded ("ONNX Runtime", "TensorFlow")."""
        return {name: net.candidate.label for name, net in (self._networks or {}).items()}

    def warm_up(self) -> None:
        """Load (converting and checking, the first time) the three networks now."""
        if self._networks is not None:
            return
        from doppel.faces import networks, sessions

        requested = self.options.runtime
        self._networks = {
            name: sessions.load(networks.attribute_graph(name), requested, threads=self.threads)
            for name in ATTRIBUTE_MODELS
        }

    def probabilities(self, crops: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """Each model's softmax outputs for the crops (BGR, values 0..1): Age (n, 101),
        Gender (n, 2), Race (n, 6), in DeepFace's label order."""
        self.warm_up()
        assert self._networks is not None
        parts: dict[str, list[np.ndarray]] = {name: [] for name in ATTRIBUTE_MODELS}
        for start in range(0, len(crops), self.batch_size):
            batch = np.stack([_square(crop) for crop in crops[start : start + self.batch_size]])
            for name, network in self._networks.items():
                parts[name].append(np.asarray(network(batch)[0], dtype=np.float32))
        return {name: np.concatenate(found) for name, found in parts.items()}

    def predict_crops(self, crops: Sequence[np.ndarray]) -> list[tuple[int, str, str]]:
        """(age, sex F/M, race) for each face crop (BGR, values 0..1), in order."""
        if not len(crops):
            return []
        from deepface.models.demography.DemographyUtils import GENDER_LABELS, RACE_LABELS

        found = self.probabilities(crops)
        return [
            (
                # Whole years cut down, as DeepFace.analyze reports them (and as the
                # original project's dump holds them), so filters mean the same on both.
                int(apparent_age(age)),
                SEX_OF[GENDER_LABELS[int(np.argmax(sex))]],
                RACE_LABELS[int(np.argmax(race))],
            )
            for age, sex, race in zip(found["Age"], found["Gender"], found["Race"], strict=True)
        ]


def apparent_age(probabilities: np.ndarray) -> float:
    """DeepFace's apparent age of one face: the expected value over the 101 age classes."""
    from deepface.models.demography.DemographyUtils import find_apparent_age

    return float(find_apparent_age(np.asarray(probabilities)))


def _square(crop: np.ndarray) -> np.ndarray:
    """A crop scaled to fit 224x224 and padded with black, as DeepFace.analyze feeds it."""
    from deepface.modules.preprocessing import resize_image

    return np.asarray(
        resize_image(img=np.asarray(crop, dtype=np.float32), target_size=(INPUT_SIDE, INPUT_SIDE))
    )[0]


def predict_photo(
    photo_path: Path,
    detector: str | None = ATTRIBUTES_DETECTOR,
    predictor: AttributePredictor | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    options: FaceOptions | None = None,
) -> tuple[int, str, str]:
    """Age, sex and race of the largest face in a photo."""
    from doppel.faces.embed import Embedder
    from doppel.types import EmbeddingConfig

    photo = imaging.load(photo_path, max_pixels=max_pixels)  # a bad photo fails before any model
    predictor = predictor or AttributePredictor(options=options)
    # The model is never loaded: only detection is used here.
    config = EmbeddingConfig("Dlib", detector or ATTRIBUTES_DETECTOR)
    faces = Embedder(config, options=options).detect(photo)
    if not faces:
        raise NoFaceFound(
            f"{photo_path}: no face found to predict sex and race from; try a clearer photo",
            remedy=Remedy.NO_SAME_ATTRIBUTES,
        )
    return predictor.predict_crops([faces[0].crop])[0]


def same_attribute_filters(
    photo: Path,
    filters: Filters,
    detector: str | None = ATTRIBUTES_DETECTOR,
    predictor: AttributePredictor | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    options: FaceOptions | None = None,
) -> Filters:
    """The filters plus the query face's predicted sex and race (explicit ones win)."""
    _, sex, race = predict_photo(photo, detector, predictor, max_pixels, options)
    return Filters(
        filters.sex or sex,
        filters.races or (race,),
        filters.age_min,
        filters.age_max,
        filters.exclude_hashes,
    )
