"""The methods that score how much a face resembles each person."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from doppel.errors import UsageError


def normalized(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms == 0, 1.0, norms)


class Method:
    """A way to score each person for each target photo, given the people's labelled photos.

    Subclasses set `name`, `title` and `unit`, and implement `scores`; `register` adds them
    to METHODS, and every run, the leave-one-out check and the report pick them up.
    """

    name: ClassVar[str]
    title: ClassVar[str]
    unit: ClassVar[str]  # "cosine similarity" or "probability"

    def scores(
        self, people: np.ndarray, labels: np.ndarray, n_people: int, targets: np.ndarray
    ) -> np.ndarray:
        """An (n_targets, n_people) array: higher means more alike."""
        raise NotImplementedError

    def describe(self) -> str:
        return self.title


METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    METHODS[cls.name] = cls
    return cls


@register
class MeanCosine(Method):
    """Mean cosine similarity of a target photo to each of a person's photos."""

    name = "cosine"
    title = "mean cosine"
    unit = "cosine similarity"

    def scores(
        self, people: np.ndarray, labels: np.ndarray, n_people: int, targets: np.ndarray
    ) -> np.ndarray:
        sims = normalized(targets) @ normalized(people).T
        return np.stack([sims[:, labels == p].mean(axis=1) for p in range(n_people)], axis=1)


@register
class Centroid(Method):
    """Cosine similarity to each person's mean (unit-length) embedding."""

    name = "centroid"
    title = "centroid cosine"
    unit = "cosine similarity"

    def scores(
        self, people: np.ndarray, labels: np.ndarray, n_people: int, targets: np.ndarray
    ) -> np.ndarray:
        unit = normalized(people)
        centres = np.stack([unit[labels == p].mean(axis=0) for p in range(n_people)])
        return normalized(targets) @ normalized(centres).T


@register
@dataclass
class KNearest(Method):
    """Share of each person among the k photos nearest (cosine) to a target photo."""

    k: int | None = None
    name: ClassVar[str] = "knn"
    title: ClassVar[str] = "k nearest"
    unit: ClassVar[str] = "probability"

    def effective_k(self, labels: np.ndarray) -> int:
        """The k asked for, or one no larger than the smallest person's photo count (max 5)."""
        if self.k is not None:
            return max(1, min(self.k, len(labels)))
        smallest = int(np.bincount(labels).min()) if len(labels) else 1
        return max(1, min(5, smallest, len(labels)))

    def scores(
        self, people: np.ndarray, labels: np.ndarray, n_people: int, targets: np.ndarray
    ) -> np.ndarray:
        k = self.effective_k(labels)
        sims = normalized(targets) @ normalized(people).T
        nearest = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        votes = np.zeros((len(targets), n_people))
        for row, idx in enumerate(nearest):
            np.add.at(votes[row], labels[idx], 1.0)
        return votes / k

    def describe(self) -> str:
        return f"{self.title} (k={self.k})" if self.k else self.title


@register
@dataclass
class Logistic(Method):
    """Logistic regression on standardised embeddings: each person's class probability."""

    c: float = 1.0
    name: ClassVar[str] = "logistic"
    title: ClassVar[str] = "logistic regression"
    unit: ClassVar[str] = "probability"

    def scores(
        self, people: np.ndarray, labels: np.ndarray, n_people: int, targets: np.ndarray
    ) -> np.ndarray:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        present = np.unique(labels)
        out = np.zeros((len(targets), n_people))
        if len(present) == 1:
            out[:, present[0]] = 1.0
            return out
        model = make_pipeline(StandardScaler(), LogisticRegression(C=self.c, max_iter=2000))
        model.fit(normalized(people), labels)
        out[:, model.classes_] = model.predict_proba(normalized(targets))
        return out


def build_methods(names: Sequence[str] | None = None, **options: Any) -> list[Method]:
    """Instances of the named methods (all by default), each given the options it takes."""
    chosen = list(names) if names else list(METHODS)
    unknown = [n for n in chosen if n not in METHODS]
    if unknown:
        raise UsageError(f"unknown method {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    built = []
    for name in chosen:
        cls = METHODS[name]
        accepted: set[str] = (
            {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
        )
        built.append(cls(**{k: v for k, v in options.items() if k in accepted and v is not None}))
    return built
