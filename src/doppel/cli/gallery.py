"""`doppel gallery`: list, rename and delete galleries."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from doppel.cli.common import command_settings, connect, err, friendly, out

gallery_app = typer.Typer(
    help="Galleries: list them, rename one, delete one with its faces.", no_args_is_help=True
)


@gallery_app.command("list")
@friendly
def gallery_list() -> None:
    """Every gallery with its faces, files and how its faces were embedded."""
    from doppel.store.repository import Repository
    from doppel.types import describe

    with connect(command_settings()) as conn:
        stats = Repository(conn).stats()
    if not stats:
        out.print("no galleries yet")
        return
    table = Table(title="galleries")
    for column in ("name", "faces", "files", "embedding", "created"):
        table.add_column(column)
    for s in stats:
        table.add_row(
            s.gallery.name,
            str(s.faces),
            str(s.images),
            describe(s.gallery.config),
            f"{s.gallery.created_at:%Y-%m-%d %H:%M}",
        )
    out.print(table)


@gallery_app.command("rename")
@friendly
def gallery_rename(
    old: Annotated[str, typer.Argument(help="The gallery's name now.")],
    new: Annotated[str, typer.Argument(help="Its new name.")],
) -> None:
    """Give a gallery another name (not while an ingest or load-dump writes it)."""
    from doppel.store.galleries import rename_gallery

    with connect(command_settings()) as conn:
        rename_gallery(conn, old, new)
    err.print(f"gallery {old} is now {new}", highlight=False)


@gallery_app.command("delete")
@friendly
def gallery_delete(
    name: Annotated[str, typer.Argument(help="The gallery to delete.")],
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Delete without asking for confirmation.")
    ] = False,
) -> None:
    """Delete a gallery: its faces, its file records and its index. Photos stay on disk."""
    from doppel.store.galleries import delete_gallery
    from doppel.store.repository import Repository

    with connect(command_settings()) as conn:
        repo = Repository(conn)
        gallery = repo.gallery(name)
        faces = repo.face_count(gallery)
        if not yes and not typer.confirm(
            f"delete gallery {name} and its {faces:,} faces? (the photos stay on disk)",
            err=True,
        ):
            err.print("nothing deleted", highlight=False)
            raise typer.Exit(1)
        delete_gallery(conn, name)
    err.print(f"gallery {name} deleted ({faces:,} faces)", highlight=False)
