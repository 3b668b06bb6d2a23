"""Load rate of `doppel load-dump` on 70,000-row dumps written by the real pg_dump.

For each format (plain COPY, --inserts, --column-inserts, custom, plain gzip) it makes
the dump from a scratch database, loads it into a fresh database and prints rows/s
(excluding the index) and, separately, the HNSW index build time. A second load of the
same dump shows the no-op path.

    .venv/bin/python benchmarks/bench_load_dump.py [--rows 70000] [--formats plain,custom]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (  # noqa: E402
    ChildPeak,
    current_peak_rss_mib,
    load,
    machine_line,
    peak_rss_mib,
    private_home,
    process_cpu_seconds,
    reset_peak_rss,
    table,
)

from tests.helpers import create_database  # noqa: E402

FORMATS = ("plain", "inserts", "column-inserts", "custom", "plain-gzip")


def own_cpu() -> float:
    """CPU seconds of this process and its finished children (pg_restore)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=70_000)
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--no-index", action="store_true", help="Skip the index build.")
    args = parser.parse_args()

    with private_home() as home:
        from doppel.config import Settings
        from doppel.dump.loader import load_dump
        from doppel.store.db import connect, embedded_uri
        from tests.helpers import write_faces_dump

        server_url = embedded_uri(Settings.from_env())
        print(machine_line())
        rows = []
        for fmt in args.formats.split(","):
            kind = fmt.removesuffix("-gzip")
            begin = time.perf_counter()
            path = write_faces_dump(
                server_url, home / f"dump-{fmt}", args.rows, kind, compress=fmt.endswith("-gzip")
            )
            made = time.perf_counter() - begin
            os.environ["DOPPEL_DATABASE_URL"] = create_database(server_url, "bench")
            with connect(Settings.from_env()) as conn:
                server_before, client_before = process_cpu_seconds(conn.info.backend_pid), own_cpu()
                reset_peak_rss()
                with ChildPeak() as helpers:  # pg_restore, for archives it reads
                    first = load_dump(conn, path, "ffhq", build_index=False)
                peak = current_peak_rss_mib()
                server = process_cpu_seconds(conn.info.backend_pid) - server_before
                client = own_cpu() - client_before
                if not args.no_index:
                    from doppel.store.repository import Repository

                    begin = time.perf_counter()
                    first.index_built = Repository(conn).ensure_index(
                        Repository(conn).gallery("ffhq")
                    )
                    first.index_seconds = time.perf_counter() - begin
                again = load_dump(conn, path, "ffhq", build_index=False)
            rows.append(
                [
                    fmt,
                    f"{path.stat().st_size / 2**20:.0f} MiB",
                    f"{made:.1f}",
                    first.rows_loaded,
                    f"{first.seconds:.1f}",
                    f"{first.rate:,.0f}",
                    f"{client:.1f}",
                    f"{server:.1f}",
                    f"{peak:.0f}",
                    f"{helpers.mib:.0f}",
                    f"{first.index_seconds:.1f}" if first.index_built else "-",
                    again.rows_loaded,
                    f"{again.seconds:.1f}",
                ]
            )
            print(
                f"{fmt}: {first.rows_loaded} rows in {first.seconds:.1f} s "
                f"({first.rate:,.0f} rows/s; cpu: client {client:.1f} s, server {server:.1f} s"
                f" = {first.rows_read / max(client, server, 1e-9):,.0f} rows/s with a core "
                f"each), index {first.index_seconds:.1f} s; "
                f"again: {again.rows_loaded} added, {again.rows_present} present "
                f"in {again.seconds:.1f} s; load {load()}",
                flush=True,
            )
            path.unlink()
        print(
            table(
                [
                    "format",
                    "dump",
                    "pg_dump s",
                    "rows",
                    "load s",
                    "rows/s",
                    "client cpu s",
                    "server cpu s",
                    "peak MiB",
                    "helper MiB",
                    "index s",
                    "2nd load rows",
                    "2nd load s",
                ],
                rows,
            )
        )
        print(
            f"peak MiB: this process during the load (reset before each); helper MiB: its "
            f"largest child. Whole run: {peak_rss_mib():.0f} MiB (making the dumps included); "
            f"load average {load()}"
        )


if __name__ == "__main__":
    main()
