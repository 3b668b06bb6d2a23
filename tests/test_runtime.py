"""The fast runtime: conversion, its cache, the check against TensorFlow, the fallback,
mtcnn without TensorFlow, and a query path that never imports TensorFlow."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from doppel.config import FaceOptions
from doppel.faces import conversion, sessions
from doppel.faces.sessions import Candidate, candidates

ROOT = Path(__file__).resolve().parents[1]


def test_auto_takes_the_cuda_provider_first_then_the_cpu_then_tensorflow() -> None:
    gpu = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    cpu = ["CPUExecutionProvider"]
    assert candidates("auto", gpu, openvino=True) == [
        Candidate("onnx", "CUDA"),
        Candidate("onnx", "CPU"),
        Candidate("tensorflow"),
    ]
    assert candidates("auto", cpu, openvino=True) == [Candidate("onnx"), Candidate("tensorflow")]
    assert candidates("onnx", gpu, openvino=False)[0] == Candidate("onnx", "CUDA")
    assert candidates("openvino", cpu, openvino=True) == [
        Candidate("openvino"),
        Candidate("tensorflow"),
    ]
    # Asked for but not installed: TensorFlow, the fallback.
    assert candidates("openvino", cpu, openvino=False) == [Candidate("tensorflow")]
    assert candidates("tensorflow", gpu, openvino=True) == [Candidate("tensorflow")]
    assert candidates("auto", [], openvino=False) == [Candidate("tensorflow")]
    with pytest.raises(ValueError):
        candidates("tpu", cpu, openvino=False)


def test_the_providers_here_are_listed() -> None:
    providers = sessions.onnx_providers()
    assert "CPUExecutionProvider" in providers
    assert candidates("auto", providers, sessions.openvino_installed())[-1].runtime == "tensorflow"


@pytest.fixture(scope="module")
def converted(facenet_weights: Path) -> Iterator[Path]:
    """A DeepFace weights folder with Facenet512 (random weights) and mtcnn converted once,
    DEEPFACE_HOME pointing at it for this module's tests."""
    home = Path(tempfile.mkdtemp(prefix="doppel-runtime-"))
    weights = home / ".deepface" / "weights"
    weights.mkdir(parents=True)
    shutil.copyfile(facenet_weights, weights / "facenet512_weights.h5")
    saved = os.environ.get("DEEPFACE_HOME")
    os.environ["DEEPFACE_HOME"] = str(home)
    from doppel.faces import networks

    graph = networks.recognition_graph("Facenet512")
    assert graph is not None
    sessions.load(graph, "onnx")
    for mtcnn_graph in networks.mtcnn_graphs().values():
        sessions.load(mtcnn_graph, "onnx")
    yield weights
    if saved is None:
        os.environ.pop("DEEPFACE_HOME", None)
    else:
        os.environ["DEEPFACE_HOME"] = saved
    shutil.rmtree(home, ignore_errors=True)


@pytest.mark.slow
def test_the_converted_file_is_keyed_by_the_weights_hash_and_the_converter(
    converted: Path, tmp_path: Path
) -> None:
    from doppel.faces import networks

    graph = networks.recognition_graph("Facenet512")
    assert graph is not None
    path = conversion.converted_path(graph)
    assert path is not None and path.is_file() and path.parent == converted
    key = conversion.weights_hash(graph.weights, converted)
    version = conversion.converter_version()
    assert version is not None and version.startswith("tf2onnx-")
    assert path.name == f"Facenet512.{key}.{version}.onnx"
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["weights_blake2b"] == key and record["converter"] == version
    # The check ran and was remembered for this runtime.
    assert any(v >= sessions.MIN_COSINE for v in record["verified"].values())
    # Other weights (one byte changed) or another converter: another file.
    other = tmp_path / "facenet512_weights.h5"
    data = bytearray(graph.weights.read_bytes())
    data[-1] ^= 1
    other.write_bytes(bytes(data))
    moved = conversion.GraphSpec(
        graph.name, other, graph.input_shape, graph.build, graph.sample, tmp_path
    )
    assert conversion.converted_path(moved) != path
    assert conversion.converted_path(graph, "tf2onnx-0.0.1") != path
    assert conversion.status(graph).present and not conversion.status(moved).present


@pytest.mark.slow
def test_vectors_equal_deepface_represent_on_real_faces(converted: Path, unit_faces: Path) -> None:
    from deepface import DeepFace

    from doppel.faces.embed import Embedder
    from doppel.faces.imaging import load
    from doppel.types import EmbeddingConfig

    embedder = Embedder(EmbeddingConfig("Facenet512", "mtcnn"), options=FaceOptions(runtime="onnx"))
    crops = []
    for name in ("img1.jpg", "img2.jpg", "img5.jpg", "couple.jpg"):
        crops += [face.crop for face in embedder.detect(load(unit_faces / name))]
    crops.append(load(unit_faces / "img3.jpg", max_side=400).bgr)  # uint8, whole photo
    mine = embedder.embed_crops(crops)
    assert embedder.runtime_label == "ONNX Runtime"
    theirs = DeepFace.represent(
        img_path=crops, model_name="Facenet512", detector_backend="skip", enforce_detection=False
    )
    reference = np.asarray([row[0]["embedding"] for row in theirs], dtype=np.float32)
    cosine = (mine * reference).sum(1) / (
        np.linalg.norm(mine, axis=1) * np.linalg.norm(reference, axis=1)
    )
    assert len(crops) >= 6
    assert cosine.min() >= 0.99999, cosine


@pytest.mark.slow
def test_mtcnn_without_tensorflow_finds_what_deepface_finds(
    converted: Path, unit_faces: Path
) -> None:
    import cv2
    from deepface.modules import modeling

    from doppel.faces import networks

    ours = networks.mtcnn_detector("onnx")
    theirs = modeling.build_model(task="face_detector", model_name="mtcnn")
    names = sorted(p.name for p in unit_faces.glob("*.jpg"))[::4]
    lfw = sorted((unit_faces.parent / "lfw-dev").glob("*/*.jpg"))[::40]
    seen = 0
    for path in [unit_faces / name for name in names] + lfw:
        bgr = cv2.imread(str(path))
        side = max(bgr.shape[:2])
        if side > 640:
            bgr = cv2.resize(bgr, None, fx=640 / side, fy=640 / side, interpolation=cv2.INTER_AREA)
        want = [
            (r.x, r.y, r.w, r.h, tuple(r.left_eye), tuple(r.right_eye))
            for r in theirs.detect_faces(bgr)
        ]
        got = [
            (f.x, f.y, f.w, f.h, f.left_eye, f.right_eye)
            for f in ours.detect(np.ascontiguousarray(bgr[:, :, ::-1]))
        ]
        assert got == want, path.name
        seen += len(got)
    assert seen >= 20


@pytest.mark.slow
def test_a_converted_file_that_disagrees_is_not_used(converted: Path, tmp_path: Path) -> None:
    """A converted network whose outputs differ from TensorFlow's: one line, TensorFlow."""
    import onnx
    from onnx import numpy_helper

    from doppel.faces import networks

    graph = networks.recognition_graph("Facenet512")
    assert graph is not None
    path = conversion.converted_path(graph)
    assert path is not None
    broken = conversion.GraphSpec(
        graph.name, graph.weights, graph.input_shape, graph.build, graph.sample, tmp_path
    )
    target = conversion.converted_path(broken)
    assert target is not None
    for suffix in (".json", ".sample.npz"):
        shutil.copyfile(path.with_suffix(suffix), target.with_suffix(suffix))
    record = json.loads(target.with_suffix(".json").read_text())
    record["verified"] = {}
    target.with_suffix(".json").write_text(json.dumps(record))
    model = onnx.load(str(path))
    weight = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    values = numpy_helper.to_array(weight)
    noisy = values + np.random.default_rng(0).normal(0, values.std(), values.shape)
    weight.CopyFrom(numpy_helper.from_array(noisy.astype(values.dtype), weight.name))
    onnx.save(model, str(target))

    said: list[str] = []
    network = sessions.load(broken, "onnx", warn=said.append)
    assert network.candidate == Candidate("tensorflow")
    assert len(said) == 1 and "differs from TensorFlow" in said[0], said
    assert "ONNX Runtime" in said[0]
    # The verdict is remembered: the next process does not check again.
    again = json.loads(target.with_suffix(".json").read_text())["verified"]
    assert again and max(again.values()) < sessions.MIN_COSINE


QUERY_PATH = """
import json, sys
from pathlib import Path
from typer.testing import CliRunner
from doppel.cli import app

photo, people, target, gallery = sys.argv[1:5]
runner = CliRunner()
found = runner.invoke(app, ["find", photo, "-g", gallery, "--no-picture", "--json"])
assert found.exit_code == 0, found.output
after_find = sorted(m for m in ("tensorflow", "deepface.DeepFace", "keras", "mtcnn")
                    if m in sys.modules)
resembled = runner.invoke(app, ["resemble", people, target, "-m", "Facenet512",
                                "-o", str(Path(target).parent / "report")])
assert resembled.exit_code == 0, resembled.output
from fastapi.testclient import TestClient
from doppel.config import Settings
from doppel.web.app import create_app
with TestClient(create_app(Settings.from_env())) as client, open(photo, "rb") as handle:
    answer = client.post("/api/find", files={"file": ("q.jpg", handle, "image/jpeg")},
                         data={"gallery": gallery})
    assert answer.status_code == 200, answer.text
print(json.dumps({"after_find": after_find, "loaded": sorted(
    m for m in ("tensorflow", "deepface.DeepFace", "keras", "tf_keras", "mtcnn")
    if m in sys.modules)}))
"""


@pytest.mark.slow
def test_find_serve_and_resemble_never_import_tensorflow(
    converted: Path, database_url: str, unit_faces: Path, tmp_path: Path
) -> None:
    from doppel.config import Settings
    from doppel.store.db import connect
    from doppel.types import EmbeddingConfig
    from tests.helpers import ingest_folder

    folder = tmp_path / "gallery"
    people = tmp_path / "people"
    target = tmp_path / "target"
    for name in ("img1.jpg", "img2.jpg", "img3.jpg", "img5.jpg", "img6.jpg", "img7.jpg"):
        (folder).mkdir(exist_ok=True)
        (folder / name).symlink_to(unit_faces / name)
    for person, names in {"a": ("img1.jpg", "img2.jpg"), "b": ("img5.jpg", "img6.jpg")}.items():
        (people / person).mkdir(parents=True)
        for name in names:
            (people / person / name).symlink_to(unit_faces / name)
    target.mkdir()
    (target / "img4.jpg").symlink_to(unit_faces / "img4.jpg")
    with connect(Settings.from_env()) as conn:
        ingest_folder(conn, folder, "fn", EmbeddingConfig("Facenet512", "mtcnn"))
    env = {**os.environ, "DOPPEL_RUNTIME": "auto", "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            QUERY_PATH,
            str(unit_faces / "img4.jpg"),
            str(people),
            str(target),
            "fn",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded == {"after_find": [], "loaded": []}, loaded


@pytest.mark.slow
def test_a_gallery_embedded_under_tensorflow_finds_the_same_top5_with_onnx(
    converted: Path, conn: object, unit_faces: Path, tmp_path: Path
) -> None:
    from doppel.faces.embed import Embedder
    from doppel.faces.imaging import load
    from doppel.store.repository import Repository
    from doppel.types import EmbeddingConfig, Filters
    from tests.helpers import ingest_folder

    # Every other photo of deepface-unit in the gallery (its 13 people), every sixth as a
    # query: each costs a detection and an embedding under TensorFlow, which is the slow
    # runtime (half a second a face at batch 1).
    photos = sorted(unit_faces.glob("img*.jpg"))
    folder = tmp_path / "gallery"
    folder.mkdir()
    for path in photos[::2]:
        (folder / path.name).symlink_to(path)
    config = EmbeddingConfig("Facenet512", "mtcnn")
    ingest_folder(conn, folder, "tf", config, options=FaceOptions(runtime="tensorflow"))
    repo = Repository(conn)  # type: ignore[arg-type]
    gallery = repo.gallery("tf")
    assert repo.face_count(gallery) >= 25
    by_tf = Embedder(config, options=FaceOptions(runtime="tensorflow"))
    by_onnx = Embedder(config, options=FaceOptions(runtime="onnx"))
    queries = photos[::6]
    for path in queries:
        photo = load(path)
        tops = []
        for embedder in (by_tf, by_onnx):
            face = embedder.embed_query(photo, path.name)[0]
            matches = repo.search(gallery, face.embedding, 5, Filters(), exact=True)
            tops.append([m.face.source for m in matches])
        assert tops[0] == tops[1], path.name
    assert by_onnx.runtime_label == "ONNX Runtime" and by_tf.runtime_label == "TensorFlow"
    assert len(queries) >= 10


@pytest.mark.slow
def test_models_install_converts_and_models_shows_it(
    converted: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from doppel.cli import app

    monkeypatch.setenv("DOPPEL_RUNTIME", "auto")  # `--runtime` below wins over it
    runner = CliRunner()
    installed = runner.invoke(app, ["models", "install", "Facenet512"])
    assert installed.exit_code == 0, installed.output
    assert "Facenet512: runs on ONNX Runtime" in installed.stdout
    # Its default detector's networks too, so the first query converts nothing.
    assert "mtcnn-pnet: runs on ONNX Runtime" in installed.stdout
    listed = runner.invoke(app, ["models", "--wide"], env={"COLUMNS": "250"})
    row = next(line for line in listed.stdout.splitlines() if "Facenet512" in line)
    assert "ONNX Runtime" in row and "present" in row
    row = next(line for line in listed.stdout.splitlines() if line.startswith("│ mtcnn"))
    assert "ONNX Runtime" in row and "present" in row
    forced = runner.invoke(
        app, ["--runtime", "tensorflow", "models", "--wide"], env={"COLUMNS": "250"}
    )
    row = next(line for line in forced.stdout.splitlines() if "Facenet512" in line)
    assert "TensorFlow" in row
    bad = runner.invoke(app, ["--runtime", "tpu", "models"])
    assert bad.exit_code == 2


@pytest.mark.slow
def test_faces_are_cut_and_aligned_exactly_as_deepface_does(
    converted: Path, unit_faces: Path
) -> None:
    import cv2
    from deepface.models.Detector import FacialAreaRegion
    from deepface.modules import detection

    from doppel.faces import align, networks

    finder = networks.mtcnn_detector("onnx")
    compared = 0
    for name in ("img1.jpg", "couple.jpg", "img11_reflection.jpg", "selfie-many-people.jpg"):
        bgr = cv2.imread(str(unit_faces / name))
        bgr = cv2.resize(bgr, None, fx=0.3, fy=0.3, interpolation=cv2.INTER_AREA)
        for border in (0, bgr.shape[0] // 2):  # with DeepFace's black border, and without
            padded = cv2.copyMakeBorder(bgr, border, border, border, border, cv2.BORDER_CONSTANT)
            for face in finder.detect(np.ascontiguousarray(bgr[:, :, ::-1])):
                eyes = [(e[0] + border, e[1] + border) for e in (face.left_eye, face.right_eye)]
                region = FacialAreaRegion(
                    x=face.x + border,
                    y=face.y + border,
                    w=face.w,
                    h=face.h,
                    left_eye=eyes[0],
                    right_eye=eyes[1],
                    confidence=face.confidence,
                )
                for level in (True, False):
                    want = detection.extract_face(
                        region, padded, level, 0, border, border, "mtcnn"
                    ).img
                    got = align.extract_face(
                        padded, region.x, region.y, region.w, region.h, eyes[0], eyes[1], level
                    )
                    assert np.array_equal(got, want), (name, border, level)
                    compared += 1
    assert compared >= 20


@pytest.mark.slow
def test_openvino_when_asked_runs_the_same_file_and_passes_the_check(converted: Path) -> None:
    if not sessions.openvino_installed():
        pytest.skip("OpenVINO is not installed (pip install 'doppel[openvino]')")
    from doppel.faces import networks

    graph = networks.recognition_graph("Facenet512")
    assert graph is not None
    said: list[str] = []
    network = sessions.load(graph, "openvino", warn=said.append)
    assert network.candidate == Candidate("openvino") and not said
    path = conversion.converted_path(graph)
    assert path is not None
    assert sessions.agreement(network, path.with_suffix(".sample.npz")) >= sessions.MIN_COSINE
