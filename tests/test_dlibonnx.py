"""dlib's recognition ResNet read from its file and run on ONNX Runtime: the same vectors
as dlib's own code on real chips, the fallback to dlib, and a damaged file refused."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from doppel.config import FaceOptions
from doppel.faces import catalog, dlibface, dlibnet, networks, sessions
from doppel.faces.detect import _dlib_boxes
from doppel.faces.embed import Embedder

ROOT = Path(__file__).resolve().parents[1]
LFW = Path(os.environ.get("DOPPEL_TEST_FACES", ROOT.parent / "shared" / "faces")) / "lfw-dev"
# One photo each of six people.
PHOTOS = (
    "Ahmed_Chalabi_0001.jpg",
    "Hans_Blix_0003.jpg",
    "Alan_Greenspan_0001.jpg",
    "Ali_Naimi_0001.jpg",
    "Amelie_Mauresmo_0001.jpg",
    "Andy_Roddick_0001.jpg",
)


def _weights() -> Path:
    return catalog.weights_path("Dlib", "recognition", FaceOptions())


def _chips() -> list[np.ndarray]:
    """The default pipeline's chips of the photos, each followed by its mirror image."""
    import cv2

    if not LFW.is_dir():
        pytest.skip(f"{LFW} is missing")
    chips = []
    for name in PHOTOS:
        path = LFW / "photos" / name
        if not path.is_file():
            pytest.skip(f"{path} is missing")
        rgb = np.ascontiguousarray(cv2.imread(str(path))[:, :, ::-1])
        chip = dlibface.chip(rgb, _dlib_boxes(rgb, "dlib", FaceOptions())[0], FaceOptions())
        chips += [chip, np.ascontiguousarray(chip[:, ::-1])]
    return chips


@pytest.mark.slow
def test_onnx_runtime_gives_dlibs_vectors_on_real_chips() -> None:
    import dlib

    chips = _chips()
    network = sessions.load(networks.dlib_graph(_weights()), "auto", threads=1)
    assert network.candidate.label == "ONNX Runtime"
    ours = dlibface.describe(chips, network)
    theirs = np.asarray(
        dlib.face_recognition_model_v1(str(_weights())).compute_face_descriptor(chips)
    )
    assert ours.shape == (len(chips), 128)
    # Float rounding only (measured: 4.5e-7 at most over all 1,144 lfw-dev chips).
    assert np.abs(ours - theirs).max() < 1e-5
    # The chips are of different people: a graph read wrong would not keep them apart.
    assert np.abs(ours[0] - ours[2]).max() > 0.01


@pytest.mark.slow
def test_the_embedder_runs_dlib_on_onnx_with_its_threads_and_dlib_when_asked() -> None:
    chips = _chips()[:2]
    config = catalog.default_config("Dlib")
    fast = Embedder(config, threads=1)
    vectors = fast.embed_crops([c[:, :, ::-1] for c in chips])  # crops are BGR
    assert fast.runtime_label == "ONNX Runtime"
    assert fast._network.session.get_session_options().intra_op_num_threads == 1  # type: ignore[union-attr]
    original = Embedder(config, options=FaceOptions(runtime="tensorflow"))
    again = original.embed_crops([c[:, :, ::-1] for c in chips])
    assert original.runtime_label == "dlib"
    np.testing.assert_allclose(vectors, again, atol=1e-5)


def test_a_cut_or_other_dlib_file_is_refused_in_one_sentence(tmp_path: Path) -> None:
    import face_recognition_models as frm

    cut = tmp_path / "dlib_face_recognition_resnet_model_v1.dat"
    cut.write_bytes(_weights().read_bytes()[:1_000_000])
    with pytest.raises(dlibnet.DlibFileError, match="ends in the middle"):
        dlibnet.read(cut)
    # dlib's landmark model is no network; its CNN face detector has another loss layer.
    with pytest.raises(dlibnet.DlibFileError, match="^not a dlib network: no record name"):
        dlibnet.read(Path(frm.pose_predictor_five_point_model_location()))
    with pytest.raises(dlibnet.DlibFileError, match="^the loss layer loss_mmod_ is not known"):
        dlibnet.read(Path(frm.cnn_face_detector_model_location()))


def test_the_graph_follows_the_file() -> None:
    """What the file says, not a written-down architecture: the input layer's size and
    means, a descriptor of the fc layer's width, residual additions where tags are."""
    network = dlibnet.read(_weights())
    assert (network.input.rows, network.input.cols) == (150, 150)
    assert network.input.mean_rgb == pytest.approx((122.782, 117.001, 104.298), abs=1e-4)
    kinds = [layer.kind for layer in network.layers]
    assert kinds[0] == "con" and kinds[-1] == "fc"
    assert kinds.count("add_prev") == kinds.count("tag") - kinds.count("skip")
    fc = network.layers[-1]
    assert fc.weights is not None and fc.weights.shape[1] == 128 and fc.bias is None
