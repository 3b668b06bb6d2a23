"""doppel's schema laid out for Citus, and what `doppel db status` shows of its shards.

Used wherever the server is a Citus coordinator with workers: the local cluster of
store/citus.py, or one of the user's own named by DOPPEL_DATABASE_URL.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from doppel.errors import DatabaseUnavailable

SHARDS_PER_WORKER = 2


def runs_citus(conn: psycopg.Connection) -> bool:
    """Whether the server is a Citus coordinator with workers to spread tables over."""
    row = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'citus'").fetchone()
    if row is None:
        return False
    workers = conn.execute("SELECT count(*) FROM citus_get_active_worker_nodes()").fetchone()
    return bool(workers and workers[0])


def shard_count(conn: psycopg.Connection, given: int | None = None) -> int:
    """DOPPEL_CITUS_SHARDS (given), else SHARDS_PER_WORKER for each worker (the
    measurements behind it: docs/benchmarks.md, "Citus")."""
    if given:
        return given
    row = conn.execute("SELECT count(*) FROM citus_get_active_worker_nodes()").fetchone()
    return max(2, SHARDS_PER_WORKER * int(row[0] if row else 1))


def distribute_schema(conn: psycopg.Connection, shards: int | None = None) -> None:
    """Lay doppel's freshly made tables out for Citus (inside apply_schema's transaction).

    - galleries and people: reference tables, a copy on every node, so that every shard
      of faces can check its foreign keys and join them locally;
    - faces, images and face_people: distributed by hash of `source` and co-located, so
      a file's record, its faces and their people live in one shard (face_people's
      foreign key to faces carries source, as faces' primary key does) and an ingest
      batch writes each file on one node; a gallery's faces spread over every shard, so
      every worker searches its part of a gallery at once;
    - embedding_cache: distributed by content_hash (looked up by it);
    - schema_steps and serve's uploads stay on the coordinator.

    Citus wants the distribution column in every unique constraint: faces' unique
    (gallery_id, source, face_index) has it; the primary key becomes (id, source),
    id still unique from its one sequence on the coordinator. A reference table cannot
    point at a distributed one, so people.cover_face_id loses its foreign key (a person
    whose cover face is deleted keeps a stale id, which store/people.py treats as no cover).
    """
    shards = shard_count(conn, shards)
    # A search's SET LOCAL hnsw.ef_search and hnsw.iterative_scan must reach the
    # workers that scan the shards' indexes; Citus passes SET LOCAL on only when asked.
    conn.execute(
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET citus.propagate_set_commands"
        " = local', current_database()); END $$"
    )
    conn.execute("SET citus.propagate_set_commands = local")
    conn.execute("ALTER TABLE people DROP CONSTRAINT IF EXISTS people_cover_face_id_fkey")
    conn.execute("SELECT create_reference_table('galleries')")
    conn.execute("SELECT create_reference_table('people')")
    conn.execute("ALTER TABLE face_people DROP CONSTRAINT face_people_face_fkey")
    conn.execute("ALTER TABLE faces DROP CONSTRAINT faces_pkey")
    conn.execute("ALTER TABLE faces ADD PRIMARY KEY (id, source)")
    conn.execute("SELECT create_distributed_table('faces', 'source', shard_count => %s)", (shards,))
    conn.execute("SELECT create_distributed_table('images', 'source', colocate_with => 'faces')")
    conn.execute(
        "SELECT create_distributed_table('face_people', 'source', colocate_with => 'faces')"
    )
    conn.execute(
        "ALTER TABLE face_people ADD CONSTRAINT face_people_face_fkey FOREIGN KEY"
        " (face_id, source) REFERENCES faces (id, source) ON DELETE CASCADE"
    )
    conn.execute(
        "SELECT create_distributed_table('embedding_cache', 'content_hash',"
        " colocate_with => 'none', shard_count => %s)",
        (shards,),
    )


def distributed(conn: psycopg.Connection) -> bool:
    """Whether doppel's faces table is distributed (the layout above)."""
    row = conn.execute("SELECT to_regclass('pg_dist_partition') IS NOT NULL").fetchone()
    if not (row and row[0]):
        return False
    row = conn.execute(
        "SELECT 1 FROM pg_dist_partition WHERE logicalrelid = to_regclass('faces')"
        " AND partmethod = 'h'"
    ).fetchone()
    return row is not None


# The numbered steps (store/migrations.py) from this one on are written to run on a
# Citus coordinator too: every constraint named and added by its own command. A Citus
# database starts from setup.sql, which holds the earlier ones.
CITUS_SAFE_FROM = 4


@dataclass(frozen=True)
class ShardPlacement:
    """One node of a Citus cluster as `doppel db status` shows it."""

    address: str
    role: str  # coordinator or worker
    shards: int  # shards of faces placed there
    index_shards: int  # of them, those whose gallery indexes are all built and valid
    index_bytes: int  # the size of those indexes on this node


def placements(conn: psycopg.Connection) -> list[ShardPlacement]:
    """Nodes, the shards of faces each holds, and the state of the HNSW indexes on them.

    The index figures come from each worker (run_command_on_placements); a worker
    that is down makes the whole call fail, as any other statement would.
    """
    nodes = conn.execute(
        "SELECT n.nodename, n.nodeport, n.groupid = 0,"
        " count(p.shardid) FILTER (WHERE s.logicalrelid = 'faces'::regclass)"
        " FROM pg_dist_node n LEFT JOIN pg_dist_placement p USING (groupid)"
        " LEFT JOIN pg_dist_shard s USING (shardid)"
        " WHERE n.isactive GROUP BY 1, 2, 3 ORDER BY 3 DESC, 2"
    ).fetchall()
    # On a shard an index is named after the coordinator's with the shard's id added.
    indexes = [
        row[0]
        for row in conn.execute(
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " WHERE i.indrelid = 'faces'::regclass AND c.relam ="
            " (SELECT oid FROM pg_am WHERE amname = 'hnsw')"
        )
    ]
    per_node: dict[tuple[str, int], tuple[int, int]] = {}
    if indexes:
        names = ",".join(f"'{name}'" for name in indexes)
        command = (
            "SELECT count(*) FILTER (WHERE i.indisvalid) || ',' || coalesce(sum("
            "pg_relation_size(i.indexrelid)), 0) FROM pg_index i JOIN pg_class c ON"
            " c.oid = i.indexrelid WHERE i.indrelid = '%s'::regclass AND"
            f" regexp_replace(c.relname, '_[0-9]+$', '') IN ({names})"
        )
        rows = conn.execute(
            "SELECT nodename, nodeport, success, result"
            " FROM run_command_on_placements('faces', %s)",
            (command,),
        ).fetchall()
        for host, port, success, result in rows:
            if not success:
                raise DatabaseUnavailable(f"the Citus node {host}:{port} answered: {result}")
            valid, size = (int(part) for part in result.split(","))
            done, total = per_node.get((host, int(port)), (0, 0))
            per_node[(host, int(port))] = (done + (valid == len(indexes)), total + size)
    return [
        ShardPlacement(
            f"{host}:{port}",
            "coordinator" if is_coordinator else "worker",
            int(shards),
            *per_node.get((host, int(port)), (0, 0)),
        )
        for host, port, is_coordinator, shards in nodes
    ]
