"""Helpers for tests and benchmarks that need models or data doppel cannot download here."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np


def write_random_facenet512(path: Path, seed: int = 0) -> Path:
    """Write Facenet512's architecture with random weights as a legacy HDF5 weights file.

    DeepFace loads it exactly like the published `facenet512_weights.h5`; the compute
    per face is the same, the embeddings are meaningless.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import h5py
    import tensorflow as tf
    from deepface.models.facial_recognition.tf.Facenet import InceptionResNetV1

    tf.random.set_seed(seed)
    np.random.seed(seed)
    model = InceptionResNetV1(dimension=512)
    # DeepFace builds with tf-keras or Keras 3 depending on what was imported first;
    # each has its own writer of the legacy layout.
    if type(model).__module__.startswith("tf_keras"):
        from tf_keras.src.saving.legacy.hdf5_format import save_weights_to_hdf5_group
    else:
        from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        save_weights_to_hdf5_group(handle, model)
    return path


ATTRIBUTE_WEIGHTS = {
    "Age": "age_model_weights.h5",
    "Gender": "gender_model_weights.h5",
    "Race": "race_model_single_batch.h5",
}


def write_random_attribute_weights(folder: Path, seed: int = 0) -> None:
    """DeepFace's own Age, Gender and Race architectures with random weights, written as
    the legacy HDF5 files DeepFace loads (about 0.5 GB each), one model at a time.

    The three share one random VGG-Face trunk and differ in their last layer (the
    published ones share the architecture; sharing the weights too lets the tests derive
    two converted networks from the first: install_attributes_like). That last layer is
    scaled so that the probabilities differ between classes and faces (untouched, a
    random VGG gives every class almost the same probability)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import importlib

    import h5py
    import tensorflow as tf
    from deepface.commons import weight_utils

    folder.mkdir(parents=True, exist_ok=True)
    # Build each architecture without its weights: no download, no loading.
    saved = (weight_utils.download_weights_if_necessary, weight_utils.load_model_weights)
    weight_utils.download_weights_if_necessary = lambda **kwargs: ""  # type: ignore[assignment]
    weight_utils.load_model_weights = lambda model, weight_file: model  # type: ignore[assignment]
    trunk: list[list[np.ndarray]] = []
    features = np.zeros(0)
    try:
        for offset, (name, file_name) in enumerate(ATTRIBUTE_WEIGHTS.items()):
            tf.random.set_seed(seed + offset)
            np.random.seed(seed + offset)
            module = importlib.import_module(f"deepface.models.demography.tf.{name}")
            model = module.load_model()
            layers = model.layers[: _head_index(model)]
            if not trunk:
                trunk = [layer.get_weights() for layer in layers]
                features = _trunk_features(model)
            for layer, weights in zip(layers, trunk, strict=True):
                layer.set_weights(weights)
            _spread_the_scores(model, features)
            if type(model).__module__.startswith("tf_keras"):
                from tf_keras.src.saving.legacy.hdf5_format import save_weights_to_hdf5_group
            else:
                from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group
            with h5py.File(folder / file_name, "w") as handle:
                save_weights_to_hdf5_group(handle, model)
            del model
    finally:
        weight_utils.download_weights_if_necessary, weight_utils.load_model_weights = saved


def _head_index(model: Any) -> int:
    """Where an attribute network's own last layer ("predictions") sits in its layers."""
    return [layer.name for layer in model.layers].index("predictions")


def _trunk_features(model: Any) -> np.ndarray:
    """What an attribute network's trunk makes of real face crops: its last layer's input."""
    from doppel.faces.conversion import face_sample

    # The model's own Keras (tf-keras or Keras 3, whichever DeepFace built it with).
    if type(model).__module__.startswith("tf_keras"):
        import tf_keras as keras
    else:
        import keras  # type: ignore[no-redef]
    trunk = keras.Model(model.inputs, model.layers[_head_index(model) - 1].output)
    return np.asarray(trunk(face_sample(224)))


def _spread_the_scores(model: Any, features: np.ndarray) -> None:
    """Scale the last layer of a random attribute network so its scores (before the
    softmax) spread with a standard deviation of 4 over real face crops (their trunk
    features: the last layer is a 1x1 convolution)."""
    layer = model.get_layer("predictions")
    kernel, bias = layer.get_weights()
    spread = float(np.std(features.reshape(len(features), -1) @ kernel[0, 0] + bias))
    layer.set_weights([kernel * (4 / spread), bias * (4 / spread)])


def install_attributes_like(source: str, names: tuple[str, ...]) -> list[str]:
    """`doppel models install NAME` for attribute networks whose trunk is the already
    converted `source`'s (write_random_attribute_weights), in DEEPFACE_HOME; what each
    install said. Runs TensorFlow: call it in a process of its own.

    tf2onnx's output for such a network is the source's graph with another last layer, so
    that graph is made here in its place (a VGG conversion costs about a minute and
    6 GB); the rest is doppel's own: the network built by DeepFace, TensorFlow's outputs
    on the check sample stored beside the file, and the check of ONNX Runtime against
    them, which a wrong last layer fails. benchmarks/bench_attributes.py converts all
    three networks with tf2onnx."""
    import onnx
    import tf2onnx.convert
    from typer.testing import CliRunner

    from doppel.cli import app
    from doppel.faces import conversion, networks

    converted = conversion.converted_path(networks.attribute_graph(source))
    assert converted is not None and converted.is_file(), f"convert {source} first"
    graph = onnx.load(str(converted))
    made: list[str] = []

    def from_function(*args: Any, **kwargs: Any) -> tuple[Any, None]:
        _put_last_layer(graph, networks.attribute_graph(wanted).weights)
        made.append(wanted)
        return graph, None

    saved = tf2onnx.convert.from_function
    tf2onnx.convert.from_function = from_function
    said = []
    try:
        for wanted in names:
            done = CliRunner().invoke(app, ["models", "install", wanted])
            assert done.exit_code == 0 and "using TensorFlow" not in done.output, done.output
            said.append(done.stdout)
    finally:
        tf2onnx.convert.from_function = saved
    assert made == list(names), made  # each was made here, none converted by tf2onnx
    return said


def _put_last_layer(graph: Any, weights: Path) -> None:
    """Put the last layer ("predictions", a 1x1 convolution) of an attribute network's
    weights file into the ONNX graph of another (tf2onnx's, of the same trunk)."""
    import h5py
    from onnx import numpy_helper

    head: dict[str, np.ndarray] = {}

    def keep(path: str, item: Any) -> None:
        if isinstance(item, h5py.Dataset):  # "predictions/kernel" or ".../kernel:0"
            head[path.split("/")[-1].split(":")[0]] = item[()]

    with h5py.File(weights, "r") as handle:
        handle["predictions"].visititems(keep)
    kernel, bias = head["kernel"], head["bias"]  # the kernel in Keras's HWIO order
    classes = graph.graph.output[0].type.tensor_type.shape.dim[1]
    # Flatten's target shape (-1, classes), a two-number initializer as tf2onnx writes it.
    flat = next(
        tensor
        for tensor in graph.graph.initializer
        if list(tensor.dims) == [2]
        and numpy_helper.to_array(tensor).tolist() == [-1, classes.dim_value]
    )
    shape = np.array([-1, len(bias)], dtype=numpy_helper.to_array(flat).dtype)
    flat.CopyFrom(numpy_helper.from_array(shape, flat.name))
    classes.dim_value = len(bias)
    last = [node for node in graph.graph.node if node.op_type == "Conv"][-1]
    tensors = {tensor.name: tensor for tensor in graph.graph.initializer}
    for name, values in ((last.input[1], kernel.transpose(3, 2, 0, 1)), (last.input[2], bias)):
        tensors[name].CopyFrom(numpy_helper.from_array(values.astype(np.float32), name))


def clustered_vectors(
    n: int, dim: int = 512, per_identity: int = 5, noise: float = 0.35, seed: int = 0
) -> np.ndarray:
    """Vectors shaped like face embeddings: many identities, a few noisy samples of each.

    Each identity is a random unit direction; its samples scatter around it, so
    same-identity cosine similarity is high and different identities are far apart.
    """
    rng = np.random.default_rng(seed)
    identities = max(1, n // per_identity)
    centres = rng.standard_normal((identities, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    owner = rng.integers(0, identities, size=n)
    samples = centres[owner] + noise * rng.standard_normal((n, dim)).astype(np.float32) / np.sqrt(
        dim
    )
    samples /= np.linalg.norm(samples, axis=1, keepdims=True)
    return samples.astype(np.float32)


# lfw-dev's people with a photo dlib's HOG finds no face in, which doppel's fallback
# detectors find (docs/benchmarks.md: Ricardo_Lagos_0004 with upsampling, the others
# with the mmod CNN).
LFW_HOG_MISSES = ("Claudia_Pechstein", "Colin_Montgomerie", "Luis_Horna", "Ricardo_Lagos")


def lfw_dev_sample(people: list[str]) -> set[str]:
    """The people of lfw-dev's sample ("lfw-dev-sample" in benchmarks/bench_accuracy.py,
    the accuracy test's set): every tenth from the fifth in name order, and those of
    LFW_HOG_MISSES. 14 people, 81 photos."""
    everyone = sorted(set(people))
    return set(everyone[4::10]) | set(LFW_HOG_MISSES)


def labelled_pairs(people: list[str], seed: int = 0) -> list[tuple[int, int, bool]]:
    """Verification pairs of labelled photos (index, index, same person): every pair of
    photos of one person, and as many pairs of two people drawn with a fixed seed."""
    n = len(people)
    same = [(i, j) for i in range(n) for j in range(i + 1, n) if people[i] == people[j]]
    rng = np.random.default_rng(seed)
    different: set[tuple[int, int]] = set()
    while len(different) < len(same):
        i, j = sorted(int(x) for x in rng.choice(n, 2, replace=False))
        if people[i] != people[j]:
            different.add((i, j))
    return [(i, j, True) for i, j in same] + [(i, j, False) for i, j in sorted(different)]


DUMP_FORMATS = ("plain", "inserts", "column-inserts", "custom")


def create_database(server_url: str, prefix: str = "doppel_test") -> str:
    """Create an empty database on the server and return its URL."""
    import uuid

    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    info = psycopg.conninfo.conninfo_to_dict(server_url)
    info["dbname"] = name
    return psycopg.conninfo.make_conninfo("", **{k: v for k, v in info.items() if v is not None})


def drop_database(server_url: str, url: str) -> None:
    import psycopg

    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


DUMP_PART = 100_000


def write_faces_dump(
    server_url: str,
    out: Path,
    rows: int,
    fmt: str = "plain",
    *,
    seed: int = 0,
    compress: bool = False,
    urls: bool = False,
    setup_sql: str = "",
    extra_args: tuple[str, ...] = (),
) -> Path:
    """Make a dump like the original project's `sql_dump.sql` with the real pg_dump.

    A scratch database on the server gets the original `faces` table, filled with
    seeded vectors and attributes; pg_dump writes it in `fmt` (plain COPY, inserts,
    column-inserts or custom), gzip-compressed when `compress`. `setup_sql` runs in
    the scratch database first (other tables, functions, ...). The database is dropped.
    """
    import gzip
    import subprocess

    import psycopg
    from pgvector.psycopg import register_vector

    from doppel.store.db import tool_path
    from doppel.types import RACES

    if fmt not in DUMP_FORMATS:
        raise ValueError(f"fmt must be one of {DUMP_FORMATS}")
    url = create_database(server_url, "doppel_dump")
    try:
        with psycopg.connect(url) as conn:
            conn.execute("CREATE EXTENSION vector")
            conn.execute(
                "CREATE TABLE faces (id bigserial PRIMARY KEY, image_key text NOT NULL,"
                " age int NOT NULL, sex char(1) NOT NULL CHECK (sex IN ('F','M')),"
                " race varchar(20) NOT NULL CHECK (race IN ('asian','white','middle eastern',"
                "'indian','latino hispanic','black')), embedding vector(512) NOT NULL)"
            )
            if setup_sql:
                conn.execute(setup_sql)  # type: ignore[arg-type]
            register_vector(conn)
            rng = np.random.default_rng(seed)
            ages = rng.integers(1, 80, size=rows)
            sexes = rng.choice(["F", "M"], size=rows)
            races = rng.choice(sorted(RACES), size=rows)
            with (
                conn.cursor() as cur,
                cur.copy(
                    "COPY faces (image_key, age, sex, race, embedding)"
                    " FROM STDIN WITH (FORMAT BINARY)"
                ) as copy,
            ):
                copy.set_types(["text", "int4", "text", "text", "vector"])
                # In parts of 100,000 (the first as before), so a dump of a million
                # rows does not hold every vector, and its float64 draft, at once.
                vectors = clustered_vectors(min(rows, DUMP_PART), seed=seed)
                for i in range(rows):
                    if i and i % DUMP_PART == 0:
                        part = min(DUMP_PART, rows - i)
                        vectors = clustered_vectors(part, seed=seed + i // DUMP_PART)
                    key = (
                        f"https://example.invalid/ffhq/{i:05d}.png"
                        if urls
                        else f"/data/ffhq/images1024x1024/{i // 1000 * 1000:05d}/{i:05d}.png"
                    )
                    copy.write_row(
                        (key, int(ages[i]), str(sexes[i]), str(races[i]), vectors[i % DUMP_PART])
                    )
        args = {
            "plain": [],
            "inserts": ["--inserts"],
            "column-inserts": ["--column-inserts"],
            "custom": ["-Fc"],
        }[fmt]
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("wb") as handle:
            proc = subprocess.Popen(
                [str(tool_path("pg_dump")), *args, *extra_args, url], stdout=subprocess.PIPE
            )
            assert proc.stdout is not None
            target = (
                gzip.GzipFile(fileobj=handle, mode="wb", compresslevel=1) if compress else handle
            )
            while chunk := proc.stdout.read(1 << 20):
                target.write(chunk)
            if compress:
                target.close()
            if proc.wait() != 0:
                raise RuntimeError(f"pg_dump failed with status {proc.returncode}")
    finally:
        drop_database(server_url, url)
    return out


def ingest_folder(
    conn: Any,
    root: Path,
    gallery: str,
    config: Any,
    *,
    embedder: Any = None,
    index: str = "auto",
    **job: Any,
) -> Any:
    """An ingest as `doppel ingest` runs it: the photos (doppel.ingest), then the gallery's
    index as `index` says (doppel.index_builds.finish_index). embedder: a model made
    beforehand (run on this machine); job: the other fields of the IngestJob."""
    from doppel.index_builds import finish_index
    from doppel.ingest import IngestJob, ingest_photos
    from doppel.ingest.local import ingest
    from doppel.store.repository import Repository

    run = IngestJob(root, gallery, config, **job)
    report = ingest_photos(conn, run) if embedder is None else ingest(conn, run, embedder=embedder)
    finish_index(conn, Repository(conn).gallery(report.gallery), index)
    return report
