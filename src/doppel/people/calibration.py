"""Same-person thresholds per pipeline: measured on labelled pairs, shipped, looked up.

A threshold is a cosine similarity at or above which two faces are taken for the
same person. Each pipeline's entry (model, detector, alignment, normalisation) also
holds a logistic fit that turns a similarity into a probability of being the same
person (for balanced pairs: half same, half not), and the cut points of people
clustering. `doppel calibrate` measures them on the user's labelled photos (into the
user's file); `benchmarks/bench_people.py` measures them and rewrites thresholds.json.

The fit's 50% point is the threshold itself: only its slope is fitted. A free fit
crosses 50% a little away from the best balanced-accuracy cut (0.909 against 0.9137
for the Dlib model), and then `verify` said "different people" beside a probability
of 57.6%. The threshold is what the published false-accept and false-reject rates
describe and what strangers mode and clustering cut at, so the curve is anchored to
it rather than the other way round.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from importlib import resources
from pathlib import Path

import numpy as np

from doppel.errors import NotCalibrated, Remedy
from doppel.people.clustering import ClusterParams
from doppel.people.scores import ClusterScores
from doppel.types import EmbeddingConfig, Strength, describe

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
        """P(same person | similarity) on balanced pairs: the fitted slope, 50% at the
        threshold, so that the probability and the verdict never disagree."""
        z = self.logistic_a * (similarity - self.threshold)
        return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))

    def same(self, similarity: float) -> bool:
        return similarity >= self.threshold

    def with_threshold(self, threshold: float) -> Calibration:
        """The same fit moved to another threshold (`--threshold`, for one run)."""
        return replace(
            self,
            threshold=threshold,
            logistic_b=round(-self.logistic_a * threshold, 3),
            measured_on=f"{self.measured_on}; threshold set to {threshold} for this run",
        )

    def to_json(self) -> dict:
        data = asdict(self)
        data.pop("pipeline")
        return data

    @classmethod
    def from_json(cls, pipeline: str, data: dict) -> Calibration:
        fields = dict(data)
        fields["cluster"] = ClusterParams(**fields["cluster"])
        return cls(pipeline=pipeline, **fields)


# Below the threshold, how the probability reads: at least this much "could pass for
# you" (the model would take them for one person about one time in four or more), at
# least LIKENESS "a resemblance"; less, "a faint likeness".
PASSES = 0.25
LIKENESS = 0.05


def percent(probability: float) -> str:
    """A probability as a person reads it: whole percents, "<1%" and ">99%" at the ends."""
    if probability < 0.005:
        return "<1%"
    if probability >= 0.995:
        return ">99%"
    return f"{probability:.0%}"


def strength(cal: Calibration, similarity: float, strangers: bool = False) -> Strength:
    """A match's strength: its probability and, in words, what it means for the person
    searching. Outside strangers mode a face at or above the threshold is probably the
    person of the query photo."""
    probability = cal.probability(similarity)
    same = cal.same(similarity)
    if same:
        meaning = "could pass for you" if strangers else "probably you"
    elif probability >= PASSES:
        meaning = "could pass for you"
    elif probability >= LIKENESS:
        meaning = "a resemblance"
    else:
        meaning = "a faint likeness"
    return Strength(probability, same, f"{percent(probability)} — {meaning}")


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


def fit_logistic(same: np.ndarray, different: np.ndarray, threshold: float) -> tuple[float, float]:
    """a, b of P(same) = 1 / (1 + exp(-(a * similarity + b))), on balanced pair weights,
    with b = -a * threshold: the curve crosses 50% at the threshold (see the module's
    docstring), and only its steepness is fitted."""
    from sklearn.linear_model import LogisticRegression

    x = np.concatenate([same, different])[:, None] - threshold
    y = np.concatenate([np.ones(len(same)), np.zeros(len(different))])
    model = LogisticRegression(
        C=1e6, class_weight="balanced", fit_intercept=False, max_iter=1000
    ).fit(x, y)
    a = float(model.coef_[0, 0])
    return a, -a * threshold


def labelled_pairs(vectors: np.ndarray, labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarities of every same-person pair and every different-person pair."""
    v = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    y = np.asarray(labels)
    upper = np.triu_indices(len(y), 1)
    sims = (v @ v.T)[upper]
    same = (y[:, None] == y[None, :])[upper]
    return sims[same], sims[~same]


# Cut points of people clustering, searched on a grid above the threshold: the link
# similarity from 0.015 to 0.05 above it, the join up to 0.01 above the link.
LINKS = np.arange(0.015, 0.0501, 0.005)
JOINS = (0.0, 0.005, 0.01)
# The chosen cut points: the best B-cubed F1 among those with this pair precision.
PRECISION = 0.97


def cluster_grid(threshold: float, shared: float) -> list[ClusterParams]:
    grid = []
    for link in np.round(threshold + LINKS, 4):
        for join in np.round(link + np.array(JOINS), 4):
            grid.append(
                ClusterParams(round(float(link) - 0.02, 4), float(link), float(join), 3, shared)
            )
    return grid


def choose_cluster_params(
    vectors: np.ndarray, labels: Sequence[str], grid: Sequence[ClusterParams]
) -> tuple[ClusterParams, ClusterScores]:
    """The best B-cubed F1 at pair precision PRECISION or more (else the most precise)."""
    from doppel.people.clustering import cluster, exact_neighbours
    from doppel.people.scores import score

    graph, sims = exact_neighbours(vectors, min(20, len(vectors) - 1))
    best = None
    for params in grid:
        s = score(cluster(vectors, graph, sims, params).tolist(), labels)
        good = s.pair_precision >= PRECISION
        key = (good, s.bcubed_f1 if good else s.pair_precision)
        if best is None or key > best[0]:
            best = (key, params, s)
    assert best is not None
    return best[1], best[2]


def measure(
    vectors: np.ndarray, labels: Sequence[str], pipeline: str, model: str, measured_on: str
) -> Calibration:
    """A pipeline's calibration from labelled face vectors (one label per person):
    threshold, rates, the anchored logistic fit and clustering's cut points."""
    same, different = labelled_pairs(vectors, labels)
    if len(same) == 0 or len(different) == 0:
        raise ValueError("labelled faces need at least two people and two faces of one person")
    point = best_threshold(same, different)
    a, b = fit_logistic(same, different, point.threshold)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    params, _ = choose_cluster_params(unit, labels, cluster_grid(point.threshold, 0.05))
    return Calibration(
        pipeline,
        model,
        point.threshold,
        round(point.false_accept, 5),
        round(point.false_reject, 5),
        round(a, 3),
        round(b, 3),
        params,
        measured_on,
    )
