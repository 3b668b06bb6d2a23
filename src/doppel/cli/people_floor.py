"""`doppel people floor`: the least quality a gallery's faces need to be grouped into people.

The shipped floor (doppel.people.quality.QUALITY_FLOOR) was measured on portraits and
on small faces pasted into scenes; a gallery of other photos may want another. The
floor is kept with the gallery, so `doppel people`, `people list`, `gallery stats`, the
web page and the API all gate by the same one.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import TYPE_CHECKING, Annotated, Any

import typer

from doppel.cli.common import JsonOpt, command_settings, connect, flag, friendly, out
from doppel.cli.people import GalleryArg, floor_fields, floor_words, people_app
from doppel.errors import UsageError
from doppel.types import QualityFloor

if TYPE_CHECKING:
    from doppel.store.quality import QualityStats


def _measure(name: str, text: str) -> typer.models.OptionInfo:
    return typer.Option(f"--{name}", help=text, show_default=False)


@people_app.command("floor")
@friendly
def floor_cmd(
    gallery: GalleryArg = None,
    size: Annotated[
        int | None, _measure("size", "Least face size: the box's shorter side, in pixels.")
    ] = None,
    sharpness: Annotated[
        float | None, _measure("sharpness", "Least sharpness (shipped floor: 8).")
    ] = None,
    frontalness: Annotated[
        float | None,
        _measure("frontalness", "Least frontalness, 0 to 1 (1: looking straight on)."),
    ] = None,
    confidence: Annotated[
        float | None,
        _measure("confidence", "Least detector confidence (its scale is the detector's own)."),
    ] = None,
    off: Annotated[bool, flag("--off", "No floor: every face may be grouped.")] = False,
    default: Annotated[bool, flag("--default", "Back to the shipped floor.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Show or set the quality floor of GALLERY's people.

    Faces below the floor stay searchable but are grouped into no person. A measure
    given here replaces that measure and keeps the others; --off and --default replace
    the whole floor. Faces placed from then on are gated by it; faces already in a
    person leave it at the next `doppel people GALLERY --recluster`.
    """
    from doppel.people.quality import gallery_quality, set_floor

    asked: dict[str, float | None] = {
        "size": size,
        "sharpness": sharpness,
        "frontalness": frontalness,
        "confidence": confidence,
    }
    given = {k: v for k, v in asked.items() if v is not None}
    if off and default:
        raise UsageError("give --off or --default, not both")
    if (off or default) and given:
        raise UsageError("--off and --default replace the whole floor: give no measure with them")
    with connect(command_settings()) as conn:
        if off or default or given:
            stats = set_floor(conn, gallery, _new_floor(conn, gallery, off, default, given))
        else:
            stats = gallery_quality(conn, gallery)
    if as_json:
        payload = {
            "gallery": stats.gallery.name,
            "floor": floor_fields(stats.floor),
            "faces": stats.faces,
            "below_floor": stats.below_floor,
            "below_floor_in_a_person": stats.below_floor - stats.below_unassigned,
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    _print_floor(stats)


def _new_floor(
    conn: Any, gallery: str | None, off: bool, default: bool, given: dict[str, Any]
) -> QualityFloor | None:
    """The floor asked for: none gated (--off), the shipped one (--default: None), or
    the gallery's floor now with the measures given replaced."""
    from doppel.people.quality import floor_of
    from doppel.store.repository import Repository

    if off:
        return QualityFloor()
    if default:
        return None
    return replace(floor_of(conn, Repository(conn).pick_gallery(gallery)), **given)


def _print_floor(stats: QualityStats) -> None:
    name = stats.gallery.name
    out.print(f"quality floor of {name}: {floor_words(stats.floor)}", highlight=False)
    placed = stats.below_floor - stats.below_unassigned
    still = f"; {placed} of them still in a person until `doppel people {name} --recluster`"
    out.print(
        f"{stats.below_floor} of {stats.faces} faces below it" + (still if placed else ""),
        highlight=False,
    )
