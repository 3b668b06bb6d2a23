"""Search at FFHQ scale: HNSW build time, size, recall@5 against exact search, latency.

Galleries of 512-d vectors shaped like face embeddings (tests.helpers.clustered_vectors:
many identities, several noisy samples each), searched through doppel's own
Repository.search, as `doppel find` does. Vector against halfvec, a few (m,
ef_construction) builds, an ef_search sweep. Examples:

    python benchmarks/bench_search.py                       # 70,000 vectors
    python benchmarks/bench_search.py --storage halfvec --builds 32:128
    python benchmarks/bench_search.py --size 1000000 --storage halfvec --builds 32:128 \
        --time-cap 3600

Each (storage, m, ef_construction) is one HNSW build: at 70,000 vectors on two
cores that is minutes (m 32, ef_construction 128: about 20 minutes on a busy machine).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (  # noqa: E402
    load,
    machine_line,
    peak_rss_mib,
    private_home,
    server_cpu_seconds,
    server_memory_mib,
    table,
)

DIM = 512
CHUNK = 100_000
K = 5


class MemorySampler(threading.Thread):
    """Samples the server's summed RSS every half second; keeps the largest."""

    def __init__(self, pgdata: Path) -> None:
        super().__init__(daemon=True)
        self.pgdata = pgdata
        self.peak = 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.5):
            self.peak = max(self.peak, server_memory_mib(self.pgdata)[0])

    def __enter__(self) -> MemorySampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.join()


def generate(size: int, queries: int, seed: int):  # type: ignore[no-untyped-def]
    """(queries, chunk iterator) where chunks are clustered vectors, queries held out.

    Chunks come from separate seeds, so identities never span chunks; the queries are
    fresh samples of chunk 0's identities, like a photo of someone in the gallery.
    """
    from tests.helpers import clustered_vectors

    first = clustered_vectors(min(size, CHUNK) + queries, DIM, seed=seed)
    held_out, first = first[:queries], first[queries:]

    def chunks():  # type: ignore[no-untyped-def]
        yield first
        done, number = len(first), 1
        while done < size:
            part = clustered_vectors(min(CHUNK, size - done), DIM, seed=seed + number)
            done, number = done + len(part), number + 1
            yield part

    return held_out, chunks()


def exact_top(
    held_out: np.ndarray, chunk: np.ndarray, offset: int, best: tuple[np.ndarray, np.ndarray] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Merge this chunk into the running exact top-K (similarities, row numbers)."""
    sims = held_out @ chunk.T
    part = np.argpartition(-sims, K, axis=1)[:, :K]
    part_sims = np.take_along_axis(sims, part, axis=1)
    if best is not None:
        part_sims = np.hstack([best[0], part_sims])
        part = np.hstack([best[1], part + offset])
    else:
        part = part + offset
    order = np.argsort(-part_sims, axis=1)[:, :K]
    return np.take_along_axis(part_sims, order, axis=1), np.take_along_axis(part, order, axis=1)


def load_gallery(conn, repo, name: str, storage: str, chunks, held_out):  # type: ignore[no-untyped-def]
    from doppel.types import EmbeddingConfig, NewFace

    gallery = repo.ensure_gallery(
        name, EmbeddingConfig("Facenet512", "skip", False), storage, dimension=DIM
    )
    best = None
    offset = 0
    start = time.perf_counter()
    for chunk in chunks:
        with conn.transaction():
            repo.copy_faces(
                gallery,
                (NewFace(str(offset + i), None, 0, v) for i, v in enumerate(chunk)),
                "faces",
            )
        best = exact_top(held_out, chunk, offset, best)
        offset += len(chunk)
    return gallery, best[1], offset, time.perf_counter() - start


def clone_gallery(conn, repo, source, name: str, storage: str):  # type: ignore[no-untyped-def]
    """The same rows under a second gallery with another storage, copied inside the server."""
    gallery = repo.ensure_gallery(name, source.config, storage, dimension=source.dimension)
    with conn.transaction():
        conn.execute(
            "INSERT INTO faces (gallery_id, source, content_hash, face_index, embedding)"
            " SELECT %s, source, content_hash, face_index, embedding FROM faces"
            " WHERE gallery_id = %s",
            (gallery.id, source.id),
        )
    return gallery


def build(conn, repo, gallery, m: int, efc: int, cap: float | None, pgdata: Path):  # type: ignore[no-untyped-def]
    """Build the index, capped by statement_timeout.

    Returns (seconds or None, index MiB, server MiB, server CPU seconds); the CPU
    seconds hardly depend on what else the machine runs, unlike the seconds.
    """
    import psycopg

    repo.drop_index(gallery)
    if not conn.autocommit:
        conn.commit()
    if cap:
        conn.execute(f"SET statement_timeout = {int(cap * 1000)}")
    start = time.perf_counter()
    cpu = server_cpu_seconds(pgdata)
    try:
        with MemorySampler(pgdata) as sampler:
            repo.ensure_index(gallery, m=m, ef_construction=efc)
        seconds: float | None = time.perf_counter() - start
    except psycopg.errors.QueryCanceled:
        if not conn.autocommit:
            conn.rollback()
        seconds = None
    finally:
        conn.execute("RESET statement_timeout")
        if not conn.autocommit:
            conn.commit()
    size = conn.execute(
        "SELECT coalesce(pg_relation_size(to_regclass(%s)), 0)", (gallery.index_name,)
    ).fetchone()[0]
    return seconds, size / 2**20, sampler.peak, server_cpu_seconds(pgdata) - cpu


def sweep(repo, gallery, held_out: np.ndarray, truth: np.ndarray, ef: int, exact: bool = False):  # type: ignore[no-untyped-def]
    """(recall@5, p50 ms, p99 ms) over the held-out queries, as doppel find searches."""
    from doppel.types import Filters

    # find always leaves the query photo's own hash out; do the same.
    filters = Filters(exclude_hashes=("0" * 32,))
    for vector in held_out[:10]:  # warm the caches
        repo.search(gallery, vector, K, filters, exact, ef)
    times, hits = [], 0
    for vector, expected in zip(held_out, truth, strict=True):
        start = time.perf_counter()
        matches = repo.search(gallery, vector, K, filters, exact, ef)
        times.append(time.perf_counter() - start)
        hits += len({int(m.face.source) for m in matches} & set(expected.tolist()))
    ms = np.array(times) * 1000
    return hits / (K * len(held_out)), float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def incremental(conn, repo, size: int, pgdata: Path) -> list[list[object]]:  # type: ignore[no-untyped-def]
    """Loading into an existing index (row by row into the graph) against build-after-load."""
    from doppel.types import EmbeddingConfig, NewFace
    from tests.helpers import clustered_vectors

    vectors = clustered_vectors(size, DIM, seed=99)
    rows = []
    for label, index_first in (("index first, then COPY", True), ("COPY, then build index", False)):
        gallery = repo.ensure_gallery(
            f"incr-{int(index_first)}-{size}",
            EmbeddingConfig("Facenet512", "skip", False),
            dimension=DIM,
        )
        start = time.perf_counter()
        if index_first:
            repo.ensure_index(gallery)
        for at in range(0, size, 1000):  # ingest's batches are this order of size
            with conn.transaction():
                repo.copy_faces(
                    gallery,
                    (
                        NewFace(str(at + i), None, 0, v)
                        for i, v in enumerate(vectors[at : at + 1000])
                    ),
                    "faces",
                )
        repo.ensure_index(gallery)
        rows.append([label, size, time.perf_counter() - start])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=70_000)
    parser.add_argument("--storage", nargs="+", default=["vector", "halfvec"])
    parser.add_argument(
        "--builds", default="16:64,32:128", help="m:ef_construction pairs, comma-separated"
    )
    parser.add_argument(
        "--ef-search", default="100,200,400,800", help="hnsw.ef_search values, comma-separated"
    )
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument(
        "--incremental",
        type=int,
        default=20_000,
        help="rows for the index-first against build-after comparison (0: skip)",
    )
    parser.add_argument(
        "--time-cap",
        type=float,
        default=None,
        help="seconds allowed per index build; longer builds are cancelled",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    builds = [tuple(int(x) for x in pair.split(":")) for pair in args.builds.split(",")]
    efs = [int(x) for x in args.ef_search.split(",")]

    print(machine_line())
    from doppel.config import Settings
    from doppel.store.db import connect
    from doppel.store.repository import Repository

    with private_home():
        settings = Settings.from_env()
        conn = connect(settings)
        repo = Repository(conn)
        held_out, chunks = generate(args.size, args.queries, args.seed)
        first, truth, rows, load_s = load_gallery(
            conn, repo, f"g{args.size}-{args.storage[0]}", args.storage[0], chunks, held_out
        )
        heap = conn.execute("SELECT pg_total_relation_size('faces')").fetchone()[0] / 2**20
        print(
            f"gallery: {rows} vectors of {DIM} dimensions loaded with COPY in {load_s:.1f} s "
            f"({rows / load_s:.0f} rows/s); faces table {heap:.0f} MiB; "
            f"{len(held_out)} held-out queries"
        )
        galleries = {args.storage[0]: first}
        for storage in args.storage[1:]:
            galleries[storage] = clone_gallery(
                conn, repo, first, f"g{args.size}-{storage}", storage
            )
        # Exact search for reference: a sequential scan, so time only a few queries.
        recall, p50, p99 = sweep(repo, first, held_out[:20], truth[:20], 40, exact=True)
        print(
            f"exact search (no index): recall@5 {recall:.3f}, p50 {p50:.1f} ms, "
            f"p99 {p99:.1f} ms over 20 queries"
        )
        out = []
        for storage, gallery in galleries.items():
            for m, efc in builds:
                seconds, mib, server, cpu = build(
                    conn, repo, gallery, m, efc, args.time_cap, settings.pgdata
                )
                if seconds is None:
                    out.append(
                        [
                            storage,
                            m,
                            efc,
                            f">{args.time_cap:.0f} (cancelled)",
                            f"{cpu:.0f}",
                            "-",
                            f"{server:.0f}",
                            "-",
                            "-",
                            "-",
                            "-",
                            load(),
                        ]
                    )
                    print(out[-1], flush=True)
                    continue
                for ef in efs:
                    recall, p50, p99 = sweep(repo, gallery, held_out, truth, ef)
                    out.append(
                        [
                            storage,
                            m,
                            efc,
                            seconds,
                            f"{cpu:.0f}",
                            mib,
                            f"{server:.0f}",
                            ef,
                            recall,
                            p50,
                            p99,
                            load(),
                        ]
                    )
                    print(" ".join(str(x) for x in out[-1]), flush=True)
        print()
        print(
            table(
                [
                    "storage",
                    "m",
                    "ef_constr",
                    "build s",
                    "build cpu s",
                    "index MiB",
                    "server MiB",
                    "ef_search",
                    "recall@5",
                    "p50 ms",
                    "p99 ms",
                    "load",
                ],
                out,
            )
        )
        if args.incremental:
            print()
            print(
                table(
                    ["load order", "rows", "seconds (load + index)"],
                    incremental(conn, repo, args.incremental, settings.pgdata),
                )
            )
        conn.close()
    print(f"\nbenchmark process peak RSS {peak_rss_mib():.0f} MiB; load average {load()}")


if __name__ == "__main__":
    main()
