"""Attribute prediction: a clear error without weights, valid labels from DeepFace's models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import psycopg
import pytest
from PIL import Image

from doppel.cli.common import error_line
from doppel.config import FaceOptions
from doppel.errors import WeightsMissing
from doppel.faces import attributes
from doppel.types import RACES, Filters


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


def _face_crops(unit_faces: Path) -> list[np.ndarray]:
    """Real face crops (BGR, 0..1) as doppel cuts them for the attribute models."""
    from doppel.faces.embed import Embedder
    from doppel.faces.imaging import load
    from doppel.types import EmbeddingConfig

    finder = Embedder(
        EmbeddingConfig("Dlib", attributes.ATTRIBUTES_DETECTOR), options=FaceOptions(runtime="onnx")
    )
    crops: list[np.ndarray] = []
    for name in ("img1.jpg", "img2.jpg", "img5.jpg", "img6.jpg", "couple.jpg", "img11.jpg"):
        crops += [face.crop for face in finder.detect(load(unit_faces / name, max_side=800))]
    return crops


def _deepface_predictions(crops: list[np.ndarray]) -> dict[str, np.ndarray]:
    """DeepFace's own clients on TensorFlow: apparent ages, sex and race probabilities."""
    from deepface.modules import modeling

    batch = np.stack([attributes._square(crop) for crop in crops])
    clients = {
        name: modeling.build_model(task="facial_attribute", model_name=name)
        for name in attributes.ATTRIBUTE_MODELS
    }
    return {name: np.asarray(client.predict(batch)) for name, client in clients.items()}


def _labels(theirs: dict[str, np.ndarray]) -> list[tuple[int, str, str]]:
    from deepface.models.demography.DemographyUtils import GENDER_LABELS, RACE_LABELS

    return [
        (
            int(float(age)),  # DeepFace.analyze: int(apparent_age)
            attributes.SEX_OF[GENDER_LABELS[int(np.argmax(sex))]],
            RACE_LABELS[int(np.argmax(race))],
        )
        for age, sex, race in zip(theirs["Age"], theirs["Gender"], theirs["Race"], strict=True)
    ]


@pytest.mark.slow
def test_converted_models_predict_what_deepface_predicts_on_real_faces(
    attribute_home: Path, unit_faces: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attribute networks on ONNX Runtime, post-processed by doppel, against DeepFace's
    own Age, Gender and Race clients on TensorFlow (random weights: the numbers, not the
    meaning, are compared)."""
    monkeypatch.setenv("DEEPFACE_HOME", str(attribute_home))
    crops = _face_crops(unit_faces)
    assert len(crops) >= 7
    predictor = attributes.AttributePredictor(batch_size=4, options=FaceOptions(runtime="onnx"))
    mine = predictor.probabilities(crops)
    assert predictor.runtime_labels == dict.fromkeys(attributes.ATTRIBUTE_MODELS, "ONNX Runtime")
    theirs = _deepface_predictions(crops)
    ages = np.array([attributes.apparent_age(row) for row in mine["Age"]])
    assert np.abs(ages - theirs["Age"]).max() < 0.01
    assert ages.std() > 0.01  # the faces differ: a test that could not tell them apart fails
    for name in ("Gender", "Race"):
        assert mine[name].shape == theirs[name].shape
        assert np.abs(mine[name] - theirs[name]).max() < 1e-4, name
    labels = predictor.predict_crops(crops)
    assert labels == _labels(theirs)
    for age, sex, race in labels:
        assert isinstance(age, int) and 0 <= age <= 100
        assert sex in ("F", "M")
        assert race in RACES
    assert predictor.predict_crops([]) == []


NO_TENSORFLOW = """
import json, sys
from typer.testing import CliRunner
from doppel.cli import app

folder, photo = sys.argv[1:3]
runner = CliRunner()
added = runner.invoke(app, ["ingest", folder, "-g", "people", "-m", "Dlib", "-d", "mtcnn",
                            "--attributes"])
assert added.exit_code == 0, added.output
after_ingest = sorted(m for m in ("tensorflow", "deepface.DeepFace", "keras", "tf_keras")
                      if m in sys.modules)
found = runner.invoke(app, ["find", photo, "-g", "people", "--same-attributes",
                            "--no-picture", "--json"])
assert found.exit_code == 0, found.output
from doppel.faces.attributes import same_attribute_filters
from doppel.types import Filters
chosen = same_attribute_filters(__import__("pathlib").Path(photo), Filters())
print(json.dumps({"after_ingest": after_ingest, "loaded": sorted(
    m for m in ("tensorflow", "deepface.DeepFace", "keras", "tf_keras") if m in sys.modules),
    "sex": chosen.sex, "races": list(chosen.races)}))
"""


@pytest.mark.slow
def test_ingest_and_find_with_attributes_never_import_tensorflow(
    attribute_home: Path, database_url: str, unit_faces: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "people"
    folder.mkdir()
    for name in ("img1.jpg", "img5.jpg", "img6.jpg"):
        (folder / name).symlink_to(unit_faces / name)
    env = {
        **os.environ,
        "DEEPFACE_HOME": str(attribute_home),
        "DOPPEL_RUNTIME": "auto",
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    result = subprocess.run(
        [sys.executable, "-c", NO_TENSORFLOW, str(folder), str(unit_faces / "img2.jpg")],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["after_ingest"] == [] and seen["loaded"] == [], seen
    assert seen["sex"] in ("F", "M") and seen["races"][0] in RACES
    with psycopg.connect(database_url) as conn:
        stored = conn.execute("SELECT count(*) FROM faces WHERE sex IS NOT NULL").fetchone()
    assert stored is not None and stored[0] >= 3


@pytest.mark.slow
def test_a_converted_model_that_disagrees_falls_back_to_tensorflow_in_one_line(
    attribute_home: Path,
    unit_faces: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import onnx
    from onnx import numpy_helper

    from doppel.faces import conversion, networks

    # A weights folder like the session's, but Gender's converted file has noisy weights.
    source = attribute_home / ".deepface" / "weights"
    folder = tmp_path / ".deepface" / "weights"
    folder.mkdir(parents=True)
    for path in source.iterdir():
        if not path.name.startswith("Gender."):
            (folder / path.name).symlink_to(path)
    monkeypatch.setenv("DEEPFACE_HOME", str(attribute_home))
    good = conversion.converted_path(networks.attribute_graph("Gender"))
    assert good is not None and good.is_file()
    monkeypatch.setenv("DEEPFACE_HOME", str(tmp_path))
    target = conversion.converted_path(networks.attribute_graph("Gender"))
    assert target is not None and target.name == good.name and target.parent == folder
    (folder / good.with_suffix(".sample.npz").name).symlink_to(good.with_suffix(".sample.npz"))
    record = json.loads(good.with_suffix(".json").read_text())
    record["verified"] = {}
    target.with_suffix(".json").write_text(json.dumps(record))
    # The last layer's weights and bias negated: the scores change sign, so the sexes
    # swap. (Noise in one large weight could leave saturated probabilities, and so the
    # check's cosine, nearly unchanged.)
    model = onnx.load(str(good))
    last = [node for node in model.graph.node if node.op_type in ("Conv", "MatMul", "Gemm")][-1]
    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    for name in last.input[1:]:
        tensor = initializers[name]
        values = numpy_helper.to_array(tensor)
        tensor.CopyFrom(numpy_helper.from_array((-values).astype(values.dtype), name))
    onnx.save(model, str(target))
    del model, initializers

    crops = _face_crops(unit_faces)[:4]
    capsys.readouterr()
    predictor = attributes.AttributePredictor(options=FaceOptions(runtime="onnx"))
    mine = predictor.probabilities(crops)
    said = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(said) == 1 and "Gender" in said[0] and "differs from TensorFlow" in said[0], said
    assert predictor.runtime_labels == {
        "Age": "ONNX Runtime",
        "Gender": "TensorFlow",
        "Race": "ONNX Runtime",
    }
    theirs = _deepface_predictions(crops)
    assert np.abs(mine["Gender"] - theirs["Gender"]).max() < 1e-5
    assert predictor.predict_crops(crops) == _labels(theirs)


@pytest.mark.slow
def test_models_lists_the_attribute_networks_with_their_runtime_and_converted_file(
    attribute_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from doppel.cli import app

    monkeypatch.setenv("DEEPFACE_HOME", str(attribute_home))
    monkeypatch.setenv("DOPPEL_RUNTIME", "auto")
    runner = CliRunner()
    listed = runner.invoke(app, ["models", "--wide"], env={"COLUMNS": "250"})
    assert listed.exit_code == 0, listed.output
    for name in attributes.ATTRIBUTE_MODELS:
        row = next(line for line in listed.stdout.splitlines() if line.startswith(f"│ {name} "))
        assert "ONNX Runtime" in row and "present" in row and "not yet" not in row, row
    forced = runner.invoke(
        app, ["--runtime", "tensorflow", "models", "--wide"], env={"COLUMNS": "250"}
    )
    row = next(line for line in forced.stdout.splitlines() if line.startswith("│ Gender "))
    assert "TensorFlow" in row and "not used" in row, row
