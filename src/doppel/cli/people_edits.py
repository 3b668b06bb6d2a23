"""`doppel people list|move|restore|hide|cover|suggest|apart|split`: reading people, and
the edits of them that can be undone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from doppel.cli.common import JsonOpt, command_settings, connect, err, flag, friendly, out
from doppel.cli.people import (
    GalleryArg,
    NamedGalleryArg,
    PersonArg,
    _edit,
    _face_json,
    _listing_json,
    _print_people,
    people_app,
)


@people_app.command("list")
@friendly
def list_cmd(
    gallery: GalleryArg = None,
    show_hidden: Annotated[bool, flag("--hidden", "Also list hidden people.")] = False,
    as_json: Annotated[
        bool, flag("--json", "Print every person with its faces, and the rest.")
    ] = False,
) -> None:
    """List the people of GALLERY as they are, without grouping any face."""
    from doppel.people.groups import list_people

    with connect(command_settings()) as conn:
        listing = list_people(conn, gallery, hidden=show_hidden)
    if as_json:
        typer.echo(json.dumps(_listing_json(listing, None, None), indent=2))
    else:
        _print_people(listing)


@people_app.command("move")
@friendly
def move_cmd(
    gallery: NamedGalleryArg,
    faces: Annotated[
        list[str], typer.Argument(help="Faces to move: face ids or sources, as `--json` lists.")
    ],
    to: Annotated[str, typer.Option("--to", help="The person id that takes the faces, or `new`.")],
    as_json: JsonOpt = False,
) -> None:
    """Move faces into another person, or into a new one (`--to new`)."""
    from doppel.people.groups import move_faces

    target = None if to == "new" else _person_id(to)
    person = _edit(move_faces, gallery, faces, target)
    if as_json:
        typer.echo(json.dumps(_person_json(person), indent=2))
        return
    err.print(f"{person.label} (id {person.id}) now has {person.faces} faces", highlight=False)


def _person_id(text: str) -> int:
    if not text.isdigit():
        raise typer.BadParameter(f"{text!r}: give a person id or `new`", param_hint="--to")
    return int(text)


@people_app.command("restore")
@friendly
def restore_cmd(
    gallery: NamedGalleryArg,
    edit: Annotated[
        int | None,
        typer.Argument(help="Edit id from `--list` (default: the latest).", show_default=False),
    ] = None,
    listing: Annotated[bool, flag("--list", "List the edits that can be undone.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Undo a merge, a `remove` or a `move`: the faces and the merged person come back."""
    from doppel.people.groups import edits, restore

    if listing:
        found = _edit(edits, gallery)
        if as_json:
            typer.echo(json.dumps([_edit_json(e) for e in found], indent=2))
            return
        table = Table(title=f"edits of people in {gallery} (latest first)")
        for column in ("edit", "kind", "person", "other", "faces", "when"):
            table.add_column(column)
        for e in found:
            table.add_row(
                str(e.id),
                e.kind,
                str(e.person_id or "-"),
                str(e.other_id or "-"),
                str(len(e.face_ids)),
                f"{e.created_at:%Y-%m-%d %H:%M}",
            )
        out.print(table)
        return
    done = _edit(restore, gallery, edit)
    if as_json:
        typer.echo(json.dumps(_edit_json(done), indent=2))
        return
    what = {
        "merge": f"person {done.other_id} is back beside person {done.person_id}",
        "remove": f"{len(done.face_ids)} face(s) taken out of person {done.person_id} are back",
        "move": f"{len(done.face_ids)} face(s) moved to person {done.other_id} went back",
    }[done.kind]
    err.print(f"edit {done.id} undone: {what}", highlight=False)


def _edit_json(edit: Any) -> dict[str, Any]:
    return {
        "edit": edit.id,
        "kind": edit.kind,
        "person_id": edit.person_id,
        "other_id": edit.other_id,
        "face_ids": list(edit.face_ids),
        "undone": edit.undone,
        "created_at": edit.created_at.isoformat(),
    }


def _person_json(person: Any) -> dict[str, Any]:
    return {
        "id": person.id,
        "name": person.name,
        "faces": person.faces,
        "hidden": person.hidden,
        "cover": _face_json(person.cover) if person.cover else None,
    }


@people_app.command("hide")
@friendly
def hide_cmd(
    gallery: NamedGalleryArg,
    person: PersonArg,
    show: Annotated[bool, flag("--show", "Show a hidden person again.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Hide a person: left out of the people lists (`people list --hidden` shows it)."""
    from doppel.people.groups import hide_person

    found = _edit(hide_person, gallery, person, not show)
    if as_json:
        typer.echo(json.dumps(_person_json(found), indent=2))
        return
    err.print(
        f"{found.label} (id {found.id}) is {'hidden' if found.hidden else 'shown'}",
        highlight=False,
    )


@people_app.command("cover")
@friendly
def cover_cmd(
    gallery: NamedGalleryArg,
    person: PersonArg,
    face: Annotated[str, typer.Argument(help="The face to show for the person: id or source.")],
    as_json: JsonOpt = False,
) -> None:
    """Choose the face shown for a person."""
    from doppel.people.groups import set_cover

    found = _edit(set_cover, gallery, person, face)
    if as_json:
        typer.echo(json.dumps(_person_json(found), indent=2))
        return
    cover = found.cover.id if found.cover else "-"
    err.print(f"{found.label} (id {found.id}) is shown by face {cover}", highlight=False)


@people_app.command("suggest")
@friendly
def suggest_cmd(
    gallery: GalleryArg = None,
    k: Annotated[int, typer.Option("-k", "--top", min=1, max=1000, help="How many pairs.")] = 10,
    output: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Folder for one picture per pair (default: suggest-<gallery>)."
        ),
    ] = None,
    no_picture: Annotated[bool, flag("--no-picture", "Do not write the pictures.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Pairs of people that are probably one person, likeliest first.

    Merge one with `people merge`, or say they differ with `people apart`: then the
    pair is not suggested again.
    """
    from doppel.people.suggest import suggest
    from doppel.store.repository import Repository

    settings = command_settings()
    with connect(settings) as conn:
        name = Repository(conn).pick_gallery(gallery).name
        folder = None if no_picture else (output or Path(f"suggest-{name}"))
        found = suggest(
            conn,
            name,
            k,
            calibration_file=settings.calibration_file,
            out_dir=folder,
            settings=settings,
        )
    if as_json:
        payload = [
            {
                "rank": s.rank,
                "first": _person_json(s.first),
                "second": _person_json(s.second),
                "similarity": round(s.similarity, 6),
                "probability": round(s.probability, 4),
                "picture": str(s.picture) if s.picture else None,
            }
            for s in found
        ]
        typer.echo(json.dumps(payload, indent=2))
        return
    table = Table(title=f"people in {name} that are probably one")
    for column in ("rank", "first", "second", "similarity", "same person"):
        table.add_column(column)
    for s in found:
        table.add_row(
            str(s.rank),
            f"{s.first.label} ({s.first.id})",
            f"{s.second.label} ({s.second.id})",
            f"{s.similarity:.4f}",
            f"{s.probability:.0%}",
        )
    out.print(table)
    if found and found[0].picture:
        err.print(f"pictures in {found[0].picture.parent}", highlight=False)


@people_app.command("apart")
@friendly
def apart_cmd(
    gallery: NamedGalleryArg,
    first: PersonArg,
    second: PersonArg,
    as_json: JsonOpt = False,
) -> None:
    """Say two people are different: `people suggest` leaves the pair out from now on,
    and a recluster never joins them."""
    from doppel.people.suggest import keep_apart

    _edit(keep_apart, gallery, first, second)
    if as_json:
        typer.echo(json.dumps({"apart": sorted((first, second))}))
        return
    err.print(f"person {first} and person {second} are kept apart", highlight=False)


@people_app.command("split")
@friendly
def split_cmd(
    gallery: NamedGalleryArg,
    person: PersonArg,
    faces: Annotated[
        list[str] | None,
        typer.Argument(help="Faces that become a new person (default: group again)."),
    ] = None,
    stricter: Annotated[
        float,
        typer.Option(
            "--stricter",
            min=0.0,
            max=0.5,
            help="Without faces: group the person's faces again this much above the "
            "clustering's cut; each sub-group but the largest becomes a new person.",
        ),
    ] = 0.02,
    as_json: JsonOpt = False,
) -> None:
    """Divide a person in two or more (`people restore` undoes each part)."""
    from doppel.people.suggest import split

    settings = command_settings()
    with connect(settings) as conn:
        parts = split(
            conn,
            gallery,
            person,
            faces or None,
            stricter=stricter,
            calibration_file=settings.calibration_file,
        )
    if as_json:
        typer.echo(json.dumps([_person_json(p) for p in parts], indent=2))
        return
    if len(parts) == 1:
        err.print(f"person {person} stays whole at this cut; try a larger --stricter")
        return
    made = ", ".join(f"{p.id} ({p.faces} faces)" for p in parts[1:])
    err.print(f"person {person} keeps {parts[0].faces} faces; new people: {made}", highlight=False)
