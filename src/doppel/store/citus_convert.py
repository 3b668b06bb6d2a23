"""doppel's tables made before their server had Citus workers, spread over them afterwards.

doppel lays its tables out for Citus when it makes them (store/citus_layout.py). Tables
made on a lone server that later became a coordinator keep every row on it, and
connect() refuses them (store/db.py, check_layout) until this has run
(`doppel db distribute`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from doppel.store.citus_layout import distribute_schema, distributed, runs_citus
from doppel.store.repository import Repository
from doppel.types import Gallery

# apply_schema's lock: nobody makes or changes the schema meanwhile.
SCHEMA_LOCK = 4242001


@dataclass(frozen=True)
class Distributed:
    """What `doppel db distribute` did."""

    galleries: int
    faces: int
    indexes: list[str]  # galleries whose index was built again on the shards


def distribute_existing(
    conn: psycopg.Connection,
    shards: int | None = None,
    progress: Callable[[Gallery], None] | None = None,
) -> Distributed | None:
    """Lay the tables out as a fresh Citus database has them; None if nothing to do.

    Each gallery's HNSW index is dropped first and built again on the shards afterwards
    (doppel's build, with its memory passed to the workers), rather than copied by
    Citus with the workers' own settings. The tables change in one transaction: a
    failure leaves them as they were. Citus copies the rows into the shards and leaves
    the originals in the coordinator's tables, which are emptied.
    """
    if not runs_citus(conn) or distributed(conn):
        return None
    repo = Repository(conn)
    galleries = repo.galleries()
    indexed = [g for g in galleries if repo.has_index(g)]
    hnsw = [
        row[0]
        for row in conn.execute(
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " WHERE i.indrelid = 'faces'::regclass AND c.relam ="
            " (SELECT oid FROM pg_am WHERE amname = 'hnsw')"
        )
    ]
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        for name in hnsw:
            conn.execute(f'DROP INDEX "{name}"')
        distribute_schema(conn, shards)
        # Only the distributed tables' leftovers: on a reference table (galleries)
        # Citus would cascade the emptying to the local tables that point at it.
        for (table,) in conn.execute(
            "SELECT logicalrelid::text FROM pg_dist_partition WHERE partmethod = 'h'"
        ).fetchall():
            conn.execute("SELECT truncate_local_data_after_distributing_table(%s)", (table,))
    for gallery in indexed:
        if progress:
            progress(gallery)
        repo.ensure_index(gallery)
    faces = sum(repo.face_count(g) for g in galleries)
    return Distributed(len(galleries), faces, [g.name for g in indexed])
