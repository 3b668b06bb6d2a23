"""Hand edits of people that can be undone: moves, taking faces out, restore from the
journal, hiding, covers, and pairs of people kept apart. The journal itself is written
by every edit (`PeopleStore._journal`); this class reads it back."""

from __future__ import annotations

from collections.abc import Sequence

from doppel.errors import SamePhoto, UsageError
from doppel.store.people import PERSON_JOIN, PeopleStore
from doppel.store.people_rows import Edit, Person
from doppel.types import Gallery


class PeopleEditor(PeopleStore):
    """The SQL of the edits a user makes to people, besides name and merge."""

    def move(self, gallery: Gallery, face_ids: Sequence[int], to: int | None) -> int:
        """Put faces into person `to` (None: a new person); return the person's id.

        The faces leave whatever person held them (journalled per origin, for
        `restore`); a person left without faces is dropped. Refused when the person
        would hold two faces of one photo. The faces are pinned: clustering, a
        recluster included, leaves them in `to` until `restore` undoes the move.
        """
        ids = list(dict.fromkeys(int(i) for i in face_ids))
        target = self.person(gallery, to) if to is not None else None
        with self.conn.transaction():
            self.lock(gallery)
            photo = self._shared_photo(ids, to)
            if photo:
                raise SamePhoto(
                    f"the photo {photo} would have two faces in "
                    f"{target.label if target else 'one person'}; two faces of one photo"
                    " are two people, so nothing was moved"
                )
            if to is None:
                row = self.conn.execute(
                    "INSERT INTO people (gallery_id, cover_face_id) VALUES (%s, %s) RETURNING id",
                    (gallery.id, ids[0]),
                ).fetchone()
                assert row is not None
                to = int(row[0])
            origins = self.conn.execute(
                "SELECT fp.person_id, array_agg(f.id ORDER BY f.id) FROM faces f "
                + PERSON_JOIN
                + " WHERE f.id = ANY(%s::bigint[]) AND fp.person_id IS DISTINCT FROM %s"
                " GROUP BY fp.person_id",
                (ids, to),
            ).fetchall()
            for origin, moved in origins:
                self._journal(gallery, "move", origin, list(moved), other=to)
            self.conn.execute(
                "INSERT INTO face_people (face_id, source, gallery_id, person_id, pinned)"
                " SELECT id, source, gallery_id, %s, true FROM faces"
                " WHERE id = ANY(%s::bigint[]) AND gallery_id = %s"
                " ON CONFLICT (face_id, source) DO UPDATE SET person_id = EXCLUDED.person_id,"
                " excluded = false, pinned = true",
                (to, ids, gallery.id),
            )
            self._fix_covers(gallery)
            self._drop_empty(gallery)
        return to

    def take_out(self, gallery: Gallery, person_id: int, face_ids: Sequence[int]) -> int:
        """Take faces out of a person for good; return how many were in it.

        A face taken out is marked, so that no later clustering puts it anywhere; a
        person left with no face is dropped, one whose cover left gets another.
        """
        person = self.person(gallery, person_id)
        outside = self.conn.execute(
            "SELECT f.id FROM faces f " + PERSON_JOIN + " WHERE f.id = ANY(%s::bigint[])"
            " AND fp.person_id IS DISTINCT FROM %s",
            (list(face_ids), person_id),
        ).fetchall()
        if outside:
            listed = ", ".join(str(row[0]) for row in outside)
            raise UsageError(f"face {listed} is not in {person.label} (id {person_id})")
        with self.conn.transaction():
            self.lock(gallery)
            cursor = self.conn.execute(
                "UPDATE face_people SET person_id = NULL, excluded = true, pinned = false"
                " WHERE face_id = ANY(%s::bigint[]) AND person_id = %s",
                (list(face_ids), person_id),
            )
            moved = cursor.rowcount
            self._journal(gallery, "remove", person_id, list(face_ids))
            # The new cover first, then the update: Citus refuses an update of a
            # reference table (people) with a subquery on a distributed one (face_people).
            first = self.conn.execute(
                "SELECT min(face_id) FROM face_people WHERE person_id = %s", (person_id,)
            ).fetchone()
            self.conn.execute(
                "UPDATE people SET cover_face_id = %s WHERE id = %s AND (cover_face_id IS NULL"
                " OR cover_face_id = ANY(%s::bigint[]))",
                (first[0] if first else None, person_id, list(face_ids)),
            )
            self._drop_empty(gallery)
        return moved

    def _shared_photo(self, ids: list[int], to: int | None) -> str | None:
        """A photo that two of the faces, or one of them and a face of `to`, are in."""
        same = self.conn.execute(
            "SELECT source FROM faces WHERE id = ANY(%s::bigint[])"
            " GROUP BY source HAVING count(*) > 1 LIMIT 1",
            (ids,),
        ).fetchone()
        if same is None and to is not None:
            same = self.conn.execute(
                "SELECT a.source FROM faces a JOIN face_people b"
                " ON b.gallery_id = a.gallery_id AND b.source = a.source"
                " WHERE a.id = ANY(%s::bigint[])"
                " AND b.person_id = %s AND b.face_id <> ALL(%s::bigint[]) LIMIT 1",
                (ids, to, ids),
            ).fetchone()
        return str(same[0]) if same else None

    def edits(self, gallery: Gallery, *, undone: bool = False) -> list[Edit]:
        """The gallery's journalled edits, latest first (by default those not undone)."""
        rows = self.conn.execute(
            "SELECT id, kind, person_id, other_id, face_ids, undone, created_at FROM people_edits"
            " WHERE gallery_id = %s AND (%s OR NOT undone) ORDER BY id DESC",
            (gallery.id, undone),
        ).fetchall()
        return [Edit(*row) for row in rows]

    def restore(self, gallery: Gallery, edit_id: int | None) -> Edit:
        """Undo one journalled edit (default: the latest not undone).

        A merge brings the merged person back with its id, name and cover, and the
        faces it had (those still in the person it went into). Faces taken out or
        moved go back to the person they left if it still exists, else to no person
        (free for the next clustering), and are no longer pinned. Faces that changed
        again since stay as they are.
        """
        with self.conn.transaction():
            self.lock(gallery)
            row = self.conn.execute(
                "SELECT id, kind, person_id, other_id, face_ids, undone, created_at,"
                " other_name, other_cover, person_name FROM people_edits WHERE gallery_id = %s"
                " AND NOT undone AND (%s::bigint IS NULL OR id = %s) ORDER BY id DESC LIMIT 1",
                (gallery.id, edit_id, edit_id),
            ).fetchone()
            if row is None:
                raise UsageError(
                    f"gallery {gallery.name!r} has no edit {edit_id} to undo"
                    if edit_id is not None
                    else f"gallery {gallery.name!r} has no edit of people to undo"
                )
            edit = Edit(*row[:7])
            faces = list(edit.face_ids)
            if edit.kind == "merge":
                self.conn.execute(
                    "INSERT INTO people (id, gallery_id, name, cover_face_id)"
                    " VALUES (%s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
                    (edit.other_id, gallery.id, row[7], row[8]),
                )
                self.conn.execute(
                    "UPDATE face_people SET person_id = %s WHERE face_id = ANY(%s::bigint[])"
                    " AND person_id = %s",
                    (edit.other_id, faces, edit.person_id),
                )
                # The kept person gives back a name it took in the merge.
                self.conn.execute(
                    "UPDATE people SET name = %s WHERE id = %s AND name IS NOT DISTINCT FROM %s",
                    (row[9], edit.person_id, row[7]),
                )
            else:
                self._put_back(gallery, edit)
            self.conn.execute("UPDATE people_edits SET undone = true WHERE id = %s", (edit.id,))
            self._fix_covers(gallery)
            self._drop_empty(gallery)
        return edit

    def _put_back(self, gallery: Gallery, edit: Edit) -> None:
        """Undo a taking out or a move: the faces still where the edit left them go back
        to the person they left (if it still exists), unpinned and no longer taken out."""
        back = self.conn.execute(
            "SELECT id FROM people WHERE id = %s AND gallery_id = %s",
            (edit.person_id, gallery.id),
        ).fetchone()
        still = "person_id IS NULL AND excluded" if edit.kind == "remove" else "person_id = %(to)s"
        # Every face an edit touched has its row in face_people.
        self.conn.execute(
            "UPDATE face_people SET person_id = %(back)s, excluded = false, pinned = false"
            " WHERE face_id = ANY(%(faces)s::bigint[]) AND " + still,
            {"back": back[0] if back else None, "faces": list(edit.face_ids), "to": edit.other_id},
        )

    def set_hidden(self, gallery: Gallery, person_id: int, hidden: bool) -> Person:
        """Hide a person (left out of lists and of strangers mode's answers), or show it."""
        self.person(gallery, person_id)
        self.conn.execute(
            "UPDATE people SET hidden = %s WHERE id = %s AND gallery_id = %s",
            (hidden, person_id, gallery.id),
        )
        return self.person(gallery, person_id)

    def hidden_people(self, gallery: Gallery) -> list[int]:
        """The ids of the gallery's hidden people."""
        rows = self.conn.execute(
            "SELECT id FROM people WHERE gallery_id = %s AND hidden ORDER BY id", (gallery.id,)
        ).fetchall()
        return [int(row[0]) for row in rows]

    def set_cover(self, gallery: Gallery, person_id: int, face_id: int) -> Person:
        """Make one of a person's faces its cover."""
        person = self.person(gallery, person_id)
        inside = self.conn.execute(
            "SELECT 1 FROM face_people WHERE face_id = %s AND person_id = %s", (face_id, person_id)
        ).fetchone()
        if not inside:
            raise UsageError(f"face {face_id} is not in {person.label} (id {person_id})")
        self.conn.execute(
            "UPDATE people SET cover_face_id = %s WHERE id = %s", (face_id, person_id)
        )
        return self.person(gallery, person_id)

    def keep_apart(self, gallery: Gallery, first: int, second: int) -> None:
        """Remember that two people are different (never suggested for a merge again)."""
        if first == second:
            raise UsageError(f"person {first} is one person; give two different ids")
        self.person(gallery, first), self.person(gallery, second)
        self.conn.execute(
            "INSERT INTO people_apart (gallery_id, person_a, person_b) VALUES (%s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            (gallery.id, min(first, second), max(first, second)),
        )

    def apart(self, gallery: Gallery) -> set[tuple[int, int]]:
        """Pairs of people said to be different, each as (lower id, higher id)."""
        rows = self.conn.execute(
            "SELECT person_a, person_b FROM people_apart WHERE gallery_id = %s", (gallery.id,)
        ).fetchall()
        return {(int(a), int(b)) for a, b in rows}

    def shared_photos(self, gallery: Gallery) -> set[tuple[int, int]]:
        """Pairs of people with faces in one photo, who can never be one person."""
        rows = self.conn.execute(
            "SELECT DISTINCT least(a.person_id, b.person_id), greatest(a.person_id, b.person_id)"
            " FROM face_people a JOIN face_people b ON b.gallery_id = a.gallery_id"
            " AND b.source = a.source AND b.person_id <> a.person_id WHERE a.gallery_id = %s",
            (gallery.id,),
        ).fetchall()
        return {(int(a), int(b)) for a, b in rows}

    def _fix_covers(self, gallery: Gallery) -> None:
        """People whose cover face is not theirs (any more) take their first face.

        In separate statements: Citus refuses an update of a reference table (people)
        with a subquery on a distributed one (face_people).
        """
        covers: dict[int, int | None] = dict(
            self.conn.execute(
                "SELECT id, cover_face_id FROM people WHERE gallery_id = %s", (gallery.id,)
            ).fetchall()
        )
        holders: dict[int, int | None] = dict(
            self.conn.execute(
                "SELECT face_id, person_id FROM face_people WHERE face_id = ANY(%s::bigint[])",
                ([c for c in covers.values() if c is not None],),
            ).fetchall()
        )
        wrong = [p for p, c in covers.items() if c is None or holders.get(c) != p]
        if not wrong:
            return
        firsts = self.conn.execute(
            "SELECT person_id, min(face_id) FROM face_people WHERE person_id = ANY(%s::bigint[])"
            " GROUP BY person_id",
            (wrong,),
        ).fetchall()
        if firsts:
            self.conn.execute(
                "UPDATE people p SET cover_face_id = v.face FROM unnest(%s::bigint[],"
                " %s::bigint[]) AS v(person, face) WHERE p.id = v.person",
                ([r[0] for r in firsts], [r[1] for r in firsts]),
            )
