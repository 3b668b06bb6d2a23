"""Running the face networks: ONNX Runtime, OpenVINO, or the original's own library.

The converted file (conversion.py) runs with ONNX Runtime (or OpenVINO, when asked),
which cost a fraction of TensorFlow's (or dlib's) time per face and need no TensorFlow
import. Before a runtime is used, its outputs on the conversion's fixed sample must
match the original's stored ones (cosine similarity 0.9999 or better for every face),
or doppel says so in one line and moves to the next runtime, the original last:
TensorFlow for DeepFace's Keras networks, dlib for dlib's ResNet.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from doppel.config import RUNTIMES
from doppel.faces.conversion import (
    ConversionFailed,
    GraphSpec,
    Warn,
    convert,
    converted_path,
    keras_outputs,
    quiet_tensorflow,
    record_path,
    reference_path,
    stderr_line,
    write_atomic,
)

MIN_COSINE = 0.9999


# --- which runtime -------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """A runtime on a device, in the order `auto` tries them."""

    runtime: str  # "openvino", "onnx", "tensorflow" or "dlib"
    device: str = "CPU"  # "CPU" or "CUDA"

    @property
    def label(self) -> str:
        names = {
            "openvino": "OpenVINO",
            "onnx": "ONNX Runtime",
            "tensorflow": "TensorFlow",
            "dlib": "dlib",
        }
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
        return keras_outputs(self.model, batch)


class NativeNetwork(Network):
    """A network doppel writes as ONNX itself, run by its own library instead (dlib)."""

    def __init__(self, spec: GraphSpec) -> None:
        self.model = spec.build()
        self.spec = spec
        self.candidate = Candidate(spec.source)

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        return self.spec.reference_outputs(self.model, batch)


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


def load(
    spec: GraphSpec,
    requested: str = "auto",
    *,
    threads: int | None = None,
    convert_missing: bool = True,
    warn: Warn = stderr_line,
) -> Network:
    """The network on the best runtime that agrees with the original (TensorFlow, or
    dlib), the original last."""
    order = candidates(requested, onnx_providers(), openvino_installed())
    if requested == "openvino" and order[0].runtime != "openvino":
        warn(f"OpenVINO is not installed (pip install 'doppel[openvino]'); using {spec.source}")
    path: Path | None = None
    if order[0].runtime != "tensorflow":
        path = converted_path(spec)
        if path is None or not (path.is_file() and reference_path(path).is_file()):
            if not convert_missing:
                path = None
            else:
                try:
                    # tf2onnx takes about a minute for a Keras network; dlib's takes seconds.
                    took = "seconds" if spec.writer else "about a minute"
                    warn(f"converting {spec.name} for a faster runtime (once; {took})")
                    path = convert(spec, warn)
                except ConversionFailed as exc:
                    warn(f"{exc}; using {spec.source}")
                    path = None
    if path is not None:
        record = json.loads(record_path(path).read_text())
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
                worst = agreement(network, reference_path(path))
                record["verified"][key] = worst
                write_atomic(record_path(path), json.dumps(record, indent=1).encode())
            if worst >= MIN_COSINE:
                return network
            warn(
                f"{spec.name} under {candidate.label} differs from {spec.source} (cosine "
                f"{worst:.6f} < {MIN_COSINE} on the check sample); not using it"
            )
    if spec.writer is not None:
        return NativeNetwork(spec)
    quiet_tensorflow()
    return KerasNetwork(spec.build())
