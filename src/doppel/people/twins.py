"""`doppel twins`: the most alike pairs of different people in a gallery."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psycopg

from doppel import sources
from doppel.composer import Tile, compose_rows
from doppel.config import Settings
from doppel.errors import EmptyGallery, UsageError
from doppel.people import calibration, clustering
from doppel.store.people import PeopleStore
from doppel.store.people_rows import GalleryFaces
from doppel.store.repository import Repository
from doppel.types import Face, Gallery

# Rows of the similarity matrix computed at once: 1,024 x 70,000 float32 is 290 MB.
BLOCK = 1024
# Candidates per face (index; and the first exact block) before pairs of the same two
# people are folded into one.
PER_FACE = 32
METHODS = ("exact", "index")


@dataclass(frozen=True)
class Twin:
    rank: int
    first: Face
    second: Face
    similarity: float


@dataclass(frozen=True)
class TwinsResult:
    gallery: Gallery
    pairs: list[Twin]
    threshold: float
    by_people: bool  # whether the gallery's people decided who is different
    method: str
    seconds: float
    pictures: list[Path]


def twins(
    conn: psycopg.Connection,
    gallery_name: str | None,
    k: int = 10,
    *,
    method: str = "exact",
    calibration_file: Path | None = None,
    out_dir: Path | None = None,
    settings: Settings | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> TwinsResult:
    """The k most alike pairs of faces of different people, one pair per two people.

    Two faces are of different people when the gallery's people say so; a face in no
    person is different from another when their similarity is below the model's
    same-person threshold. method: "exact" multiplies the whole similarity matrix in
    blocks, "index" asks the HNSW index for each face's nearest faces. out_dir: write a
    picture of each pair there (the settings say where the gallery's photos are).
    """
    if method not in METHODS:
        raise UsageError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    start = time.perf_counter()
    repo = Repository(conn)
    gallery = repo.pick_gallery(gallery_name)
    cal = calibration.for_config(gallery.config, calibration_file)
    store = PeopleStore(conn)
    faces = store.faces(gallery)
    if len(faces.ids) < 2:
        raise EmptyGallery(
            f"gallery {gallery.name!r} has {len(faces.ids)} face(s); twins need at least two"
        )
    if method == "index":
        repo.ensure_index(gallery)
        if not repo.has_index(gallery):  # a background build still running
            method = "exact"
    if method == "exact":
        rows, cols, sims = _exact_candidates(faces, cal.threshold, k, progress)
    else:
        rows, cols, sims = _index_candidates(store, gallery, faces, cal.threshold, progress)
    chosen = _best_pairs(faces, rows, cols, sims, k)
    by_id = store.faces_by_id([int(faces.ids[i]) for pair in chosen for i in pair[:2]])
    pairs = [
        Twin(rank, by_id[int(faces.ids[i])], by_id[int(faces.ids[j])], s)
        for rank, (i, j, s) in enumerate(chosen, start=1)
    ]
    pictures = _pictures(pairs, out_dir, settings)
    return TwinsResult(
        gallery,
        pairs,
        cal.threshold,
        bool((faces.person >= 0).any()),
        method,
        time.perf_counter() - start,
        pictures,
    )


def _pictures(pairs: list[Twin], out_dir: Path | None, settings: Settings | None) -> list[Path]:
    """A picture of each pair in out_dir (none without it)."""
    if out_dir is None:
        return []
    if settings is None:
        raise ValueError("pictures need the settings, to find the gallery's photos")
    return [render(pair, out_dir / f"twins-{pair.rank:02d}.png", settings) for pair in pairs]


def _identities(faces: GalleryFaces) -> np.ndarray:
    """A face's person id, or a number of its own (below zero) when it is in none."""
    return np.where(faces.person >= 0, faces.person, -(faces.ids + 1))


def _allowed(
    ident: np.ndarray, rows: np.ndarray, cols: np.ndarray, sims: np.ndarray, threshold: float
) -> np.ndarray:
    """Pairs of different people: different persons, or (without a person) below the threshold."""
    a, b = ident[rows], ident[cols]
    both_people = (a >= 0) & (b >= 0)
    return (rows != cols) & np.where(both_people, a != b, sims < threshold)


def _exact_candidates(
    faces: GalleryFaces, threshold: float, k: int, progress: Callable[[int, int], None] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs that can still be among the k best, by blocked products over the upper triangle.

    Each block of rows is multiplied with the faces after it only (every pair once).
    Once k pairs of different people are known, the k-th of them is a floor: only
    entries above it are looked at, so most of the matrix costs one comparison.
    """
    unit = clustering.normalise(faces.vectors)
    ident = _identities(faces)
    n = len(unit)
    rows_kept = np.empty(0, np.int64)
    cols_kept = np.empty(0, np.int64)
    sims_kept = np.empty(0, np.float32)
    floor = -np.inf
    for start in range(0, n, BLOCK):
        block = unit[start : start + BLOCK] @ unit[start:].T
        b = len(block)
        block[np.tril_indices(b, 0, block.shape[1])] = -np.inf  # the face itself, and pairs seen
        if np.isfinite(floor):
            r, c = np.nonzero(block > floor)
        else:  # no floor yet: each row's best few
            few = min(PER_FACE, block.shape[1])
            c = np.argpartition(-block, few - 1, axis=1)[:, :few].ravel()
            r = np.repeat(np.arange(b), few)
        rows, cols = r + start, c + start
        sims = block[r, c]
        ok = np.isfinite(sims) & _allowed(ident, rows, cols, sims, threshold)
        rows_kept = np.concatenate([rows_kept, rows[ok]])
        cols_kept = np.concatenate([cols_kept, cols[ok]])
        sims_kept = np.concatenate([sims_kept, sims[ok]])
        best = _best_pairs(faces, rows_kept, cols_kept, sims_kept, k)
        if len(best) == k:
            floor = best[-1][2]
            keep = sims_kept >= floor
            rows_kept, cols_kept, sims_kept = rows_kept[keep], cols_kept[keep], sims_kept[keep]
        if progress is not None:
            progress(min(start + BLOCK, n), n)
    return rows_kept, cols_kept, sims_kept


def _index_candidates(
    store: PeopleStore,
    gallery: Gallery,
    faces: GalleryFaces,
    threshold: float,
    progress: Callable[[int, int], None] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The same candidates, from each face's nearest faces in the HNSW index."""
    near = store.neighbours(
        gallery, faces.ids.tolist(), PER_FACE, unassigned_only=False, progress=progress
    )
    position = {int(face): i for i, face in enumerate(faces.ids)}
    rows, cols, sims = [], [], []
    for face, found in near.items():
        for other, similarity in found:
            rows.append(position[face])
            cols.append(position[other])
            sims.append(similarity)
    r, c = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
    # The index may hold half-precision vectors: similarities again at full precision.
    unit = clustering.normalise(faces.vectors)
    s = np.einsum("id,id->i", unit[r], unit[c]).astype(np.float32)
    ok = _allowed(_identities(faces), r, c, s, threshold)
    return r[ok], c[ok], s[ok]


def _best_pairs(
    faces: GalleryFaces, rows: np.ndarray, cols: np.ndarray, sims: np.ndarray, k: int
) -> list[tuple[int, int, float]]:
    """The k best pairs, most alike first, each pair of identities once."""
    ident = _identities(faces)
    seen: set[tuple[int, int]] = set()
    chosen: list[tuple[int, int, float]] = []
    for at in np.argsort(-sims, kind="stable"):
        i, j = int(rows[at]), int(cols[at])
        a, b = int(ident[i]), int(ident[j])
        key = (min(a, b), max(a, b))
        if key in seen:
            continue
        seen.add(key)
        chosen.append((min(i, j), max(i, j), float(sims[at])))
        if len(chosen) == k:
            break
    return chosen


def render(pair: Twin, out: Path, settings: Settings) -> Path:
    """One pair side by side, with its similarity and who each face is."""
    tiles = [
        Tile(
            sources.load_source(face.source, settings),
            face.box,
            face.person or f"face {face.id}",
            Path(face.source).name or face.source,
        )
        for face in (pair.first, pair.second)
    ]
    compose_rows([(f"#{pair.rank}  similarity {pair.similarity:.3f}", tiles)], out, tile=256)
    return out
