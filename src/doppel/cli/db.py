"""`doppel db` and `doppel index`: the database, its galleries and their indexes."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from doppel.cli.common import (
    EfConstructionOpt,
    GalleryOpt,
    MOpt,
    command_settings,
    connect,
    err,
    friendly,
    index_progress_bar,
    out,
)
from doppel.errors import UsageError

db_app = typer.Typer(
    help="The database: where it is, what it holds; stop the embedded server.", no_args_is_help=True
)
index_app = typer.Typer(
    help="A gallery's HNSW index: build it, or rebuild it with other parameters.",
    no_args_is_help=True,
)


@db_app.command("status")
@friendly
def db_status() -> None:
    """Where the database is, its versions, and each gallery with its faces and index."""
    from doppel.store.db import server_info
    from doppel.store.repository import Repository
    from doppel.types import describe

    settings = command_settings()
    with connect(settings) as conn:
        info = server_info(conn, settings)
        stats = Repository(conn).stats()
    out.print(f"database:  {info.location}", highlight=False)
    out.print(
        f"server:    PostgreSQL {info.server_version}, pgvector {info.pgvector_version}",
        highlight=False,
    )
    out.print(f"buffers:   {info.shared_buffers_mib:,} MiB (shared_buffers)", highlight=False)
    if not stats:
        out.print("galleries: none yet")
        return
    table = Table(title="galleries")
    for column in ("name", "faces", "files", "no face", "unreadable", "embedding", "index"):
        table.add_column(column)
    for s in stats:
        state = s.index_state
        if state is None:
            index = "none (exact search)"
        elif state.building is not None:
            index = (
                f"building, {state.building.fraction:.0%} ({state.building.phase}); "
                "exact search until it is ready"
            )
        elif not state.valid:
            index = "unfinished (exact search); `doppel index build` builds it"
        else:
            index = f"{s.index} (HNSW cosine, {s.gallery.storage}, {s.index_bytes / 2**20:.1f} MiB)"
        table.add_row(
            s.gallery.name,
            str(s.faces),
            str(s.images),
            str(s.no_face),
            str(s.unreadable),
            describe(s.gallery.config),
            index,
        )
    out.print(table)
    larger = [s for s in stats if s.index_bytes > info.shared_buffers_mib * 2**20]
    for s in larger:
        remedy = (
            "DOPPEL_SHARED_BUFFERS_MIB, then `doppel db stop`"
            if info.embedded
            else "the server's shared_buffers"
        )
        out.print(
            f"the index of {s.gallery.name} ({s.index_bytes / 2**20:,.0f} MiB) is larger "
            f"than the server's buffers: each search reads much of it from the system's cache; "
            f"raise {remedy}",
            style="yellow",
            highlight=False,
        )


@db_app.command("stop")
@friendly
def db_stop() -> None:
    """Stop doppel's embedded PostgreSQL server (the next command starts it again)."""
    from doppel.store.db import stop_embedded

    settings = command_settings()
    if settings.database_url:
        raise UsageError("DOPPEL_DATABASE_URL points at your own server; doppel does not stop it")
    stopped = stop_embedded(settings)
    out.print("embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL was not running")


@index_app.command("rebuild")
@friendly
def index_rebuild(
    gallery: GalleryOpt = None, m: MOpt = None, ef_construction: EfConstructionOpt = None
) -> None:
    """Drop a gallery's HNSW index and build it again, e.g. with other --m/--ef-construction."""
    _build(gallery, m, ef_construction, rebuild=True)


@index_app.command("build")
@friendly
def index_build(
    gallery: GalleryOpt = None,
    m: MOpt = None,
    ef_construction: EfConstructionOpt = None,
    background: Annotated[
        bool,
        typer.Option("--background", help="Build in a process of its own and return at once."),
    ] = False,
    concurrently: Annotated[
        bool,
        typer.Option(
            "--concurrently",
            help="Let other galleries be written while it builds (CREATE INDEX CONCURRENTLY).",
        ),
    ] = False,
) -> None:
    """Build a gallery's HNSW index if it has none (searches are exact until it is ready)."""
    if background:
        from doppel.indexing import start_background_build
        from doppel.store.repository import Repository

        settings = command_settings()
        with connect(settings) as conn:
            target = Repository(conn).pick_gallery(gallery or settings.gallery)
            log = start_background_build(conn, target, m, ef_construction, settings.log_dir)
        out.print(f"building the index of {target.name} in the background; output in {log}")
        return
    _build(gallery, m, ef_construction, rebuild=False, concurrently=concurrently)


def _build(
    gallery: str | None,
    m: int | None,
    ef_construction: int | None,
    *,
    rebuild: bool,
    concurrently: bool = False,
) -> None:
    from doppel.indexing import plan_build, run_build

    settings = command_settings()
    with connect(settings) as conn:
        job = plan_build(
            conn,
            gallery or settings.gallery,
            m=m,
            ef_construction=ef_construction,
            rebuild=rebuild,
        )
        name = job.gallery.name
        if not job.needed:
            out.print(f"{name} already has its index", highlight=False)
            return
        err.print(
            f"building the HNSW index of {name} ({job.faces} faces, {job.gallery.storage}, "
            f"m={job.m}, ef_construction={job.ef_construction}) ...",
            highlight=False,
        )
        with index_progress_bar(f"index {name}") as on_build:
            result = run_build(conn, job, concurrently=concurrently, progress=on_build)
    if not result.built:
        out.print(f"the index of {name} is being built by another process", highlight=False)
        return
    out.print(
        f"index of {name} built in {result.seconds:.1f} s ({result.size_bytes / 2**20:.1f} MiB)",
        highlight=False,
    )
