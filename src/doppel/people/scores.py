"""How well a grouping into people matches the true identities."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClusterScores:
    pair_precision: float  # of the face pairs put together, the share of one person
    pair_recall: float  # of the same-person pairs, the share put together
    bcubed_precision: float
    bcubed_recall: float
    assigned: float  # share of faces in some person
    people: int

    @property
    def bcubed_f1(self) -> float:
        p, r = self.bcubed_precision, self.bcubed_recall
        return 2 * p * r / (p + r) if p + r else 0.0


def score(labels: Sequence[int], truth: Sequence[str]) -> ClusterScores:
    """Pairwise and B-cubed precision/recall; an unassigned face (-1) is a person alone."""
    pred = np.asarray(labels)
    n = len(pred)
    _, true_ids = np.unique(np.asarray(truth), return_inverse=True)
    own = np.where(pred >= 0, pred, -(np.arange(n) + 1))  # unassigned: a singleton each
    together = own[:, None] == own[None, :]
    same = true_ids[:, None] == true_ids[None, :]
    off = ~np.eye(n, dtype=bool)
    tp = int((together & same & off).sum())
    put = int((together & off).sum())
    true = int((same & off).sum())
    both = (together & same).sum(axis=1)
    return ClusterScores(
        tp / put if put else 1.0,
        tp / true if true else 1.0,
        float((both / together.sum(axis=1)).mean()),
        float((both / same.sum(axis=1)).mean()),
        float((pred >= 0).mean()),
        len(np.unique(pred[pred >= 0])),
    )
