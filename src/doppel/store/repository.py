"""Galleries and faces in PostgreSQL: batched COPY writes and HNSW cosine queries."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import psycopg
from pgvector import Vector
from psycopg import sql

from doppel.errors import EmptyGallery, GalleryMismatch, Remedy, UnknownGallery, UsageError
from doppel.store import indexes
from doppel.store.db import has_halfvec, has_iterative_scan
from doppel.types import (
    AttributeValues,
    Box,
    BuildProgress,
    EmbeddingConfig,
    Face,
    Filters,
    Gallery,
    GalleryStats,
    ImageRecord,
    IndexState,
    Match,
    NewFace,
    check_gallery_name,
    describe,
    is_storable,
)

# A load adding more rows than this (or than a quarter of the gallery, if more) drops
# the HNSW index and builds it again at the end: see drop_index_before_bulk_load.
BULK_LOAD_MIN_ROWS = 2000

FACE_COLUMNS = (
    "gallery_id",
    "source",
    "content_hash",
    "face_index",
    "box_x",
    "box_y",
    "box_w",
    "box_h",
    "confidence",
    "age",
    "sex",
    "race",
    "embedding",
    "phash",
    "face_size",
    "sharpness",
    "frontalness",
)
FACE_TYPES = (
    "int4",
    "text",
    "text",
    "int4",
    "int4",
    "int4",
    "int4",
    "int4",
    "float4",
    "int4",
    "text",
    "text",
    "vector",  # text: sex is char(1)
    "int8",
    "int4",
    "float4",
    "float4",
)


def box_or_none(x: int | None, y: int | None, w: int | None, h: int | None) -> Box | None:
    return None if x is None or y is None or w is None or h is None else Box(x, y, w, h)


class Repository:
    """All of doppel's SQL, on a connection from doppel.store.db.connect (autocommit).

    Statements stand alone; writes that must land together run in conn.transaction().
    """

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self._iterative_scan: bool | None = None  # asked of the server once

    # Galleries -----------------------------------------------------------------

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
        self.drop_index(gallery)
        return self.gallery(gallery.name)

    def writing(self, name: str, waiting: Callable[[str], None] | None = None) -> Any:
        """The gallery's writer lock, as a context manager (see store.galleries.writing)."""
        from doppel.store.galleries import writing

        return writing(self.conn, name, waiting)

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

    def face_count(self, gallery: Gallery) -> int:
        row = self.conn.execute(
            "SELECT count(*) FROM faces WHERE gallery_id = %s", (gallery.id,)
        ).fetchone()
        return int(row[0]) if row else 0

    # Writing -------------------------------------------------------------------

    def known_images(self, gallery: Gallery) -> dict[str, str]:
        """source -> content hash of every file this gallery has already looked at."""
        rows = self.conn.execute(
            "SELECT source, content_hash FROM images WHERE gallery_id = %s", (gallery.id,)
        )
        return dict(rows.fetchall())

    def write_batch(
        self, gallery: Gallery, images: Sequence[ImageRecord], faces: Sequence[NewFace]
    ) -> None:
        """Record files and their faces in one transaction, replacing earlier versions."""
        with self.conn.transaction():
            sources = [image.source for image in images]
            if sources:
                self.conn.execute(
                    "DELETE FROM faces WHERE gallery_id = %s AND source = ANY(%s)",
                    (gallery.id, sources),
                )
                self.conn.execute(
                    "DELETE FROM images WHERE gallery_id = %s AND source = ANY(%s)",
                    (gallery.id, sources),
                )
                with (
                    self.conn.cursor() as cur,
                    cur.copy(
                        "COPY images (gallery_id, source, content_hash, status, detail)"
                        " FROM STDIN WITH (FORMAT BINARY)"
                    ) as copy,
                ):
                    copy.set_types(["int4", "text", "text", "text", "text"])
                    for image in images:
                        copy.write_row(
                            (
                                gallery.id,
                                image.source,
                                image.content_hash,
                                image.status,
                                image.detail,
                            )
                        )
            self.copy_faces(gallery, faces, "faces")

    def copy_faces(self, gallery: Gallery, faces: Iterable[NewFace], table: str) -> int:
        """Binary COPY of face rows into `table` (faces or a staging table with its columns)."""
        count = 0
        statement = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT BINARY)").format(
            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, FACE_COLUMNS))
        )
        # The cursor is made after register_vector, so set_types knows "vector".
        with self.conn.cursor() as cur, cur.copy(statement) as copy:
            copy.set_types(list(FACE_TYPES))
            for face in faces:
                box, quality = face.box, face.quality
                copy.write_row(
                    (
                        gallery.id,
                        face.source,
                        face.content_hash,
                        face.face_index,
                        box.x if box else None,
                        box.y if box else None,
                        box.w if box else None,
                        box.h if box else None,
                        face.confidence,
                        face.age,
                        face.sex,
                        face.race,
                        np.asarray(face.embedding, dtype=np.float32),
                        face.phash,
                        quality.size if quality else None,
                        quality.sharpness if quality else None,
                        quality.frontalness if quality else None,
                    )
                )
                count += 1
        return count

    # Index (the rules and the SQL live in store/indexes.py) -----------------------

    def index_state(self, gallery: Gallery) -> IndexState | None:
        return indexes.index_state(self.conn, gallery)

    def has_index(self, gallery: Gallery) -> bool:
        """Whether the gallery has a valid index that searches can use."""
        state = self.index_state(gallery)
        return state is not None and state.valid

    def ensure_index(
        self,
        gallery: Gallery,
        m: int | None = None,
        ef_construction: int | None = None,
        *,
        concurrently: bool = False,
        replace: bool = False,
        progress: Callable[[BuildProgress], None] | None = None,
    ) -> bool:
        """Build the gallery's index, designed for its size, if missing (or anew, with
        replace: see store.indexes.build_index); True if built.

        Building once after a bulk load is much faster than growing it row by row,
        so loaders call this at the end rather than creating the index up front.
        """
        return indexes.build_index(
            self.conn,
            gallery,
            self.face_count(gallery),
            m=m,
            ef_construction=ef_construction,
            concurrently=concurrently,
            replace=replace,
            progress=progress,
        )

    def drop_index(self, gallery: Gallery) -> None:
        indexes.drop_index(self.conn, gallery)

    def drop_index_before_bulk_load(self, gallery: Gallery, adding: int, present: int) -> bool:
        """Drop the gallery's index when a load adds enough rows that rebuilding it is cheaper.

        Growing an HNSW graph row by row is several times slower than building it once
        after the load (benchmarks/bench_search.py), so both ingest and load-dump drop
        the index past this threshold and build it again at the end. True if dropped.
        """
        if not bulk_load_drops_index(adding, present):
            return False
        self.drop_index(gallery)
        return True

    # Search --------------------------------------------------------------------

    def search(
        self,
        gallery: Gallery,
        vector: np.ndarray,
        k: int = 5,
        filters: Filters | None = None,
        exact: bool = False,
        ef_search: int | None = None,
    ) -> list[Match]:
        """The k faces nearest to vector by cosine distance, through the HNSW index.

        Until the gallery has a valid index (none yet, or one still building) the
        search is exact. With filters, pgvector's iterative scan keeps looking until k
        rows pass them; when the index still yields fewer than k, an exact search
        answers instead. ef_search None: the index plan's for the gallery's size.
        """
        filters = filters or Filters()
        if len(vector) != gallery.dimension:
            raise GalleryMismatch(
                f"query vector has {len(vector)} dimensions, gallery {gallery.name!r} "
                f"{gallery.dimension}"
            )
        if not exact:
            state = self.index_state(gallery)
            if state is None or not state.valid:
                exact = True
            elif ef_search is None:
                ef_search = indexes.plan_index(state.rows).ef_search
        ef_search = ef_search or indexes.EF_SEARCH_SMALL
        matches = self._search(gallery, vector, k, filters, exact, ef_search)
        if not exact and len(matches) < k:
            matches = self._search(gallery, vector, k, filters, True, ef_search)
        if not matches and self.face_count(gallery) == 0:
            raise EmptyGallery(f"gallery {gallery.name!r} has no faces yet")
        return matches

    def _search(
        self,
        gallery: Gallery,
        vector: np.ndarray,
        k: int,
        filters: Filters,
        exact: bool,
        ef_search: int,
    ) -> list[Match]:
        conditions: list[sql.Composable] = [
            sql.SQL("gallery_id = {}").format(sql.Literal(gallery.id))
        ]
        params: list[object] = []  # after the query vector, which comes first in the text
        if filters.sex:
            conditions.append(sql.SQL("sex = %s"))
            params.append(filters.sex)
        if filters.races:
            conditions.append(sql.SQL("race = ANY(%s)"))
            params.append(list(filters.races))
        if filters.age_min is not None:
            conditions.append(sql.SQL("age >= %s"))
            params.append(filters.age_min)
        if filters.age_max is not None:
            conditions.append(sql.SQL("age <= %s"))
            params.append(filters.age_max)
        if filters.exclude_hashes:
            conditions.append(sql.SQL("(content_hash IS NULL OR content_hash <> ALL(%s))"))
            params.append(list(filters.exclude_hashes))
        if filters.exclude_people:
            conditions.append(sql.SQL("(person_id IS NULL OR person_id <> ALL(%s::bigint[]))"))
            params.append(list(filters.exclude_people))
        cast = sql.SQL("::{}({})").format(sql.SQL(gallery.storage), sql.Literal(gallery.dimension))
        # The indexed expression makes the planner use HNSW; the bare column forces
        # an exact scan over every row of the gallery.
        left = sql.SQL("embedding") if exact else indexes.vector_expr(gallery)
        right = sql.SQL("%s::vector") if exact else sql.SQL("%s::vector") + cast
        if filters.below_similarity is not None:  # doppelganger mode's same-person cut
            conditions.append(
                sql.SQL("{left} <=> {right} > {cut}").format(
                    left=left, right=right, cut=sql.Literal(1.0 - filters.below_similarity)
                )
            )
            params.append(Vector(np.asarray(vector, dtype=np.float32)))
        query = sql.SQL(
            "SELECT id, source, face_index, box_x, box_y, box_w, box_h, age, sex, race,"
            " person_id, (SELECT name FROM people WHERE people.id = faces.person_id),"
            " {left} <=> {right} AS distance FROM faces WHERE {where}"
            " ORDER BY distance LIMIT {k}"
        ).format(left=left, right=right, where=sql.SQL(" AND ").join(conditions), k=sql.Literal(k))
        with self.conn.transaction():
            if exact:
                self.conn.execute("SET LOCAL enable_indexscan = off")
            else:
                if self._iterative_scan is None:
                    self._iterative_scan = has_iterative_scan(self.conn)
                # One round trip for both settings.
                settings = sql.SQL("SET LOCAL hnsw.ef_search = {}").format(
                    sql.Literal(max(ef_search, k))
                )
                if self._iterative_scan:
                    settings += sql.SQL("; SET LOCAL hnsw.iterative_scan = relaxed_order")
                self.conn.execute(settings)
            rows = self.conn.execute(
                query, [Vector(np.asarray(vector, dtype=np.float32)), *params]
            ).fetchall()
        # relaxed_order may return rows slightly out of order; sort them.
        rows.sort(key=lambda row: row[12])
        return [
            Match(rank, face_from_row(row), float(row[12]))
            for rank, row in enumerate(rows, start=1)
        ]

    def face(self, face_id: int) -> Face | None:
        if not 0 < face_id < 2**63:
            return None  # past PostgreSQL's bigint: no face has such an id
        row = self.conn.execute(
            "SELECT id, source, face_index, box_x, box_y, box_w, box_h, age, sex, race,"
            " person_id, (SELECT name FROM people WHERE people.id = faces.person_id)"
            " FROM faces WHERE id = %s",
            (face_id,),
        ).fetchone()
        if row is None:
            return None
        return face_from_row(row)


def face_from_row(row: Sequence) -> Face:
    """A Face from (id, source, face_index, box x/y/w/h, age, sex, race, person id, name)."""
    return Face(
        row[0], row[1], row[2], box_or_none(*row[3:7]), row[7], row[8], row[9], row[10], row[11]
    )


def bulk_load_drops_index(adding: int, present: int) -> bool:
    """Whether adding rows to a gallery of `present` faces should drop its index first."""
    return adding > max(BULK_LOAD_MIN_ROWS, present // 4)


def check_config(gallery: Gallery, config: EmbeddingConfig) -> None:
    """Refuse faces embedded another way than the gallery's own."""
    if gallery.config != config:
        raise GalleryMismatch(
            f"gallery {gallery.name!r} holds faces embedded as {describe(gallery.config)}, not "
            f"{describe(config)}",
            remedy=Remedy.OTHER_GALLERY,
        )
