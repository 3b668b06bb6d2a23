"""`doppel db` and `doppel index`: the database, its galleries and their indexes."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated, Any

import typer
from rich.table import Table

from doppel.cli.common import (
    EfConstructionOpt,
    GalleryOpt,
    JsonOpt,
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


def _index_cell(s: Any, wide: bool) -> str:
    state = s.index_state
    if state is None:
        return "none (exact search)" if wide else "none (exact)"
    if state.building is not None:
        if not wide:
            return f"building {state.building.fraction:.0%}"
        return (
            f"building, {state.building.fraction:.0%} ({state.building.phase}); "
            "exact search until it is ready"
        )
    if not state.valid:
        if not wide:
            return "unfinished (exact)"
        return "unfinished (exact search); `doppel index build` builds it"
    if not wide:
        size = s.index_bytes
        return f"HNSW, {size / 2**20:.1f} MiB" if size >= 2**20 else f"HNSW, {size // 1024} KiB"
    return f"{s.index} (HNSW cosine, {s.gallery.storage}, {s.index_bytes / 2**20:.1f} MiB)"


# Over 80 lines: three forms of one report (JSON, the 80-column table, --wide).
@db_app.command("status")
@friendly
def db_status(
    wide: Annotated[
        bool,
        typer.Option(
            "--wide", help="Every column: files without a face, unreadable, the whole pipeline."
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Where the database is, its versions, and each gallery with its faces and index."""
    from doppel.cli.gallery import gallery_fields
    from doppel.store.citus_layout import distributed as citus_distributed
    from doppel.store.citus_layout import placements as citus_placements
    from doppel.store.db import server_info
    from doppel.store.repository import Repository
    from doppel.types import describe

    settings = command_settings()
    with connect(settings) as conn:
        info = server_info(conn, settings)
        stats = Repository(conn).stats()
        nodes = citus_placements(conn) if citus_distributed(conn) else []
    larger = [s for s in stats if s.index_bytes > info.shared_buffers_mib * 2**20]
    if as_json:
        payload = {
            "database": info.location,
            "embedded": info.embedded,
            "server_version": info.server_version,
            "pgvector_version": info.pgvector_version,
            "shared_buffers_mib": info.shared_buffers_mib,
            "galleries": [gallery_fields(s) for s in stats],
            "citus_nodes": [asdict(node) for node in nodes],
            "indexes_larger_than_buffers": [s.gallery.name for s in larger],
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    out.print(f"database:  {info.location}", highlight=False)
    out.print(
        f"server:    PostgreSQL {info.server_version}, pgvector {info.pgvector_version}",
        highlight=False,
    )
    out.print(f"buffers:   {info.shared_buffers_mib:,} MiB (shared_buffers)", highlight=False)
    for node in nodes:
        out.print(
            f"node:      {node.role} {node.address}, {node.shards} shards of faces, "
            f"indexes built on {node.index_shards} ({node.index_bytes / 2**20:,.1f} MiB)",
            highlight=False,
        )
    if not stats:
        out.print("galleries: none yet")
        return
    table = Table(title="galleries")
    # 80 columns hold name, counts, model and index; --wide and --json hold the rest.
    columns: tuple[str, ...] = (
        "name",
        "faces",
        "files",
        "no face",
        "unreadable",
        "embedding",
        "index",
    )
    if not wide:
        columns = ("name", "faces", "files", "model", "index")
    for column in columns:
        table.add_column(column, overflow="fold")  # a long name wraps, never cut
    for s in stats:
        config = s.gallery.config
        cells = {
            "name": s.gallery.name,
            "faces": f"{s.faces:,}",
            "files": f"{s.images:,}",
            "no face": f"{s.no_face:,}",
            "unreadable": f"{s.unreadable:,}",
            "embedding": describe(config),
            "model": f"{config.model}, {config.detector}",
            "index": _index_cell(s, wide),
        }
        table.add_row(*(cells[column] for column in columns))
    out.print(table)
    if not wide:
        out.print("more with --wide or --json", style="dim", highlight=False)
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
    from doppel.store.citus import active

    if active(settings) is not None:
        out.print(
            "commands use the local Citus cluster, which still runs; "
            "`doppel db cluster stop` stops it",
            highlight=False,
        )


@db_app.command("distribute")
@friendly
def db_distribute() -> None:
    """Spread doppel's tables over a Citus server's workers, where they were made before
    it had any."""
    from doppel.store.citus_convert import distribute_existing
    from doppel.store.db import connect as connect_unchecked

    settings = command_settings()
    with connect_unchecked(settings, migrate=False) as conn:
        done = distribute_existing(
            conn,
            settings.citus_shards,
            progress=lambda gallery: err.print(
                f"building the index of {gallery.name} on the shards", highlight=False
            ),
        )
    if done is None:
        out.print("nothing to do: the server has no Citus workers, or the tables are spread")
        return
    out.print(
        f"spread {done.faces} faces of {done.galleries} galleries over the workers; "
        f"indexes built again: {', '.join(done.indexes) or 'none'}",
        highlight=False,
    )


@index_app.command("rebuild")
@friendly
def index_rebuild(
    gallery: GalleryOpt = None,
    m: MOpt = None,
    ef_construction: EfConstructionOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Drop a gallery's HNSW index and build it again, e.g. with other --m/--ef-construction."""
    _build(gallery, m, ef_construction, rebuild=True, as_json=as_json)


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
    as_json: JsonOpt = False,
) -> None:
    """Build a gallery's HNSW index if it has none (searches are exact until it is ready)."""
    if background:
        from doppel.index_builds import start_background_build
        from doppel.store.repository import Repository

        settings = command_settings()
        with connect(settings) as conn:
            target = Repository(conn).pick_gallery(gallery or settings.gallery)
            log = start_background_build(conn, target, m, ef_construction, settings.log_dir)
        if as_json:
            _echo_index(target.name, "background", log=str(log))
        else:
            out.print(f"building the index of {target.name} in the background; output in {log}")
        return
    _build(gallery, m, ef_construction, rebuild=False, concurrently=concurrently, as_json=as_json)


def _echo_index(gallery: str, outcome: str, **fields: Any) -> None:
    """An index command's outcome as one JSON document: built, present (it had one
    already), elsewhere (another process builds it) or background."""
    typer.echo(json.dumps({"gallery": gallery, "outcome": outcome, **fields}, indent=2))


def _build(
    gallery: str | None,
    m: int | None,
    ef_construction: int | None,
    *,
    rebuild: bool,
    concurrently: bool = False,
    as_json: bool = False,
) -> None:
    from doppel.index_builds import plan_build, run_build

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
            if as_json:
                _echo_index(name, "present")
            else:
                out.print(f"{name} already has its index", highlight=False)
            return
        err.print(
            f"building the HNSW index of {name} ({job.faces} faces, {job.gallery.storage}, "
            f"m={job.m}, ef_construction={job.ef_construction}) ...",
            highlight=False,
        )
        with index_progress_bar(f"index {name}") as on_build:
            result = run_build(conn, job, concurrently=concurrently, progress=on_build)
    if as_json:
        built = {"seconds": round(result.seconds, 3), "bytes": result.size_bytes}
        _echo_index(name, "built" if result.built else "elsewhere", **built)
        return
    if not result.built:
        out.print(f"the index of {name} is being built by another process", highlight=False)
        return
    out.print(
        f"index of {name} built in {result.seconds:.1f} s ({result.size_bytes / 2**20:.1f} MiB)",
        highlight=False,
    )
