"""After a load, the gallery's index: built now (with progress) or by a background process.

Which one is the store's rule (doppel.store.indexes.plan_index): a gallery of tens
of thousands of faces is searchable the moment its rows are committed, by exact
search, so its loader returns at once and a background process builds the index;
searches switch to it when it is valid. A small gallery's index takes seconds and a
very large one's would leave searches slow for long, so for those the loader waits,
showing the build's progress.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psycopg

from doppel.errors import UsageError
from doppel.outputs import log_file
from doppel.store.indexes import check_parameters, plan_index
from doppel.store.repository import Repository
from doppel.types import BuildProgress, Gallery

IndexWhen = Literal["auto", "wait", "background", "skip"]
INDEX_WHEN: tuple[str, ...] = ("auto", "wait", "background", "skip")


@dataclass(frozen=True)
class IndexOutcome:
    """What became of the gallery's index at the end of a load."""

    built: bool = False  # built by this process
    background: bool = False  # handed to a background process
    seconds: float = 0.0
    log: Path | None = None  # the background build's output


def finish_index(
    conn: psycopg.Connection,
    gallery: Gallery,
    when: str = "auto",
    *,
    m: int | None = None,
    ef_construction: int | None = None,
    progress: Callable[[BuildProgress], None] | None = None,
    log_dir: Path | None = None,
) -> IndexOutcome:
    """Build the gallery's index after a load, as `when` says (auto: by its size)."""
    check_parameters(m, ef_construction)
    if when not in INDEX_WHEN:
        raise UsageError(f"the index build must be one of {', '.join(INDEX_WHEN)}, not {when!r}")
    repo = Repository(conn)
    faces = repo.face_count(gallery)
    if when == "skip" or not faces or repo.has_index(gallery):
        return IndexOutcome()
    if when == "background" or (when == "auto" and plan_index(faces).background):
        return IndexOutcome(
            background=True, log=start_background_build(conn, gallery, m, ef_construction, log_dir)
        )
    begin = time.perf_counter()
    built = repo.ensure_index(gallery, m, ef_construction, progress=progress)
    return IndexOutcome(built=built, seconds=time.perf_counter() - begin)


def start_background_build(
    conn: psycopg.Connection,
    gallery: Gallery,
    m: int | None = None,
    ef_construction: int | None = None,
    log_dir: Path | None = None,
) -> Path | None:
    """Start `doppel index build --concurrently` for the gallery in a process of its own.

    It outlives this one, reaches the same database (the URL goes in its environment,
    not on its command line, where other users could read a password), and writes
    what it says to log_dir/index-GALLERY.txt.
    """
    info = conn.info
    url = psycopg.conninfo.make_conninfo(
        info.dsn, **({"password": info.password} if info.password else {})
    )
    env = {**os.environ, "DOPPEL_DATABASE_URL": url}
    command = [
        sys.executable,
        "-m",
        "doppel",
        "index",
        "build",
        "--gallery",
        gallery.name,
        "--concurrently",
    ]
    if m:
        command += ["--m", str(m)]
    if ef_construction:
        command += ["--ef-construction", str(ef_construction)]
    log: Path | None = None
    output = subprocess.DEVNULL
    if log_dir is not None:
        log = log_file(log_dir, "index", gallery.name)
        try:
            log_dir.mkdir(parents=True, exist_ok=True)
            output = log.open("ab")  # type: ignore[assignment]
        except OSError:
            log = None  # the build matters more than its log
    try:
        subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # Ctrl-C in the terminal does not stop it
            close_fds=True,
        )
    finally:
        if log is not None:
            output.close()  # type: ignore[attr-defined]
    return log


@dataclass(frozen=True)
class IndexJob:
    """`doppel index build` or `rebuild` for one gallery, with the parameters it will use."""

    gallery: Gallery
    faces: int
    m: int
    ef_construction: int
    rebuild: bool
    needed: bool  # False: the gallery has its index and no rebuild was asked


def plan_build(
    conn: psycopg.Connection,
    gallery_name: str | None,
    *,
    m: int | None = None,
    ef_construction: int | None = None,
    rebuild: bool = False,
) -> IndexJob:
    """What building (or rebuilding) the gallery's index involves; parameters by its size.
    Parameters pgvector would refuse are refused here, before anything is dropped."""
    check_parameters(m, ef_construction)
    repo = Repository(conn)
    gallery = repo.pick_gallery(gallery_name)
    faces = repo.face_count(gallery)
    if faces == 0:
        raise UsageError(f"gallery {gallery.name!r} has no faces to index")
    plan = plan_index(faces)
    return IndexJob(
        gallery,
        faces,
        m or plan.m,
        ef_construction or plan.ef_construction,
        rebuild,
        rebuild or not repo.has_index(gallery),
    )


@dataclass(frozen=True)
class IndexBuilt:
    built: bool  # False: another process is building it
    seconds: float
    size_bytes: int


def run_build(
    conn: psycopg.Connection,
    job: IndexJob,
    *,
    concurrently: bool = False,
    progress: Callable[[BuildProgress], None] | None = None,
) -> IndexBuilt:
    """Build the job's index. A rebuild builds the new index beside the old one and
    swaps them, so searches keep their index until the new one is ready (and keep the
    old one if the build fails)."""
    repo = Repository(conn)
    start = time.perf_counter()
    built = repo.ensure_index(
        job.gallery,
        job.m,
        job.ef_construction,
        concurrently=concurrently,
        replace=job.rebuild,
        progress=progress,
    )
    state = repo.index_state(job.gallery)
    return IndexBuilt(built, time.perf_counter() - start, state.size_bytes if state else 0)
