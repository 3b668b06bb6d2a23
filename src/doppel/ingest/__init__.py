"""How photos come into a gallery: `ingest_photos` runs an `IngestJob` on this machine's
processes (local.py) or on Ray workers (ray.py), which share their pieces through
batches.py. It is the package's one entry: the front ends import nothing else of it.
The index comes after, apart (doppel.index_builds.finish_index), so that a caller can show
its progress on its own.
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg

from doppel.ingest.batches import IngestJob, IngestReport, Progress

__all__ = ["IngestJob", "IngestReport", "Progress", "ingest_photos"]


def ingest_photos(
    conn: psycopg.Connection,
    job: IngestJob,
    *,
    progress: Progress | None = None,
    notice: Callable[[str], None] | None = None,
    waiting: Callable[[str], None] | None = None,
) -> IngestReport:
    """`doppel ingest`'s files: on this machine, or on Ray workers when job.cluster is
    given. progress hears the counts after each file (here) or batch (on Ray); notice
    what the run says before its first file (a model being loaded); waiting that
    another run is writing the gallery.
    """
    if job.cluster is not None:
        from doppel.ingest.ray import ingest_on_cluster

        return ingest_on_cluster(conn, job, progress=progress, waiting=waiting)
    from doppel.ingest.local import ingest

    return ingest(conn, job, progress=progress, notice=notice, waiting=waiting)
