"""`doppel db` and `doppel index`: the database, its galleries and their indexes."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from doppel.cli.common import EfConstructionOpt, MOpt, connect, err, friendly, out
from doppel.config import Settings
from doppel.errors import UsageError

db_app = typer.Typer(
    help="The database: where it is, what it holds; stop the embedded server.", no_args_is_help=True
)
index_app = typer.Typer(
    help="A gallery's HNSW index: rebuild it with other parameters.", no_args_is_help=True
)


@db_app.command("status")
@friendly
def db_status() -> None:
    """Where the database is, its versions, and each gallery with its faces and index."""
    from doppel.store.db import server_info
    from doppel.store.repository import Repository
    from doppel.types import describe

    settings = Settings.from_env()
    with connect(settings) as conn:
        info = server_info(conn, settings)
        stats = Repository(conn).stats()
    out.print(f"database:  {info.location}", highlight=False)
    out.print(
        f"server:    PostgreSQL {info.server_version}, pgvector {info.pgvector_version}",
        highlight=False,
    )
    if not stats:
        out.print("galleries: none yet")
        return
    table = Table(title="galleries")
    for column in ("name", "faces", "files", "no face", "unreadable", "embedding", "index"):
        table.add_column(column)
    for s in stats:
        index = (
            f"{s.index} (HNSW cosine, {s.gallery.storage}, {s.index_bytes / 2**20:.1f} MiB)"
            if s.index
            else "none"
        )
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


@db_app.command("stop")
@friendly
def db_stop() -> None:
    """Stop doppel's embedded PostgreSQL server (the next command starts it again)."""
    from doppel.store.db import stop_embedded

    settings = Settings.from_env()
    if settings.database_url:
        raise UsageError("DOPPEL_DATABASE_URL points at your own server; doppel does not stop it")
    stopped = stop_embedded(settings)
    out.print("embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL was not running")


@index_app.command("rebuild")
@friendly
def index_rebuild(
    gallery: Annotated[
        str | None,
        typer.Option(
            "--gallery", "-g", envvar="DOPPEL_GALLERY", help="Gallery (default: the only one)."
        ),
    ] = None,
    m: MOpt = None,
    ef_construction: EfConstructionOpt = None,
) -> None:
    """Drop a gallery's HNSW index and build it again, e.g. with other --m/--ef-construction."""
    import time

    from doppel.store.repository import DEFAULT_EF_CONSTRUCTION, DEFAULT_M, Repository

    settings = Settings.from_env()
    m, ef_construction = m or DEFAULT_M, ef_construction or DEFAULT_EF_CONSTRUCTION
    with connect(settings) as conn:
        repo = Repository(conn)
        target = repo.pick_gallery(gallery)
        err.print(
            f"building the HNSW index of {target.name} ({repo.face_count(target)} faces, "
            f"m={m}, ef_construction={ef_construction}) ...",
            highlight=False,
        )
        start = time.perf_counter()
        repo.drop_index(target)
        repo.ensure_index(target, m, ef_construction)
        size = next(s.index_bytes for s in repo.stats() if s.gallery.id == target.id)
    out.print(
        f"index of {target.name} rebuilt in {time.perf_counter() - start:.1f} s "
        f"({size / 2**20:.1f} MiB)",
        highlight=False,
    )
