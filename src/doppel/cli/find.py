"""`doppel find`: the faces of a gallery most like the face in a photo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from doppel.cli.common import (
    GalleryOpt,
    ModelOpt,
    command_settings,
    connect,
    err,
    flag,
    friendly,
    out,
    short_source,
)
from doppel.cli.filling import ingest_folder
from doppel.config import Settings
from doppel.errors import UsageError
from doppel.serialize import box_fields, match_fields
from doppel.types import Filters


def _parse_age(value: str | None) -> tuple[int | None, int | None]:
    if not value:
        return None, None
    low, sep, high = value.partition("-")
    try:
        return (int(low) if low else None), (
            int(high) if sep and high else int(low) if not sep else None
        )
    except ValueError:
        raise typer.BadParameter(
            "use MIN-MAX, MIN- or -MAX, e.g. 20-35", param_hint="--age"
        ) from None


def composite_name(photo: Path) -> Path:
    """doppel-NAME.png for NAME.jpg, doppel-NAME-SUFFIX.png for any other suffix, so that
    anim.gif and anim.webp do not write the same file."""
    suffix = photo.suffix.lower().lstrip(".")
    return Path(
        f"doppel-{photo.stem}.png" if suffix in ("jpg", "") else f"doppel-{photo.stem}-{suffix}.png"
    )


PhotosArg = Annotated[
    list[Path],
    typer.Argument(
        help="Photo with the face to look for; several photos (or a folder of them) of "
        "one person make one query; - reads one from stdin.",
        show_default=False,
    ),
]
InOpt = Annotated[
    Path | None, typer.Option("--in", help="Ingest this folder (incrementally) and search it.")
]
TopOpt = Annotated[int, typer.Option("-k", "--top", min=1, max=100, help="How many matches.")]
QueryDetectorOpt = Annotated[
    str | None,
    typer.Option("--detector", "-d", help="Detector for the query (default: the gallery's own)."),
]
AllFacesOpt = Annotated[
    bool, flag("--all-faces", "Search with every face in the photo, not only the largest.")
]
SexOpt = Annotated[str | None, typer.Option(help="Only faces of this sex (F or M).")]
RaceOpt = Annotated[list[str] | None, typer.Option(help="Only faces of this race (repeatable).")]
AgeOpt = Annotated[str | None, typer.Option(help="Only faces in this age range, MIN-MAX.")]
SameAttributesOpt = Annotated[
    bool, flag("--same-attributes", "Predict the query's sex and race and filter on them.")
]
ExactOpt = Annotated[bool, flag("--exact", "Exact search without the index (slow; to check it).")]
OutOpt = Annotated[
    Path | None,
    typer.Option(
        "--out",
        "-o",
        help="Composite PNG (default: doppel-NAME.png for NAME.jpg, else "
        "doppel-NAME-EXT.png; none with --json unless given).",
    ),
]
NoPictureOpt = Annotated[bool, flag("--no-picture", "Do not write the composite.")]
FindJsonOpt = Annotated[bool, flag("--json", "Print JSON instead of a table.")]
StrangersOpt = Annotated[
    bool,
    flag(
        "--strangers",
        "Doppelganger mode: leave out the query person's own faces (their person in the "
        "gallery, and any face above the model's same-person threshold).",
    ),
]
AllPhotosOpt = Annotated[
    bool, flag("--all-photos", "With --strangers: every face of a stranger, not only the nearest.")
]
ThresholdOpt = Annotated[
    float | None,
    typer.Option(
        "--threshold",
        min=0.0,
        max=1.0,
        help="Same-person similarity threshold for this search (default: the one "
        "calibrated for the gallery's model); the strengths move with it.",
        show_default=False,
    ),
]
EfSearchOpt = Annotated[
    int | None,
    typer.Option(
        "--ef-search",
        min=1,
        max=1000,
        help="HNSW candidates per search (default: $DOPPEL_EF_SEARCH, else by gallery size, "
        "200 or 800); more: better recall, slower.",
    ),
]


@friendly
def find_cmd(
    photos: PhotosArg,
    gallery: GalleryOpt = None,
    in_dir: InOpt = None,
    k: TopOpt = 5,
    model: ModelOpt = None,
    detector: QueryDetectorOpt = None,
    all_faces: AllFacesOpt = False,
    sex: SexOpt = None,
    race: RaceOpt = None,
    age: AgeOpt = None,
    same_attributes: SameAttributesOpt = False,
    exact: ExactOpt = False,
    output: OutOpt = None,
    no_picture: NoPictureOpt = False,
    as_json: FindJsonOpt = False,
    strangers: StrangersOpt = False,
    all_photos: AllPhotosOpt = False,
    threshold: ThresholdOpt = None,
    ef_search: EfSearchOpt = None,
) -> None:
    """Find the faces in a gallery most like the face in PHOTOS (one photo, or several of
    one person)."""
    from doppel.search import SearchRequest, find

    settings = command_settings()
    stdin = [str(p) for p in photos] == ["-"]
    several = [] if stdin else query_photos(photos)
    photo = _read_stdin(settings) if stdin else several[0]
    if sex is not None and sex.upper() not in ("F", "M"):
        raise typer.BadParameter("use F or M", param_hint="--sex")
    if in_dir is not None:
        gallery = gallery or in_dir.resolve().name
        # The folder's gallery gets the query's detector too.
        ingest_folder(
            settings, in_dir, gallery, model or settings.model, detector or settings.detector
        )
    filters = _filters(sex, race, age)
    picture = _picture(output, no_picture, as_json, Path("stdin") if stdin else photos[0])
    with connect(settings) as conn:
        if same_attributes:
            filters = _same_attributes(photo, filters, detector, settings)
        request = SearchRequest(
            gallery or settings.gallery,
            k=k,
            filters=filters,
            exact=exact,
            all_faces=all_faces,
            detector=detector,
            default_detector=settings.detector,
            ef_search=ef_search or settings.ef_search,
            composite=picture,
            strangers=strangers,
            all_photos=all_photos,
            threshold=threshold,
        )
        query = _stdin_query(photo, settings.max_pixels) if stdin else several
        result = find(conn, query, request, settings=settings)
    _print_find(result, as_json)


def _picture(output: Path | None, no_picture: bool, as_json: bool, named: Path) -> Path | None:
    """Where the composite goes, checked now (a folder given as -o fails before the
    search); --json is for scripts: a picture only when -o names one."""
    if no_picture or (as_json and output is None):
        return None
    picture = output or composite_name(named)  # named: the first photo, or folder, given
    from doppel.outputs import check_writable_file

    check_writable_file(picture)
    return picture


def _filters(sex: str | None, race: list[str] | None, age: str | None) -> Filters:
    """The filters given by --sex, --race and --age (the sex checked already)."""
    age_min, age_max = _parse_age(age)
    if age_min is not None and age_max is not None and age_min > age_max:
        raise typer.BadParameter(
            f"{age} is an empty range: its lowest age is above its highest", param_hint="--age"
        )
    races = tuple(r.strip().lower() for r in race or ())
    return Filters(sex.upper() if sex else None, races, age_min, age_max)


def _same_attributes(
    photo: Path, filters: Filters, detector: str | None, settings: Settings
) -> Filters:
    """The filters with the query's predicted sex and race (--same-attributes)."""
    from doppel.faces.attributes import same_attribute_filters

    return same_attribute_filters(
        photo,
        filters,
        detector or settings.detector,
        max_pixels=settings.max_pixels,
        options=settings.face_options,
    )


def query_photos(given: list[Path]) -> list[Path]:
    """The photos of a query: the files given, and the images of a folder given."""
    from doppel.faces import imaging

    found: list[Path] = []
    for path in given:
        if str(path) == "-":
            raise UsageError("- (a photo on stdin) cannot be one of several photos")
        if path.is_dir():
            inside = sorted(p for p in path.iterdir() if p.is_file() and imaging.is_image_name(p))
            if not inside:
                raise UsageError(
                    f"{path} is a folder without photos; to search a folder's faces use --in {path}"
                )
            found.extend(inside)
            continue
        if not path.exists():
            raise UsageError(f"{path}: no such file")
        if not path.is_file():
            raise UsageError(f"{path} is not a regular file (a FIFO, socket or device)")
        found.append(path)
    return found


def _read_stdin(settings: Any) -> Path:
    """The photo on standard input, kept in a private temporary file for the run (the
    query's attributes are predicted from a file); at most the upload limit is read."""
    import atexit
    import shutil
    import sys
    import tempfile

    if sys.stdin is None or sys.stdin.isatty():
        raise UsageError("- reads the photo from standard input: doppel find - < photo.jpg")
    limit = settings.max_upload_mib * 2**20
    data = sys.stdin.buffer.read(limit + 1)
    if not data:
        raise UsageError("standard input was empty: doppel find - < photo.jpg")
    if len(data) > limit:
        raise UsageError(
            f"the photo on standard input is over {settings.max_upload_mib} MiB "
            "(DOPPEL_MAX_UPLOAD_MIB)"
        )
    folder = Path(tempfile.mkdtemp(prefix="doppel-stdin-"))
    atexit.register(shutil.rmtree, folder, True)
    path = folder / "stdin"
    path.write_bytes(data)
    return path


def _stdin_query(path: Path, max_pixels: int) -> Any:
    """The query read from standard input, named "-" in tables and JSON."""
    from doppel.faces.query import Query

    return Query.from_bytes(path.read_bytes(), "-", max_pixels)


# Over 80 lines: the JSON document, then a table per query face (its columns chosen by
# what the matches hold), then the lines that explain it.
def _print_find(result: Any, as_json: bool) -> None:
    if as_json:
        payload = {
            "gallery": result.gallery.name,
            "query": result.query,
            "composite": str(result.composite) if result.composite else None,
            "photos": list(result.photos),
            "template": (
                {
                    "photos": len(result.photos),
                    "similarity_to_the_others": [round(x, 4) for x in result.template.similarities],
                }
                if result.template
                else None
            ),
            "calibration": (
                {
                    "pipeline": result.calibration.pipeline,
                    "threshold": result.calibration.threshold,
                    "measured_on": result.calibration.measured_on,
                }
                if result.calibration
                else None
            ),
            "strangers": (
                {
                    "on": True,
                    "threshold": result.strangers.threshold,
                    "left_out_people": list(result.strangers.people),
                    "left_out": list(result.strangers.names),
                    "one_per_person": result.strangers.one_per_person,
                }
                if result.strangers
                else {"on": False}
            ),
            "faces": [
                {
                    "box": box_fields(item.face.box),
                    "matches": [match_fields(m) for m in item.matches],
                }
                for item in result.results
            ],
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    for number, item in enumerate(result.results, start=1):
        table = Table(
            title=f"{short_source(result.query)} in gallery {result.gallery.name}"
            + (f" (face {number})" if len(result.results) > 1 else "")
            + (", strangers only" if result.strangers else "")
        )
        calibrated = result.calibration is not None
        # Columns no match fills (no people yet, no attributes) are left out: 80 columns
        # then hold the source on one line.
        people = any(m.face.person for m in item.matches)
        attributed = any(m.face.sex or m.face.age or m.face.race for m in item.matches)
        for column, justify in (
            ("rank", "right"),
            *((("strength", "left"),) if calibrated else ()),
            ("similarity", "right"),
            # The strength takes the place of the distance (1 - similarity) in 80 columns.
            *(() if calibrated else (("distance", "right"),)),
            *((("person", "left"),) if people else ()),
            ("source", "left"),
            *((("attributes", "left"),) if attributed else ()),
        ):
            table.add_column(column, justify=justify, overflow="fold")  # type: ignore[arg-type]
        for m in item.matches:
            attrs = ", ".join(str(a) for a in (m.face.sex, m.face.age, m.face.race) if a)
            table.add_row(
                str(m.rank),
                *((m.strength.words,) if m.strength else ()),
                f"{m.similarity:.4f}",
                *(() if calibrated else (f"{m.distance:.4f}",)),
                *((m.face.person or "-",) if people else ()),
                short_source(m.face.source),
                *((attrs or "-",) if attributed else ()),
            )
        out.print(table)
    if result.template:
        err.print(f"{result.template.describe()}: {', '.join(result.photos)}", highlight=False)
    if result.calibration is None:
        err.print(result.not_calibrated, highlight=False)
    elif not result.strangers:
        cal = result.calibration
        err.print(
            f"strength: how likely {cal.model} would take the two faces for one person "
            f"(50% at its same-person threshold {cal.threshold:.4f})",
            highlight=False,
        )
    if result.strangers:
        err.print(result.strangers.describe(), highlight=False)
    if result.composite:
        err.print(f"composite written to {result.composite}", highlight=False)
