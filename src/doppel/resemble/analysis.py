"""Whom does a face resemble? Several methods score each person; resampling says how surely.

PEOPLE_DIR holds one folder of photos per person, TARGET_DIR the target's photos. Every
method gives one score per person for each target photo; the scores are averaged over the
target's photos, bootstrapped over them for an interval, and each method is also checked by
how well it tells the people apart on their own photos (leave-one-out).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import psycopg

from doppel.errors import DoppelError, NoFaceFound, UsageError
from doppel.faces import imaging
from doppel.faces.embed import Embedder
from doppel.store.repository import Repository
from doppel.types import Box, CachedEmbedding, EmbeddingConfig

Progress = Callable[[int, int], None]

DEFAULT_BOOTSTRAP = 1000
STRONG_SUPPORT = 0.95
MODERATE_SUPPORT = 0.75


# --------------------------------------------------------------------------- embeddings


@dataclass(frozen=True)
class PhotoFace:
    """One photo and the embedding of its largest face (None when no face was found)."""

    path: Path
    content_hash: str
    face_count: int
    embedding: np.ndarray | None
    box: Box | None = None
    confidence: float | None = None
    cached: bool = False

    @property
    def usable(self) -> bool:
        return self.embedding is not None


@dataclass
class Collection:
    """Photos looked at by one run: embedded now, found in the cache, or unreadable."""

    faces: list[PhotoFace] = field(default_factory=list)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)
    embedded: int = 0
    from_cache: int = 0


def _from_cache(path: Path, entry: CachedEmbedding) -> PhotoFace:
    return PhotoFace(
        path,
        entry.content_hash,
        entry.face_count,
        entry.embedding,
        entry.box,
        entry.confidence,
        cached=True,
    )


def embed_photos(
    conn: psycopg.Connection,
    paths: Sequence[Path],
    embedder: Embedder,
    progress: Progress | None = None,
) -> Collection:
    """Embed the largest face of each photo, reusing the cache by file content and model.

    New results, 'no face' included, are written to embedding_cache as they come, so an
    interrupted run keeps what it did and a second run only embeds new photos.
    """
    config = embedder.config
    result = Collection()
    hashes: dict[Path, str] = {}
    for path in paths:
        try:
            hashes[path] = imaging.file_hash(path)
        except DoppelError as exc:
            result.unreadable.append((path, str(exc)))
    repo = Repository(conn)
    cached = repo.cached_embeddings(config.key, sorted(set(hashes.values())))
    total = len(paths)
    done = len(result.unreadable)
    for path, digest in hashes.items():
        entry = cached.get(digest)
        if entry is not None:
            result.faces.append(_from_cache(path, entry))
            result.from_cache += 1
        else:
            try:
                photo = imaging.load(path)
            except DoppelError as exc:
                result.unreadable.append((path, str(exc)))
            else:
                detected = embedder.detect(photo)
                face = PhotoFace(path, digest, len(detected), None)
                if detected:
                    vector = embedder.embed_crops([detected[0].crop])[0]
                    face = PhotoFace(
                        path, digest, len(detected), vector, detected[0].box, detected[0].confidence
                    )
                repo.cache_embedding(
                    config.key,
                    CachedEmbedding(
                        digest, face.face_count, face.embedding, face.box, face.confidence
                    ),
                )
                result.faces.append(face)
                result.embedded += 1
        done += 1
        if progress:
            progress(done, total)
    return result


# --------------------------------------------------------------------------- methods


def _unit(x: np.ndarray) -> np.ndarray:
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
        sims = _unit(targets) @ _unit(people).T
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
        unit = _unit(people)
        centres = np.stack([unit[labels == p].mean(axis=0) for p in range(n_people)])
        return _unit(targets) @ _unit(centres).T


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
        sims = _unit(targets) @ _unit(people).T
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
        model.fit(_unit(people), labels)
        out[:, model.classes_] = model.predict_proba(_unit(targets))
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


# --------------------------------------------------------------------------- trust


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
    def strength(self) -> str:
        if self.support >= STRONG_SUPPORT:
            return "strong"
        return "moderate" if self.support >= MODERATE_SUPPORT else "weak"


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
        hits += int(_first(scores) == labels[i])
    return (hits / tried if tried else None), tried


def _first(scores: np.ndarray) -> int:
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
    winner = _first(mean)
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
    sentence = f"{head}, {how}"
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


# --------------------------------------------------------------------------- dates


def capture_time(path: Path) -> datetime:
    """When a photo was taken: EXIF DateTimeOriginal, else the file's modification time."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            exif = img.getexif()
            text = exif.get_ifd(0x8769).get(36867) or exif.get(306)
        if text:
            return datetime.strptime(str(text).strip("\x00 ")[:19], "%Y:%m:%d %H:%M:%S")
    except (OSError, ValueError, SyntaxError):
        pass
    return datetime.fromtimestamp(path.stat().st_mtime)


PERIODS = ("auto", "year", "month", "day")


def period_of(moment: datetime, unit: str) -> str:
    if unit == "year":
        return f"{moment:%Y}"
    return f"{moment:%Y-%m}" if unit == "month" else f"{moment:%Y-%m-%d}"


def choose_period(moments: Sequence[datetime]) -> str:
    """Years for photos spread over years, months over months, else days."""
    if not moments:
        return "day"
    span = max(moments) - min(moments)
    if span.days >= 2 * 365:
        return "year"
    return "month" if span.days >= 60 else "day"


@dataclass(frozen=True)
class Period:
    """The target's photos from one period and each method's scores over them."""

    label: str
    photos: list[str]
    scores: dict[str, dict[str, float]]  # method -> person -> mean score

    def first(self, method: str) -> str:
        """The person the method scores highest in this period."""
        scores = self.scores[method]
        return max(scores, key=lambda person: scores[person])


def by_period(
    moments: Sequence[datetime],
    results: Sequence[MethodResult],
    names: Sequence[str],
    photos: Sequence[str],
    unit: str = "auto",
) -> list[Period]:
    """Group the target photos by capture period and average each method's scores within it."""
    if unit not in PERIODS:
        raise UsageError(f"unknown period {unit!r}; use one of {', '.join(PERIODS)}")
    unit = choose_period(moments) if unit == "auto" else unit
    groups: dict[str, list[int]] = {}
    for i in sorted(range(len(moments)), key=lambda i: moments[i]):
        groups.setdefault(period_of(moments[i], unit), []).append(i)
    return [
        Period(
            label,
            [photos[i] for i in idx],
            {
                r.name: {p: float(r.per_photo[idx, j].mean()) for j, p in enumerate(names)}
                for r in results
            },
        )
        for label, idx in groups.items()
    ]


# --------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class TargetPhoto:
    """A target photo: the person it is closest to, and how many methods agree."""

    path: str
    closest: str
    scores: dict[str, float]  # per person, by the result's per_photo_basis method
    votes: dict[str, int]  # methods putting each person first for this photo
    face_count: int
    outlier: bool  # closest to someone other than the overall verdict's person


@dataclass
class ResembleResult:
    """Everything `doppel resemble` found; report.py draws and writes it."""

    config: EmbeddingConfig
    people: list[str]
    person_photos: dict[str, list[str]]
    methods: list[MethodResult]
    verdict: str
    targets: list[TargetPhoto]
    per_photo_basis: str  # the method whose per-photo scores `targets` shows
    people_embeddings: np.ndarray
    people_labels: np.ndarray
    target_embeddings: np.ndarray
    no_face: list[str]  # target photos without a face, skipped
    unreadable: list[str]
    notes: list[str]
    embedded: int  # photos embedded by this run (the rest came from the cache)
    from_cache: int
    bootstrap_rounds: int
    seed: int
    periods: list[Period] | None = None

    @property
    def basis(self) -> MethodResult:
        """The method whose per-photo scores `targets` shows (mean cosine when it ran)."""
        return next(m for m in self.methods if m.name == self.per_photo_basis)

    @property
    def leader(self) -> str:
        return Counter(m.winner for m in self.methods).most_common(1)[0][0]


def person_folders(people_dir: Path) -> list[Path]:
    """The person folders of PEOPLE_DIR (hidden ones ignored), at least two of them."""
    if not people_dir.is_dir():
        raise UsageError(
            f"{people_dir}: no such folder; give a folder with one subfolder of photos per person"
        )
    folders = sorted(p for p in people_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(folders) < 2:
        found = f"only {folders[0].name}" if folders else "none"
        raise UsageError(
            f"{people_dir} needs a folder per person, two or more ({found} found); "
            "e.g. people/mum/*.jpg and people/dad/*.jpg"
        )
    return folders


def resemble(
    conn: psycopg.Connection,
    people_dir: Path,
    target_dir: Path,
    embedder: Embedder,
    *,
    methods: Sequence[str] | None = None,
    k: int | None = None,
    rounds: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    by_date: bool = False,
    period: str = "auto",
    progress: Progress | None = None,
) -> ResembleResult:
    """Tell which person of PEOPLE_DIR the photos of TARGET_DIR resemble, and how surely.

    Photos are embedded through the cache (see embed_photos); analyse does the rest.
    """
    folders = person_folders(people_dir)
    if not target_dir.is_dir():
        raise UsageError(f"{target_dir}: no such folder of target photos")
    build_methods(methods, k=k)  # an unknown method fails before any embedding
    person_paths = {folder.name: list(imaging.iter_images(folder)) for folder in folders}
    target_paths = list(imaging.iter_images(target_dir))
    if not target_paths:
        raise UsageError(f"{target_dir} holds no photos (.jpg, .jpeg, .png, .webp, .bmp)")
    for name, paths in person_paths.items():
        if not paths:
            raise UsageError(f"person folder {people_dir / name} holds no photos")
    everything = [p for paths in person_paths.values() for p in paths] + target_paths
    collection = embed_photos(conn, everything, embedder, progress)
    by_path = {face.path: face for face in collection.faces}
    notes = []
    for face in collection.faces:
        if face.face_count > 1:
            notes.append(f"{face.path}: {face.face_count} faces, used the largest")

    names = list(person_paths)
    vectors: list[np.ndarray] = []
    labels: list[int] = []
    person_photos: dict[str, list[str]] = {}
    for index, name in enumerate(names):
        usable = [by_path[p] for p in person_paths[name] if p in by_path and by_path[p].usable]
        if not usable:
            raise NoFaceFound(
                f"person {name} ({people_dir / name}): none of its {len(person_paths[name])} "
                "photos has a usable face; add clearer, front-facing photos or try another "
                "detector (--detector)"
            )
        person_photos[name] = [str(f.path) for f in usable]
        vectors.extend(f.embedding for f in usable if f.embedding is not None)
        labels.extend([index] * len(usable))
    targets = [by_path[p] for p in target_paths if p in by_path and by_path[p].usable]
    no_face = [str(p) for p in target_paths if p in by_path and not by_path[p].usable]
    if not targets:
        raise NoFaceFound(
            f"no face found in any of the {len(target_paths)} photos in "
            f"{target_dir}; try clearer photos or another detector (--detector)"
        )
    people_x = np.vstack(vectors).astype(np.float32)
    target_x = np.vstack([t.embedding for t in targets if t.embedding is not None])
    target_x = target_x.astype(np.float32)
    shared = {f.content_hash for f in targets} & {
        by_path[Path(p)].content_hash for ps in person_photos.values() for p in ps
    }
    if shared:
        notes.append(
            f"{len(shared)} target photo(s) are also among the people's photos; "
            "they inflate the scores of that person"
        )
    moments = [capture_time(face.path) for face in targets] if by_date else None
    result = analyse(
        names,
        people_x,
        np.asarray(labels),
        target_x,
        [str(t.path) for t in targets],
        embedder.config,
        person_photos=person_photos,
        face_counts=[t.face_count for t in targets],
        methods=methods,
        k=k,
        rounds=rounds,
        seed=seed,
        moments=moments,
        period=period,
    )
    if result.periods is not None and len(result.periods) == 1:
        notes.append(
            f"all target photos fall in one period ({result.periods[0].label}); "
            "--by-date shows a trend only for photos taken at different times"
        )
    return dataclasses.replace(
        result,
        no_face=no_face,
        unreadable=[f"{p}: {why}" for p, why in collection.unreadable],
        notes=notes,
        embedded=collection.embedded,
        from_cache=collection.from_cache,
    )


def analyse(
    names: Sequence[str],
    people: np.ndarray,
    labels: np.ndarray,
    targets: np.ndarray,
    target_names: Sequence[str],
    config: EmbeddingConfig,
    *,
    person_photos: dict[str, list[str]] | None = None,
    face_counts: Sequence[int] | None = None,
    methods: Sequence[str] | None = None,
    k: int | None = None,
    rounds: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    moments: Sequence[datetime] | None = None,
    period: str = "auto",
) -> ResembleResult:
    """Run every method on embeddings already made: scores, intervals, LOO, verdict, periods.

    labels[i] is the index in names of the person of people[i]; targets are the target's
    embeddings, named by target_names.
    """
    names = list(names)
    if len(names) < 2:
        raise UsageError("resemblance needs two or more people to compare")
    chosen = build_methods(methods, k=k)
    results = [evaluate(m, people, labels, names, targets, rounds, seed) for m in chosen]
    summary = verdict(results, len(targets))
    leader = Counter(r.winner for r in results).most_common(1)[0][0]
    basis = next((r for r in results if r.name == "cosine"), results[0])
    counts = list(face_counts) if face_counts is not None else [1] * len(targets)
    rows = []
    for i, name in enumerate(target_names):
        row = basis.per_photo[i]
        closest = names[_first(row)]
        votes = Counter(names[_first(r.per_photo[i])] for r in results)
        rows.append(
            TargetPhoto(
                name,
                closest,
                {p: float(row[j]) for j, p in enumerate(names)},
                {p: votes.get(p, 0) for p in names},
                counts[i],
                closest != leader,
            )
        )
    periods = (
        by_period(moments, results, names, target_names, period) if moments is not None else None
    )
    if person_photos is None:
        person_photos = {
            p: [f"{p} photo {n + 1}" for n in range(int((labels == i).sum()))]
            for i, p in enumerate(names)
        }
    return ResembleResult(
        config=config,
        people=names,
        person_photos=person_photos,
        methods=results,
        verdict=summary,
        targets=rows,
        per_photo_basis=basis.name,
        people_embeddings=people,
        people_labels=labels,
        target_embeddings=targets,
        no_face=[],
        unreadable=[],
        notes=[],
        embedded=0,
        from_cache=0,
        bootstrap_rounds=rounds,
        seed=seed,
        periods=periods,
    )


def pca_2d(vectors: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """Project unit-length vectors on their first two principal components.

    Returns the (n, 2) coordinates and the share of variance each component explains.
    """
    unit = _unit(vectors.astype(np.float64))
    centred = unit - unit.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    coords = centred @ vt[:2].T
    if coords.shape[1] < 2:
        coords = np.hstack([coords, np.zeros((len(coords), 2 - coords.shape[1]))])
    var = singular**2
    share = var / var.sum() if var.sum() > 0 else np.zeros_like(var)
    padded = list(share[:2]) + [0.0] * (2 - min(2, len(share)))
    return coords, (float(padded[0]), float(padded[1]))
