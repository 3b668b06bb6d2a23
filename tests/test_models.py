"""Model weights: offline Dlib, a clear error for missing weights, installing from a file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from doppel.cli import app
from doppel.cli.common import error_line
from doppel.config import FaceOptions
from doppel.errors import UnknownModel, WeightsMissing
from doppel.faces.catalog import install, model_status, require, spec
from doppel.faces.embed import Embedder
from doppel.faces.imaging import load
from doppel.types import EmbeddingConfig

runner = CliRunner()
OFFLINE = FaceOptions(offline=True)  # as in every test: never a download


@pytest.fixture
def empty_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DEEPFACE_HOME", str(tmp_path / "df"))
    return tmp_path / "df" / ".deepface" / "weights"


def test_missing_weights_name_the_file_the_folder_and_the_command(empty_weights: Path) -> None:
    with pytest.raises(WeightsMissing) as caught:
        require("Facenet512", "recognition", OFFLINE)
    message = str(caught.value)
    assert "facenet512_weights.h5" in message
    assert str(empty_weights) in message
    assert "doppel models install Facenet512 FILE" in error_line(caught.value)


def test_missing_weights_stop_find_with_one_line(
    empty_weights: Path, database_url: str, unit_faces: Path
) -> None:
    result = runner.invoke(app, ["ingest", str(unit_faces), "-g", "fn", "-m", "Facenet512"])
    assert result.exit_code == 1
    assert "doppel models install Facenet512" in result.stderr


def test_dlib_weights_come_from_the_installed_package(empty_weights: Path) -> None:
    require("Dlib", "recognition", OFFLINE)
    require("dlib", "detector", OFFLINE)
    assert (empty_weights / "dlib_face_recognition_resnet_model_v1.dat").exists()
    assert (empty_weights / "shape_predictor_5_face_landmarks.dat").exists()
    assert model_status("Dlib", "recognition").present


def test_models_command_lists_status(empty_weights: Path) -> None:
    result = runner.invoke(app, ["models", "--wide"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    facenet = next(line for line in result.stdout.splitlines() if "Facenet512" in line)
    assert "MISSING" in facenet and "512" in facenet
    assert "doppel models install" in result.stdout


def test_install_then_facenet512_embeds_with_real_architecture(
    empty_weights: Path, facenet_weights: Path, unit_faces: Path
) -> None:
    result = runner.invoke(app, ["models", "install", "Facenet512", str(facenet_weights)])
    assert result.exit_code == 0, result.output
    assert (
        empty_weights / "facenet512_weights.h5"
    ).stat().st_size == facenet_weights.stat().st_size
    embedder = Embedder(EmbeddingConfig("Facenet512", "mtcnn"))
    faces = embedder.embed_photo(load(unit_faces / "img1.jpg"))
    assert len(faces) == 1 and faces[0].embedding.shape == (512,)
    assert np.isfinite(faces[0].embedding).all()


def test_install_refuses_a_missing_file(empty_weights: Path, tmp_path: Path) -> None:
    with pytest.raises(WeightsMissing, match="is not a file"):
        install("Facenet512", tmp_path / "nope.h5")


def test_unknown_names() -> None:
    with pytest.raises(UnknownModel, match="FaceNet9000") as caught:
        spec("FaceNet9000")
    assert "`doppel models` lists" in error_line(caught.value)
    with pytest.raises(UnknownModel, match="face detector"):
        Embedder(EmbeddingConfig("Dlib", "Facenet512"))
    assert spec("dlib", "detector").kind == "detector"
    assert spec("dlib", "recognition").name == "Dlib"


@pytest.mark.slow
def test_dlib_model_separates_people(unit_faces: Path) -> None:
    embedder = Embedder(EmbeddingConfig("Dlib", "mtcnn"))
    same_a, same_b, other = (
        embedder.embed_photo(load(unit_faces / name))[0].embedding
        for name in ("img1.jpg", "img2.jpg", "img3.jpg")
    )

    def cosine(a: np.ndarray, b: np.ndarray) -> float:
        return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))

    assert cosine(same_a, same_b) > cosine(same_a, other)


@pytest.mark.slow
def test_blank_photo_has_no_face(tmp_path: Path) -> None:
    path = tmp_path / "blank.png"
    Image.new("RGB", (300, 300), "white").save(path)
    assert Embedder(EmbeddingConfig("Dlib", "mtcnn")).embed_photo(load(path)) == []
