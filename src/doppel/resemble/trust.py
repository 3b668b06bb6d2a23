"""How sure a method is: bootstrap intervals, leave-one-out accuracy, the verdict."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from doppel.resemble.methods import Method

DEFAULT_BOOTSTRAP = 1000
STRONG_SUPPORT = 0.95
MODERATE_SUPPORT = 0.75


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


@dataclass(frozen=True)
class MethodResult:
    """One method's answer: a score per person with its bootstrap interval, and its record."""

    name: str
    title: str
    unit: str
    scores: dict[str, float]
    intervals: dict[str, Interval]
    winner: str
    support: float  # share of bootstrap resamples in which the winner stays first
    loo_accuracy: float | None  # on the people's own photos; None when it cannot be measured
    loo_photos: int
    per_photo: np.ndarray  # (n_targets, n_people)

    @property
    def ranking(self) -> list[str]:
        return sorted(self.scores, key=lambda p: -self.scores[p])

    @property
    def margin(self) -> float:
        first, second = self.ranking[:2]
        return self.scores[first] - self.scores[second]

    @property
    def tied(self) -> bool:
        """Whether the first two people score alike (as when they share their photos):
        then the first is first by order alone, however often a resample keeps it."""
        return len(self.scores) > 1 and self.margin <= TIE

    @property
    def strength(self) -> str:
        if self.support >= STRONG_SUPPORT:
            return "strong"
        return "moderate" if self.support >= MODERATE_SUPPORT else "weak"


# Scores closer than this are equal: float sums of one set of vectors in another order.
TIE = 1e-6


def leave_one_out(
    method: Method, people: np.ndarray, labels: np.ndarray, n_people: int
) -> tuple[float | None, int]:
    """Accuracy at naming the person of each people photo from all the other photos.

    A photo whose person has no other photo is left out (nobody could name it).
    """
    counts = np.bincount(labels, minlength=n_people)
    hits = tried = 0
    for i in range(len(labels)):
        if counts[labels[i]] < 2:
            continue
        keep = np.arange(len(labels)) != i
        scores = method.scores(people[keep], labels[keep], n_people, people[i : i + 1])[0]
        tried += 1
        hits += int(first_of(scores) == labels[i])
    return (hits / tried if tried else None), tried


def first_of(scores: np.ndarray) -> int:
    """Index of the highest score; ties go to the lowest index, deterministically."""
    return int(np.argmax(scores))


def bootstrap(
    per_photo: np.ndarray, rounds: int = DEFAULT_BOOTSTRAP, seed: int = 0, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resample the target photos: (low, high) percentile interval per person, and the
    share of resamples in which each person comes first."""
    n = per_photo.shape[0]
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n, size=(rounds, n))
    means = per_photo[picks].mean(axis=1)  # rounds x people
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail], axis=0)
    firsts = np.bincount(np.argmax(means, axis=1), minlength=per_photo.shape[1]) / rounds
    return low, high, firsts


def evaluate(
    method: Method,
    people: np.ndarray,
    labels: np.ndarray,
    names: Sequence[str],
    targets: np.ndarray,
    rounds: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
) -> MethodResult:
    """Score the target with one method, bootstrap over its photos, and check the method by LOO."""
    n_people = len(names)
    per_photo = method.scores(people, labels, n_people, targets)
    mean = per_photo.mean(axis=0)
    low, high, firsts = bootstrap(per_photo, rounds, seed)
    winner = first_of(mean)
    accuracy, tried = leave_one_out(method, people, labels, n_people)
    return MethodResult(
        name=method.name,
        title=method.describe(),
        unit=method.unit,
        scores={p: float(mean[i]) for i, p in enumerate(names)},
        intervals={p: Interval(float(low[i]), float(high[i])) for i, p in enumerate(names)},
        winner=names[winner],
        support=float(firsts[winner]),
        loo_accuracy=accuracy,
        loo_photos=tried,
        per_photo=per_photo,
    )


def _join(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def verdict(results: Sequence[MethodResult], photos: int) -> str:
    """One sentence: how many methods agree, and how strongly; or that the evidence is split."""
    if not results:
        return "No method was run."
    ties = [r for r in results if r.tied]
    if len(ties) == len(results):
        pairs = sorted({" and ".join(r.ranking[:2]) for r in ties})
        return (
            f"No method can tell: every one scores {'; '.join(pairs)} exactly alike "
            "(do they share the same photos?)."
        )
    tie_note = ""
    if ties:
        verb = "scores" if len(ties) == 1 else "score"
        pair = f"{ties[0].ranking[0]} and {ties[0].ranking[1]}"
        tie_note = f" ({_join([r.title for r in ties])} {verb} {pair} alike, so left out)"
    results = [r for r in results if not r.tied]
    votes = Counter(r.winner for r in results)
    (leader, count), *rest = votes.most_common()
    total = len(results)
    if rest and rest[0][1] == count or count * 2 <= total:
        camps = "; ".join(
            f"{_join([r.title for r in results if r.winner == person])} "
            f"favour{'s' if n == 1 else ''} {person}"
            for person, n in votes.most_common()
        )
        return f"The evidence is split: {camps}."
    agreeing = [r for r in results if r.winner == leader]
    strong = sum(r.strength == "strong" for r in agreeing)
    head = (
        f"All {total} methods put {leader} first"
        if count == total
        else f"{count} of {total} methods put {leader} first"
    )
    if strong == count:
        how = (
            f"each strongly: {leader} stays first in at least {STRONG_SUPPORT:.0%} of "
            f"resamples of the {photos} target photo{'s' if photos != 1 else ''}"
        )
    elif strong:
        how = f"{strong} of them strongly (first in at least {STRONG_SUPPORT:.0%} of resamples)"
    else:
        lowest = min(r.support for r in agreeing)
        how = f"but weakly: {leader} stays first in as few as {lowest:.0%} of resamples"
    sentence = f"{head}, {how}{tie_note}"
    if count < total:
        others = [f"{r.title} favours {r.winner}" for r in results if r.winner != leader]
        sentence += f" ({_join(others)})"
    accuracies = [r.loo_accuracy for r in agreeing if r.loo_accuracy is not None]
    if photos == 1:
        sentence += "; with one target photo there is nothing to resample, so add photos"
    if accuracies and min(accuracies) < 0.75:
        sentence += (
            f"; yet some of them tell the people apart on their own photos only "
            f"{min(accuracies):.0%} of the time, so take it lightly"
        )
    return sentence + "."
