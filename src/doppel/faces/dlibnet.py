"""dlib's serialized neural networks, read without dlib: the layers and their tensors.

A dlib network file (`dlib_face_recognition_resnet_model_v1.dat`) is the network's C++
type written out from the outside in: the loss layer, then one version number for each
layer wrapped around the input, the input layer, and then, from the input upwards, each
computing layer's record (its name with a version, such as `con_4`, then its settings
and parameter tensors). Integers are dlib's variable-length form (a byte holding the
length and the sign, then the bytes, least significant first), a floating-point scalar
is such an integer mantissa and a 16-bit exponent, and a tensor's values are 4-byte
little-endian floats after its num_samples, k, nr and nc.

Tag and skip layers (the residual connections) write their version number and nothing
else: neither which tag they are nor which kind. They are told apart here as dlib's
ResNets use them (`residual` and `residual_down`): a mark directly under another mark is
a tag and the one above it a skip back to the tag before; every other mark is a tag; an
`add_prev_` adds the latest tag. The reading is checked against dlib's own outputs
before it is used (`doppel.faces.dlibonnx`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Version numbers of dlib's layer wrappers: add_layer over another layer, add_layer
# over the input layer (2 in files older than sample expansion), tag or skip.
_OVER_LAYER = 2
_OVER_INPUT = (2, 3)
_MARK = 1


class DlibFileError(Exception):
    """The file is not a dlib network doppel can read (cut short, or another layer)."""


@dataclass(frozen=True)
class Input:
    """input_rgb_image_sized: an RGB image of nr x nc, (pixel - mean) / 256 per channel."""

    mean_rgb: tuple[float, float, float]
    rows: int
    cols: int


@dataclass(frozen=True)
class Layer:
    """One step of the network, from the input upwards.

    kind: "con", "affine", "relu", "max_pool", "avg_pool", "add_prev", "tag", "skip",
    "fc". Only the fields of its kind are set.
    """

    kind: str
    weights: np.ndarray | None = None  # con: (filters, k, nr, nc); fc: (inputs, outputs)
    bias: np.ndarray | None = None  # con, fc: (outputs,); affine: beta
    scale: np.ndarray | None = None  # affine: gamma, shaped (1, k, nr, nc) to broadcast
    window: tuple[int, int] = (0, 0)  # pooling (0 means the whole input), con kernel
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)


@dataclass
class Network:
    """A dlib network as its file describes it: input, layers bottom-up, loss."""

    input: Input
    layers: list[Layer] = field(default_factory=list)
    loss: str = ""  # the loss layer's record name, e.g. "loss_metric_2"


class _Reader:
    """dlib's serialization primitives over the bytes of a file."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def take(self, count: int) -> bytes:
        if self.at + count > len(self.data):
            raise DlibFileError("the file ends in the middle of a record")
        out = self.data[self.at : self.at + count]
        self.at += count
        return out

    def integer(self) -> int:
        head = self.take(1)[0]
        size = head & 0x0F
        if size == 0 or size > 8 or head & 0x70:
            raise DlibFileError(f"not a dlib integer at byte {self.at - 1}")
        value = int.from_bytes(self.take(size), "little")
        return -value if head & 0x80 else value

    def scalar(self) -> float:
        mantissa, exponent = self.integer(), self.integer()
        specials = {32000: np.inf, 32001: -np.inf, 32002: np.nan}
        if exponent in specials:
            return float(specials[exponent])
        return float(np.ldexp(float(mantissa), exponent))

    def text(self) -> str:
        """A record's name; dlib's names are short, so a long one means another file."""
        size = self.integer()
        if not 0 < size <= 64:
            raise DlibFileError(f"not a dlib network: no record name at byte {self.at}")
        return self.take(size).decode("latin-1")

    def peek_text(self) -> str | None:
        """The string that starts here, without reading it; None if none does."""
        saved = self.at
        try:
            return self.text()
        except DlibFileError:
            return None
        finally:
            self.at = saved

    def flag(self) -> bool:
        value = self.take(1)
        if value not in (b"0", b"1"):
            raise DlibFileError(f"not a dlib bool at byte {self.at - 1}")
        return value == b"1"

    def shape(self) -> tuple[int, int, int, int]:
        return (self.integer(), self.integer(), self.integer(), self.integer())

    def tensor(self) -> np.ndarray:
        version = self.integer()
        dims = self.shape()
        count = int(np.prod(dims))
        if version == 2:  # 4-byte little-endian IEEE floats
            values = np.frombuffer(self.take(4 * count), dtype="<f4").astype(np.float32)
        elif version == 1:  # each value in dlib's scalar form
            values = np.array([self.scalar() for _ in range(count)], dtype=np.float32)
        else:
            raise DlibFileError(f"tensor version {version} is not known")
        return values.reshape(dims)

    def alias(self) -> tuple[int, int, int, int]:
        """An alias_tensor: a view's dimensions into a layer's parameter tensor."""
        if self.integer() != 1:
            raise DlibFileError("alias_tensor version is not known")
        return self.shape()


def read(path: Path) -> Network:
    """Read a dlib network file written by dlib's serialize()."""
    reader = _Reader(path.read_bytes())
    try:
        if reader.integer() != 1:
            raise DlibFileError("not a dlib network: the loss layer's version is not 1")
        loss = reader.text()
        if not loss.startswith("loss_"):
            raise DlibFileError(f"not a dlib network: {loss!r} is not a loss layer")
        _skip_loss_settings(reader, loss)
        wrappers = _wrappers(reader)
        network = Network(_input(reader), loss=loss)
        for position, version in enumerate(reversed(wrappers)):
            if version == _MARK:
                network.layers.append(Layer("mark"))
                continue
            network.layers.append(_layer(reader))
            # Since version 3, the layer over the input also keeps its expansion factor.
            _skip_state(reader, expansion=position == 0 and version == 3)
    except ValueError as exc:  # a shape that does not fit its values
        raise DlibFileError(str(exc)) from exc
    if reader.at != len(reader.data):
        raise DlibFileError(f"{len(reader.data) - reader.at} bytes left after the network")
    network.layers = _marks_resolved(network.layers)
    return network


def _skip_loss_settings(reader: _Reader, loss: str) -> None:
    """The loss layer's own settings: none of them changes what the network outputs."""
    if loss == "loss_metric_2":
        reader.scalar(), reader.scalar()  # margin, distance threshold (training only)
    elif loss == "loss_metric_":
        pass
    else:
        raise DlibFileError(f"the loss layer {loss} is not known")


def _wrappers(reader: _Reader) -> list[int]:
    """The version numbers written before the input layer, outermost first; the last is
    the computing layer right over the input."""
    versions: list[int] = []
    while True:
        version = reader.integer()
        versions.append(version)
        following = reader.peek_text()
        if following is not None and following.startswith("input"):
            if version not in _OVER_INPUT:
                raise DlibFileError("the layer over the input is not an add_layer")
            return versions
        if version not in (_OVER_LAYER, _MARK):
            raise DlibFileError(f"layer version {version} is not known (a repeat layer?)")


def _input(reader: _Reader) -> Input:
    name = reader.text()
    if name != "input_rgb_image_sized":
        raise DlibFileError(f"the input layer {name} is not known")
    mean = (reader.scalar(), reader.scalar(), reader.scalar())
    return Input(mean, reader.integer(), reader.integer())


def _skip_state(reader: _Reader, expansion: bool) -> None:
    """What add_layer keeps after a layer's record: flags and buffers of training."""
    for _ in range(3):
        reader.flag()
    for _ in range(3):  # gradient, cached output, parameter gradient (or final gradient)
        reader.tensor()
    if expansion:
        reader.integer()  # the sample expansion factor


def _layer(reader: _Reader) -> Layer:
    name = reader.text()
    if name == "con_4":
        return _con(reader)
    if name == "affine_":
        params = reader.tensor().reshape(-1)
        gamma, beta = reader.alias(), reader.alias()
        reader.integer()  # mode: conv or fc, already in gamma's shape
        size = int(np.prod(gamma))
        return Layer("affine", scale=params[:size].reshape(gamma), bias=params[size:].reshape(beta))
    if name in ("max_pool_2", "avg_pool_2"):
        window = (reader.integer(), reader.integer())
        stride = (reader.integer(), reader.integer())
        padding = (reader.integer(), reader.integer())
        return Layer(name[:-2], window=window, stride=stride, padding=padding)
    if name in ("relu_", "add_prev_"):
        return Layer(name[:-1])
    if name == "fc_2":
        return _fc(reader)
    raise DlibFileError(f"the layer {name} is not known")


def _con(reader: _Reader) -> Layer:
    params = reader.tensor().reshape(-1)
    filters = reader.integer()
    window = (reader.integer(), reader.integer())
    stride = (reader.integer(), reader.integer())
    padding = (reader.integer(), reader.integer())
    weights, biases = reader.alias(), reader.alias()
    for _ in range(4):  # learning-rate and weight-decay multipliers
        reader.scalar()
    size = int(np.prod(weights))
    if weights[0] != filters or int(np.prod(biases)) != filters:
        raise DlibFileError("a con_ layer's filters do not match its parameters")
    return Layer(
        "con",
        weights=params[:size].reshape(weights),
        bias=params[size : size + filters].copy(),
        window=window,
        stride=stride,
        padding=padding,
    )


def _fc(reader: _Reader) -> Layer:
    outputs, inputs = reader.integer(), reader.integer()
    params = reader.tensor().reshape(-1)
    reader.alias(), reader.alias()  # weights (inputs x outputs), biases (1 x outputs)
    has_bias = reader.integer() == 0  # dlib's FC_HAS_BIAS is 0, FC_NO_BIAS 1
    for _ in range(4):
        reader.scalar()
    weights = params[: inputs * outputs].reshape(inputs, outputs)
    bias = params[inputs * outputs : (inputs + 1) * outputs].copy() if has_bias else None
    return Layer("fc", weights=weights, bias=bias)


def _marks_resolved(layers: list[Layer]) -> list[Layer]:
    """Marks as tags and skips, by the residual idioms (see the module's docstring)."""
    out: list[Layer] = []
    for i, layer in enumerate(layers):
        if layer.kind != "mark":
            out.append(layer)
        elif i > 0 and layers[i - 1].kind == "mark":
            out.append(Layer("skip"))
        else:
            out.append(Layer("tag"))
    return out
