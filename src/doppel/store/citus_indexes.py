"""A gallery's index built on a Citus cluster: each worker builds its shards' indexes.

The index itself (its design, its statement, its memory) is store/indexes.py's; this
is how its build reaches the workers with that memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from psycopg import sql


@dataclass(frozen=True)
class ShardSpread:
    """How faces is spread: its shards, and the most of them on one worker."""

    shards: int
    per_worker: int


def shard_spread(conn: psycopg.Connection) -> ShardSpread:
    rows = conn.execute(
        "SELECT count(*) FROM pg_dist_shard s JOIN pg_dist_placement p USING (shardid)"
        " WHERE s.logicalrelid = 'faces'::regclass GROUP BY p.groupid"
    ).fetchall()
    counts = [int(row[0]) for row in rows] or [1]
    return ShardSpread(sum(counts), max(counts))


def workers_memory_mib(conn: psycopg.Connection) -> int:
    """The smallest maintenance_work_mem the workers' own settings give a connection
    (what a build sees there when nothing is passed on); 0 if a worker cannot say."""
    rows = conn.execute(
        "SELECT success, result FROM run_command_on_workers($$SELECT setting FROM pg_settings"
        " WHERE name = 'maintenance_work_mem'$$)"
    ).fetchall()
    if not rows or not all(success and result.isdigit() for success, result in rows):
        return 0
    return min(int(result) for _, result in rows) // 1024  # the setting is in kB


def build_on_shards(
    conn: psycopg.Connection,
    statement: Callable[[bool], sql.Composed],
    memory_mib: int,
    needed_mib: int,
    concurrently: bool,
) -> None:
    """Run the CREATE INDEX (statement(concurrently)) with memory_mib on each worker.

    Citus passes a SET LOCAL on to the workers' connections of the same transaction
    (citus.propagate_set_commands = local), never a plain SET, and it runs a
    CONCURRENTLY build outside any transaction. So a concurrent build is kept only
    where every worker's own maintenance_work_mem holds a shard's graph (needed_mib);
    otherwise the shards are built in one transaction that carries the setting, and
    writes to faces wait for it to end.
    """
    if concurrently and workers_memory_mib(conn) >= needed_mib:
        conn.execute(statement(True))
        return
    with conn.transaction():
        conn.execute("SET LOCAL citus.propagate_set_commands = local")
        conn.execute(
            sql.SQL("SET LOCAL maintenance_work_mem = {}").format(sql.Literal(f"{memory_mib}MB"))
        )
        conn.execute(statement(False))
