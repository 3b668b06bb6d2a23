"""Numbered schema changes made after setup.sql, each applied once per database.

Where a schema change goes: in BOTH places.
1. setup.sql (at the top of the repository; src/doppel/store/setup.sql links to it)
   describes the schema as it is now. A new database runs it and then every step
   below, so a step must be harmless on a schema that already has its change
   (`IF NOT EXISTS`, `SET (...)`, and the like).
2. A new step appended to STEPS, with the next number, brings an existing database
   from the previous schema to the new one.
tests/test_store.py builds one database from setup.sql and one from the first
released schema (tests/data/schema-0.sql) plus every step, and requires them to be
the same: tables, columns, types, indexes and constraints.
3. On a Citus coordinator (store/citus_layout.py) a new database records the steps so far
   as applied (setup.sql holds them) and runs only later ones, on distributed tables:
   name every constraint and add it with its own ALTER TABLE, as Citus refuses one
   inside ADD COLUMN. tests/test_citus.py runs each step from CITUS_SAFE_FROM there.
"""

from __future__ import annotations

# (step number, SQL). Append only; never edit a step that has shipped.
STEPS: list[tuple[int, str]] = [
    # Rows with a 512-d vector (about 2.1 kB) stay inline instead of going to TOAST.
    (1, "ALTER TABLE faces SET (toast_tuple_target = 8160)"),
    # People: a people table, and the person of each face (see setup.sql).
    (
        2,
        """
        CREATE TABLE IF NOT EXISTS people (
            id            bigserial PRIMARY KEY,
            gallery_id    integer NOT NULL REFERENCES galleries ON DELETE CASCADE,
            name          text,
            cover_face_id bigint REFERENCES faces ON DELETE SET NULL,
            created_at    timestamptz NOT NULL DEFAULT now()
        );
        ALTER TABLE faces ADD COLUMN IF NOT EXISTS
            person_id bigint REFERENCES people ON DELETE SET NULL;
        ALTER TABLE faces ADD COLUMN IF NOT EXISTS
            person_excluded boolean NOT NULL DEFAULT false;
        CREATE INDEX IF NOT EXISTS faces_person ON faces (person_id) WHERE person_id IS NOT NULL;
        """,
    ),
    # Galleries record the alignment method and mirror averaging; older ones were
    # aligned DeepFace's way without mirroring, which the defaults say.
    (
        3,
        "ALTER TABLE galleries"
        " ADD COLUMN IF NOT EXISTS alignment text NOT NULL DEFAULT 'eyes'"
        " CHECK (alignment IN ('eyes', 'five-point')),"
        " ADD COLUMN IF NOT EXISTS flip boolean NOT NULL DEFAULT false",
    ),
    # Uploads of `doppel serve` held in the database, so that several serve processes
    # (workers, machines behind a load balancer) share them (see setup.sql).
    (
        4,
        """
        CREATE TABLE IF NOT EXISTS uploads (
            id           text PRIMARY KEY,
            name         text NOT NULL,
            content_hash text NOT NULL,
            data         bytea NOT NULL,
            created_at   timestamptz NOT NULL DEFAULT now(),
            used_at      timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE IF NOT EXISTS upload_faces (
            upload_id text NOT NULL REFERENCES uploads ON DELETE CASCADE,
            detector  text NOT NULL,
            faces     bytea NOT NULL,
            PRIMARY KEY (upload_id, detector)
        );
        CREATE TABLE IF NOT EXISTS upload_vectors (
            upload_id  text NOT NULL REFERENCES uploads ON DELETE CASCADE,
            config_key text NOT NULL,
            detector   text NOT NULL,
            face_index integer NOT NULL,
            vector     bytea NOT NULL,
            PRIMARY KEY (upload_id, config_key, detector, face_index)
        );
        """,
    ),
    # Each face's photo's difference hash: copies of one picture are told apart from
    # distinct photos by it and the vector (doppel.duplicates, see setup.sql).
    (5, "ALTER TABLE faces ADD COLUMN IF NOT EXISTS phash bigint"),
    # People: hidden people, a journal of hand edits that `people restore` undoes, and
    # pairs of people the user said are two (see setup.sql).
    (
        6,
        """
        ALTER TABLE people ADD COLUMN IF NOT EXISTS hidden boolean NOT NULL DEFAULT false;
        CREATE TABLE IF NOT EXISTS people_edits (
            id          bigserial PRIMARY KEY,
            gallery_id  integer NOT NULL REFERENCES galleries ON DELETE CASCADE,
            kind        text NOT NULL CHECK (kind IN ('merge', 'remove', 'move')),
            person_id   bigint,
            other_id    bigint,
            other_name  text,
            other_cover bigint,
            face_ids    bigint[] NOT NULL,
            undone      boolean NOT NULL DEFAULT false,
            created_at  timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE IF NOT EXISTS people_apart (
            gallery_id integer NOT NULL REFERENCES galleries ON DELETE CASCADE,
            person_a   bigint NOT NULL,
            person_b   bigint NOT NULL,
            PRIMARY KEY (gallery_id, person_a, person_b),
            CHECK (person_a < person_b)
        );
        """,
    ),
    # The kept person's name before a merge, which `people restore` gives back.
    (7, "ALTER TABLE people_edits ADD COLUMN IF NOT EXISTS person_name text"),
    # Each face's quality (size, sharpness, frontalness; the detector's confidence was
    # there already), for the people's quality gate. Existing faces get NULL: unknown.
    (
        8,
        "ALTER TABLE faces ADD COLUMN IF NOT EXISTS face_size integer,"
        " ADD COLUMN IF NOT EXISTS sharpness real,"
        " ADD COLUMN IF NOT EXISTS frontalness real",
    ),
    # Each face's person moves to a narrow table of its own, face_people (see setup.sql):
    # written in place, faces' rows were rewritten whole and entered the HNSW index
    # again. On Citus the table is co-located with faces, its foreign key to faces
    # carrying the distribution column. Harmless where face_people is there already.
    (
        9,
        """
        DO $step$
        DECLARE
            citus boolean := to_regclass('pg_dist_partition') IS NOT NULL;
        BEGIN
            IF citus THEN
                EXECUTE 'SELECT EXISTS (SELECT 1 FROM pg_dist_partition'
                    ' WHERE logicalrelid = ''faces''::regclass)' INTO citus;
            END IF;
            IF citus THEN
                -- Foreign keys to reference tables: Citus wants one connection per node.
                PERFORM set_config('citus.multi_shard_modify_mode', 'sequential', true);
            END IF;
            IF to_regclass('face_people') IS NULL THEN
                CREATE TABLE face_people (
                    face_id    bigint NOT NULL,
                    source     text NOT NULL,
                    gallery_id integer NOT NULL,
                    person_id  bigint,
                    excluded   boolean NOT NULL DEFAULT false,
                    pinned     boolean NOT NULL DEFAULT false,
                    CONSTRAINT face_people_pkey PRIMARY KEY (face_id, source)
                );
                IF citus THEN
                    PERFORM create_distributed_table('face_people', 'source',
                                                     colocate_with => 'faces');
                    ALTER TABLE face_people ADD CONSTRAINT face_people_face_fkey
                        FOREIGN KEY (face_id, source) REFERENCES faces (id, source)
                        ON DELETE CASCADE;
                ELSE
                    ALTER TABLE face_people ADD CONSTRAINT face_people_face_fkey
                        FOREIGN KEY (face_id) REFERENCES faces ON DELETE CASCADE;
                END IF;
                ALTER TABLE face_people ADD CONSTRAINT face_people_person_fkey
                    FOREIGN KEY (person_id) REFERENCES people ON DELETE SET NULL;
                CREATE INDEX face_people_person ON face_people (person_id)
                    WHERE person_id IS NOT NULL;
                CREATE INDEX face_people_gallery ON face_people (gallery_id, person_id);
            END IF;
            IF EXISTS (
                SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema()
                AND table_name = 'faces' AND column_name = 'person_id'
            ) THEN
                EXECUTE 'INSERT INTO face_people (face_id, source, gallery_id, person_id,'
                    ' excluded) SELECT id, source, gallery_id, person_id, person_excluded'
                    ' FROM faces WHERE person_id IS NOT NULL OR person_excluded'
                    ' ON CONFLICT DO NOTHING';
                DROP INDEX IF EXISTS faces_person;
                ALTER TABLE faces DROP COLUMN person_id, DROP COLUMN person_excluded;
            END IF;
        END
        $step$
        """,
    ),
    # A gallery's own quality floor (`doppel people floor`); NULL: the shipped one.
    (10, "ALTER TABLE galleries ADD COLUMN IF NOT EXISTS quality_floor jsonb"),
]
