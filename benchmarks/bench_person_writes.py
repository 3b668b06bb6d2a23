"""What it costs to write every face's person when the faces carry an HNSW index.

`doppel people` from no people writes the person of every face. Held in a column of
faces (as it was), the column is indexed, so no such update is heap-only: each row
gets a new version, and the new version goes into every index of the table, the HNSW
index included. Held in face_people (as it is now), the write touches that narrow
table only. This measures the write alone, on tables shaped like `faces` (a 128-d
vector as the Dlib model gives, the partial person index, the gallery's halfvec HNSW
cosine index at doppel's m 16 / ef_construction 64) and `face_people`:

- every face's person written into face_people, from no rows (a first clustering),
  then every person changed (the statement store/people.py runs);
- the update of faces in place with the HNSW index there (what a first clustering did);
- the same update with no HNSW index, and the index built again from nothing (what
  dropping it around the write would have added).

    python benchmarks/bench_person_writes.py --rows 70000
    python benchmarks/bench_person_writes.py --rows 70000 --narrow-only  # minutes less
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from benchlib import machine_line, private_home, table

DIMENSION = 128


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=70_000)
    parser.add_argument("--people", type=int, default=14_000)
    parser.add_argument(
        "--narrow-only",
        action="store_true",
        help="Measure the face_people writes only, not the in-place ones (about 5 minutes).",
    )
    args = parser.parse_args()
    print(machine_line(), flush=True)

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((args.rows, DIMENSION)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    people = rng.integers(1, args.people, args.rows)

    with private_home():
        from doppel.config import Settings
        from doppel.store.db import connect

        with connect(Settings.from_env()) as conn:
            conn.autocommit = True
            conn.execute(
                f"CREATE TABLE faces_shape (id bigint PRIMARY KEY, gallery_id integer,"
                f" source text, person_id bigint, embedding vector({DIMENSION}))"
            )
            conn.execute(
                "CREATE INDEX faces_shape_person ON faces_shape (person_id) "
                "WHERE person_id IS NOT NULL"
            )
            conn.execute("CREATE TABLE people_shape (id bigint PRIMARY KEY)")
            conn.execute(
                "INSERT INTO people_shape SELECT generate_series(1, %s)", (args.people + 2,)
            )
            # face_people as setup.sql makes it, pointing at these tables.
            conn.execute(
                "CREATE TABLE face_people_shape (face_id bigint NOT NULL REFERENCES"
                " faces_shape ON DELETE CASCADE, source text NOT NULL, gallery_id integer"
                " NOT NULL, person_id bigint REFERENCES people_shape ON DELETE SET NULL,"
                " excluded boolean NOT NULL DEFAULT false, pinned boolean NOT NULL DEFAULT"
                " false, PRIMARY KEY (face_id, source))"
            )
            conn.execute(
                "CREATE INDEX ON face_people_shape (person_id) WHERE person_id IS NOT NULL"
            )
            conn.execute("CREATE INDEX ON face_people_shape (gallery_id, person_id)")
            with conn.cursor().copy(
                "COPY faces_shape (id, gallery_id, source, embedding) FROM STDIN"
            ) as copy:
                for i, vector in enumerate(vectors):
                    vector_text = "[" + ",".join(f"{x:.6f}" for x in vector) + "]"
                    copy.write_row((i, 1, f"photos/{i:06d}.jpg", vector_text))
            conn.execute("VACUUM ANALYZE faces_shape")

            def build() -> float:
                start = time.perf_counter()
                conn.execute(
                    f"CREATE INDEX faces_shape_hnsw ON faces_shape USING hnsw "
                    f"((embedding::halfvec({DIMENSION})) halfvec_cosine_ops) "
                    "WITH (m = 16, ef_construction = 64)"
                )
                return time.perf_counter() - start

            def write(shift: int) -> float:
                conn.execute("CREATE TEMP TABLE IF NOT EXISTS chosen (id bigint, person bigint)")
                conn.execute("TRUNCATE chosen")
                with conn.cursor().copy("COPY chosen FROM STDIN") as copy:
                    for i, person in enumerate(people):
                        copy.write_row((i, int(person) + shift))
                start = time.perf_counter()
                conn.execute(
                    "UPDATE faces_shape SET person_id = chosen.person FROM chosen "
                    "WHERE faces_shape.id = chosen.id"
                )
                return time.perf_counter() - start

            def write_narrow(shift: int) -> float:
                # PeopleStore._write_people's statement: the face's source from faces.
                ids = list(range(args.rows))
                start = time.perf_counter()
                conn.execute(
                    "INSERT INTO face_people_shape (face_id, source, gallery_id, person_id)"
                    " SELECT f.id, f.source, f.gallery_id, v.person FROM unnest(%s::bigint[],"
                    " %s::bigint[]) AS v(face, person) JOIN faces_shape f ON f.id = v.face"
                    " WHERE f.gallery_id = 1 ON CONFLICT (face_id, source) DO UPDATE"
                    " SET person_id = EXCLUDED.person_id, pinned = false"
                    " WHERE face_people_shape.person_id IS DISTINCT FROM EXCLUDED.person_id",
                    (ids, [int(p) + shift for p in people]),
                )
                return time.perf_counter() - start

            rows = [["HNSW index built (after the load)", build()]]
            rows.append(["every person written to face_people, from no rows", write_narrow(0)])
            rows.append(["every person changed in face_people", write_narrow(1)])
            if not args.narrow_only:
                rows.append(["every person_id written in faces, HNSW index in place", write(0)])
                conn.execute("DROP INDEX faces_shape_hnsw")
                rows.append(["every person_id written in faces, no HNSW index", write(1)])
                conn.execute("VACUUM faces_shape")
                rows.append(["HNSW index built again (after the write)", build()])

    print(table(["step", f"seconds ({args.rows:,} rows)"], rows))
    print(machine_line())


if __name__ == "__main__":
    main()
