"""Attribute prediction: a clear error without weights, valid labels from DeepFace's models."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from doppel.cli.common import error_line
from doppel.dump import rows
from doppel.errors import WeightsMissing
from doppel.faces import attributes
from doppel.types import Filters

FILES = {
    "Age": "age_model_weights.h5",
    "Gender": "gender_model_weights.h5",
    "Race": "race_model_single_batch.h5",
}


def test_missing_weights_name_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEEPFACE_HOME", str(tmp_path))
    monkeypatch.delenv("DOPPEL_ALLOW_DOWNLOAD", raising=False)
    with pytest.raises(WeightsMissing, match=r"age_model_weights\.h5") as caught:
        attributes.AttributePredictor()
    assert "doppel models install Age FILE" in error_line(caught.value)


def test_same_attributes_without_weights_fails_before_any_search(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEEPFACE_HOME", str(tmp_path))
    photo = tmp_path / "any.png"  # readable: the photo is checked before the models
    Image.new("RGB", (64, 64), (120, 90, 70)).save(photo)
    with pytest.raises(WeightsMissing) as caught:
        attributes.same_attribute_filters(photo, Filters())
    assert "doppel models install" in error_line(caught.value)


def _write_random_attribute_weights(folder: Path) -> None:
    """DeepFace's own Age, Gender and Race architectures with random weights, as legacy HDF5."""
    import h5py
    from deepface.commons import weight_utils

    try:
        from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group
    except ImportError:  # tf-keras layout
        from tf_keras.src.saving.legacy.hdf5_format import save_weights_to_hdf5_group

    folder.mkdir(parents=True, exist_ok=True)
    saved = (weight_utils.download_weights_if_necessary, weight_utils.load_model_weights)
    weight_utils.download_weights_if_necessary = lambda **kwargs: ""  # type: ignore[assignment]
    weight_utils.load_model_weights = lambda model, weight_file: model  # type: ignore[assignment]
    try:
        for name, file_name in FILES.items():
            module = importlib.import_module(f"deepface.models.demography.tf.{name}")
            model = module.load_model()
            with h5py.File(folder / file_name, "w") as handle:
                save_weights_to_hdf5_group(handle, model)
            del model
    finally:
        weight_utils.download_weights_if_necessary, weight_utils.load_model_weights = saved


@pytest.mark.slow
def test_random_weight_models_give_valid_labels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEEPFACE_HOME", str(tmp_path))
    _write_random_attribute_weights(tmp_path / ".deepface" / "weights")
    rng = np.random.default_rng(0)
    crops = [rng.random((160, 160, 3)), rng.random((90, 120, 3)), rng.random((224, 224, 3))]
    labels = attributes.AttributePredictor(batch_size=2).predict_crops(crops)
    assert len(labels) == 3
    for age, sex, race in labels:
        assert isinstance(age, int) and 0 <= age <= 100
        assert sex in ("F", "M")
        assert race in rows.RACES
    assert attributes.AttributePredictor().predict_crops([]) == []
