"""One gallery on a single node and on local Citus clusters, side by side in one run.

Every setup gets the same realistic vectors (bench_index's set fitted to lfw-dev's Dlib
embeddings, 512-d) in a table laid out as doppel lays out `faces` (on Citus:
distributed by hash of `source`), the same halfvec HNSW index (m 16, ef_construction
64, built with doppel's maintenance_work_mem for one shard's graph, passed to the
workers by SET LOCAL), and the same held-out queries. For each: load and build time,
the build's memory per shard, the index's size on the node holding most of it,
recall@5 against exact search (numpy) at several ef_search, p50/p95 latency of one
client, queries per second from 4 concurrent clients, and whether the exact search
(no index) returns the single node's top 5. Examples:

    python benchmarks/bench_citus.py --rows 30000 --setups single citus:2:2 citus:2:4 citus:2:8
    python benchmarks/bench_citus.py --rows 1000000 --setups single citus:2:4 citus:4:8

A setup is `single` or `citus:WORKERS:SHARDS`. All nodes of a local cluster share this
machine's cores, so a cluster here shows the cost of spreading, not its gain: the
gain needs a machine per worker.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_index import chunks_of, merge_top, vector_set  # noqa: E402
from benchlib import machine_line, table  # noqa: E402

K = 5
CLIENTS = 4


def open_setup(kind: str, home: Path):  # type: ignore[no-untyped-def]
    """(connection URL, stop function, workers, shards) for a setup (0, 0: one node)."""
    from doppel.config import Settings
    from doppel.store import citus
    from doppel.store.db import embedded_uri, stop_embedded

    settings = Settings.from_env(home=home, database_url=None)
    if kind == "single":
        return embedded_uri(settings), lambda: stop_embedded(settings), 0, 0
    _, workers, shards = kind.split(":")
    cluster = citus.start(settings, int(workers))
    return cluster.url, lambda: citus.stop(settings, delete=True), int(workers), int(shards)


def load_table(url: str, workers: int, shards: int, chunks, dim: int, rows: int) -> dict:  # type: ignore[no-untyped-def]
    """Load the vectors, build the index as doppel builds a gallery's; what it took."""
    import psycopg
    from pgvector.psycopg import register_vector

    from doppel.store.indexes import build_memory_mib

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        register_vector(conn)
        conn.execute("DROP TABLE IF EXISTS bench")
        conn.execute(
            "CREATE TABLE bench (id bigint NOT NULL, source text NOT NULL,"
            " embedding vector NOT NULL, PRIMARY KEY (id, source))"
        )
        if shards:
            conn.execute(
                "SELECT create_distributed_table('bench', 'source', shard_count => %s)", (shards,)
            )
        started = time.perf_counter()
        offset = 0
        with conn.cursor() as cur:
            for chunk in chunks:
                with cur.copy(
                    "COPY bench (id, source, embedding) FROM STDIN (FORMAT BINARY)"
                ) as cp:
                    cp.set_types(["int8", "text", "vector"])
                    for i, vector in enumerate(chunk):
                        cp.write_row((offset + i, f"/photos/{offset + i}.jpg", vector))
                offset += len(chunk)
        loaded = time.perf_counter() - started
        conn.execute("VACUUM ANALYZE bench")
        # doppel's memory rule (store/indexes.py): one shard's graph per shard, the
        # shards of one worker sharing its quarter; passed to the workers by SET LOCAL.
        per_worker = -(-shards // workers) if shards else 1
        memory = build_memory_mib(-(-rows // max(1, shards)), dim, "halfvec", 16, builds=per_worker)
        print(f"  loaded {rows} rows in {loaded:.0f} s; building with {memory} MB", flush=True)
        started = time.perf_counter()
        with conn.transaction():
            if shards:
                conn.execute("SET LOCAL citus.propagate_set_commands = local")
            conn.execute(f"SET LOCAL maintenance_work_mem = '{memory}MB'")
            conn.execute(
                f"CREATE INDEX bench_hnsw ON bench USING hnsw ((embedding::halfvec({dim}))"
                " halfvec_cosine_ops) WITH (m = 16, ef_construction = 64)"
            )
        built = time.perf_counter() - started
        return {"load": loaded, "build": built, "memory": memory, "index": index_bytes(conn)}


def index_bytes(conn) -> int:  # type: ignore[no-untyped-def]
    """The index's size on the node that holds the most of it."""
    if conn.execute("SELECT to_regclass('pg_dist_partition') IS NULL").fetchone()[0]:
        return int(conn.execute("SELECT pg_relation_size('bench_hnsw')").fetchone()[0])
    per_node: dict[int, int] = {}
    for port, result in conn.execute(
        "SELECT nodeport, result FROM run_command_on_placements('bench',"
        " $$SELECT pg_relation_size('bench_hnsw_' || split_part('%s', '_', -1))$$)"
    ):
        per_node[port] = per_node.get(port, 0) + int(result)
    return max(per_node.values())


def search(conn, vector: np.ndarray, dim: int, ef: int | None) -> list[int]:  # type: ignore[no-untyped-def]
    from pgvector import Vector

    with conn.transaction():
        if ef is None:
            conn.execute("SET LOCAL enable_indexscan = off")
            sql = "SELECT id FROM bench ORDER BY embedding <=> %s LIMIT 5"
        else:
            conn.execute(
                f"SET LOCAL hnsw.ef_search = {ef}; SET LOCAL hnsw.iterative_scan = relaxed_order"
            )
            sql = (
                f"SELECT id FROM bench ORDER BY (embedding::halfvec({dim}))"
                f" <=> %s::vector::halfvec({dim}) LIMIT 5"
            )
        return [row[0] for row in conn.execute(sql, (Vector(vector),))]


def connect(url: str, shards: int):  # type: ignore[no-untyped-def]
    import psycopg
    from pgvector.psycopg import register_vector

    conn = psycopg.connect(url, autocommit=True)
    register_vector(conn)
    if shards:
        conn.execute("SET citus.propagate_set_commands = local")
    return conn


def measure(url: str, shards: int, queries: np.ndarray, truth: np.ndarray, args) -> dict:  # type: ignore[no-untyped-def]
    out: dict = {}
    with connect(url, shards) as conn:
        for vector in queries[:50]:  # warm the buffers
            search(conn, vector, args.dim, max(args.ef))
        for ef in args.ef:
            times, hits = [], 0
            for q, vector in enumerate(queries):
                started = time.perf_counter()
                ids = search(conn, vector, args.dim, ef)
                times.append(time.perf_counter() - started)
                hits += len(set(ids) & set(truth[q].tolist()))
            out[ef] = (
                hits / (K * len(queries)),
                np.percentile(times, 50),
                np.percentile(times, 95),
            )
        out["exact"] = [search(conn, vector, args.dim, None) for vector in queries]
    # Queries per second from CLIENTS connections at once, at the largest ef_search.
    done = [0] * CLIENTS

    def client(n: int) -> None:
        with connect(url, shards) as own:
            for vector in queries[n::CLIENTS]:
                search(own, vector, args.dim, max(args.ef))
                done[n] += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out["qps"] = sum(done) / (time.perf_counter() - started)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=30_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument(
        "--ef",
        type=int,
        nargs="+",
        help="ef_search values (default: 40 100 200, from 300,000 rows 100 200 400 800)",
    )
    parser.add_argument("--setups", nargs="+", default=["single", "citus:2:4", "citus:4:8"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--fit-cache",
        type=Path,
        default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        / "doppel-bench"
        / "lfw-dev-dlib.npz",
    )
    args = parser.parse_args()
    if not args.ef:
        args.ef = [100, 200, 400, 800] if args.rows >= 300_000 else [40, 100, 200]
    print(machine_line(), flush=True)
    print(f"load before: {os.getloadavg()[0]:.2f}", flush=True)
    make = vector_set("realistic", args.dim, args.fit_cache)
    queries, _ = chunks_of(make, args.rows, args.queries, args.seed)
    best = None
    offset = 0
    for chunk in chunks_of(make, args.rows, args.queries, args.seed)[1]:
        best = merge_top(queries, chunk, offset, best)
        offset += len(chunk)
    assert best is not None
    truth = best[1]
    rows = []
    reference: list[list[int]] | None = None
    for kind in args.setups:
        home = Path(tempfile.mkdtemp(prefix="doppel-bench-citus-"))
        url, stop, workers, shards = open_setup(kind, home)
        try:
            chunks = chunks_of(make, args.rows, args.queries, args.seed)[1]
            build = load_table(url, workers, shards, chunks, args.dim, args.rows)
            print(f"  {kind}: {build}, load {os.getloadavg()[0]:.2f}", flush=True)
            result = measure(url, shards, queries, truth, args)
        finally:
            stop()
            shutil.rmtree(home, ignore_errors=True)
        if reference is None:
            reference = result["exact"]
        same = sum(a == b for a, b in zip(result["exact"], reference, strict=True))
        for ef in args.ef:
            recall, p50, p95 = result[ef]
            rows.append(
                [
                    kind,
                    f"{build['load']:.0f}",
                    f"{build['build']:.1f}",
                    f"{build['memory']}",
                    f"{build['index'] / 2**20:.0f}",
                    str(ef),
                    f"{recall:.3f}",
                    f"{p50 * 1000:.1f}",
                    f"{p95 * 1000:.1f}",
                    f"{result['qps']:.0f}" if ef == max(args.ef) else "",
                    f"{same}/{len(queries)}" if ef == max(args.ef) else "",
                ]
            )
        print(rows[-1], f"load {os.getloadavg()[0]:.2f}", flush=True)
    print(
        table(
            [
                "setup",
                "load s",
                "build s",
                "build MB/shard",
                "index MB (largest node)",
                "ef_search",
                "recall@5",
                "p50 ms",
                "p95 ms",
                f"qps ({CLIENTS} clients)",
                "exact top 5 = first setup's",
            ],
            rows,
        )
    )
    print(f"load after: {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
