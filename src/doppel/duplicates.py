"""Copies of one picture: a resized, re-compressed or slightly cropped file is a second
file with a second content hash, but the same picture.

Two faces are taken for copies when the difference hashes (dHash) of their photos are
close AND their face vectors are nearly the same. Either alone fails: a dHash is 64
bits of coarse brightness steps, so two photos of one scene (a burst, two lights
on one studio portrait) can share one; and two photos of one person taken moments
apart can give nearly one vector. The thresholds are measured on made copies of
lfw-dev photos (benchmarks/bench_lookalike.py, docs/benchmarks.md). A face without a
hash (loaded from a dump, where there are no pixels) is compared by its vector alone,
at the stricter COPY_SIMILARITY_ALONE.

The dHash is a few lines of numpy on Pillow's resize rather than a dependency
(imagehash's dhash is the same algorithm, with PyWavelets and scipy behind it); kept
here it is exactly what the stored column means.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import psycopg
from PIL import Image

from doppel.types import Gallery

# dHash: the photo in grey at 9 x 8, each pixel brighter than its right-hand neighbour?
SIDE = 8
# Measured on made copies (resized, re-compressed, cropped 4% a side) of lfw-dev photos:
# see docs/benchmarks.md, "Copies of one picture".
COPY_BITS = 20  # at most this many of 64 bits differ
COPY_SIMILARITY = 0.985  # and the face vectors at least this alike
COPY_SIMILARITY_ALONE = 0.995  # where a face has no hash


def dhash(pixels: np.ndarray) -> int:
    """The 64-bit difference hash of an RGB (or grey) image, as a signed integer (bigint)."""
    img = Image.fromarray(np.asarray(pixels, dtype=np.uint8)).convert("L")
    small = np.asarray(img.resize((SIDE + 1, SIDE), Image.Resampling.BOX), dtype=np.int16)
    bits = (small[:, 1:] > small[:, :-1]).ravel()
    value = int(np.packbits(bits).view(">u8")[0])
    return value - (1 << 64) if value >= 1 << 63 else value


def bits_apart(a: int, b: int) -> int:
    """How many of the 64 bits two hashes differ in."""
    return ((a ^ b) & ((1 << 64) - 1)).bit_count()


def is_copy(hash_a: int | None, hash_b: int | None, similarity: float) -> bool:
    """Whether two faces are of copies of one picture, by hashes and vector similarity."""
    if hash_a is None or hash_b is None:
        return similarity >= COPY_SIMILARITY_ALONE
    return similarity >= COPY_SIMILARITY and bits_apart(hash_a, hash_b) <= COPY_BITS


# Copies of one face looked for among each face's nearest faces: more than this many
# copies of one picture in one gallery would be split into several groups.
NEAREST = 8


@dataclass(frozen=True)
class CopyGroup:
    """Faces that are copies of one picture, the first stored first."""

    face_ids: tuple[int, ...]
    sources: tuple[str, ...]


@dataclass(frozen=True)
class CopyReport:
    gallery: Gallery
    faces: int
    groups: list[CopyGroup]


def copy_groups(conn: psycopg.Connection, gallery_name: str | None) -> CopyReport:
    """The groups of copies of one picture in a gallery (doppel gallery duplicates):
    each face against its nearest faces (exact, by blocked products), joined where
    is_copy says so."""
    from doppel.people.clustering import exact_neighbours
    from doppel.store.marks import FaceMarks
    from doppel.store.repository import Repository

    repo = Repository(conn)
    gallery = repo.pick_gallery(gallery_name)
    ids, sources, vectors, hashes = FaceMarks(conn).gallery_marks(gallery)
    n = len(ids)
    if n < 2:
        return CopyReport(gallery, n, [])
    graph, sims = exact_neighbours(vectors, NEAREST)
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(n):
        for j, sim in zip(graph[i], sims[i], strict=True):
            if is_copy(hashes[i], hashes[int(j)], float(sim)):
                a, b = root(i), root(int(j))
                if a != b:
                    parent[max(a, b)] = min(a, b)
    members: dict[int, list[int]] = {}
    for i in range(n):
        members.setdefault(root(i), []).append(i)
    groups = [
        CopyGroup(tuple(ids[i] for i in rows), tuple(sources[i] for i in rows))
        for rows in members.values()
        if len(rows) > 1
    ]
    return CopyReport(gallery, n, sorted(groups, key=lambda g: g.face_ids))
