"""`doppel resemble`: whom the target's face resembles, with a report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from doppel.cli.common import (
    DetectorOpt,
    JsonOpt,
    ModelOpt,
    command_settings,
    connect,
    err,
    friendly,
    out,
    progress_bar,
)


# Over 60 lines: most of it is the declaration of the command's twelve options.
@friendly
def resemble_cmd(
    people_dir: Annotated[
        Path,
        typer.Argument(
            help="A folder per person (people/mum/*.jpg, people/dad/*.jpg), two or more."
        ),
    ],
    target_dir: Annotated[Path, typer.Argument(help="Folder of the target's photos.")],
    model: ModelOpt = None,
    detector: DetectorOpt = None,
    method: Annotated[
        list[str] | None,
        typer.Option(
            "--method", help="Only this method (repeatable): cosine, centroid, knn, logistic."
        ),
    ] = None,
    k: Annotated[
        int | None,
        typer.Option(
            "-k",
            min=1,
            help="Neighbours for knn (default: the smallest person's photo count, at most 5).",
        ),
    ] = None,
    rounds: Annotated[
        int, typer.Option("--bootstrap", min=10, help="Bootstrap resamples of the target photos.")
    ] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
    by_date: Annotated[
        bool,
        typer.Option(
            "--by-date",
            help="Group target photos by capture "
            "date (EXIF, else file time) and show how resemblance moves.",
        ),
    ] = False,
    period: Annotated[
        str, typer.Option(help="Period for --by-date: auto, year, month, day.")
    ] = "auto",
    output: Annotated[
        Path, typer.Option("--out", "-o", help="Report folder (index.html, report.json, PNGs).")
    ] = Path("resemble-report"),
    as_json: JsonOpt = False,
) -> None:
    """Tell which person of PEOPLE_DIR the target in TARGET_DIR resembles, and how surely."""
    from doppel.faces.catalog import default_config
    from doppel.faces.embed import embedder_for
    from doppel.outputs import check_writable_folder
    from doppel.resemble.analysis import resemble
    from doppel.resemble.report import write_report

    check_writable_folder(output)  # before the photos are embedded, not after
    settings = command_settings()
    model, detector = model or settings.model, detector or settings.detector
    embedder = embedder_for(default_config(model, detector), settings.face_options)
    with connect(settings) as conn, progress_bar("embed photos") as update:
        result = resemble(
            conn,
            people_dir,
            target_dir,
            embedder,
            methods=method,
            k=k,
            rounds=rounds,
            seed=seed,
            by_date=by_date,
            period=period,
            progress=update,
            max_pixels=settings.max_pixels,
        )
    files = write_report(result, output)
    if as_json:
        _echo_resemble(result, files.html)
    else:
        _print_resemble(result)
    err.print(
        f"{result.embedded} photos embedded, {result.from_cache} from the cache; "
        f"report: {files.html.resolve()}",
        highlight=False,
    )


def _echo_resemble(result: Any, page: Path) -> None:
    """What report.json holds, with where the report went, as one JSON document."""
    from doppel.resemble.report import as_dict

    typer.echo(json.dumps({**as_dict(result), "report": str(page.resolve())}, indent=2))


def _print_resemble(result: Any) -> None:
    table = Table(title="resemblance per method (95% bootstrap interval over target photos)")
    table.add_column("method")
    for person in result.people:
        table.add_column(person, justify="right")
    for column in ("first", "in resamples", "LOO accuracy"):
        table.add_column(column, justify="right")
    for m in result.methods:
        cells = []
        for p in result.people:
            text = f"{m.scores[p]:.3f} [{m.intervals[p].low:.3f}, {m.intervals[p].high:.3f}]"
            cells.append(Text(text, style="bold") if p == m.winner else Text(text))
        loo = f"{m.loo_accuracy:.0%} of {m.loo_photos}" if m.loo_accuracy is not None else "n/a"
        table.add_row(m.title, *cells, m.winner, f"{m.support:.0%}", loo)
    out.print(table)
    out.print(result.verdict, style="bold", highlight=False)
    photos = Table(title=f"per target photo ({result.basis.title})")
    photos.add_column("photo")
    for person in result.people:
        photos.add_column(person, justify="right")
    photos.add_column("closest")
    photos.add_column("note")
    for t in result.targets:
        note = "outlier" if t.outlier else ""
        if t.face_count > 1:
            note = ", ".join(filter(None, [note, f"{t.face_count} faces, largest used"]))
        photos.add_row(
            Path(t.path).name, *[f"{t.scores[p]:.3f}" for p in result.people], t.closest, note
        )
    out.print(photos)
    if result.periods:
        over_time = Table(title=f"over time ({result.basis.title})")
        over_time.add_column("period")
        over_time.add_column("photos", justify="right")
        for person in result.people:
            over_time.add_column(person, justify="right")
        for period in result.periods:
            scores = period.scores[result.per_photo_basis]
            over_time.add_row(
                period.label, str(len(period.photos)), *[f"{scores[p]:.3f}" for p in result.people]
            )
        out.print(over_time)
    for path in result.no_face:
        err.print(f"skipped {path}: no face found", highlight=False)
    for line in [*result.unreadable, *result.notes]:
        err.print(line, highlight=False)
