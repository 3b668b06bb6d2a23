"""The store's own foundations: the binary vector encoder and the schema's two paths."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import psycopg
import pytest
from pgvector import HalfVector, Vector

from doppel.store.db import apply_schema
from doppel.store.vectors import binary_values, copy_data
from tests.helpers import create_database, drop_database

OLDEST_SCHEMA = Path(__file__).parent / "data" / "schema-0.sql"


def _rows(storage: str, vectors: np.ndarray) -> list[bytes]:
    header, data, size = binary_values(vectors, storage)
    return [header + bytes(data[n * size : (n + 1) * size]) for n in range(len(vectors))]


@pytest.mark.parametrize(("storage", "kind"), [("vector", Vector), ("halfvec", HalfVector)])
def test_binary_values_are_pgvectors_own(storage: str, kind: type) -> None:
    rng = np.random.default_rng(3)
    vectors = np.vstack(
        [
            rng.standard_normal((4, 512)).astype(np.float32),
            np.array([[0.0, -0.0, 1e-8, -65504.0] * 128], dtype=np.float32),
        ]
    )
    for vector, encoded in zip(vectors, _rows(storage, vectors), strict=True):
        assert encoded == kind(vector).to_binary()
        decoded = kind.from_binary(encoded).to_numpy()
        expected = vector.astype(np.float16 if storage == "halfvec" else np.float32)
        assert np.array_equal(decoded, expected)


def test_copy_data_frames_each_vector_as_one_binary_field() -> None:
    texts = [b"[1,2.5,-3]", b"[nope]", b"[0.25,0,1e-3]"]
    heads = [struct.pack("!h", 1), struct.pack("!h", 1), struct.pack("!h", 1)]
    data, bad = copy_data(heads, texts, 3)
    assert [n for n, _ in bad] == [1]
    body = data[19:-2]  # after the signature, flags and extension length; before the trailer
    values = []
    while body:
        assert body[:2] == struct.pack("!h", 1)
        (length,) = struct.unpack("!i", body[2:6])
        values.append(Vector.from_binary(body[6 : 6 + length]).to_list())
        body = body[6 + length :]
    assert values == [
        pytest.approx([1.0, 2.5, -3.0]),
        pytest.approx([0.25, 0.0, 1e-3]),
    ]


# What a schema is made of, read from the catalogue; names of the database's own
# objects only (the extension's are the extension's business).
SCHEMA_QUERIES = {
    "tables": """
        SELECT c.relname, c.relkind, coalesce(array_to_string(c.reloptions, ','), '')
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
    """,
    "columns": """
        SELECT table_name, column_name, data_type, udt_name, is_nullable,
               coalesce(column_default, ''), coalesce(character_maximum_length, 0)
        FROM information_schema.columns WHERE table_schema = 'public'
    """,
    "indexes": "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'",
    "constraints": """
        SELECT c.relname, k.conname, k.contype, pg_get_constraintdef(k.oid)
        FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'
    """,
    "extensions": "SELECT extname FROM pg_extension",
}


def _schema(url: str) -> dict[str, list[tuple]]:
    with psycopg.connect(url) as conn:
        return {
            name: sorted(conn.execute(query).fetchall())  # type: ignore[arg-type]
            for name, query in SCHEMA_QUERIES.items()
        }


def test_setup_sql_equals_the_oldest_schema_migrated(server_url: str) -> None:
    """A schema change goes into setup.sql AND a new numbered step; this catches one
    without the other."""
    fresh = create_database(server_url)
    old = create_database(server_url)
    try:
        with psycopg.connect(fresh, autocommit=True) as conn:
            apply_schema(conn)
        with psycopg.connect(old, autocommit=True) as conn:
            conn.execute(OLDEST_SCHEMA.read_text())  # type: ignore[arg-type]
            before = _schema(old)
            apply_schema(conn)
        migrated = _schema(old)
        assert migrated != before, "the migration steps changed nothing"
        expected = _schema(fresh)
        for part in SCHEMA_QUERIES:
            assert migrated[part] == expected[part], part
    finally:
        drop_database(server_url, fresh)
        drop_database(server_url, old)


def test_the_packaged_schema_is_a_real_file_equal_to_the_top_level_one() -> None:
    """The package ships setup.sql as a file of its own (a link breaks in wheels and on
    some file systems); the top-level copy is what `psql -f setup.sql` uses."""
    root = Path(__file__).resolve().parents[1]
    packaged = root / "src" / "doppel" / "store" / "setup.sql"
    assert not packaged.is_symlink()
    assert packaged.read_text() == (root / "setup.sql").read_text()


def test_quality_step_applies_to_a_database_with_faces(server_url: str) -> None:
    """A database from before the quality columns, holding a face, gets them on the next
    connection; its face's measures are unknown (NULL), never low."""
    from doppel.people.quality import QUALITY_FLOOR
    from doppel.store.quality import QualityStore
    from doppel.store.repository import Repository
    from doppel.types import EmbeddingConfig, NewFace

    url = create_database(server_url)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            apply_schema(conn)
            conn.execute(
                "ALTER TABLE faces DROP COLUMN face_size, DROP COLUMN sharpness,"
                " DROP COLUMN frontalness"
            )
            conn.execute("DELETE FROM schema_steps WHERE step = 8")
            conn.execute(
                "INSERT INTO galleries (name, model, detector, align, normalization, dimension)"
                " VALUES ('old', 'Dlib', 'dlib', true, 'base', 3)"
            )
            gallery_id = conn.execute("SELECT id FROM galleries").fetchone()[0]  # type: ignore[index]
            conn.execute(
                "INSERT INTO faces (gallery_id, source, confidence, embedding)"
                " VALUES (%s, 'a.jpg', 0.01, '[1,0,0]')",
                (gallery_id,),
            )
            apply_schema(conn)
            row = conn.execute("SELECT face_size, sharpness, frontalness FROM faces").fetchone()
            assert row == (None, None, None)
            from pgvector.psycopg import register_vector

            register_vector(conn)
            repo = Repository(conn)
            gallery = repo.gallery("old")
            store = QualityStore(conn)
            assert store.below_floor(gallery, QUALITY_FLOOR) == []
            stats = store.stats(gallery, QUALITY_FLOOR)
            assert [m.known for m in stats.measures] == [0, 1, 0, 0]
            # New rows carry their measures through the writer.
            from doppel.types import FaceQuality

            repo.ensure_gallery("new", EmbeddingConfig("Dlib", "dlib"), dimension=3)
            new = repo.gallery("new")
            with conn.transaction():
                repo.copy_faces(
                    new,
                    [
                        NewFace(
                            "b.jpg",
                            None,
                            0,
                            np.ones(3, np.float32),
                            None,
                            2.0,
                            quality=FaceQuality(12, 3.5, 0.5),
                        ),
                    ],
                    "faces",
                )
            assert store.below_floor(new, QUALITY_FLOOR) != []
            assert conn.execute(
                "SELECT face_size, sharpness, frontalness FROM faces WHERE source = 'b.jpg'"
            ).fetchone() == (12, 3.5, 0.5)
    finally:
        drop_database(server_url, url)


def test_people_step_moves_each_faces_person_to_face_people(server_url: str) -> None:
    """A database whose faces held their person in place keeps every face's person and
    every face taken out by hand when the person moves to face_people."""
    from doppel.store.migrations import STEPS

    url = create_database(server_url)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(OLDEST_SCHEMA.read_text())  # type: ignore[arg-type]
            for number, step in STEPS:
                if number < 9:
                    conn.execute(step)  # type: ignore[arg-type]
                    conn.execute("INSERT INTO schema_steps (step) VALUES (%s)", (number,))
            conn.execute(
                "INSERT INTO galleries (name, model, detector, align, normalization, dimension)"
                " VALUES ('old', 'Dlib', 'dlib', true, 'base', 3)"
            )
            conn.execute("INSERT INTO people (gallery_id, name) SELECT id, 'Ann' FROM galleries")
            conn.execute(
                "INSERT INTO faces (gallery_id, source, embedding, person_id, person_excluded)"
                " SELECT g.id, v.source, '[1,0,0]', v.person, v.excluded FROM galleries g,"
                " (VALUES ('a.jpg', (SELECT id FROM people), false), ('b.jpg', NULL, true),"
                " ('c.jpg', NULL, false)) AS v(source, person, excluded)"
            )
            apply_schema(conn)
            rows = conn.execute(
                "SELECT f.source, p.name, fp.excluded, fp.pinned FROM faces f"
                " LEFT JOIN face_people fp ON fp.face_id = f.id AND fp.source = f.source"
                " LEFT JOIN people p ON p.id = fp.person_id ORDER BY f.source"
            ).fetchall()
            assert rows == [
                ("a.jpg", "Ann", False, False),
                ("b.jpg", None, True, False),
                ("c.jpg", None, None, None),
            ]
            columns = {
                row[0]
                for row in conn.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = 'faces'"
                )
            }
            assert not {"person_id", "person_excluded"} & columns
            # Deleting a face takes its person row with it.
            conn.execute("DELETE FROM faces WHERE source = 'a.jpg'")
            assert conn.execute("SELECT count(*) FROM face_people").fetchone() == (1,)
    finally:
        drop_database(server_url, url)
