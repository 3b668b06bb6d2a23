"""dlib's face-recognition ResNet as an ONNX graph, built from what its file says.

dlib-bin is compiled without BLAS, so dlib's own code spends about 120 ms of CPU on
each 150x150 chip; ONNX Runtime runs the same network in a fraction of that. The graph
is made layer by layer from `doppel.faces.dlibnet`'s reading of the weights file (no
architecture is written down here), and takes the chips as dlib does: RGB pixel
values 0..255, NHWC, float32; the input layer's mean subtraction and scaling are the
graph's first nodes. It is written once beside the weights (`doppel.faces.conversion`
caches it by the file's hash) with dlib's own outputs on a fixed sample, which every
runtime must match before it is used (`doppel.faces.sessions`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from doppel.faces import conversion, dlibface, dlibnet
from doppel.faces.conversion import OPSET

# The reader's and this writer's version: part of the converted file's name, so that a
# change to either makes a new file rather than reusing an old one.
WRITER = "dlibnet-1"


def graph_spec(weights: Path, cache_dir: Path) -> conversion.GraphSpec:
    """The Dlib recognition network for sessions.load: written as ONNX from `weights`,
    checked against dlib's own outputs, and run by dlib where no runtime agrees."""
    side = dlibface.CHIP_SIZE

    def build() -> Any:
        import dlib

        return dlib.face_recognition_model_v1(str(weights))

    return conversion.GraphSpec(
        name="Dlib",
        weights=weights,
        input_shape=(None, side, side, 3),
        build=build,
        sample=lambda: sample(side),
        cache_dir=cache_dir,
        writer=conversion.Writer(
            version=WRITER,
            write=lambda: to_onnx(dlibnet.read(weights)),
            run=dlib_outputs,
            label="dlib",
        ),
    )


def dlib_outputs(model: Any, batch: np.ndarray) -> list[np.ndarray]:
    """dlib's own descriptors for a batch of chips (n, side, side, 3), RGB 0..255."""
    chips = [np.ascontiguousarray(c) for c in np.rint(batch).clip(0, 255).astype(np.uint8)]
    return [np.asarray(model.compute_face_descriptor(chips), dtype=np.float32)]


def sample(side: int) -> np.ndarray:
    """The check sample as dlib's network takes it: the check photo's face crops (and
    their mirror images) resized to side x side, RGB 0..255, float32."""
    import cv2

    photo = conversion.check_photo()
    crops = []
    for x1, y1, x2, y2 in conversion.CHECK_CROPS:
        crop = cv2.resize(photo[y1:y2, x1:x2], (side, side), interpolation=cv2.INTER_AREA)
        crops += [crop, crop[:, ::-1]]
    return np.stack(crops).astype(np.float32)


@dataclass
class _Graph:
    """The nodes and constants written so far, and the running tensor's name and shape."""

    nodes: list[Any] = field(default_factory=list)
    constants: list[Any] = field(default_factory=list)
    current: str = "input"
    shape: tuple[int, int, int] = (0, 0, 0)  # channels, rows, columns of `current`
    tags: list[tuple[str, tuple[int, int, int]]] = field(default_factory=list)

    def constant(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        self.constants.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], name: str, **attrs: Any) -> str:
        from onnx import helper

        self.nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        self.current = name
        return name


def to_onnx(network: dlibnet.Network) -> bytes:
    """The network as a serialized ONNX model: `input` (n, rows, cols, 3) RGB 0..255 in,
    `descriptor` (n, outputs) out."""
    from onnx import TensorProto, checker, helper

    if not network.loss.startswith("loss_metric"):
        # loss_metric's output is the last layer's output as is; others transform it.
        raise dlibnet.DlibFileError(f"the loss layer {network.loss} is not supported")
    graph = _Graph()
    rows, cols = network.input.rows, network.input.cols
    graph.node("Transpose", ["input"], "nchw", perm=[0, 3, 1, 2])
    mean = np.array(network.input.mean_rgb, np.float32).reshape(1, 3, 1, 1)
    graph.node("Sub", ["nchw", graph.constant("mean_rgb", mean)], "centred")
    # dlib divides by 256 (not 255): a power of two, so the product is exact.
    graph.node("Mul", ["centred", graph.constant("scale", np.array(1 / 256, np.float32))], "scaled")
    graph.shape = (3, rows, cols)
    outputs = 0
    for index, layer in enumerate(network.layers):
        outputs = _add(graph, layer, f"{layer.kind}{index}") or outputs
    graph.node("Identity", [graph.current], "descriptor")
    model = helper.make_model(
        helper.make_graph(
            graph.nodes,
            "dlib_resnet",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", rows, cols, 3])],
            [helper.make_tensor_value_info("descriptor", TensorProto.FLOAT, ["n", outputs])],
            graph.constants,
        ),
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="doppel",
        producer_version=WRITER,
    )
    checker.check_model(model)
    return bytes(model.SerializeToString())


def _add(graph: _Graph, layer: dlibnet.Layer, name: str) -> int | None:
    """Write one layer; returns the output width for an fc layer (the descriptor)."""
    kind, source = layer.kind, graph.current
    if kind == "con":
        _con(graph, layer, name)
    elif kind == "affine":
        assert layer.scale is not None and layer.bias is not None
        scaled = graph.node("Mul", [source, graph.constant(f"{name}.gamma", layer.scale)], name)
        graph.node("Add", [scaled, graph.constant(f"{name}.beta", layer.bias)], f"{name}.out")
    elif kind == "relu":
        graph.node("Relu", [source], name)
    elif kind in ("max_pool", "avg_pool"):
        _pool(graph, layer, name)
    elif kind == "tag":
        graph.tags.append((source, graph.shape))
    elif kind == "skip":
        if len(graph.tags) < 2:
            raise dlibnet.DlibFileError("a skip layer with no tag to go back to")
        graph.current, graph.shape = graph.tags[-2]
    elif kind == "add_prev":
        _add_prev(graph, name)
    elif kind == "fc":
        return _fc(graph, layer, name)
    else:
        raise dlibnet.DlibFileError(f"the layer {kind} is not supported")
    return None


def _con(graph: _Graph, layer: dlibnet.Layer, name: str) -> None:
    assert layer.weights is not None and layer.bias is not None
    (pad_r, pad_c), (stride_r, stride_c) = layer.padding, layer.stride
    filters, _, k_r, k_c = layer.weights.shape
    graph.node(
        "Conv",
        [
            graph.current,
            graph.constant(f"{name}.w", layer.weights),
            graph.constant(f"{name}.b", layer.bias),
        ],
        name,
        kernel_shape=[k_r, k_c],
        strides=[stride_r, stride_c],
        pads=[pad_r, pad_c, pad_r, pad_c],
    )
    _, rows, cols = graph.shape
    # dlib's output size, as ONNX's with floor rounding: 1 + (in + 2 pad - k) / stride
    graph.shape = (
        filters,
        1 + (rows + 2 * pad_r - k_r) // stride_r,
        1 + (cols + 2 * pad_c - k_c) // stride_c,
    )


def _pool(graph: _Graph, layer: dlibnet.Layer, name: str) -> None:
    channels, rows, cols = graph.shape
    average = layer.kind == "avg_pool"
    if layer.window == (0, 0):  # the whole input: avg_pool_everything, max_pool_everything
        graph.node("GlobalAveragePool" if average else "GlobalMaxPool", [graph.current], name)
        graph.shape = (channels, 1, 1)
        return
    if average and layer.padding != (0, 0):
        # Where a padded window's average divides by is not read from dlib here.
        raise dlibnet.DlibFileError("an avg_pool layer with padding is not supported")
    (k_r, k_c), (stride_r, stride_c), (pad_r, pad_c) = layer.window, layer.stride, layer.padding
    graph.node(
        "AveragePool" if average else "MaxPool",
        [graph.current],
        name,
        kernel_shape=[k_r, k_c],
        strides=[stride_r, stride_c],
        pads=[pad_r, pad_c, pad_r, pad_c],
    )
    graph.shape = (
        channels,
        1 + (rows + 2 * pad_r - k_r) // stride_r,
        1 + (cols + 2 * pad_c - k_c) // stride_c,
    )


def _add_prev(graph: _Graph, name: str) -> None:
    """The running tensor plus the latest tag's; dlib adds tensors of different sizes
    as if the smaller were padded with zeros at the end of each axis (a residual_down
    block adds more channels than its shortcut has)."""
    if not graph.tags:
        raise dlibnet.DlibFileError("an add_prev layer with no tag to add")
    (left, left_shape), (right, right_shape) = (graph.current, graph.shape), graph.tags[-1]
    shape = tuple(max(a, b) for a, b in zip(left_shape, right_shape, strict=True))
    padded = [
        _padded(graph, tensor, have, shape, f"{name}.pad{i}")
        for i, (tensor, have) in enumerate([(left, left_shape), (right, right_shape)])
    ]
    graph.node("Add", padded, name)
    graph.shape = (shape[0], shape[1], shape[2])


def _padded(
    graph: _Graph, tensor: str, have: tuple[int, ...], want: tuple[int, ...], name: str
) -> str:
    if have == want:
        return tensor
    from onnx import numpy_helper

    ends = [w - h for h, w in zip(have, want, strict=True)]
    pads = np.array([0, 0, 0, 0, 0, *ends], dtype=np.int64)
    graph.constants.append(numpy_helper.from_array(pads, f"{name}.pads"))
    return graph.node("Pad", [tensor, f"{name}.pads"], name, mode="constant")


def _fc(graph: _Graph, layer: dlibnet.Layer, name: str) -> int:
    assert layer.weights is not None
    inputs, outputs = layer.weights.shape
    if inputs != int(np.prod(graph.shape)):
        raise dlibnet.DlibFileError(f"an fc layer takes {inputs} values, not {graph.shape}")
    flat = graph.node("Flatten", [graph.current], f"{name}.flat", axis=1)
    product = graph.node("MatMul", [flat, graph.constant(f"{name}.w", layer.weights)], name)
    if layer.bias is not None:
        graph.node("Add", [product, graph.constant(f"{name}.b", layer.bias)], f"{name}.out")
    graph.shape = (outputs, 1, 1)
    return int(outputs)
