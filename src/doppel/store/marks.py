"""What tells a search's matches apart beyond the search itself: the faces' vectors and
photo hashes (copies of one picture, one face per stranger) and people's labels."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import psycopg

from doppel.types import Gallery


class FaceMarks:
    """Reads on a connection from doppel.store.db.connect."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    def vectors(self, face_ids: Sequence[int]) -> dict[int, np.ndarray]:
        """The stored vectors of some faces, by id (to compare matches among themselves)."""
        return {i: v for i, (v, _) in self.marks(face_ids).items()}

    def marks(self, face_ids: Sequence[int]) -> dict[int, tuple[np.ndarray, int | None]]:
        """The vector and photo hash of some faces, by id: what tells copies apart."""
        if not face_ids:
            return {}
        # Binary: the text form of a vector is parsed number by number in Python, which
        # cost a Facenet512 search more CPU than its face work.
        with self.conn.cursor(binary=True) as cur:
            cur.execute(
                "SELECT id, embedding, phash FROM faces WHERE id = ANY(%s::bigint[])",
                (list(face_ids),),
            )
            rows = cur.fetchall()
        return {int(i): (np.asarray(v.to_numpy(), dtype=np.float32), h) for i, v, h in rows}

    def gallery_marks(self, gallery: Gallery) -> tuple[list[int], list[str], np.ndarray, list]:
        """Every face's id, source, vector and photo hash (doppel gallery duplicates)."""
        with self.conn.cursor(binary=True) as cur:
            cur.execute(
                "SELECT id, source, embedding, phash FROM faces WHERE gallery_id = %s ORDER BY id",
                (gallery.id,),
            )
            rows = cur.fetchall()
        if not rows:
            return [], [], np.empty((0, gallery.dimension), np.float32), []
        ids, sources, vectors, hashes = zip(*rows, strict=True)
        matrix = np.vstack([np.asarray(v.to_numpy(), dtype=np.float32) for v in vectors])
        return list(ids), list(sources), matrix, list(hashes)

    def unhashed(self, gallery: Gallery) -> tuple[int, int]:
        """How many faces have no photo hash, and from how many photos."""
        row = self.conn.execute(
            "SELECT count(*), count(DISTINCT source) FROM faces"
            " WHERE gallery_id = %s AND phash IS NULL",
            (gallery.id,),
        ).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def unhashed_sources(self, gallery: Gallery, after: str | None, limit: int) -> list[str]:
        """The next `limit` photos (sources, in order, after `after`) with a face that has
        no photo hash: a page at a time, so a run can go on past files that are missing."""
        rows = self.conn.execute(
            "SELECT DISTINCT source FROM faces WHERE gallery_id = %s AND phash IS NULL"
            " AND (%s::text IS NULL OR source > %s::text) ORDER BY source LIMIT %s",
            (gallery.id, after, after, limit),
        ).fetchall()
        return [r[0] for r in rows]

    def set_photo_hashes(self, gallery: Gallery, hashes: dict[str, int]) -> int:
        """Give every face of each photo (by source) its photo hash, in one transaction;
        the number of faces hashed."""
        if not hashes:
            return 0
        with self.conn.transaction():
            cur = self.conn.execute(
                "UPDATE faces SET phash = h.phash"
                " FROM unnest(%s::text[], %s::bigint[]) AS h(source, phash)"
                " WHERE faces.gallery_id = %s AND faces.source = h.source"
                " AND faces.phash IS NULL",
                (list(hashes), list(hashes.values()), gallery.id),
            )
            return cur.rowcount

    def person_labels(self, person_ids: Sequence[int]) -> dict[int, str]:
        """Each person's name, else "person N"."""
        if not person_ids:
            return {}
        rows = self.conn.execute(
            "SELECT id, name FROM people WHERE id = ANY(%s::bigint[])", (list(person_ids),)
        ).fetchall()
        named = {int(i): name for i, name in rows if name}
        return {p: named.get(p, f"person {p}") for p in person_ids}
