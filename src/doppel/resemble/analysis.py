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
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from doppel.config import DEFAULT_MAX_PIXELS
from doppel.errors import NoFaceFound, Remedy, UsageError
from doppel.faces import imaging
from doppel.faces.embed import Embedder
from doppel.resemble.dates import Period, by_period, capture_time
from doppel.resemble.methods import build_methods, normalized
from doppel.resemble.photos import embed_photos
from doppel.resemble.trust import DEFAULT_BOOTSTRAP, MethodResult, evaluate, first_of, verdict
from doppel.types import EmbeddingConfig

Progress = Callable[[int, int], None]


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


def shared_between_people(
    person_photos: dict[str, list[str]], by_path: dict[Path, Any]
) -> list[str]:
    """A note for each two people who hold the same photos (by content): those photos
    count for both, so they cannot tell the two apart."""
    hashes = {
        name: {by_path[Path(p)].content_hash for p in photos}
        for name, photos in person_photos.items()
    }
    names = list(hashes)
    notes = []
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            both = hashes[first] & hashes[second]
            if both:
                notes.append(
                    f"{first} and {second} share {len(both)} photo(s) with the same content; "
                    "those photos count for both and cannot tell them apart"
                )
    return notes


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


# Over 80 lines: embedding, checks with a message each, and the analysis, in order;
# most lines are those messages.
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
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> ResembleResult:
    """Tell which person of PEOPLE_DIR the photos of TARGET_DIR resemble, and how surely.

    Photos are embedded through the cache (see embed_photos); analyse does the rest.
    """
    folders = person_folders(people_dir)
    if not target_dir.is_dir():
        raise UsageError(f"{target_dir}: no such folder of target photos")
    build_methods(methods, k=k)  # an unknown method fails before any embedding
    # Special files, link loops and unreadable folders are passed over and listed with
    # the unreadable photos, as ingest lists them.
    scans = {folder.name: imaging.scan_images(folder) for folder in folders}
    target_scan = imaging.scan_images(target_dir)
    passed_over = [
        f"{imaging.path_text(item.path)}: {item.reason}"
        for scan in (*scans.values(), target_scan)
        for item in scan.skipped
    ]
    person_paths = {name: list(scan.images) for name, scan in scans.items()}
    target_paths = list(target_scan.images)
    if not target_paths:
        raise UsageError(f"{target_dir} holds no photos (.jpg, .jpeg, .png, .webp, .bmp)")
    for name, paths in person_paths.items():
        if not paths:
            raise UsageError(f"person folder {people_dir / name} holds no photos")
    everything = [p for paths in person_paths.values() for p in paths] + target_paths
    collection = embed_photos(conn, everything, embedder, progress, max_pixels)
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
                "photos has a usable face; add clearer, front-facing photos",
                remedy=Remedy.OTHER_DETECTOR,
            )
        person_photos[name] = [imaging.path_text(f.path) for f in usable]
        vectors.extend(f.embedding for f in usable if f.embedding is not None)
        labels.extend([index] * len(usable))
    targets = [by_path[p] for p in target_paths if p in by_path and by_path[p].usable]
    no_face = [imaging.path_text(p) for p in target_paths if p in by_path and not by_path[p].usable]
    if not targets:
        raise NoFaceFound(
            f"no face found in any of the {len(target_paths)} photos in "
            f"{target_dir}; try clearer photos",
            remedy=Remedy.OTHER_DETECTOR,
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
    notes += shared_between_people(person_photos, by_path)
    moments = [capture_time(face.path) for face in targets] if by_date else None
    result = analyse(
        names,
        people_x,
        np.asarray(labels),
        target_x,
        [imaging.path_text(t.path) for t in targets],
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
            "grouping by date shows a trend only for photos taken at different times"
        )
    return dataclasses.replace(
        result,
        no_face=no_face,
        unreadable=[f"{imaging.path_text(p)}: {why}" for p, why in collection.unreadable]
        + passed_over,
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
    rows = _target_rows(results, basis, names, target_names, counts, leader)
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


def _target_rows(
    results: list[MethodResult],
    basis: MethodResult,
    names: list[str],
    target_names: Sequence[str],
    counts: list[int],
    leader: str,
) -> list[TargetPhoto]:
    """Each target photo: its scores by the basis method, the person closest to it, the
    methods' votes, and whether it is closest to someone other than the leader."""
    rows = []
    for i, name in enumerate(target_names):
        row = basis.per_photo[i]
        closest = names[first_of(row)]
        votes = Counter(names[first_of(r.per_photo[i])] for r in results)
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
    return rows


def pca_2d(vectors: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """Project unit-length vectors on their first two principal components.

    Returns the (n, 2) coordinates and the share of variance each component explains.
    """
    unit = normalized(vectors.astype(np.float64))
    centred = unit - unit.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    coords = centred @ vt[:2].T
    if coords.shape[1] < 2:
        coords = np.hstack([coords, np.zeros((len(coords), 2 - coords.shape[1]))])
    var = singular**2
    share = var / var.sum() if var.sum() > 0 else np.zeros_like(var)
    padded = list(share[:2]) + [0.0] * (2 - min(2, len(share)))
    return coords, (float(padded[0]), float(padded[1]))
