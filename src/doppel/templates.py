"""Several photos of one person as one query: checked to be one person, then combined.

A single photo carries its light, pose and expression into every search; the mean of
several photos' unit vectors keeps what they share, the face. benchmarks/bench_lookalike.py
compares the plain mean with a mean weighted by each face's size and finds them alike
(docs/benchmarks.md), so the plain mean is used: it needs nothing but the vectors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from doppel.errors import UsageError


def unit(vectors: np.ndarray) -> np.ndarray:
    v = np.asarray(vectors, dtype=np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def combine(vectors: np.ndarray, weights: Sequence[float] | None = None) -> np.ndarray:
    """One template from several face vectors: the (weighted) mean of their unit vectors,
    itself of unit length, as float32 like a stored embedding."""
    u = unit(vectors)
    w = np.ones(len(u)) if weights is None else np.asarray(weights, dtype=np.float64)
    mean = (u * w[:, None]).sum(axis=0) / w.sum()
    return (mean / np.linalg.norm(mean)).astype(np.float32)


@dataclass(frozen=True)
class TemplateCheck:
    """How alike the photos of a template are: each photo's similarity to the mean of
    the others (both photos' similarity when there are two)."""

    names: tuple[str, ...]
    similarities: tuple[float, ...]
    threshold: float | None  # None: the pipeline has no calibration, nothing was checked

    @property
    def odd(self) -> int | None:
        """The photo least like the others, when it is below the threshold."""
        if self.threshold is None:
            return None
        worst = int(np.argmin(self.similarities))
        return worst if self.similarities[worst] < self.threshold else None

    def describe(self) -> str:
        n = len(self.names)
        if self.threshold is None:
            return f"{n} photos combined (not checked to be one person: no calibration)"
        return (
            f"{n} photos of one person combined (each {min(self.similarities):.3f} or more "
            f"like the others; same-person threshold {self.threshold:.4f})"
        )


def check(names: Sequence[str], vectors: np.ndarray, threshold: float | None) -> TemplateCheck:
    """Each photo against the mean face of the others."""
    u = unit(vectors)
    sims = []
    for i in range(len(u)):
        others = np.delete(u, i, axis=0)
        sims.append(float(u[i] @ combine(others)))
    return TemplateCheck(tuple(names), tuple(sims), threshold)


def require_one_person(result: TemplateCheck, model: str) -> None:
    """Refuse a template whose photos are not one person, naming the odd photo out."""
    odd = result.odd
    if odd is None or result.threshold is None:
        return
    sim, name = result.similarities[odd], result.names[odd]
    if len(result.names) == 2:
        first, second = result.names
        raise UsageError(
            f"{first} and {second} do not look like one person (similarity {sim:.3f}, below "
            f"{model}'s same-person threshold {result.threshold:.4f}); search with each alone"
        )
    raise UsageError(
        f"{name} does not look like the same person as the other photos (similarity "
        f"{sim:.3f} to their mean face, below {model}'s same-person threshold "
        f"{result.threshold:.4f}); leave it out"
    )
