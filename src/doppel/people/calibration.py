"""Same-person thresholds per pipeline: measured on labelled pairs, shipped, looked up.

A threshold is a cosine similarity at or above which two faces are taken for the
same person. Each pipeline's entry (model, detector, alignment, normalisation) also
holds a logistic fit that turns a similarity into a probability of being the same
person (for balanced pairs: half same, half not), and the cut points of people
clustering. `benchmarks/bench_people.py`
measures them all and rewrites thresholds.json.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from doppel.errors import NotCalibrated, Remedy
from doppel.people.clustering import ClusterParams
from doppel.types import EmbeddingConfig, describe

SHIPPED = "thresholds.json"


@dataclass(frozen=True)
class Calibration:
    """What was measured for one embedding pipeline (model, detector, ...), and how."""

    pipeline: str  # EmbeddingConfig.key of the faces it was measured on
    model: str
    threshold: float
    false_accept: float  # share of different-person pairs at or above the threshold
    false_reject: float  # share of same-person pairs below it
    logistic_a: float
    logistic_b: float
    cluster: ClusterParams
    measured_on: str  # the data, in words

    def probability(self, similarity: float) -> float:
        """P(same person | similarity), from the logistic fit on balanced pairs."""
        z = self.logistic_a * similarity + self.logistic_b
        return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))

    def same(self, similarity: float) -> bool:
        return similarity >= self.threshold

    def to_json(self) -> dict:
        data = asdict(self)
        data.pop("pipeline")
        return data

    @classmethod
    def from_json(cls, pipeline: str, data: dict) -> Calibration:
        fields = dict(data)
        fields["cluster"] = ClusterParams(**fields["cluster"])
        return cls(pipeline=pipeline, **fields)


def _read(path: Path | None) -> dict[str, dict]:
    if path is None:
        text = resources.files("doppel.people").joinpath(SHIPPED).read_text(encoding="utf-8")
    elif path.is_file():
        text = path.read_text(encoding="utf-8")
    else:
        return {}
    return dict(json.loads(text))


def known(user_file: Path | None = None) -> dict[str, Calibration]:
    """Every calibrated pipeline: the shipped ones, overridden by the user's own file."""
    entries = {**_read(None), **(_read(user_file) if user_file else {})}
    return {key: Calibration.from_json(key, data) for key, data in entries.items()}


def for_config(config: EmbeddingConfig, user_file: Path | None = None) -> Calibration:
    """The calibration of this exact pipeline, or a NotCalibrated error saying how to measure it.

    Thresholds do not carry over between pipelines: the same model gives other
    similarities with another detector or alignment.
    """
    found = known(user_file)
    if config.key in found:
        return found[config.key]
    have = ", ".join(sorted(found)) or "none"
    raise NotCalibrated(
        f"no same-person threshold has been measured for {describe(config)} (calibrated: {have})",
        remedy=Remedy.CALIBRATE,
        model=config.model,
        detector=config.detector,
    )


def save(calibration: Calibration, path: Path) -> None:
    """Add or replace one pipeline's entry in a calibration file."""
    entries = _read(path) if path.is_file() else {}
    entries[calibration.pipeline] = calibration.to_json()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entries, indent=2, sort_keys=True) + "\n", encoding="utf-8")


# Measuring ---------------------------------------------------------------------


@dataclass(frozen=True)
class OperatingPoint:
    threshold: float
    accuracy: float  # on balanced pairs
    false_accept: float
    false_reject: float


def best_threshold(same: np.ndarray, different: np.ndarray) -> OperatingPoint:
    """The similarity cut with the best balanced accuracy: (1 - FAR + 1 - FRR) / 2.

    Balanced, so the many more different-person pairs of a labelled set do not
    drag the threshold up; ties go to the lowest cut.
    """
    cuts = np.unique(np.concatenate([same, different]))
    same_sorted, diff_sorted = np.sort(same), np.sort(different)
    frr = np.searchsorted(same_sorted, cuts, side="left") / len(same)
    far = 1.0 - np.searchsorted(diff_sorted, cuts, side="left") / len(different)
    accuracy = 1.0 - (far + frr) / 2
    best = int(np.argmax(accuracy))
    # Midway to the next cut, so a rerun on slightly different data is not on the edge.
    cut = float(cuts[best])
    below = cuts[best - 1] if best > 0 else cut
    midway = round((cut + float(below)) / 2, 4)
    return OperatingPoint(midway, float(accuracy[best]), float(far[best]), float(frr[best]))


def rates(same: np.ndarray, different: np.ndarray, threshold: float) -> tuple[float, float]:
    """(false accept, false reject) at a threshold."""
    return float((different >= threshold).mean()), float((same < threshold).mean())


def fit_logistic(same: np.ndarray, different: np.ndarray) -> tuple[float, float]:
    """a, b of P(same) = 1 / (1 + exp(-(a * similarity + b))), on balanced pair weights."""
    from sklearn.linear_model import LogisticRegression

    x = np.concatenate([same, different])[:, None]
    y = np.concatenate([np.ones(len(same)), np.zeros(len(different))])
    model = LogisticRegression(C=1e6, class_weight="balanced", max_iter=1000).fit(x, y)
    return float(model.coef_[0, 0]), float(model.intercept_[0])


def labelled_pairs(vectors: np.ndarray, labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarities of every same-person pair and every different-person pair."""
    v = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    y = np.asarray(labels)
    upper = np.triu_indices(len(y), 1)
    sims = (v @ v.T)[upper]
    same = (y[:, None] == y[None, :])[upper]
    return sims[same], sims[~same]
