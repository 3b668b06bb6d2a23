"""`doppel people`, `doppel verify`, `doppel twins`: who is the same person, who looks alike."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table
from typer.core import TyperGroup

from doppel.cli.common import (
    JsonOpt,
    ModelOpt,
    PhotoDetectorOpt,
    command_settings,
    connect,
    err,
    flag,
    friendly,
    out,
    progress_bar,
    short_source,
)
from doppel.errors import UsageError
from doppel.types import QualityFloor


class _ClusterByDefault(TyperGroup):
    """`doppel people GALLERY` clusters; `doppel people name|merge|remove ...` edit people."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["cluster", *args]
        return super().parse_args(ctx, args)


people_app = typer.Typer(
    cls=_ClusterByDefault,
    help="Group a gallery's faces into people (`doppel people GALLERY`); name, merge, or take "
    "faces out of them.",
    no_args_is_help=True,
)

TABLE_ROWS = 100  # people printed in the table, largest first
GalleryArg = Annotated[
    str | None,
    typer.Argument(help="Gallery (default: the only one).", show_default=False),
]
PersonArg = Annotated[int, typer.Argument(help="Person id, as `doppel people GALLERY` lists it.")]
NamedGalleryArg = Annotated[str, typer.Argument(help="Gallery.")]
T = TypeVar("T")


def _edit(change: Callable[..., T], *args: Any) -> T:
    """One change to a gallery's people (name, merge, take out), on the database."""
    with connect(command_settings()) as conn:
        return change(conn, *args)


@people_app.command("cluster")
@friendly
def people_cmd(
    gallery: GalleryArg = None,
    recluster: Annotated[
        bool, flag("--recluster", "Forget the people and group every face again.")
    ] = False,
    as_json: Annotated[
        bool, flag("--json", "Print every person with its faces, and the rest.")
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Overview page, HTML with its thumbnails in a folder beside it "
            "(default: doppel-people-<gallery>.html).",
        ),
    ] = None,
    no_picture: Annotated[bool, flag("--no-picture", "Do not write the overview page.")] = False,
) -> None:
    """Group the faces of GALLERY into people; new faces join the people already there.

    A person starts from a few faces that are close to each other (three with the
    shipped settings); faces that fit no person stay unassigned.
    """
    from doppel.people.groups import cluster_gallery, list_people
    from doppel.people.overview import write_overview

    settings = command_settings()
    with connect(settings) as conn, progress_bar("neighbours") as update:
        report = cluster_gallery(
            conn,
            gallery,
            recluster=recluster,
            calibration_file=settings.calibration_file,
            progress=update,
        )
    with connect(settings) as conn:
        listing = list_people(conn, report.gallery.name, hidden=False)
    picture = None
    if not no_picture and listing.people:
        picture = write_overview(
            listing, output or Path(f"doppel-people-{report.gallery.name}.html"), settings
        )
    if as_json:
        typer.echo(json.dumps(_listing_json(listing, report, picture), indent=2))
    else:
        _print_people(listing)
    err.print(
        f"{report.people} people, {report.unassigned} faces in none "
        f"({report.excluded} taken out by hand, {report.low_quality} low quality) of "
        f"{report.faces}; this run placed "
        f"{report.considered} free faces: {report.joined} joined known people, "
        f"{report.new_people} new people (a person needs {report.calibration.cluster.min_faces}"
        f" faces); {report.seconds:.1f} s"
        + (f"; overview written to {picture}" if picture else ""),
        highlight=False,
    )


def _face_json(face: Any) -> dict[str, Any]:
    return {"face_id": face.id, "source": face.source, "face_index": face.face_index}


def _listing_json(listing: Any, report: Any, picture: Path | None) -> dict[str, Any]:
    return {
        "gallery": listing.gallery.name,
        "model": listing.gallery.config.model,
        "threshold": report.calibration.threshold if report else None,
        "overview": str(picture) if picture else None,
        "people": [
            {
                "id": person.id,
                "name": person.name,
                "faces": len(listing.members.get(person.id, [])),
                "hidden": person.hidden,
                "cover": _face_json(person.cover) if person.cover else None,
                "sources": [face.source for face in listing.members.get(person.id, [])],
                "face_ids": [face.id for face in listing.members.get(person.id, [])],
            }
            for person in listing.people
        ],
        "unassigned": [_face_json(face) for face in listing.unassigned],
        # Below the quality floor: searchable, but never placed in a person.
        "unassigned_low_quality": {
            "faces": len(listing.low_quality),
            "floor": floor_fields(listing.floor),
            "face_ids": [face.id for face in listing.low_quality],
        },
    }


def floor_fields(floor: QualityFloor) -> dict[str, float]:
    """The quality floor as JSON: each gated measure and its least value."""
    return {k: v for k, v in vars(floor).items() if v is not None}


def floor_words(floor: QualityFloor) -> str:
    """The quality floor in words, as `people` and `gallery stats` print it."""
    units = {"size": " px"}
    gated = [f"{k} < {v:g}{units.get(k, '')}" for k, v in vars(floor).items() if v is not None]
    return " or ".join(gated) if gated else "no floor: every face may be grouped"


def _print_people(listing: Any) -> None:
    table = Table(title=f"people in gallery {listing.gallery.name}")
    for column, justify in (("person", "right"), ("name", "left"), ("faces", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    table.add_column("sample source", overflow="fold")
    for person in listing.people[:TABLE_ROWS]:
        sample = person.cover.source if person.cover else "-"
        table.add_row(str(person.id), person.name or "-", str(person.faces), short_source(sample))
    if len(listing.people) > TABLE_ROWS:
        more = len(listing.people) - TABLE_ROWS
        table.add_row("…", f"{more} more (--json lists all)", "", "")
    if not listing.people:
        table.add_row("-", "no people yet", "0", "-")
    out.print(table)
    if listing.low_quality:
        out.print(
            f"unassigned: low quality: {len(listing.low_quality)} faces "
            f"(searchable, in no person: {floor_words(listing.floor)})",
            highlight=False,
        )


@people_app.command("name")
@friendly
def name_cmd(
    gallery: NamedGalleryArg,
    person: PersonArg,
    name: Annotated[str, typer.Argument(help="The person's name.")],
) -> None:
    """Give a person a name (`find` shows it beside their faces)."""
    from doppel.people.groups import name_person

    found = _edit(name_person, gallery, person, name)
    err.print(f"person {found.id} is now {found.name!r} ({found.faces} faces)", highlight=False)


@people_app.command("merge")
@friendly
def merge_cmd(
    gallery: NamedGalleryArg,
    keep: Annotated[int, typer.Argument(help="Person id that stays.")],
    other: Annotated[int, typer.Argument(help="Person id whose faces move into the first.")],
) -> None:
    """Merge two people into the first (its id stays; its name, else the second's)."""
    from doppel.people.groups import merge_people

    merged = _edit(merge_people, gallery, keep, other)
    err.print(f"{merged.label} (id {merged.id}) now has {merged.faces} faces", highlight=False)


@people_app.command("remove")
@friendly
def remove_cmd(
    gallery: NamedGalleryArg,
    person: PersonArg,
    faces: Annotated[
        list[str],
        typer.Argument(help="Faces to take out: face ids or sources, as `--json` lists them."),
    ],
) -> None:
    """Take faces out of a person; later clusterings leave them out too."""
    from doppel.people.groups import take_out

    moved = _edit(take_out, gallery, person, faces)
    err.print(f"{moved} face(s) taken out of person {person}", highlight=False)


@friendly
def verify_cmd(
    first: Annotated[Path, typer.Argument(help="A photo.")],
    second: Annotated[
        Path | None, typer.Argument(help="Another photo.", show_default=False)
    ] = None,
    model: ModelOpt = None,
    detector: PhotoDetectorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Tell whether the largest faces of two photos are of the same person."""
    from doppel.faces.catalog import default_config
    from doppel.people.verify import verify

    settings = command_settings()
    if second is None:
        raise UsageError("verify compares two photos: doppel verify A.jpg B.jpg")
    for path in (first, second):
        if not path.is_file():
            raise UsageError(f"{path}: no such file")
    config = default_config(model or settings.model, detector or settings.detector)
    result = verify(first, second, config, settings.calibration_file, settings.face_options)
    cal = result.calibration
    if as_json:
        payload = {
            "first": result.first,
            "second": result.second,
            "model": cal.model,
            "similarity": round(result.similarity, 6),
            "threshold": cal.threshold,
            "same_person": result.same,
            "probability": round(result.probability, 4),
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    out.print(
        f"{result.verdict}: similarity {result.similarity:.4f} "
        f"({'at or above' if result.same else 'below'} {cal.model}'s threshold "
        f"{cal.threshold:.4f}); probability of the same person {result.probability:.1%}",
        highlight=False,
    )


@friendly
def twins_cmd(
    gallery: GalleryArg = None,
    k: Annotated[int, typer.Option("-k", "--top", min=1, max=1000, help="How many pairs.")] = 10,
    method: Annotated[
        str,
        typer.Option(
            "--method",
            help="exact: blocked matrix products over every pair (default, the faster at "
            "70,000 faces); index: each face's nearest faces from the HNSW index.",
        ),
    ] = "exact",
    output: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Folder for one picture per pair (default: twins-<gallery>)."
        ),
    ] = None,
    no_picture: Annotated[bool, flag("--no-picture", "Do not write the pictures.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """The k most alike pairs of different people in a gallery.

    Who is different: the gallery's people where `doppel people` has run, else the
    model's same-person threshold.
    """
    from doppel.people.twins import twins

    settings = command_settings()
    with connect(settings) as conn, progress_bar("pairs") as update:
        name = gallery
        if not no_picture and output is None:
            from doppel.store.repository import Repository

            name = Repository(conn).pick_gallery(gallery).name
        folder = None if no_picture else (output or Path(f"twins-{name}"))
        if folder is not None:
            from doppel.outputs import check_writable_folder

            check_writable_folder(folder)  # before the search, not after it
        result = twins(
            conn,
            gallery,
            k,
            method=method,
            calibration_file=settings.calibration_file,
            out_dir=folder,
            settings=settings,
            progress=update,
        )
    if as_json:
        typer.echo(json.dumps(_twins_json(result), indent=2))
    else:
        _print_twins(result)


def _twins_json(result: Any) -> dict[str, Any]:
    return {
        "gallery": result.gallery.name,
        "method": result.method,
        "different_by": "people" if result.by_people else "threshold",
        "threshold": result.threshold,
        "pairs": [
            {
                "rank": pair.rank,
                "similarity": round(pair.similarity, 6),
                "picture": str(result.pictures[pair.rank - 1]) if result.pictures else None,
                "faces": [
                    {
                        "face_id": face.id,
                        "source": face.source,
                        "person_id": face.person_id,
                        "person": face.person_name,
                    }
                    for face in (pair.first, pair.second)
                ],
            }
            for pair in result.pairs
        ],
    }


def _print_twins(result: Any) -> None:
    table = Table(title=f"most alike pairs of different people in {result.gallery.name}")
    for column in ("rank", "similarity", "first", "second"):
        table.add_column(column, overflow="fold")
    for pair in result.pairs:
        table.add_row(
            str(pair.rank),
            f"{pair.similarity:.4f}",
            _who(pair.first),
            _who(pair.second),
        )
    out.print(table)
    by = (
        "the gallery's people (and the threshold for faces in none)"
        if result.by_people
        else f"the same-person threshold {result.threshold:.3f}"
    )
    err.print(
        f"different people decided by {by}; {result.method} search, {result.seconds:.1f} s"
        + (f"; pictures in {result.pictures[0].parent}" if result.pictures else ""),
        highlight=False,
    )


def _who(face: Any) -> str:
    person = f"{face.person}: " if face.person else ""
    return person + short_source(face.source)
