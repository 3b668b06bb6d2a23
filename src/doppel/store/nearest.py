"""Searching a gallery: the faces nearest to a vector, through its HNSW index or exactly."""

from __future__ import annotations

import numpy as np
import psycopg
from pgvector import Vector
from psycopg import sql

from doppel.errors import EmptyGallery, GalleryMismatch
from doppel.store import indexes
from doppel.store.db import has_iterative_scan
from doppel.store.index_policy import IndexPolicy
from doppel.store.people import PERSON_JOIN
from doppel.store.rows import face_from_row, storable_id
from doppel.types import Face, Filters, Gallery, Match


class FaceSearch(IndexPolicy):
    """Cosine searches of a gallery's faces, with the filters pgvector can apply."""

    def __init__(self, conn: psycopg.Connection) -> None:
        super().__init__(conn)
        self._iterative_scan: bool | None = None  # asked of the server once

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
        conditions, params = _conditions(gallery, filters)
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
        # The person comes from a join that keeps the index's order: a nested loop over
        # the faces as the HNSW scan yields them (docs/benchmarks.md, people).
        query = sql.SQL(
            "SELECT f.id, f.source, f.face_index, f.box_x, f.box_y, f.box_w, f.box_h, f.age,"
            " f.sex, f.race, fp.person_id, (SELECT name FROM people WHERE people.id ="
            " fp.person_id), {left} <=> {right} AS distance FROM faces f {join} WHERE {where}"
            " ORDER BY distance LIMIT {k}"
        ).format(
            left=left,
            right=right,
            join=sql.SQL(PERSON_JOIN),
            where=sql.SQL(" AND ").join(conditions),
            k=sql.Literal(k),
        )
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
        if not storable_id(face_id):
            return None
        row = self.conn.execute(
            "SELECT f.id, f.source, f.face_index, f.box_x, f.box_y, f.box_w, f.box_h, f.age,"
            " f.sex, f.race, fp.person_id, (SELECT name FROM people WHERE people.id ="
            " fp.person_id) FROM faces f " + PERSON_JOIN + " WHERE f.id = %s",
            (face_id,),
        ).fetchone()
        if row is None:
            return None
        return face_from_row(row)


def _conditions(gallery: Gallery, filters: Filters) -> tuple[list[sql.Composable], list[object]]:
    """The WHERE conditions of a search for the gallery and filters, and their parameters
    (after the query vector, which comes first in the text)."""
    conditions: list[sql.Composable] = [
        sql.SQL("f.gallery_id = {}").format(sql.Literal(gallery.id))
    ]
    params: list[object] = []
    if filters.sex:
        conditions.append(sql.SQL("f.sex = %s"))
        params.append(filters.sex)
    if filters.races:
        conditions.append(sql.SQL("f.race = ANY(%s)"))
        params.append(list(filters.races))
    if filters.age_min is not None:
        conditions.append(sql.SQL("f.age >= %s"))
        params.append(filters.age_min)
    if filters.age_max is not None:
        conditions.append(sql.SQL("f.age <= %s"))
        params.append(filters.age_max)
    if filters.exclude_hashes:
        conditions.append(sql.SQL("(f.content_hash IS NULL OR f.content_hash <> ALL(%s))"))
        params.append(list(filters.exclude_hashes))
    if filters.exclude_people:
        conditions.append(sql.SQL("(fp.person_id IS NULL OR fp.person_id <> ALL(%s::bigint[]))"))
        params.append(list(filters.exclude_people))
    return conditions, params
