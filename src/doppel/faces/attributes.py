"""Age, sex and race of faces with DeepFace's attribute models, for ingest and filters."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from doppel.config import DEFAULT_MAX_PIXELS, FaceOptions
from doppel.errors import NoFaceFound, Remedy
from doppel.faces import catalog, imaging
from doppel.types import Filters

# DeepFace's attribute models take DeepFace's eye-level crops, as mtcnn's.
ATTRIBUTES_DETECTOR = "mtcnn"

ATTRIBUTE_MODELS = ("Age", "Gender", "Race")
INPUT_SIDE = 224
SEX_OF = {"Woman": "F", "Man": "M"}


class AttributePredictor:
    """DeepFace's Age, Gender and Race models; weights are checked before anything loads."""

    def __init__(self, batch_size: int = 16, options: FaceOptions | None = None) -> None:
        for name in ATTRIBUTE_MODELS:
            catalog.require(name, "attributes", options or FaceOptions())
        self.batch_size = batch_size
        self._clients: dict[str, object] | None = None

    def _models(self) -> dict[str, object]:
        if self._clients is None:
            from doppel.faces.runtime import quiet_tensorflow

            quiet_tensorflow()
            from deepface.modules import modeling

            self._clients = {
                name: modeling.build_model(task="facial_attribute", model_name=name)
                for name in ATTRIBUTE_MODELS
            }
        return self._clients

    def predict_crops(self, crops: Sequence[np.ndarray]) -> list[tuple[int, str, str]]:
        """(age, sex F/M, race) for each face crop (BGR, values 0..1), in order."""
        if not len(crops):
            return []
        from deepface.models.demography.DemographyUtils import GENDER_LABELS, RACE_LABELS

        clients = self._models()
        out: list[tuple[int, str, str]] = []
        for start in range(0, len(crops), self.batch_size):
            batch = np.stack([_square(crop) for crop in crops[start : start + self.batch_size]])
            ages = np.atleast_1d(clients["Age"].predict(batch))  # type: ignore[attr-defined]
            sexes = np.atleast_2d(clients["Gender"].predict(batch))  # type: ignore[attr-defined]
            races = np.atleast_2d(clients["Race"].predict(batch))  # type: ignore[attr-defined]
            for age, sex, race in zip(ages, sexes, races, strict=True):
                out.append(
                    (
                        int(round(float(age))),
                        SEX_OF[GENDER_LABELS[int(np.argmax(sex))]],
                        RACE_LABELS[int(np.argmax(race))],
                    )
                )
        return out


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
