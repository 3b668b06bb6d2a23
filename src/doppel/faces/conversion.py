"""DeepFace's Keras networks converted once to ONNX, for the runtimes of sessions.py.

DeepFace stays the source of truth for each model: its Keras architecture, its weights
file and its preprocessing. doppel converts the network once, with tf2onnx, into an ONNX
file kept beside the weights (the cache key is the weights file's hash and the
converter's version). At conversion, TensorFlow's own outputs on a fixed sample of real
face crops are stored with the file, so that a runtime can later be checked against them.
A network that is not Keras (dlib's ResNet) comes with its own `Writer`: doppel writes
its ONNX file, and the network's own library gives the outputs on the sample.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from doppel.errors import Remedy, WeightsUnreadable

OPSET = 17

Warn = Callable[[str], None]


def stderr_line(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- what to convert -----------------------------------------------------------------


@dataclass(frozen=True)
class Writer:
    """How doppel writes a network that is not a Keras one as ONNX, in place of tf2onnx."""

    version: str  # the writer's name and version, in the cache key in place of tf2onnx's
    write: Callable[[], bytes]  # the serialized ONNX model
    run: Callable[[Any, np.ndarray], list[np.ndarray]]  # the built original's outputs
    label: str  # the original's runtime ("dlib"), which is also the fallback


@dataclass(frozen=True)
class GraphSpec:
    """A Keras network doppel can convert: where its weights are and how to build it."""

    name: str  # "Facenet512", "mtcnn-pnet", ...
    weights: Path  # the file whose hash keys the converted file
    input_shape: tuple[int | None, ...]  # NHWC, None for any size
    build: Callable[[], Any]  # returns the Keras model (imports TensorFlow)
    sample: Callable[[], np.ndarray]  # the fixed sample, preprocessed as the network takes it
    cache_dir: Path  # where the converted file goes: DeepFace's weights folder
    full_precision: bool = False  # detectors: no bfloat16, boxes must not move
    # VGG-sized networks (half a gigabyte of weights): frozen without TensorFlow's graph
    # optimiser, whose copies of the weights pass 15 GB; ONNX's own optimisers still run.
    large: bool = False
    writer: Writer | None = None  # None: a Keras network, converted by tf2onnx

    @property
    def source(self) -> str:
        """What runs the original network: the reference and the last resort."""
        return self.writer.label if self.writer else "TensorFlow"

    def reference_outputs(self, model: Any, batch: np.ndarray) -> list[np.ndarray]:
        """The original network's outputs on a batch, as arrays (one per output)."""
        return self.writer.run(model, batch) if self.writer else keras_outputs(model, batch)


def converter_version() -> str | None:
    try:
        return "tf2onnx-" + importlib.metadata.version("tf2onnx")
    except importlib.metadata.PackageNotFoundError:
        return None


def keras_outputs(model: Any, batch: np.ndarray) -> list[np.ndarray]:
    """A Keras network's outputs on a batch, as arrays (one per output)."""
    out = model(np.asarray(batch, dtype=np.float32), training=False)
    outs = out if isinstance(out, (list, tuple)) else [out]
    return [np.asarray(o) for o in outs]


def quiet_tensorflow() -> None:
    """Import DeepFace (and so TensorFlow) without its start-up chatter on stderr.

    TensorFlow's C++ side reports CUDA probing through absl before it reads
    TF_CPP_MIN_LOG_LEVEL, so the file descriptor is muted for the import itself.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    if "deepface.DeepFace" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import deepface.DeepFace  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


# --- the check sample ----------------------------------------------------------------

# Face crops (x1, y1, x2, y2) of the check photo: the face, looser, tighter, shifted, and
# the whole picture; each also mirrored, then darker, lighter and grey versions of the first.
CHECK_CROPS = (
    (178, 110, 351, 330),
    (150, 80, 380, 360),
    (195, 135, 335, 310),
    (160, 120, 340, 330),
    (0, 0, 512, 600),
)


def check_photo() -> np.ndarray:
    """A real face photo every installation has: Grace Hopper's portrait, which Matplotlib
    (a dependency) ships as sample data. Read in place, RGB, 512x600."""
    import cv2

    found = importlib.util.find_spec("matplotlib")
    if found is None or not found.submodule_search_locations:
        raise ConversionFailed("matplotlib is not installed; it holds the check photo")
    folder = Path(next(iter(found.submodule_search_locations)))
    path = folder / "mpl-data" / "sample_data" / "grace_hopper.jpg"
    bgr = cv2.imread(str(path))
    if bgr is None:
        raise ConversionFailed(f"the check photo {path} is missing")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def face_sample(side: int, normalization: str = "base") -> np.ndarray:
    """Thirteen real face crops, preprocessed exactly as DeepFace preprocesses a face for a
    recognition model (or, with base normalisation, an attribute model) whose input is
    side x side."""
    from deepface.modules import preprocessing

    bgr = check_photo()[:, :, ::-1]
    crops: list[np.ndarray] = []
    for x1, y1, x2, y2 in CHECK_CROPS:
        face = bgr[y1:y2, x1:x2].astype(np.float32) / 255
        crops += [face, face[:, ::-1]]
    crops.append(crops[0] * 0.6)
    crops.append(np.clip(crops[0] * 1.3 - 0.1, 0, 1))
    crops.append(np.repeat(crops[0].mean(axis=2, keepdims=True), 3, axis=2))
    batch = [
        preprocessing.normalize_input(
            preprocessing.resize_image(np.ascontiguousarray(crop), (side, side)), normalization
        )
        for crop in crops
    ]
    return np.concatenate(batch).astype(np.float32)


# --- the cache -----------------------------------------------------------------------


def weights_hash(weights: Path, cache_dir: Path) -> str:
    """The weights file's BLAKE2b, remembered beside it by size and modification time.

    Hashing Facenet512's 91 MB costs about 0.2 s; a query should not pay it every time.
    """
    stat = weights.stat()
    memo = cache_dir / f".{weights.name}.hash.json"
    stamp = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    try:
        known = json.loads(memo.read_text())
        if {k: known.get(k) for k in stamp} == stamp and known.get("blake2b"):
            return str(known["blake2b"])
    except (OSError, ValueError):
        pass
    digest = hashlib.blake2b(digest_size=16)
    with weights.open("rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    value = digest.hexdigest()
    write_atomic(memo, json.dumps({**stamp, "blake2b": value}).encode())
    return value


def converted_path(spec: GraphSpec, converter: str | None = None) -> Path | None:
    """Where the converted file for these weights and this converter lives."""
    converter = converter or (spec.writer.version if spec.writer else converter_version())
    if converter is None or not spec.weights.is_file():
        return None
    key = weights_hash(spec.weights, spec.cache_dir)
    return spec.cache_dir / f"{spec.name}.{key}.{converter}.onnx"


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    tmp.write_bytes(data)
    tmp.replace(path)


def record_path(path: Path) -> Path:
    return path.with_suffix(".json")


def reference_path(path: Path) -> Path:
    return path.with_suffix(".sample.npz")


class ConversionFailed(Exception):
    pass


def convert(spec: GraphSpec, warn: Warn = stderr_line) -> Path:
    """Convert the network to ONNX, with the original's outputs on the fixed sample."""
    target = converted_path(spec)
    if target is None:
        raise ConversionFailed("tf2onnx is not installed (pip install tf2onnx)")
    if target.is_file() and reference_path(target).is_file():
        return target
    model, data = _written(spec) if spec.writer else _tf2onnx(spec)
    sample = spec.sample().astype(np.float32)
    outputs = spec.reference_outputs(model, sample)
    write_atomic(target, data)
    buffer = io.BytesIO()
    arrays: dict[str, Any] = {f"out{i}": out for i, out in enumerate(outputs)}
    np.savez(buffer, sample=sample, **arrays)
    write_atomic(reference_path(target), buffer.getvalue())
    write_atomic(
        record_path(target),
        json.dumps(
            {
                "network": spec.name,
                "weights": spec.weights.name,
                "weights_blake2b": weights_hash(spec.weights, spec.cache_dir),
                "converter": spec.writer.version if spec.writer else converter_version(),
                "opset": OPSET,
                "verified": {},
            },
            indent=1,
        ).encode(),
    )
    return target


def _tf2onnx(spec: GraphSpec) -> tuple[Any, bytes]:
    """The Keras network as DeepFace builds it, and its ONNX form by tf2onnx."""
    quiet_tensorflow()
    import tensorflow as tf
    import tf2onnx

    try:
        model = spec.build()
    except Exception as exc:  # DeepFace wraps h5py's and Keras's errors in a ValueError
        raise unreadable_weights(spec) from exc
    signature = (tf.TensorSpec(spec.input_shape, tf.float32, name="input"),)
    function = tf.function(lambda x: model(x, training=False), input_signature=signature)
    try:
        with _without_onnx_passes(spec.large):
            proto, storage = tf2onnx.convert.from_function(
                function, input_signature=signature, opset=OPSET, large_model=spec.large
            )
    except Exception as exc:  # tf2onnx raises many kinds
        raise ConversionFailed(f"tf2onnx could not convert {spec.name}: {exc}") from exc
    if storage is not None:
        _inline_tensors(proto, storage.name_to_tensor_data)
    return model, proto.SerializeToString()


def _written(spec: GraphSpec) -> tuple[Any, bytes]:
    """The original network as its own library loads it, and the ONNX form doppel writes."""
    assert spec.writer is not None
    try:
        model = spec.build()
    except Exception as exc:  # dlib raises RuntimeError for a file it cannot read
        raise unreadable_weights(spec) from exc
    try:
        return model, spec.writer.write()
    except Exception as exc:  # the reader's own error, or the ONNX checker's
        raise ConversionFailed(f"could not write {spec.name} as ONNX: {exc}") from exc


def unreadable_weights(spec: GraphSpec) -> WeightsUnreadable:
    """One line for a weights file that is there but does not build its network."""
    message = (
        f"the weights file {spec.weights} does not load as {spec.name}'s weights "
        "(cut short, or another file); delete it"
    )
    if spec.name.startswith("mtcnn"):  # its weights ship inside the mtcnn package
        return WeightsUnreadable(f"{message} and reinstall the mtcnn package")
    return WeightsUnreadable(message, remedy=Remedy.INSTALL_WEIGHTS, model=spec.name)


@contextlib.contextmanager
def _without_onnx_passes(skip: bool) -> Iterator[None]:
    """tf2onnx's own graph passes, left out for large networks: each pass rewrites every
    weight tensor into the model, and protobuf frees none of it until the end (2 GB more
    per pass for a VGG). ONNX Runtime makes the same simplifications (folding the weight
    transposes, merging the layout changes) when it first optimises the file. tf2onnx's
    large-model path also still calls `numpy.product`, which NumPy 2 removed: it gets
    `numpy.prod`, the same function, for the conversion."""
    if not skip:
        yield
        return
    from tf2onnx import optimizer

    saved = optimizer._optimizers
    optimizer._optimizers = {}
    shimmed = "product" not in np.__dict__
    if shimmed:
        np.product = np.prod  # type: ignore[attr-defined]
    try:
        yield
    finally:
        optimizer._optimizers = saved
        if shimmed:
            del np.product  # type: ignore[attr-defined]


def _inline_tensors(proto: Any, data: dict[str, bytes]) -> None:
    """Put tensors tf2onnx kept apart (its large-model form) back into the model, which
    stays one file: under protobuf's 2 GB limit, as every network doppel converts is."""
    from onnx import TensorProto

    tensors = list(proto.graph.initializer)
    tensors += [
        attr.t for node in proto.graph.node for attr in node.attribute if attr.HasField("t")
    ]
    for tensor in tensors:
        if tensor.data_location == TensorProto.EXTERNAL:
            where = {entry.key: entry.value for entry in tensor.external_data}["location"]
            tensor.raw_data = data[where]
            del tensor.external_data[:]
            tensor.data_location = TensorProto.DEFAULT


@dataclass
class Status:
    """What `doppel models` shows for a convertible network."""

    converted: Path | None
    present: bool


def status(spec: GraphSpec) -> Status:
    path = converted_path(spec) if spec.weights.is_file() else None
    return Status(path, bool(path and path.is_file() and reference_path(path).is_file()))
