"""The embedding cache: the largest face of a photo outside any gallery (resemble's
photos), kept per file content and embedding configuration so a second run only embeds
new photos.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import psycopg

from doppel.store.rows import box_or_none
from doppel.types import CachedEmbedding


class EmbeddingCache:
    """Cached embeddings on a caller's connection."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    def cached_embeddings(
        self, config_key: str, hashes: Sequence[str]
    ) -> dict[str, CachedEmbedding]:
        """Cached largest faces of these file contents under one embedding configuration."""
        rows = self.conn.execute(
            "SELECT content_hash, face_count, box_x, box_y, box_w, box_h, confidence, embedding"
            " FROM embedding_cache WHERE config = %s AND content_hash = ANY(%s)"
            " AND face_index = 0",
            (config_key, list(hashes)),
        ).fetchall()
        out = {}
        for digest, count, x, y, w, h, confidence, vector in rows:
            embedding = (
                None
                if count == 0 or vector is None
                else np.asarray(vector.to_numpy(), dtype=np.float32)
            )
            out[digest] = CachedEmbedding(
                digest, count, embedding, box_or_none(x, y, w, h), confidence
            )
        return out

    def cache_embedding(self, config_key: str, entry: CachedEmbedding) -> None:
        """Remember a photo's largest face (or that it has none) for this configuration."""
        box = entry.box
        self.conn.execute(
            "INSERT INTO embedding_cache (config, content_hash, face_index, face_count,"
            " box_x, box_y, box_w, box_h, confidence, embedding)"
            " VALUES (%s, %s, 0, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (
                config_key,
                entry.content_hash,
                entry.face_count,
                box.x if box else None,
                box.y if box else None,
                box.w if box else None,
                box.h if box else None,
                entry.confidence,
                entry.embedding,
            ),
        )
