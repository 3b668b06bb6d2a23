"""A gallery's vector index: which design for which size, building it, watching a build.

plan_index is the one rule that picks the index for a gallery's size; ingest,
load-dump and `doppel index` all build through build_index, and a search uses the
index only once index_state says it is valid: until then it scans exactly, so a
gallery answers as soon as its rows are committed, while its index is still building.
The figures behind the rule are in docs/benchmarks.md ("Index designs").
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from psycopg import sql

from doppel.errors import UsageError
from doppel.store.citus_indexes import build_on_shards, shard_spread
from doppel.store.citus_layout import distributed
from doppel.store.memory import physical_mib
from doppel.types import BuildProgress, Gallery, IndexState

# A gallery this small builds its index in a few seconds: loaders wait for it.
WAIT_BELOW = 20_000
# From here an exact search takes most of a second or more on two cores, too slow to
# stand in while the index builds: loaders build it before they return, with progress.
WAIT_FROM = 300_000
# recall@5 on realistic vectors (docs/benchmarks.md, section 10): 1.000 at 70,000 with
# ef_search 200; at 1,000,000, 0.96 at 200, 0.99 from 500 to 800 depending on the build,
# 0.995 at 800 in 34 ms on two quiet cores (with the server's buffers holding the index).
EF_SEARCH_SMALL = 200
EF_SEARCH_LARGE = 800


@dataclass(frozen=True)
class IndexPlan:
    """How a gallery's HNSW index is built and searched, chosen by plan_index."""

    m: int
    ef_construction: int
    ef_search: int
    # Build in a background process (exact search answers meanwhile) rather than
    # make the loader wait.
    background: bool


def plan_index(faces: int) -> IndexPlan:
    """The index design for a gallery of this many faces.

    HNSW on half-precision vectors at m 16 / ef_construction 64 for every size. Of
    the designs measured side by side (full-precision and halfvec HNSW, HNSW on
    binary_quantize with a re-rank, IVFFlat with a re-rank) it reached recall@5 0.99
    on realistic vectors at 70,000 and at 1,000,000 (there only at ef_search 800),
    with a quarter of the build CPU of m 32 / ef_construction 128, which a
    1,000,000-face build could not afford on two cores (this one takes 14 to 17
    minutes there). Larger galleries need more candidates per query (ef_search) for
    the same recall.
    """
    return IndexPlan(
        m=16,
        ef_construction=64,
        ef_search=EF_SEARCH_SMALL if faces < WAIT_FROM else EF_SEARCH_LARGE,
        background=WAIT_BELOW <= faces < WAIT_FROM,
    )


def build_memory_mib(faces: int, dimension: int, storage: str, m: int, *, builds: int = 1) -> int:
    """maintenance_work_mem for an HNSW build: the graph's size with room, 1 GiB at least.

    At most a quarter of the machine's memory, so a build leaves room for the rest;
    builds: how many run on one machine at once (a Citus worker builds its shards
    together), which share that quarter. A parallel build reserves all of it at once.
    """
    share = (physical_mib() or 8192) // 4 // max(1, builds)
    return max(min(1024, share), min(graph_mib(faces, dimension, storage, m), share))


def graph_mib(faces: int, dimension: int, storage: str, m: int) -> int:
    """The memory an HNSW graph of this many faces takes while it is built, with room.

    Per element pgvector keeps the vector and up to 2*m neighbour candidates on
    layer 0 (more on upper layers); past maintenance_work_mem the build slows down
    many times.
    """
    per_face = dimension * (2 if storage == "halfvec" else 4) + 48 * m + 128
    return int(faces * per_face * 1.25 / 2**20)


def vector_expr(gallery: Gallery) -> sql.Composable:
    """The indexed expression; a search must use the same to reach the index."""
    return sql.SQL("(embedding::{}({}))").format(
        sql.SQL(gallery.storage), sql.Literal(gallery.dimension)
    )


def index_state(conn: psycopg.Connection, gallery: Gallery) -> IndexState | None:
    """The gallery's index, whether it is valid, its size and any build in progress."""
    row = conn.execute(
        "SELECT i.indisvalid, pg_relation_size(i.indexrelid), c.reltuples,"
        " p.phase, p.blocks_done, p.blocks_total, p.tuples_done, p.tuples_total"
        " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " LEFT JOIN pg_stat_progress_create_index p ON p.index_relid = i.indexrelid"
        " WHERE i.indexrelid = to_regclass(%s)",
        (gallery.index_name,),
    ).fetchone()
    if row is None:
        return None
    valid, size, rows, phase, *counts = row
    if distributed(conn):
        # On Citus the coordinator's index is an empty shell; the shards hold the graph.
        total = conn.execute("SELECT citus_relation_size(%s)", (gallery.index_name,)).fetchone()
        size = total[0] if total else size
    building = _progress(phase, *counts) if phase else None
    return IndexState(gallery.index_name, bool(valid), int(size), max(0, int(rows)), building)


def _progress(
    phase: str, blocks_done: int, blocks_total: int, tuples_done: int, tuples_total: int
) -> BuildProgress:
    # pgvector's HNSW reports the table blocks it has read (each row goes into the
    # graph as it is read); IVFFlat and the validation of a concurrent build, tuples.
    if tuples_total:
        return BuildProgress(phase, int(tuples_done), int(tuples_total))
    return BuildProgress(phase, int(blocks_done), int(blocks_total))


def drop_index(conn: psycopg.Connection, gallery: Gallery) -> None:
    conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(gallery.index_name)))


def build_index(
    conn: psycopg.Connection,
    gallery: Gallery,
    faces: int,
    *,
    m: int | None = None,
    ef_construction: int | None = None,
    concurrently: bool = False,
    replace: bool = False,
    progress: Callable[[BuildProgress], None] | None = None,
) -> bool:
    """Build the gallery's HNSW cosine index unless a valid one exists; True if built.

    concurrently: CREATE INDEX CONCURRENTLY, which lets other galleries be written
    meanwhile (for builds in the background); otherwise a plain build, faster, which
    holds writes to the faces table until it ends. progress is called about twice a
    second from a second connection's reading of pg_stat_progress_create_index.

    replace: build anew even over a valid index. The new one is built beside it and
    the two are swapped in one transaction, so searches keep the old index until the
    new one is ready, and keep it if the build fails or is stopped.
    """
    state = index_state(conn, gallery)
    if state is not None and state.building is not None:
        return False  # another process is building it
    if state is not None and state.valid and not replace:
        return False
    if state is not None and not state.valid:
        drop_index(conn, gallery)  # what a failed or killed concurrent build leaves
    beside = state is not None and state.valid
    name = f"{gallery.index_name}_next" if beside else gallery.index_name
    spare = sql.Identifier(name)
    conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(spare))
    try:
        _create_index(
            conn,
            gallery,
            faces,
            name,
            m=m,
            ef_construction=ef_construction,
            concurrently=concurrently,
            progress=progress,
        )
    except BaseException:
        if beside and not conn.closed and not conn.broken:
            conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(spare))
        raise
    if beside:
        with conn.transaction():
            drop_index(conn, gallery)
            conn.execute(
                sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                    spare, sql.Identifier(gallery.index_name)
                )
            )
    return True


def check_parameters(m: int | None, ef_construction: int | None) -> None:
    """Refuse HNSW parameters pgvector would refuse, before anything is dropped or
    written: m 2 to 100, ef_construction 4 to 1000 and at least twice m."""
    plan = plan_index(0)
    m_used, efc_used = m or plan.m, ef_construction or plan.ef_construction
    if not 2 <= m_used <= 100:
        raise UsageError(f"m must be between 2 and 100, not {m_used}")
    if not 4 <= efc_used <= 1000:
        raise UsageError(f"ef_construction must be between 4 and 1000, not {efc_used}")
    if efc_used < 2 * m_used:
        raise UsageError(
            f"ef_construction ({efc_used}) must be at least twice m ({m_used}): "
            f"give ef_construction {2 * m_used} or more, or a smaller m"
        )


def _create_index(
    conn: psycopg.Connection,
    gallery: Gallery,
    faces: int,
    name: str,
    *,
    m: int | None,
    ef_construction: int | None,
    concurrently: bool,
    progress: Callable[[BuildProgress], None] | None,
) -> None:
    """CREATE INDEX of the gallery's HNSW cosine index under this name."""
    check_parameters(m, ef_construction)
    plan = plan_index(faces)
    m = m or plan.m
    ef_construction = ef_construction or plan.ef_construction
    watcher = _Watcher(conn, progress) if progress else None
    try:
        if watcher:
            watcher.start()
        if distributed(conn):
            _create_on_shards(conn, gallery, faces, name, m, ef_construction, concurrently)
        else:
            memory = build_memory_mib(faces, gallery.dimension, gallery.storage, m)
            conn.execute(sql.SQL("SET maintenance_work_mem = {}").format(_mib(memory)))
            try:
                conn.execute(_statement(gallery, name, m, ef_construction, concurrently))
            finally:
                conn.execute("RESET maintenance_work_mem")
    finally:
        if watcher:
            watcher.finish()


def _statement(
    gallery: Gallery, name: str, m: int, ef_construction: int, concurrently: bool
) -> sql.Composed:
    ops = "halfvec_cosine_ops" if gallery.storage == "halfvec" else "vector_cosine_ops"
    return sql.SQL(
        "CREATE INDEX {how} IF NOT EXISTS {name} ON faces USING hnsw ({expr} {ops})"
        " WITH (m = {m}, ef_construction = {efc}) WHERE gallery_id = {gallery}"
    ).format(
        how=sql.SQL("CONCURRENTLY" if concurrently else ""),
        name=sql.Identifier(name),
        expr=vector_expr(gallery),
        ops=sql.SQL(ops),
        m=sql.Literal(m),
        efc=sql.Literal(ef_construction),
        gallery=sql.Literal(gallery.id),
    )


def _mib(memory: int) -> sql.Composable:
    return sql.Literal(f"{memory}MB")


def _create_on_shards(
    conn: psycopg.Connection,
    gallery: Gallery,
    faces: int,
    name: str,
    m: int,
    ef_construction: int,
    concurrently: bool,
) -> None:
    """The build on Citus, with the memory of one shard's graph on each worker (the
    shards of a worker built at once share its memory)."""
    spread = shard_spread(conn)
    shard_faces = -(-faces // spread.shards)
    memory = build_memory_mib(
        shard_faces, gallery.dimension, gallery.storage, m, builds=spread.per_worker
    )
    needed = min(memory, graph_mib(shard_faces, gallery.dimension, gallery.storage, m))
    build_on_shards(
        conn,
        lambda how: _statement(gallery, name, m, ef_construction, how),
        memory,
        needed,
        concurrently,
    )


class _Watcher(threading.Thread):
    """Reads a build's progress from a second connection while the first one builds."""

    def __init__(self, conn: psycopg.Connection, report: Callable[[BuildProgress], None]) -> None:
        super().__init__(daemon=True)
        self.pid = conn.info.backend_pid
        info = conn.info
        self.conninfo = psycopg.conninfo.make_conninfo(
            info.dsn, **({"password": info.password} if info.password else {})
        )
        self.report = report
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            with psycopg.connect(self.conninfo, autocommit=True) as watch:
                while not self.stop.wait(0.5):
                    row = watch.execute(
                        "SELECT phase, blocks_done, blocks_total, tuples_done, tuples_total"
                        " FROM pg_stat_progress_create_index WHERE pid = %s",
                        (self.pid,),
                    ).fetchone()
                    if row is not None:
                        self.report(_progress(*row))
        except psycopg.Error:
            return  # progress is a courtesy; the build goes on without it

    def finish(self) -> None:
        self.stop.set()
        self.join()
