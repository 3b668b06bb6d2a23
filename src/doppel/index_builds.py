"""Building a gallery's index, the use cases: after a load (now, with progress, or by a
background process) and `doppel index build` / `rebuild`. What an index is, its
parameters and its SQL live in doppel.store.indexes.

After a load, now or in the background is the store's rule (plan_index): a gallery of tens
of thousands of faces is searchable the moment its rows are committed, by exact
search, so its loader returns at once and a background process builds the index;
searches switch to it when it is valid. A small gallery's index takes seconds and a
very large one's would leave searches slow for long, so for those the loader waits,
showing the build's progress.
"""

from __future__ import annotations

import json
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
    """Build the gallery's index (concurrently) in a process of its own: this module's
    main, not the command line, so that the library needs none of the CLI's words.

    It outlives this one and reaches the same database: the job, with the connection
    string, goes in on its standard input, where no other user can read a password
    (a command line can be read by anyone). What it says goes to log_dir/index-GALLERY.txt.
    """
    info = conn.info
    url = psycopg.conninfo.make_conninfo(
        info.dsn, **({"password": info.password} if info.password else {})
    )
    job = {"url": url, "gallery": gallery.name, "m": m, "ef_construction": ef_construction}
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
        child = subprocess.Popen(
            [sys.executable, "-m", __name__],
            stdin=subprocess.PIPE,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in the terminal does not stop it
            close_fds=True,
        )
        assert child.stdin is not None
        with child.stdin:
            child.stdin.write(json.dumps(job).encode())
    finally:
        if log is not None:
            output.close()  # type: ignore[attr-defined]
    return log


def _background_main() -> None:
    """The background build: the job from standard input, the index built concurrently
    (other galleries stay writable), a line before and one after for the log."""
    from pgvector.psycopg import register_vector

    job = json.loads(sys.stdin.read())
    with psycopg.connect(job["url"], autocommit=True) as conn:
        register_vector(conn)
        plan = plan_build(conn, job["gallery"], m=job["m"], ef_construction=job["ef_construction"])
        if not plan.needed:
            print(f"{plan.gallery.name} already has its index", flush=True)
            return
        print(
            f"building the HNSW index of {plan.gallery.name} ({plan.faces} faces, "
            f"{plan.gallery.storage}, m={plan.m}, ef_construction={plan.ef_construction}) ...",
            flush=True,
        )
        result = run_build(conn, plan, concurrently=True)
    if not result.built:
        print(f"the index of {plan.gallery.name} is being built by another process")
        return
    print(
        f"index of {plan.gallery.name} built in {result.seconds:.1f} s "
        f"({result.size_bytes / 2**20:.1f} MiB)"
    )


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


if __name__ == "__main__":
    _background_main()
