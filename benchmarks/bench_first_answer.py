"""From `doppel load-dump` to the first answer: how long a new user waits at 70,000 faces.

A plain dump made by the real pg_dump is loaded by the real command in a fresh
database, once per --index choice; the clock starts when the command starts. Right
after it returns, a search is timed (exact while there is no valid index); then the
script waits for the index (built in the background with --index auto at this size)
and measures recall@5 against exact search and latency once it is there.

    python benchmarks/bench_first_answer.py                 # 70,000 rows; auto and wait
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import load, machine_line, private_home, table  # noqa: E402

from tests.helpers import create_database  # noqa: E402

K = 5


def queries(conn, gallery, count: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Gallery vectors with a little noise: photos of people the gallery holds."""
    rows = conn.execute(
        "SELECT embedding FROM faces WHERE gallery_id = %s ORDER BY id LIMIT %s",
        (gallery.id, count),
    ).fetchall()
    vectors = np.array([row[0].to_numpy() for row in rows], dtype=np.float32)
    noise = np.random.default_rng(1).standard_normal(vectors.shape).astype(np.float32)
    return vectors + 0.02 * noise


def timed(repo, gallery, vectors, exact: bool):  # type: ignore[no-untyped-def]
    """(result ids per query, p50 ms) of doppel's own search."""
    found, times = [], []
    for vector in vectors:
        begin = time.perf_counter()
        matches = repo.search(gallery, vector, K, exact=exact)
        times.append(time.perf_counter() - begin)
        found.append({m.face.id for m in matches})
    return found, float(np.percentile(np.array(times) * 1000, 50))


def wait_for_index(gallery, ready_at: list[float]) -> None:  # type: ignore[no-untyped-def]
    """Note when the gallery's index becomes valid, polling from a connection of its own."""
    from doppel.config import Settings
    from doppel.store.db import connect
    from doppel.store.repository import Repository

    with connect(Settings.from_env()) as conn:
        repo = Repository(conn)
        while not repo.has_index(gallery):
            time.sleep(0.2)
    ready_at.append(time.perf_counter())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=70_000)
    parser.add_argument("--modes", default="auto,wait")
    parser.add_argument("--queries", type=int, default=100)
    args = parser.parse_args()
    print(machine_line(), flush=True)
    out = []
    with private_home() as home:
        from doppel.config import Settings
        from doppel.store.db import connect, embedded_uri
        from doppel.store.repository import Repository
        from tests.helpers import write_faces_dump

        server_url = embedded_uri(Settings.from_env())
        dump = write_faces_dump(server_url, home / "faces.sql", args.rows, "plain")
        for mode in args.modes.split(","):
            os.environ["DOPPEL_DATABASE_URL"] = create_database(server_url, "first")
            ready_at: list[float] = []
            start = time.perf_counter()
            said = subprocess.run(
                [sys.executable, "-m", "doppel", "load-dump", str(dump), "-g", "ffhq"]
                + ["--index", mode],
                check=True,
                stderr=subprocess.PIPE,
                text=True,
            ).stderr
            returned = time.perf_counter() - start
            print(f"--index {mode}: the command said\n{said.strip()}", flush=True)
            with connect(Settings.from_env()) as conn:
                repo = Repository(conn)
                gallery = repo.gallery("ffhq")
                vectors = queries(conn, gallery, args.queries)
                repo.search(gallery, vectors[0], K)
                first = time.perf_counter() - start
                indexed_at_first = repo.has_index(gallery)
                watcher = threading.Thread(target=wait_for_index, args=(gallery, ready_at))
                watcher.start()
                truth, exact_ms = timed(repo, gallery, vectors[:20], exact=True)
                watcher.join()
                ready = ready_at[0] - start
                truth, _ = timed(repo, gallery, vectors, exact=True)
                found, index_ms = timed(repo, gallery, vectors, exact=False)
                recall = np.mean([len(a & b) / K for a, b in zip(found, truth, strict=True)])
            out.append(
                [
                    mode,
                    f"{returned:.1f}",
                    f"{first:.1f}",
                    "index" if indexed_at_first else "exact",
                    f"{exact_ms:.0f}",
                    f"{ready:.1f}",
                    f"{recall:.3f}",
                    f"{index_ms:.1f}",
                    load(),
                ]
            )
            print(out[-1], flush=True)
    print()
    print(f"{args.rows} rows, plain dump; seconds from the start of `doppel load-dump`")
    print(
        table(
            [
                "--index",
                "command returns s",
                "first answer s",
                "first answer by",
                "exact p50 ms",
                "index ready s",
                "index recall@5",
                "index p50 ms",
                "load",
            ],
            out,
        )
    )


if __name__ == "__main__":
    main()
