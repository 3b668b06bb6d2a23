"""What a gallery holds: counts of faces and files, its index, the attributes present."""

from __future__ import annotations

from doppel.store.index_policy import IndexPolicy
from doppel.types import AttributeValues, Gallery, GalleryStats


class GalleryStatistics(IndexPolicy):
    """Counts and ranges over a gallery's faces, for `gallery stats` and the filters."""

    def stats(self) -> list[GalleryStats]:
        out = []
        for gallery in self.galleries():
            faces = self.face_count(gallery)
            counts: dict[str, int] = dict(
                self.conn.execute(
                    "SELECT status, count(*) FROM images WHERE gallery_id = %s GROUP BY status",
                    (gallery.id,),
                ).fetchall()
            )
            state = self.index_state(gallery)
            out.append(
                GalleryStats(
                    gallery,
                    faces,
                    sum(counts.values()),
                    counts.get("no_face", 0),
                    counts.get("unreadable", 0),
                    state.name if state else None,
                    state.size_bytes if state else 0,
                    state,
                )
            )
        return out

    def attribute_values(self, gallery: Gallery) -> AttributeValues | None:
        """Which sexes, races and ages occur in the gallery; None when it has none."""
        row = self.conn.execute(
            "SELECT array_remove(array_agg(DISTINCT sex::text), NULL),"
            " array_remove(array_agg(DISTINCT race), NULL), min(age), max(age)"
            " FROM faces WHERE gallery_id = %s",
            (gallery.id,),
        ).fetchone()
        if row is None or not (row[0] or row[1] or row[2] is not None):
            return None
        return AttributeValues(
            tuple(sorted(row[0] or [])), tuple(sorted(row[1] or [])), row[2], row[3]
        )

    def has_attributes(self, gallery: Gallery) -> bool:
        """Whether any face of the gallery has an age, sex or race (to filter on)."""
        row = self.conn.execute(
            "SELECT EXISTS (SELECT 1 FROM faces WHERE gallery_id = %s"
            " AND (sex IS NOT NULL OR race IS NOT NULL OR age IS NOT NULL))",
            (gallery.id,),
        ).fetchone()
        return bool(row and row[0])
