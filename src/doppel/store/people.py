"""People in a gallery: the person of each face, names and covers, and the neighbour graph."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import psycopg
from psycopg import sql

from doppel.errors import Remedy, SamePhoto, UnknownPerson, UsageError
from doppel.store.db import has_iterative_scan
from doppel.store.people_rows import GalleryFaces, Person
from doppel.store.rows import face_from_row, storable_id
from doppel.types import Face, Gallery

# Faces whose neighbours one statement asks for: each is an index scan on the server,
# the batch keeps round trips few and the statement short enough to interrupt.
NEIGHBOUR_BATCH = 1000


# Each face's person lives in face_people (a face without a row there is in no person).
# The join names source as well as the id: on Citus both tables are distributed by it,
# and a join on it stays inside each shard.
PERSON_JOIN = "LEFT JOIN face_people fp ON fp.face_id = f.id AND fp.source = f.source"

FACE_SELECT = (
    "SELECT f.id, f.source, f.face_index, f.box_x, f.box_y, f.box_w, f.box_h, f.age, f.sex,"
    " f.race, fp.person_id, p.name FROM faces f "
    + PERSON_JOIN
    + " LEFT JOIN people p ON p.id = fp.person_id"
)


class PeopleStore:
    """All SQL about people. Writes that belong together run in one transaction."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    # Reading -------------------------------------------------------------------

    def faces(self, gallery: Gallery) -> GalleryFaces:
        """Every face of the gallery with its vector, read in binary (70,000 rows in seconds)."""
        with self.conn.cursor(binary=True) as cur:
            cur.execute(
                "SELECT f.id, coalesce(fp.person_id, -1), coalesce(fp.excluded, false),"
                " coalesce(fp.pinned AND fp.person_id IS NOT NULL, false), f.source,"
                " f.embedding FROM faces f " + PERSON_JOIN + " WHERE f.gallery_id = %s"
                " ORDER BY f.id",
                (gallery.id,),
            )
            rows = cur.fetchall()
        if not rows:
            none = np.empty(0, dtype=np.int64)
            return GalleryFaces(
                none,
                np.empty((0, gallery.dimension), np.float32),
                none,
                none.astype(bool),
                np.empty(0, dtype=object),
                none.astype(bool),
            )
        ids, person, excluded, pinned, photos, vectors = zip(*rows, strict=True)
        return GalleryFaces(
            np.asarray(ids, dtype=np.int64),
            np.vstack([_array(v) for v in vectors]),
            np.asarray(person, dtype=np.int64),
            np.asarray(excluded, dtype=bool),
            np.asarray(photos, dtype=object),
            np.asarray(pinned, dtype=bool),
        )

    def neighbours(
        self,
        gallery: Gallery,
        face_ids: Sequence[int],
        k: int,
        *,
        unassigned_only: bool,
        ef_search: int = 100,
        progress: Callable[[int, int], None] | None = None,
    ) -> dict[int, list[tuple[int, float]]]:
        """Each face's k nearest faces of the gallery, from its HNSW index.

        Returns face id -> [(neighbour id, cosine similarity)], nearest first. A LATERAL
        subquery walks the index once per face on the server. unassigned_only: only
        faces in no person and not taken out, among which new people are founded.
        The cast is the gallery's indexed expression (store/indexes.py), so each scan
        reaches the index. The index may hold half-precision vectors: callers that need exact
        similarities recompute them from the vectors.
        """
        cast = sql.SQL("::{}({})").format(sql.SQL(gallery.storage), sql.Literal(gallery.dimension))
        extra = (
            sql.SQL(
                " AND NOT EXISTS (SELECT 1 FROM face_people np WHERE np.face_id = n.id"
                " AND np.source = n.source AND (np.person_id IS NOT NULL OR np.excluded))"
            )
            if unassigned_only
            else sql.SQL("")
        )
        statement = sql.SQL(
            "SELECT q.id, m.id, 1 - m.distance FROM faces q CROSS JOIN LATERAL ("
            "SELECT n.id, n.embedding{cast} <=> q.embedding{cast} AS distance FROM faces n"
            " WHERE n.gallery_id = {gallery} AND n.id <> q.id{extra}"
            " ORDER BY distance LIMIT {k}) m WHERE q.id = ANY(%s::bigint[])"
        ).format(cast=cast, gallery=sql.Literal(gallery.id), extra=extra, k=sql.Literal(k))
        settings = sql.SQL("SET LOCAL hnsw.ef_search = {}").format(sql.Literal(max(ef_search, k)))
        if unassigned_only and has_iterative_scan(self.conn):
            # Filtered: keep walking the graph until k faces pass the filter.
            settings += sql.SQL("; SET LOCAL hnsw.iterative_scan = relaxed_order")
        out: dict[int, list[tuple[int, float]]] = {int(i): [] for i in face_ids}
        ids = [int(i) for i in face_ids]
        for start in range(0, len(ids), NEIGHBOUR_BATCH):
            with self.conn.transaction():
                self.conn.execute(settings)
                rows = self.conn.execute(statement, (ids[start : start + NEIGHBOUR_BATCH],))
                for query, near, similarity in rows.fetchall():
                    out[query].append((near, float(similarity)))
            if progress is not None:
                progress(min(start + NEIGHBOUR_BATCH, len(ids)), len(ids))
        for row in out.values():
            row.sort(key=lambda pair: -pair[1])
        return out

    def people(self, gallery: Gallery) -> list[Person]:
        """The gallery's people, most faces first."""
        rows = self.conn.execute(
            "SELECT p.id, p.name, p.cover_face_id, count(fp.face_id), p.hidden FROM people p"
            " JOIN face_people fp ON fp.person_id = p.id WHERE p.gallery_id = %s"
            " GROUP BY p.id ORDER BY count(fp.face_id) DESC, p.id",
            (gallery.id,),
        ).fetchall()
        covers = self.faces_by_id([row[2] for row in rows if row[2] is not None])
        return [
            Person(pid, name, covers.get(cover), count, hidden)
            for pid, name, cover, count, hidden in rows
        ]

    def person(self, gallery: Gallery, person_id: int) -> Person:
        """One person of the gallery; UnknownPerson when it has no such person (an id past
        PostgreSQL's bigint included: no person can have it)."""
        if storable_id(person_id):
            for person in self._people_rows(gallery, [person_id]):
                return person
        count = self.conn.execute(
            "SELECT count(*) FROM people WHERE gallery_id = %s", (gallery.id,)
        ).fetchone()
        raise UnknownPerson(
            f"gallery {gallery.name!r} has no person {person_id}",
            remedy=Remedy.LIST_PEOPLE if count and count[0] else Remedy.MAKE_PEOPLE,
            gallery=gallery.name,
        )

    def _people_rows(self, gallery: Gallery, ids: Sequence[int]) -> list[Person]:
        # The counts by a query of their own: Citus refuses a correlated subquery from
        # a reference table (people) into a distributed one (face_people).
        counts: dict[int, int] = dict(
            self.conn.execute(
                "SELECT person_id, count(*) FROM face_people WHERE person_id = ANY(%s::bigint[])"
                " GROUP BY person_id",
                (list(ids),),
            ).fetchall()
        )
        rows = [
            (pid, name, cover, counts.get(pid, 0), hidden)
            for pid, name, cover, hidden in self.conn.execute(
                "SELECT p.id, p.name, p.cover_face_id, p.hidden"
                " FROM people p WHERE p.gallery_id = %s AND p.id = ANY(%s::bigint[])",
                (gallery.id, list(ids)),
            ).fetchall()
        ]
        covers = self.faces_by_id([row[2] for row in rows if row[2] is not None])
        return [
            Person(pid, name, covers.get(cover), count, hidden)
            for pid, name, cover, count, hidden in rows
        ]

    def faces_by_id(self, ids: Sequence[int]) -> dict[int, Face]:
        rows = self.conn.execute(FACE_SELECT + " WHERE f.id = ANY(%s::bigint[])", (list(ids),))
        return {row[0]: face_from_row(row) for row in rows.fetchall()}

    def members(self, gallery: Gallery) -> dict[int | None, list[Face]]:
        """Faces by person id (None: in no person), each list by face id."""
        rows = self.conn.execute(
            FACE_SELECT + " WHERE f.gallery_id = %s ORDER BY f.id", (gallery.id,)
        ).fetchall()
        out: dict[int | None, list[Face]] = {}
        for row in rows:
            out.setdefault(row[10], []).append(face_from_row(row))
        return out

    def person_means(self, gallery: Gallery) -> dict[int, np.ndarray]:
        """The mean vector of each person's faces, computed by the server."""
        rows = self.conn.execute(
            sql.SQL(
                "SELECT fp.person_id, avg(f.embedding::{}({})) FROM face_people fp"
                " JOIN faces f ON f.id = fp.face_id AND f.source = fp.source"
                " WHERE fp.gallery_id = %s AND fp.person_id IS NOT NULL GROUP BY fp.person_id"
            ).format(sql.SQL("vector"), sql.Literal(gallery.dimension)),
            (gallery.id,),
        ).fetchall()
        return {int(pid): _array(mean) for pid, mean in rows}

    def people_of_content(self, gallery: Gallery, content_hash: str) -> list[int]:
        """The people of the faces of one file (by content) in the gallery."""
        rows = self.conn.execute(
            "SELECT DISTINCT fp.person_id FROM faces f JOIN face_people fp"
            " ON fp.face_id = f.id AND fp.source = f.source WHERE f.gallery_id = %s"
            " AND f.content_hash = %s AND fp.person_id IS NOT NULL",
            (gallery.id, content_hash),
        ).fetchall()
        return [int(row[0]) for row in rows]

    def resolve_faces(self, gallery: Gallery, refs: Sequence[str]) -> list[int]:
        """Face ids from what a user typed: a face id, or a photo's source as stored."""
        found: list[int] = []
        for ref in refs:
            if ref.isdigit():
                row = self.conn.execute(
                    "SELECT id FROM faces WHERE gallery_id = %s AND id = %s", (gallery.id, int(ref))
                ).fetchone()
                rows = [row] if row else []
            else:
                rows = self.conn.execute(
                    "SELECT id FROM faces WHERE gallery_id = %s AND source = %s",
                    (gallery.id, ref),
                ).fetchall()
            if not rows:
                raise UsageError(
                    f"gallery {gallery.name!r} has no face {ref!r}; give a face id or a source",
                    remedy=Remedy.LIST_FACES,
                )
            found.extend(int(row[0]) for row in rows)
        return found

    # Writing -------------------------------------------------------------------

    def save(
        self,
        gallery: Gallery,
        face_ids: Sequence[int],
        labels: Sequence[int],
        new_labels: Sequence[int],
        covers: Mapping[int, int],
        names: Mapping[int, str] | None = None,
        reset: bool = False,
        keep: Sequence[int] = (),
    ) -> dict[int, int]:
        """Write a clustering in one transaction; return label -> person id.

        labels: for each face, an existing person id or one of new_labels (a person
        to create); -1 leaves the face in no person. covers: label -> cover face id.
        reset: the labels cover every face that may be in a person (a recluster): the
        gallery's other people are dropped, except those in keep, which carry their
        id, name and cover over. Only faces whose person changed are written.
        """
        with self.conn.transaction():
            self.lock(gallery)
            ids = self._new_people(gallery, new_labels, names or {}) if new_labels else {}
            person = [ids.get(label, label) if label >= 0 else None for label in labels]
            self._write_people(gallery, [int(i) for i in face_ids], person)
            if covers:
                self.conn.execute(
                    "UPDATE people p SET cover_face_id = v.face"
                    " FROM unnest(%s::bigint[], %s::bigint[]) AS v(person, face)"
                    " WHERE p.id = v.person AND p.gallery_id = %s",
                    (
                        [ids.get(label, label) for label in covers],
                        [int(face) for face in covers.values()],
                        gallery.id,
                    ),
                )
            if reset:
                self.conn.execute(
                    "DELETE FROM people WHERE gallery_id = %s AND id <> ALL(%s::bigint[])",
                    (gallery.id, [*keep, *ids.values()]),
                )
            self._drop_empty(gallery)
        return ids

    def _write_people(
        self, gallery: Gallery, face_ids: list[int], person: list[int | None]
    ) -> None:
        """Set each face's person in face_people (None: no person), row by changed row."""
        pairs = list(zip(face_ids, person, strict=True))
        placed = [(face, who) for face, who in pairs if who is not None]
        self.conn.execute(
            "UPDATE face_people SET person_id = NULL, pinned = false"
            " WHERE face_id = ANY(%s::bigint[]) AND gallery_id = %s AND person_id IS NOT NULL",
            ([face for face, who in pairs if who is None], gallery.id),
        )
        # The face's source comes from faces: it places the row in its face's shard.
        self.conn.execute(
            "INSERT INTO face_people (face_id, source, gallery_id, person_id)"
            " SELECT f.id, f.source, f.gallery_id, v.person FROM unnest(%s::bigint[],"
            " %s::bigint[]) AS v(face, person) JOIN faces f ON f.id = v.face"
            " WHERE f.gallery_id = %s ON CONFLICT (face_id, source) DO UPDATE"
            " SET person_id = EXCLUDED.person_id, pinned = false"
            " WHERE face_people.person_id IS DISTINCT FROM EXCLUDED.person_id",
            ([face for face, _ in placed], [who for _, who in placed], gallery.id),
        )

    def _new_people(
        self, gallery: Gallery, new_labels: Sequence[int], names: Mapping[int, str]
    ) -> dict[int, int]:
        """Make a person for each new label (named where names has one); label -> id."""
        # Ids first, then one INSERT: a recluster of 70,000 faces makes some
        # 14,000 people, and one statement each cost a round trip each.
        taken = self.conn.execute(
            "SELECT nextval(pg_get_serial_sequence('people', 'id')) FROM generate_series(1, %s)",
            (len(new_labels),),
        ).fetchall()
        ids = {label: int(row[0]) for label, row in zip(new_labels, taken, strict=True)}
        self.conn.execute(
            "INSERT INTO people (id, gallery_id, name)"
            " SELECT v.id, %s, v.name FROM unnest(%s::bigint[], %s::text[]) AS v(id, name)",
            (gallery.id, list(ids.values()), [names.get(label) for label in ids]),
        )
        return ids

    def rename(self, gallery: Gallery, person_id: int, name: str) -> Person:
        self.person(gallery, person_id)
        self.conn.execute(
            "UPDATE people SET name = %s WHERE id = %s AND gallery_id = %s",
            (name, person_id, gallery.id),
        )
        return self.person(gallery, person_id)

    def merge(self, gallery: Gallery, keep: int, other: int) -> Person:
        """Move other's faces into keep and drop other; keep takes other's name if it has none."""
        if keep == other:
            raise UsageError(f"cannot merge person {keep} with itself; give two different ids")
        first, second = self.person(gallery, keep), self.person(gallery, other)
        with self.conn.transaction():
            self.lock(gallery)
            clash = self.conn.execute(
                "SELECT a.source FROM face_people a JOIN face_people b"
                " ON b.gallery_id = a.gallery_id AND b.source = a.source"
                " WHERE a.gallery_id = %s AND a.person_id = %s"
                " AND b.person_id = %s ORDER BY a.source LIMIT 1",
                (gallery.id, keep, other),
            ).fetchone()
            if clash:
                raise SamePhoto(
                    f"{first.label} (id {keep}) and {second.label} (id {other}) both have a"
                    f" face in the photo {clash[0]}; two faces of one photo are two people,"
                    " so they are not merged"
                )
            moved = self.conn.execute(
                "UPDATE face_people SET person_id = %s WHERE person_id = %s AND gallery_id = %s"
                " RETURNING face_id",
                (keep, other, gallery.id),
            ).fetchall()
            self._journal(
                gallery,
                "merge",
                keep,
                [row[0] for row in moved],
                other=other,
                name=second.name,
                cover=second.cover.id if second.cover else None,
                kept_name=first.name,
            )
            if first.name is None and second.name is not None:
                self.conn.execute("UPDATE people SET name = %s WHERE id = %s", (second.name, keep))
            self.conn.execute("DELETE FROM people WHERE id = %s", (other,))
        return self.person(gallery, keep)

    def _journal(
        self,
        gallery: Gallery,
        kind: str,
        person: int | None,
        faces: Sequence[int],
        *,
        other: int | None = None,
        name: str | None = None,
        cover: int | None = None,
        kept_name: str | None = None,
    ) -> None:
        self.conn.execute(
            "INSERT INTO people_edits (gallery_id, kind, person_id, other_id, other_name,"
            " other_cover, face_ids, person_name)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s::bigint[], %s)",
            (gallery.id, kind, person, other, name, cover, list(faces), kept_name),
        )

    def lock(self, gallery: Gallery) -> None:
        """Serialise writers of one gallery's people (inside a transaction).

        On Citus the transaction writes face_people (distributed) then people (a reference
        table), which Citus allows only if face_people was written shard by shard; on
        other servers the setting is an unused placeholder.
        """
        self.conn.execute(
            "SELECT pg_advisory_xact_lock(4242013, %s),"
            " set_config('citus.multi_shard_modify_mode', 'sequential', true)",
            (gallery.id,),
        )

    def _drop_empty(self, gallery: Gallery) -> None:
        # In two statements: Citus refuses a delete of a reference table (people)
        # with a subquery on a distributed one (face_people).
        alive = [
            row[0]
            for row in self.conn.execute(
                "SELECT DISTINCT person_id FROM face_people WHERE gallery_id = %s"
                " AND person_id IS NOT NULL",
                (gallery.id,),
            )
        ]
        self.conn.execute(
            "DELETE FROM people WHERE gallery_id = %s AND id <> ALL(%s::bigint[])",
            (gallery.id, alive),
        )


def _array(value: object) -> np.ndarray:
    """A vector as numpy, whether pgvector handed over an array (text) or a Vector (binary)."""
    to_numpy = getattr(value, "to_numpy", None)
    return np.asarray(to_numpy() if to_numpy else value, dtype=np.float32)
