"""The networks doppel converts to a faster runtime, and where each model runs.

For every Keras network among the catalogue's models (and mtcnn's three stages) this
says how DeepFace builds it, and the sample that checks a converted copy against it
(`doppel.faces.conversion` converts, `doppel.faces.sessions` checks); for dlib's
recognition ResNet, doppel writes the ONNX file itself (`doppel.faces.dlibonnx`).
`doppel models` and `doppel models install` ask here what runs where.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from doppel.config import Settings
from doppel.faces import conversion, dlibonnx, mtcnn, sessions
from doppel.faces.catalog import ModelSpec, model_status, require, spec, weights_dir


def recognition_graph(name: str) -> conversion.GraphSpec | None:
    """A recognition model's Keras network as DeepFace builds it, for conversion; None for
    models that are not Keras networks (Dlib)."""
    model = spec(name, "recognition")
    if not model.convertible or model.weights is None or model.input_size is None:
        return None
    return _deepface_graph(model, "facial_recognition", large=False)


def dlib_graph(weights: Path | None = None) -> conversion.GraphSpec:
    """dlib's recognition ResNet (the Dlib model on its five-point chips), which doppel
    writes as ONNX; its weights where given, else where installed or bundled."""
    model = spec("Dlib", "recognition")
    assert model.weights is not None
    path = weights or model_status(model.name, model.kind).path or weights_dir() / model.weights
    return dlibonnx.graph_spec(path, weights_dir())


def attribute_graph(name: str) -> conversion.GraphSpec:
    """An attribute model's (Age, Gender, Race) Keras network as DeepFace builds it: its
    VGG-Face trunk and classifier, softmax out; DeepFace's post-processing stays outside
    (`doppel.faces.attributes`). The check sample is the recognition one at 224x224: face
    crops scaled and padded with black, values 0..1, as DeepFace feeds these models."""
    model = spec(name, "attributes")
    assert model.weights is not None and model.input_size is not None
    return _deepface_graph(model, "facial_attribute", large=True)


def _deepface_graph(model: ModelSpec, task: str, large: bool) -> conversion.GraphSpec:
    """A square-input Keras network that DeepFace builds for `task`, with its weights file
    from the catalogue and face crops of its input size as the check sample."""
    assert model.weights is not None and model.input_size is not None
    side = model.input_size

    def build() -> object:
        conversion.quiet_tensorflow()
        from deepface.modules import modeling

        return modeling.build_model(task=task, model_name=model.name).model

    return conversion.GraphSpec(
        name=model.name,
        weights=weights_dir() / model.weights,
        input_shape=(None, side, side, 3),
        build=build,
        sample=lambda: conversion.face_sample(side),
        cache_dir=weights_dir(),
        large=large,
    )


def graphs_of(model: ModelSpec) -> list[conversion.GraphSpec]:
    """The networks a catalogue model runs, for conversion; none for dlib's detectors
    and OpenCV."""
    if model.name == "Dlib":
        return [dlib_graph()]
    if model.kind == "recognition" and model.convertible:
        graph = recognition_graph(model.name)
        return [graph] if graph is not None else []
    if model.kind == "attributes" and model.convertible:
        return [attribute_graph(model.name)]
    if model.name == "mtcnn":
        return list(mtcnn_graphs().values())
    return []


def mtcnn_graphs() -> dict[str, conversion.GraphSpec]:
    """The mtcnn package's three networks (its weights ship with it), for conversion."""
    folder = mtcnn.weights_folder()

    def stage(which: str) -> Callable[[], object]:
        def build() -> object:
            conversion.quiet_tensorflow()
            import mtcnn.stages as stages

            made = {"pnet": stages.StagePNet, "rnet": stages.StageRNet, "onet": stages.StageONet}
            return made[which]().model

        return build

    shapes = {"pnet": (None, None, None, 3), "rnet": (None, 24, 24, 3), "onet": (None, 48, 48, 3)}
    samples: dict[str, Callable[[], object]] = {
        "pnet": lambda: mtcnn.pnet_sample(conversion.check_photo()),
        "rnet": lambda: mtcnn.patch_sample(conversion.check_photo(), 24),
        "onet": lambda: mtcnn.patch_sample(conversion.check_photo(), 48),
    }
    return {
        which: conversion.GraphSpec(
            name=f"mtcnn-{which}",
            weights=folder / f"{which}.lz4",
            input_shape=shapes[which],
            build=stage(which),
            sample=samples[which],  # type: ignore[arg-type]
            cache_dir=weights_dir(),
            full_precision=True,
        )
        for which in ("pnet", "rnet", "onet")
    }


@lru_cache(maxsize=4)
def mtcnn_detector(requested: str = "auto") -> mtcnn.Mtcnn:
    """doppel's mtcnn with its three networks on the best runtime that agrees with
    TensorFlow (full precision: boxes must not move), loaded once per process. It lives
    here, not in `doppel.faces.mtcnn`, so that the import goes one way: the networks
    know the pipeline, the pipeline knows no networks."""
    graphs = mtcnn_graphs()
    pnet, rnet, onet = (sessions.load(graphs[name], requested) for name in ("pnet", "rnet", "onet"))
    return mtcnn.Mtcnn(pnet, rnet, onet)


def runtime_status(model: ModelSpec, requested: str) -> tuple[str, str]:
    """What `doppel models` shows: the runtime a model would run on, and whether its
    converted file is present (without loading or converting anything)."""
    # dlib runs its own detectors (HOG, the mmod CNN), OpenCV its cascades.
    if model.name in ("dlib", "mmod", "opencv"):
        return "dlib" if model.name != "opencv" else "OpenCV", "n/a"
    if model.name == "skip":
        return "-", "n/a"
    graphs = graphs_of(model)
    if not graphs:
        return "TensorFlow", "n/a"
    if requested == "tensorflow":
        return graphs[0].source, "not used"
    order = sessions.candidates(requested, sessions.onnx_providers(), sessions.openvino_installed())
    if not graphs[0].weights.is_file():
        return order[0].label, "-"
    present = all(conversion.status(graph).present for graph in graphs)
    return order[0].label, "present" if present else "not yet"


def prepare(name: str, settings: Settings, say: Callable[[str], None]) -> list[str]:
    """Weights present (downloaded if need be) and the networks converted and checked, for
    `doppel models install NAME`; returns what was done, a line each. A recognition
    model's default detector is prepared too (mtcnn's three networks for Facenet512),
    so that the first query does not convert them."""
    done: list[str] = []
    model = spec(name)
    if model.weights is not None:
        path = require(model.name, model.kind, settings.face_options)
        done.append(f"{model.name}: weights at {path}")
    graphs = graphs_of(model)
    if model.kind == "recognition":
        graphs += graphs_of(spec(model.detector, "detector"))
    if settings.runtime == "tensorflow" or not graphs:
        return done
    for graph in graphs:
        network = sessions.load(graph, settings.runtime, warn=say)
        where = conversion.converted_path(graph)
        done.append(f"{graph.name}: runs on {network.candidate.label} ({where})")
    return done
