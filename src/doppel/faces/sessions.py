"""Inference runtimes for DeepFace's networks: ONNX Runtime, OpenVINO, or TensorFlow itself.

DeepFace stays the source of truth for each model: its Keras architecture, its weights
file and its preprocessing. doppel converts the network once, with tf2onnx, into an ONNX
file kept beside the weights (the cache key is the weights file's hash and the
converter's version), and runs that file with ONNX Runtime (or OpenVINO, when asked),
which cost a fraction of TensorFlow's time per face and need no TensorFlow import. At
conversion, TensorFlow's own outputs on a fixed sample of real face crops are stored with
the file; before a runtime is used, its outputs on the same sample must match them
(cosine similarity 0.9999 or better for every face), or doppel says so in one line and
moves to the next runtime, TensorFlow last.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import os
import platform
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from doppel.config import RUNTIMES

MIN_COSINE = 0.9999
OPSET = 17

Warn = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- which runtime -------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """A runtime on a device, in the order `auto` tries them."""

    runtime: str  # "openvino", "onnx" or "tensorflow"
    device: str = "CPU"  # "CPU" or "CUDA"

    @property
    def label(self) -> str:
        names = {"openvino": "OpenVINO", "onnx": "ONNX Runtime", "tensorflow": "TensorFlow"}
        return names[self.runtime] + (f" ({self.device})" if self.device != "CPU" else "")


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


def onnx_providers() -> list[str]:
    """ONNX Runtime's execution providers on this machine (CUDA with onnxruntime-gpu)."""
    try:
        import onnxruntime
    except ImportError:
        return []
    return list(onnxruntime.get_available_providers())


def candidates(requested: str, providers: Sequence[str], openvino: bool) -> list[Candidate]:
    """The runtimes to try, best first; TensorFlow always last, as the fallback.

    auto: ONNX Runtime, on a CUDA GPU when its CUDA provider is there (onnxruntime-gpu),
    else on the CPU. Its outputs equal TensorFlow's to float rounding (6e-8), so vectors
    stay interchangeable with a gallery embedded under TensorFlow. OpenVINO is used only
    when asked for: where the CPU has bfloat16 it is five times faster than ONNX Runtime,
    at a cosine of about 0.99998 to TensorFlow's outputs, which can swap near-tied matches.
    """
    if requested not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}")
    order: list[Candidate] = []
    if requested in ("auto", "onnx"):
        if "CUDAExecutionProvider" in providers:
            order.append(Candidate("onnx", "CUDA"))
        if "CPUExecutionProvider" in providers:
            order.append(Candidate("onnx"))
    if requested == "openvino" and openvino:
        order.append(Candidate("openvino"))
    order.append(Candidate("tensorflow"))
    return order


# --- networks ------------------------------------------------------------------------


class Network:
    """A loaded network: a float32 NHWC batch in, the network's outputs out."""

    candidate: Candidate

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError


class OnnxNetwork(Network):
    def __init__(self, path: Path, candidate: Candidate, threads: int | None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Idle threads sleep instead of spinning: on a few cores, ingest's decoding
        # workers need the CPU that spinning would burn between batches.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        providers = ["CPUExecutionProvider"]
        if candidate.device == "CUDA":
            providers.insert(0, "CUDAExecutionProvider")
        source = path
        if candidate.device == "CPU":
            # Optimising the graph costs most of a session's start (0.6 s of 1 s for
            # Facenet512); the optimised graph is kept for this ONNX Runtime and CPU.
            optimised = path.with_name(f"{path.stem}.ort-{ort.__version__}-{cpu_tag()}.onnx")
            if optimised.is_file():
                source = optimised
                options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            else:
                partial = optimised.with_name(f".{optimised.name}.{os.getpid()}.part")
                options.optimized_model_filepath = str(partial)
        self.session = ort.InferenceSession(str(source), options, providers=providers)
        if source == path and candidate.device == "CPU":
            with contextlib.suppress(OSError):
                partial.replace(optimised)
        self.input = self.session.get_inputs()[0].name
        self.candidate = candidate

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        feed = {self.input: np.ascontiguousarray(batch, dtype=np.float32)}
        return list(self.session.run(None, feed))


def cpu_tag() -> str:
    """A short name for this CPU's model and features: what optimised graphs and numeric
    checks depend on."""
    info = ""
    with contextlib.suppress(OSError):
        text = Path("/proc/cpuinfo").read_text()
        wanted = ("model name", "flags", "Features", "CPU part")
        info = "|".join(line for line in text.splitlines()[:40] if line.startswith(wanted))
    info = info or platform.processor() or platform.machine()
    return hashlib.blake2b(info.encode(), digest_size=4).hexdigest()


class OpenVinoNetwork(Network):
    def __init__(
        self, path: Path, candidate: Candidate, threads: int | None, full_precision: bool
    ) -> None:
        import openvino as ov

        core = ov.Core()
        # The compiled form is cached beside the ONNX file: a later process loads it
        # instead of compiling again (a third of the time on this machine).
        core.set_property({"CACHE_DIR": str(path.parent / "openvino-cache")})
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        if full_precision:
            config["INFERENCE_PRECISION_HINT"] = "f32"
        self.compiled = core.compile_model(str(path), "CPU", config)
        self.candidate = candidate

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        result = self.compiled(np.ascontiguousarray(batch, dtype=np.float32))
        return [np.asarray(result[out]) for out in self.compiled.outputs]


class KerasNetwork(Network):
    def __init__(self, model: Any) -> None:
        self.model = model
        self.candidate = Candidate("tensorflow")

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        out = self.model(np.asarray(batch, dtype=np.float32), training=False)
        outs = out if isinstance(out, (list, tuple)) else [out]
        return [np.asarray(o) for o in outs]


# --- what to convert -----------------------------------------------------------------


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


def converter_version() -> str | None:
    try:
        return "tf2onnx-" + importlib.metadata.version("tf2onnx")
    except importlib.metadata.PackageNotFoundError:
        return None


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
    _write_atomic(memo, json.dumps({**stamp, "blake2b": value}).encode())
    return value


def converted_path(spec: GraphSpec, converter: str | None = None) -> Path | None:
    """Where the converted file for these weights and this converter lives."""
    converter = converter or converter_version()
    if converter is None or not spec.weights.is_file():
        return None
    key = weights_hash(spec.weights, spec.cache_dir)
    return spec.cache_dir / f"{spec.name}.{key}.{converter}.onnx"


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    tmp.write_bytes(data)
    tmp.replace(path)


def _record(path: Path) -> Path:
    return path.with_suffix(".json")


def _reference(path: Path) -> Path:
    return path.with_suffix(".sample.npz")


class ConversionFailed(Exception):
    pass


def convert(spec: GraphSpec, warn: Warn = _stderr) -> Path:
    """Convert the Keras network to ONNX, with TensorFlow's outputs on the fixed sample."""
    target = converted_path(spec)
    if target is None:
        raise ConversionFailed("tf2onnx is not installed (pip install tf2onnx)")
    if target.is_file() and _reference(target).is_file():
        return target
    quiet_tensorflow()
    import tensorflow as tf
    import tf2onnx

    model = spec.build()
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
    sample = spec.sample().astype(np.float32)
    outputs = KerasNetwork(model)(sample)
    _write_atomic(target, proto.SerializeToString())
    buffer = io.BytesIO()
    arrays: dict[str, Any] = {f"out{i}": out for i, out in enumerate(outputs)}
    np.savez(buffer, sample=sample, **arrays)
    _write_atomic(_reference(target), buffer.getvalue())
    _write_atomic(
        _record(target),
        json.dumps(
            {
                "network": spec.name,
                "weights": spec.weights.name,
                "weights_blake2b": weights_hash(spec.weights, spec.cache_dir),
                "converter": converter_version(),
                "opset": OPSET,
                "verified": {},
            },
            indent=1,
        ).encode(),
    )
    return target


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


def agreement(network: Network, reference: Path) -> float:
    """The lowest cosine similarity, over the sample's faces and the network's outputs,
    between this network's outputs and TensorFlow's stored ones."""
    with np.load(reference) as stored:
        sample = stored["sample"]
        expected = [stored[f"out{i}"] for i in range(len(stored.files) - 1)]
    got = network(sample)
    worst = 1.0
    for want, have in zip(expected, got, strict=True):
        a = want.reshape(len(sample), -1).astype(np.float64)
        b = have.reshape(len(sample), -1).astype(np.float64)
        cos = (a * b).sum(1) / np.maximum(
            np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-30
        )
        worst = min(worst, float(cos.min()))
    return worst


def _verify_key(candidate: Candidate, full_precision: bool) -> str:
    """What decides a runtime's outputs: the runtime's version, the device, the CPU."""
    package = {"openvino": "openvino", "onnx": "onnxruntime"}[candidate.runtime]
    try:
        version = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    precision = "f32" if full_precision else "auto"
    return f"{candidate.runtime} {version} {candidate.device} {precision} cpu {cpu_tag()}"


@dataclass
class Status:
    """What `doppel models` shows for a convertible network."""

    converted: Path | None
    present: bool


def status(spec: GraphSpec) -> Status:
    path = converted_path(spec) if spec.weights.is_file() else None
    return Status(path, bool(path and path.is_file() and _reference(path).is_file()))


def load(
    spec: GraphSpec,
    requested: str = "auto",
    *,
    threads: int | None = None,
    convert_missing: bool = True,
    warn: Warn = _stderr,
) -> Network:
    """The network on the best runtime that agrees with TensorFlow, TensorFlow last."""
    order = candidates(requested, onnx_providers(), openvino_installed())
    if requested == "openvino" and order[0].runtime != "openvino":
        warn("OpenVINO is not installed (pip install 'doppel[openvino]'); using TensorFlow")
    path: Path | None = None
    if order[0].runtime != "tensorflow":
        path = converted_path(spec)
        if path is None or not (path.is_file() and _reference(path).is_file()):
            if not convert_missing:
                path = None
            else:
                try:
                    warn(f"converting {spec.name} for a faster runtime (once; about a minute)")
                    path = convert(spec, warn)
                except ConversionFailed as exc:
                    warn(f"{exc}; using TensorFlow")
                    path = None
    if path is not None:
        record = json.loads(_record(path).read_text())
        for candidate in order:
            if candidate.runtime == "tensorflow":
                break
            try:
                network: Network = (
                    OpenVinoNetwork(path, candidate, threads, spec.full_precision)
                    if candidate.runtime == "openvino"
                    else OnnxNetwork(path, candidate, threads)
                )
            except Exception as exc:  # a runtime that cannot load the file
                warn(f"{candidate.label} could not load {spec.name} ({exc}); trying the next")
                continue
            key = _verify_key(candidate, spec.full_precision)
            worst = record["verified"].get(key)
            if worst is None:
                worst = agreement(network, _reference(path))
                record["verified"][key] = worst
                _write_atomic(_record(path), json.dumps(record, indent=1).encode())
            if worst >= MIN_COSINE:
                return network
            warn(
                f"{spec.name} under {candidate.label} differs from TensorFlow (cosine "
                f"{worst:.6f} < {MIN_COSINE} on the check sample); not using it"
            )
    quiet_tensorflow()
    return KerasNetwork(spec.build())
