"""What it costs to write every face's person when the faces carry an HNSW index.

`doppel people` from no people writes `person_id` into every face row. The column is
indexed (faces_person), so no such update is heap-only: each row gets a new version,
and the new version goes into every index of the table, the HNSW index included. This
measures that write alone, on a table shaped like `faces` (a 128-d vector as the Dlib
model gives, the partial person index, the gallery's halfvec HNSW cosine index at
doppel's m 16 / ef_construction 64), three ways:

- the update with the HNSW index in place (what a first clustering does today);
- the index built again from nothing (what dropping it around the write would add);
- the same update with no HNSW index (what a person table of its own would cost, about).

    python benchmarks/bench_person_writes.py --rows 70000
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
                f"CREATE TABLE faces_shape (id bigint PRIMARY KEY, person_id bigint, "
                f"embedding vector({DIMENSION}))"
            )
            conn.execute(
                "CREATE INDEX faces_shape_person ON faces_shape (person_id) "
                "WHERE person_id IS NOT NULL"
            )
            with conn.cursor().copy("COPY faces_shape (id, embedding) FROM STDIN") as copy:
                for i, vector in enumerate(vectors):
                    copy.write_row((i, "[" + ",".join(f"{x:.6f}" for x in vector) + "]"))
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

            first_build = build()
            with_index = write(0)
            conn.execute("DROP INDEX faces_shape_hnsw")
            without_index = write(1)
            conn.execute("VACUUM faces_shape")
            second_build = build()

    print(
        table(
            ["step", f"seconds ({args.rows:,} rows)"],
            [
                ["HNSW index built (after the load)", first_build],
                ["every person_id written, HNSW index in place", with_index],
                ["every person_id written, no HNSW index", without_index],
                ["HNSW index built again (after the write)", second_build],
            ],
        )
    )
    print(machine_line())


if __name__ == "__main__":
    main()
