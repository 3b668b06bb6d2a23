"""The galleries table: finding a gallery, making one, its configuration and face count."""

from __future__ import annotations

from collections.abc import Sequence

from doppel.errors import EmptyGallery, GalleryMismatch, Remedy, UnknownGallery, UsageError
from doppel.store import indexes
from doppel.store.db import has_halfvec
from doppel.store.rows import Rows
from doppel.types import EmbeddingConfig, Gallery, check_gallery_name, describe, is_storable


class GalleryRows(Rows):
    """Galleries by name, made or checked against an embedding configuration."""

    def _gallery_from_row(self, row: Sequence) -> Gallery:
        gid, name, model, detector, align, normalization, dimension, storage, created = row[:9]
        alignment, flip = row[9:11]
        config = EmbeddingConfig(model, detector, align, normalization, alignment, flip)
        return Gallery(gid, name, config, dimension, storage, created)

    _GALLERY_SELECT = (
        "SELECT id, name, model, detector, align, normalization, dimension, storage, created_at,"
        " alignment, flip FROM galleries"
    )

    def find_gallery(self, name: str) -> Gallery | None:
        if not is_storable(name):
            return None  # no gallery can have such a name; PostgreSQL's text cannot hold it
        row = self.conn.execute(self._GALLERY_SELECT + " WHERE name = %s", (name,)).fetchone()
        return self._gallery_from_row(row) if row else None

    def gallery(self, name: str) -> Gallery:
        found = self.find_gallery(name)
        if found is None:
            known = ", ".join(g.name for g in self.galleries()) or "none yet"
            raise UnknownGallery(
                f"no gallery named {name!r} (galleries: {known})", remedy=Remedy.MAKE_GALLERY
            )
        return found

    def pick_gallery(self, name: str | None) -> Gallery:
        """The named gallery, or with no name the only one there is."""
        if name:
            return self.gallery(name)
        found = self.galleries()
        if len(found) == 1:
            return found[0]
        if not found:
            raise EmptyGallery("no gallery yet", remedy=Remedy.MAKE_GALLERY)
        names = ", ".join(g.name for g in found)
        raise UsageError(f"several galleries ({names})", remedy=Remedy.CHOOSE_GALLERY)

    def galleries(self) -> list[Gallery]:
        rows = self.conn.execute(self._GALLERY_SELECT + " ORDER BY name").fetchall()
        return [self._gallery_from_row(row) for row in rows]

    def face_count(self, gallery: Gallery) -> int:
        row = self.conn.execute(
            "SELECT count(*) FROM faces WHERE gallery_id = %s", (gallery.id,)
        ).fetchone()
        return int(row[0]) if row else 0

    def ensure_gallery(
        self, name: str, config: EmbeddingConfig, storage: str | None = None, *, dimension: int
    ) -> Gallery:
        """The named gallery, created with this configuration if new; refuses a mismatch.

        dimension is the length of the model's vectors (the catalogue knows it:
        doppel.faces.catalog.dimension); the store records it and asks no model.

        storage is the precision of its index: halfvec by default where pgvector has
        it (half the size, twice as fast to build, the same recall: docs/benchmarks.md).
        """
        name = check_gallery_name(name)
        if storage is None:
            storage = "halfvec" if has_halfvec(self.conn) else "vector"
        if storage not in ("vector", "halfvec"):
            raise UsageError(f"storage must be vector or halfvec, not {storage!r}")
        if storage == "halfvec" and not has_halfvec(self.conn):
            raise UsageError("halfvec storage needs pgvector 0.7.0 or newer on the server")
        existing = self.find_gallery(name)
        if existing is None:
            self.conn.execute(
                "INSERT INTO galleries (name, model, detector, align, normalization, dimension,"
                " storage, alignment, flip) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (name) DO NOTHING",
                (
                    name,
                    config.model,
                    config.detector,
                    config.align,
                    config.normalization,
                    dimension,
                    storage,
                    config.alignment,
                    config.flip,
                ),
            )
            return self.gallery(name)
        if existing.config != config and self.face_count(existing) == 0:
            return self._adopt_config(existing, config, storage, dimension)
        check_config(existing, config)
        return existing

    def _adopt_config(
        self, gallery: Gallery, config: EmbeddingConfig, storage: str, dimension: int
    ) -> Gallery:
        """Give a gallery without faces another configuration: the first load that
        succeeds decides it, not an earlier one that failed (missing weights, say).

        Files it recorded as without a face or unreadable were judged by the old
        detector, so they are forgotten and looked at again.
        """
        with self.conn.transaction():
            self.conn.execute(
                "UPDATE galleries SET model = %s, detector = %s, align = %s, normalization = %s,"
                " dimension = %s, storage = %s WHERE id = %s",
                (
                    config.model,
                    config.detector,
                    config.align,
                    config.normalization,
                    dimension,
                    storage,
                    gallery.id,
                ),
            )
            self.conn.execute("DELETE FROM images WHERE gallery_id = %s", (gallery.id,))
        indexes.drop_index(self.conn, gallery)
        return self.gallery(gallery.name)


def check_config(gallery: Gallery, config: EmbeddingConfig) -> None:
    """Refuse faces embedded another way than the gallery's own."""
    if gallery.config != config:
        raise GalleryMismatch(
            f"gallery {gallery.name!r} holds faces embedded as {describe(gallery.config)}, not "
            f"{describe(config)}",
            remedy=Remedy.OTHER_GALLERY,
        )
