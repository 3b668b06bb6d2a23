-- doppel's schema. Applied automatically by doppel; usable by hand with
--   psql "$DOPPEL_DATABASE_URL" -f setup.sql
-- Later changes are numbered steps in src/doppel/store/migrations.py.

CREATE EXTENSION IF NOT EXISTS vector;

-- A gallery is a set of faces embedded with one configuration; a query is
-- embedded with the same configuration so vectors are always comparable.
CREATE TABLE IF NOT EXISTS galleries (
    id            serial PRIMARY KEY,
    name          text NOT NULL UNIQUE,
    model         text NOT NULL,
    detector      text NOT NULL,
    align         boolean NOT NULL,
    normalization text NOT NULL,
    dimension     integer NOT NULL CHECK (dimension > 0),
    storage       text NOT NULL DEFAULT 'vector' CHECK (storage IN ('vector', 'halfvec')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- How faces were aligned (DeepFace's eye-level crop, or dlib's five-point chip)
    -- and whether each vector averages the face with its mirror image.
    alignment     text NOT NULL DEFAULT 'eyes' CHECK (alignment IN ('eyes', 'five-point')),
    flip          boolean NOT NULL DEFAULT false,
    -- The least quality a face needs to be grouped into a person (`doppel people
    -- floor`): {"sharpness": 8, "size": 40, ...}; NULL is the shipped floor.
    quality_floor jsonb
);

-- Every file an ingest has looked at, so a second run skips it (or redoes it
-- when its content changed). Written in the same transaction as its faces.
CREATE TABLE IF NOT EXISTS images (
    gallery_id   integer NOT NULL REFERENCES galleries ON DELETE CASCADE,
    source       text NOT NULL,
    content_hash text NOT NULL,
    status       text NOT NULL CHECK (status IN ('ok', 'no_face', 'unreadable')),
    detail       text,
    added_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (gallery_id, source)
);

-- People of a gallery: faces grouped by `doppel people`, named by the user. The
-- cover is the face shown for the person (the one nearest the person's mean face).
CREATE TABLE IF NOT EXISTS people (
    id            bigserial PRIMARY KEY,
    gallery_id    integer NOT NULL REFERENCES galleries ON DELETE CASCADE,
    name          text,
    cover_face_id bigint,
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- hidden: left out of the people lists and of `find --strangers`' answers
    hidden        boolean NOT NULL DEFAULT false
);

-- Embeddings have no fixed dimension here: each gallery gets its own partial
-- HNSW index on embedding::vector(dimension) (see src/doppel/store/repository.py).
CREATE TABLE IF NOT EXISTS faces (
    id           bigserial PRIMARY KEY,
    gallery_id   integer NOT NULL REFERENCES galleries ON DELETE CASCADE,
    source       text NOT NULL,
    content_hash text,
    face_index   integer NOT NULL DEFAULT 0,
    box_x        integer,
    box_y        integer,
    box_w        integer,
    box_h        integer,
    confidence   real,
    age          integer,
    sex          char(1) CHECK (sex IN ('F', 'M')),
    race         text,
    embedding    vector NOT NULL,
    added_at     timestamptz NOT NULL DEFAULT now(),
    -- A 64-bit difference hash of the face's photo (doppel.duplicates), so that a
    -- resized or re-compressed copy of one picture is not shown twice; NULL where
    -- the face came without pixels (load-dump).
    phash            bigint,
    -- How well the face can be told apart (doppel.faces.quality), measured at ingest:
    -- the shorter side of its box in the decoded photo's pixels, the variance of the
    -- Laplacian of the aligned face in grey, and 1 (facing the camera) to 0 (turned)
    -- from the landmarks. NULL: unknown (load-dump, detector skip), never low.
    face_size        integer,
    sharpness        real,
    frontalness      real,
    UNIQUE (gallery_id, source, face_index)
) WITH (toast_tuple_target = 8160);
-- A 512-d vector makes a row of about 2.1 kB, just over the default 2 kB at which
-- PostgreSQL moves values out of line; keeping rows of up to a page inline makes
-- loads about a quarter cheaper on the server and exact searches read no TOAST.

CREATE INDEX IF NOT EXISTS faces_gallery_hash ON faces (gallery_id, content_hash);
ALTER TABLE people DROP CONSTRAINT IF EXISTS people_cover_face_id_fkey;
ALTER TABLE people ADD CONSTRAINT people_cover_face_id_fkey
    FOREIGN KEY (cover_face_id) REFERENCES faces ON DELETE SET NULL;

-- The person of each face, in a narrow table of its own: a column of faces would make
-- every clustering rewrite whole face rows, and each new row version goes into the
-- gallery's HNSW index again (minutes at 70,000 faces, docs/benchmarks.md). A face
-- with no row here is in no person. excluded: taken out of a person by hand, so
-- clustering leaves it alone from then on; pinned: put into its person by hand, so
-- clustering never moves it. source is faces' distribution column on Citus, which
-- keeps each row in its face's shard (store/citus_layout.py).
CREATE TABLE IF NOT EXISTS face_people (
    face_id    bigint NOT NULL,
    source     text NOT NULL,
    gallery_id integer NOT NULL,
    person_id  bigint,
    excluded   boolean NOT NULL DEFAULT false,
    pinned     boolean NOT NULL DEFAULT false,
    CONSTRAINT face_people_pkey PRIMARY KEY (face_id, source)
);
ALTER TABLE face_people DROP CONSTRAINT IF EXISTS face_people_face_fkey;
ALTER TABLE face_people ADD CONSTRAINT face_people_face_fkey
    FOREIGN KEY (face_id) REFERENCES faces ON DELETE CASCADE;
ALTER TABLE face_people DROP CONSTRAINT IF EXISTS face_people_person_fkey;
ALTER TABLE face_people ADD CONSTRAINT face_people_person_fkey
    FOREIGN KEY (person_id) REFERENCES people ON DELETE SET NULL;
CREATE INDEX IF NOT EXISTS face_people_person ON face_people (person_id)
    WHERE person_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS face_people_gallery ON face_people (gallery_id, person_id);

-- Embeddings of loose photos (doppel resemble), keyed by file content and the
-- embedding configuration, so a second run only embeds new photos.
CREATE TABLE IF NOT EXISTS embedding_cache (
    content_hash text NOT NULL,
    config       text NOT NULL,
    face_index   integer NOT NULL,
    face_count   integer NOT NULL,
    box_x        integer,
    box_y        integer,
    box_w        integer,
    box_h        integer,
    confidence   real,
    embedding    vector,
    added_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (content_hash, config, face_index)
);

-- Photos sent to `doppel serve`, held for 15 minutes (the newest few), so that every
-- serve process on this database can search an upload any of them took. upload_faces
-- holds each detector's faces of it (boxes, scores and crops as a NumPy .npz archive),
-- upload_vectors the vectors made of them (float32, little-endian).
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

-- Hand edits of people (merges, faces taken out or moved), so that `doppel people
-- restore` can undo them: the faces concerned and, for a merge, the person merged
-- away (its id, name and cover come back).
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
    created_at  timestamptz NOT NULL DEFAULT now(),
    person_name text  -- merge: the kept person's name before it
);

-- Two people the user said are different: never suggested for a merge again.
CREATE TABLE IF NOT EXISTS people_apart (
    gallery_id integer NOT NULL REFERENCES galleries ON DELETE CASCADE,
    person_a   bigint NOT NULL,
    person_b   bigint NOT NULL,
    PRIMARY KEY (gallery_id, person_a, person_b),
    CHECK (person_a < person_b)
);

CREATE TABLE IF NOT EXISTS schema_steps (
    step       integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);
