"""`doppel gallery`: list, rename and delete galleries."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from doppel.cli.common import JsonOpt, command_settings, connect, err, friendly, out

gallery_app = typer.Typer(
    help="Galleries: list them, rename one, delete one with its faces, find copies.",
    no_args_is_help=True,
)


def index_fields(s: Any) -> dict[str, Any]:
    """A gallery's index for JSON: state (ready, building, unfinished or none), size."""
    state = s.index_state
    if state is None:
        return {"state": "none", "name": None, "bytes": 0}
    fields: dict[str, Any] = {"name": state.name, "bytes": state.size_bytes}
    if state.building is not None:
        return {
            "state": "building",
            **fields,
            "fraction": round(state.building.fraction, 4),
            "phase": state.building.phase,
        }
    return {"state": "ready" if state.valid else "unfinished", **fields}


def gallery_fields(s: Any) -> dict[str, Any]:
    """One gallery's row of `gallery list --json` and `db status --json`."""
    config = s.gallery.config
    return {
        "name": s.gallery.name,
        "faces": s.faces,
        "files": s.images,
        "no_face": s.no_face,
        "unreadable": s.unreadable,
        "model": config.model,
        "detector": config.detector,
        "alignment": config.alignment if config.align else None,
        "mirror": config.flip,
        "normalization": config.normalization,
        "dimension": s.gallery.dimension,
        "storage": s.gallery.storage,
        "created": s.gallery.created_at.isoformat(),
        "index": index_fields(s),
    }


@gallery_app.command("list")
@friendly
def gallery_list(as_json: JsonOpt = False) -> None:
    """Every gallery with its faces, files and how its faces were embedded."""
    from doppel.store.repository import Repository
    from doppel.types import describe

    with connect(command_settings()) as conn:
        stats = Repository(conn).stats()
    if as_json:
        typer.echo(json.dumps({"galleries": [gallery_fields(s) for s in stats]}, indent=2))
        return
    if not stats:
        out.print("no galleries yet")
        return
    table = Table(title="galleries")
    for column in ("name", "faces", "files", "embedding", "created"):
        table.add_column(column, overflow="fold")  # a long name wraps, never cut
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


@gallery_app.command("duplicates")
@friendly
def gallery_duplicates(
    name: Annotated[
        str | None, typer.Argument(help="Gallery (default: the only one).", show_default=False)
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List the groups of copies of one picture (resized, re-compressed, slightly
    cropped) in a gallery; `find` shows one face of each group."""
    from doppel.duplicates import copy_groups

    with connect(command_settings()) as conn:
        report = copy_groups(conn, name)
    if as_json:
        payload = {
            "gallery": report.gallery.name,
            "faces": report.faces,
            "faces_without_hash": report.unhashed,
            "groups": [
                [{"face_id": i, "source": s} for i, s in zip(g.face_ids, g.sources, strict=True)]
                for g in report.groups
            ],
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    for number, group in enumerate(report.groups, start=1):
        out.print(f"{number}. " + "  ".join(group.sources), highlight=False, soft_wrap=True)
    copies = sum(len(g.face_ids) - 1 for g in report.groups)
    err.print(
        f"{len(report.groups)} groups of copies of one picture among {report.faces:,} faces "
        f"in gallery {report.gallery.name} ({copies} faces are copies)",
        highlight=False,
    )
    if report.unhashed:
        err.print(
            f"{report.unhashed:,} faces have no photo hash and are compared by their "
            f"vectors alone: doppel gallery hash {report.gallery.name} computes it",
            highlight=False,
        )


@gallery_app.command("stats")
@friendly
def gallery_stats(
    name: Annotated[
        str | None, typer.Argument(help="Gallery (default: the only one).", show_default=False)
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """The quality of a gallery's faces (size, detector confidence, sharpness,
    frontalness) and how many are below the floor `doppel people` groups from."""
    from doppel.cli.people import floor_fields, floor_words
    from doppel.people.quality import gallery_quality

    with connect(command_settings()) as conn:
        stats = gallery_quality(conn, name)
    if as_json:
        payload = {
            "gallery": stats.gallery.name,
            "faces": stats.faces,
            "floor": floor_fields(stats.floor),
            "below_floor": stats.below_floor,
            "below_floor_unassigned": stats.below_unassigned,
            "measures": {
                m.name: {
                    "known": m.known,
                    "quantiles": _quantiles(m.quantiles),
                    "floor": m.floor,
                    "below": m.below,
                }
                for m in stats.measures
            },
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    shown = (0.0, 0.1, 0.5, 0.9, 1.0)  # of QUANTILES: what fits 80 columns
    table = Table(title=f"face quality in gallery {stats.gallery.name}", box=None, pad_edge=False)
    for column in ("measure", "known", "min", "10%", "median", "90%", "max", "floor", "below"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    for m in stats.measures:
        values = _quantiles(m.quantiles)
        table.add_row(
            m.name,
            str(m.known),
            *(_figure(values[f"{q:g}"]) if values else "-" for q in shown),
            "-" if m.floor is None else _figure(m.floor),
            str(m.below) if m.floor is not None else "-",
        )
    out.print(table)
    out.print(
        f"{stats.below_floor} of {stats.faces} faces below the quality floor "
        f"({floor_words(stats.floor)}): searchable, never grouped into a person; "
        f"{stats.below_unassigned} of them in none",
        highlight=False,
    )


def _figure(value: float) -> str:
    """A measure in at most six characters: whole above 100, three figures below."""
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


@gallery_app.command("hash")
@friendly
def gallery_hash(
    name: Annotated[
        str | None, typer.Argument(help="Gallery (default: the only one).", show_default=False)
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Compute the photo hash of faces stored without one, where their files are here.

    Faces loaded by load-dump, or ingested before doppel kept the hash, are taken for
    copies of one picture by their vectors alone. A batch of photos is committed at a
    time: run it again to go on after Ctrl-C, or once missing files are back.
    """
    from doppel.cli.common import progress_bar
    from doppel.duplicates import hash_gallery

    settings = command_settings()
    with connect(settings) as conn, progress_bar("hashing photos") as update:
        report = hash_gallery(conn, name, settings, progress=None if as_json else update)
    if as_json:
        payload = {
            "gallery": report.gallery.name,
            "faces_hashed": report.faces,
            "photos_hashed": report.photos,
            "missing_files": report.missing,
            "unreadable_files": report.unreadable,
            "unreadable": list(report.unreadable_sources),
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    unreadable = f", unreadable {report.unreadable:,}" if report.unreadable else ""
    err.print(
        f"gallery {report.gallery.name}: hashed {report.faces:,} faces of {report.photos:,} "
        f"photos, missing files {report.missing:,}{unreadable}",
        highlight=False,
    )


def _quantiles(values: tuple[float, ...]) -> dict[str, float]:
    """Quantile ("0.1") -> value; empty where no face has the measure."""
    from doppel.store.quality import QUANTILES

    return {f"{q:g}": v for q, v in zip(QUANTILES, values, strict=True)} if values else {}
