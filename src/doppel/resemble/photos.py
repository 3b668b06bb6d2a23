"""Photos of the people and the target, embedded once and cached by content."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psycopg

from doppel.config import DEFAULT_MAX_PIXELS
from doppel.errors import DoppelError
from doppel.faces import imaging
from doppel.faces.embed import Embedder
from doppel.store.cache import EmbeddingCache
from doppel.types import Box, CachedEmbedding

Progress = Callable[[int, int], None]


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
    max_pixels: int = DEFAULT_MAX_PIXELS,
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
    cache = EmbeddingCache(conn)
    cached = cache.cached_embeddings(config.key, sorted(set(hashes.values())))
    total = len(paths)
    done = len(result.unreadable)
    for path, digest in hashes.items():
        entry = cached.get(digest)
        if entry is not None:
            result.faces.append(_from_cache(path, entry))
            result.from_cache += 1
        else:
            try:
                photo = imaging.load(path, max_pixels=max_pixels)
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
                cache.cache_embedding(
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
