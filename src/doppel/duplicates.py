"""Copies of one picture: a resized, re-compressed or slightly cropped file is a second
file with a second content hash, but the same picture.

Two faces are taken for copies when the difference hashes (dHash) of their photos are
close AND their face vectors are nearly the same, or when the vectors are so alike
(COPY_SIMILARITY_ALONE) that no two distinct photos measured came that near. A
moderate bound on either alone fails: a dHash is 64 bits of coarse brightness steps,
so two photos of one scene (a burst, two lights on one studio portrait) can share
one; two photos of one person taken moments apart can give nearly one vector; and a
crop moves the whole photo's hash further than distinct photos' hashes sometimes lie
apart. The thresholds are measured on made copies of lfw-dev photos
(benchmarks/bench_lookalike.py, docs/benchmarks.md). A face without a hash (loaded
from a dump, where there are no pixels) is a copy by the second rule only; `doppel
gallery hash` computes the hashes of faces whose photos are at hand.

The dHash is a few lines of numpy on Pillow's resize rather than a dependency
(imagehash's dhash is the same algorithm, with PyWavelets and scipy behind it); kept
here it is exactly what the stored column means.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import psycopg
from PIL import Image

from doppel.config import Settings
from doppel.types import Gallery

# dHash: the photo in grey at 9 x 8, each pixel brighter than its right-hand neighbour?
SIDE = 8
# Measured on made copies (resized, re-compressed, cropped) of lfw-dev photos: see
# docs/benchmarks.md, "Copies of one picture". Every made copy was 0.9876 or more alike
# its original, every crop 0.9967 or more; distinct photos of one person at most 0.9911.
COPY_BITS = 20  # at most this many of 64 bits differ
COPY_SIMILARITY = 0.985  # and the face vectors at least this alike
COPY_SIMILARITY_ALONE = 0.995  # or the vectors this alike, whatever the hashes


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
    """Whether two faces are of copies of one picture, by hashes and vector similarity:
    close hashes and alike vectors, or nearly one vector (a crop past COPY_BITS)."""
    if similarity >= COPY_SIMILARITY_ALONE:
        return True
    if hash_a is None or hash_b is None:
        return False
    return similarity >= COPY_SIMILARITY and bits_apart(hash_a, hash_b) <= COPY_BITS


def pictures(
    faces: Sequence[tuple[int | None, np.ndarray]],
    query: Sequence[tuple[int | None, np.ndarray]] = (),
) -> list[int]:
    """The picture each face shows: faces (photo hash, unit vector), in the order of an
    answer, that are copies of one another, directly or through other faces among them
    or the query's, share a number, the first face's position; a face that is a copy
    of a query photo gets -1.

    Copies of one picture are made of each other: a crop and a re-compressed copy of
    one photo can be further apart (22 bits, 0.993) than either is from the original,
    or than two distinct photos of one person; only through the original are they one
    picture, and the original may rank below both.
    """
    nodes = [*query, *faces]
    n = len(nodes)
    lowest = np.arange(n)
    if n > 1:
        matrix = np.vstack([np.asarray(v, dtype=np.float64) for _, v in nodes])
        joined = copies(matrix @ matrix.T, [h for h, _ in nodes])
        # Each face takes the lowest position among its copies' until none changes: the
        # first face of each picture, reached through any chain of copies. Whole-matrix
        # steps, not a loop over pairs: an answer whose candidates are all alike (up to
        # a thousand of them) is checked in milliseconds, not seconds.
        while True:
            step = np.minimum(lowest, np.where(joined, lowest[None, :], n).min(axis=1))
            if np.array_equal(step, lowest):
                break
            lowest = step
    shown = len(query)
    return [-1 if int(lowest[i]) < shown else int(lowest[i]) - shown for i in range(shown, n)]


# Bits set in each byte value, for counting the bits two photo hashes differ in.
_BYTE_BITS = np.array([bin(b).count("1") for b in range(256)], dtype=np.uint8)


def copies(sims: np.ndarray, hashes: Sequence[int | None]) -> np.ndarray:
    """is_copy for every pair at once: sims, the faces' vector similarities (n x n),
    and their photo hashes (None where unknown) give an n x n boolean matrix."""
    known = np.array([h is not None for h in hashes])
    values = np.array([(h or 0) & ((1 << 64) - 1) for h in hashes], dtype=np.uint64)
    differ = values[:, None] ^ values[None, :]
    apart = _BYTE_BITS[differ.view(np.uint8)].reshape(*differ.shape, 8).sum(axis=-1)
    close = (apart <= COPY_BITS) & known[:, None] & known[None, :]
    return (sims >= COPY_SIMILARITY_ALONE) | ((sims >= COPY_SIMILARITY) & close)


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
    unhashed: int = 0  # faces without a photo hash: copies by their vectors alone


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
        return CopyReport(gallery, n, [], sum(h is None for h in hashes))
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
    groups.sort(key=lambda g: g.face_ids)
    return CopyReport(gallery, n, groups, sum(h is None for h in hashes))


# Photos read per transaction by hash_gallery: a Ctrl-C loses at most this many.
HASH_BATCH = 200


@dataclass(frozen=True)
class HashReport:
    """What `doppel gallery hash` did: faces given their photo's hash, photos read, and
    photos that could not be had (their faces keep no hash; a later run tries again)."""

    gallery: Gallery
    faces: int
    photos: int
    missing: int
    unreadable: int
    unreadable_sources: tuple[str, ...] = ()


def photo_hash(source: str, settings: Settings) -> int | None:
    """The dHash of a face's photo as ingest computes it, or None when its file is not
    here (a URL counts as not here: hashing does not download). Raises DoppelError
    for a file that cannot be decoded."""
    from doppel import sources
    from doppel.faces import imaging

    if sources.is_url(source):
        return None
    path = sources.resolve(source, settings)
    if path is None:
        return None
    photo = imaging.decode(
        imaging.read_file(path), source, imaging.MAX_SIDE, settings.max_pixels, min_side=False
    )
    return dhash(photo.pixels)


def hash_gallery(
    conn: psycopg.Connection,
    gallery_name: str | None,
    settings: Settings,
    batch: int = HASH_BATCH,
    progress: Callable[[int, int], None] | None = None,
) -> HashReport:
    """Compute the photo hash of the faces that have none (stored before the hash
    existed, or loaded from a dump) where their photo's file is at hand, a batch of
    photos per transaction: an interrupted run keeps what it did, and the next one
    goes on with the faces still without a hash."""
    from doppel.errors import DoppelError
    from doppel.store.marks import FaceMarks
    from doppel.store.repository import Repository

    gallery = Repository(conn).pick_gallery(gallery_name)
    marks = FaceMarks(conn)
    _, total = marks.unhashed(gallery)
    faces = photos = missing = 0
    unreadable: list[str] = []
    after: str | None = None
    while page := marks.unhashed_sources(gallery, after, batch):
        hashes: dict[str, int] = {}
        for source in page:
            try:
                value = photo_hash(source, settings)
            except DoppelError:
                unreadable.append(source)
                continue
            if value is None:
                missing += 1
            else:
                hashes[source] = value
        faces += marks.set_photo_hashes(gallery, hashes)
        photos += len(hashes)
        after = page[-1]
        if progress is not None:
            progress(photos + missing + len(unreadable), total)
    return HashReport(gallery, faces, photos, missing, len(unreadable), tuple(unreadable))
