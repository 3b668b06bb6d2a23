"""`doppel ingest` and `doppel load-dump`: filling a gallery from photos or a dump."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from doppel.cli.common import (
    DetectorOpt,
    EfConstructionOpt,
    IndexWhenOpt,
    JsonOpt,
    ModelOpt,
    MOpt,
    command_settings,
    connect,
    err,
    flag,
    friendly,
    index_progress_bar,
    index_summary,
)
from doppel.cli.filling import echo_summary, index_outcome, ingest_folder
from doppel.config import Settings


# Over 60 lines: most of it is the declaration of the command's options.
@friendly
def ingest_cmd(
    ctx: typer.Context,
    folder: Annotated[Path, typer.Argument(help="Folder of photos, searched recursively.")],
    gallery: Annotated[
        str | None,
        typer.Option("--gallery", "-g", help="Gallery name (default: the folder's name)."),
    ] = None,
    model: ModelOpt = None,
    detector: DetectorOpt = None,
    all_faces: Annotated[
        bool, flag("--all-faces/--largest-face", "Keep every face of a photo, or only the largest.")
    ] = False,
    attributes: Annotated[
        bool, flag("--attributes", "Predict age, sex and race for each face.")
    ] = False,
    halfvec: Annotated[
        bool | None,
        typer.Option(
            "--halfvec/--full-precision",
            help="Index precision for a new gallery (default: halfvec where pgvector has it: "
            "half the size, the same recall).",
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            min=1, help="Faces embedded per model call (default: $DOPPEL_BATCH_SIZE, else 32)."
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=0, help="Decoding processes (default: one per core).")
    ] = None,
    m: MOpt = None,
    ef_construction: EfConstructionOpt = None,
    index: IndexWhenOpt = "auto",
    cluster: Annotated[
        str | None,
        typer.Option(
            "--cluster",
            metavar="[ADDRESS]",
            help="Decode and embed on Ray workers (pip install 'doppel\\[cluster]'): on the "
            "cluster at ADDRESS (ray://HOST:10001, or auto for the one this machine belongs "
            "to), else at $RAY_ADDRESS, else on a Ray started for the run (also: local). The "
            "database is written from this machine only.",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[
        bool, flag("--json", "Print the summary as JSON on stdout (it also goes to stderr).")
    ] = False,
) -> None:
    """Embed every photo under FOLDER into a gallery; run again to resume or update."""
    settings = command_settings(ctx)
    ingest_folder(
        settings,
        folder,
        gallery or folder.resolve().name,
        model or settings.model,
        detector or settings.detector,
        all_faces=all_faces,
        batch_size=batch_size,
        workers=workers,
        storage=None if halfvec is None else "halfvec" if halfvec else "vector",
        attributes=attributes,
        m=m,
        ef_construction=ef_construction,
        index=index,
        cluster=ray_address(cluster, settings),
        as_json=as_json,
    )


def ray_address(cluster: str | None, settings: Settings) -> str | None:
    """What --cluster asks for: None (no cluster), an address, or "" (start a local Ray)."""
    if cluster is None:
        return None
    if cluster == "local":
        return ""
    return cluster or settings.ray_address or ""


# Over 80 lines: the declaration of its options, then the wait for the gallery, the two
# bars (rows, index) and the summary, which share the connection and the report.
@friendly
def load_dump_cmd(
    ctx: typer.Context,
    dump: Annotated[
        Path,
        typer.Argument(
            help="pg_dump of the original faces table: plain SQL, "
            "INSERTs or custom format, gzip or not."
        ),
    ],
    gallery: Annotated[
        str | None, typer.Option("--gallery", "-g", help="Gallery name (default: the file's name).")
    ] = None,
    image_root: Annotated[
        Path | None,
        typer.Option(
            "--image-root",
            help="Local copy of FFHQ for the pictures; dump paths map onto it by NNNNN/NNNNN.png.",
        ),
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Stop at the first bad row instead of skipping it.")
    ] = False,
    index: IndexWhenOpt = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Load the original project's sql_dump.sql (its 70,000 FFHQ faces) into a gallery."""
    from doppel.dump.loader import default_gallery_name, load_dump, write_load_log
    from doppel.index_builds import finish_index
    from doppel.sources import add_image_root
    from doppel.store.repository import Repository

    settings = command_settings(ctx)
    if image_root is not None:
        image_root = add_image_root(image_root, settings)
    columns = [
        TextColumn(f"load {dump.name}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rows]:,} rows {task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    ]
    name = gallery or default_gallery_name(dump)

    def waiting(message: str) -> None:
        err.print(f"{message} (Ctrl-C stops)", highlight=False)

    with connect(settings) as conn, Repository(conn).writing(name, waiting):
        bar = Progress(*columns, console=err)
        task = None

        def update(done: int, total: int, rows: int) -> None:
            nonlocal task
            if task is None:  # the bar starts with the first reading, after any wait
                bar.start()
                task = bar.add_task("load", total=None, rows=0, rate="")
            elapsed = bar.tasks[0].elapsed or 0.0
            rate = f"({rows / elapsed:,.0f}/s)" if elapsed > 0 else ""
            bar.update(task, completed=done, total=total, rows=rows, rate=rate)

        try:
            report = load_dump(conn, dump, name, strict=strict, progress=update, index="skip")
        finally:
            bar.stop()
        try:
            with index_progress_bar(f"index {report.gallery}") as on_build:
                outcome = finish_index(
                    conn,
                    Repository(conn).gallery(report.gallery),
                    index,
                    progress=on_build,
                    log_dir=settings.log_dir,
                )
        except KeyboardInterrupt:
            # The load has committed by now: only the index is missing.
            err.print(
                f"interrupted; the {report.rows_loaded:,} faces are loaded, but the index was "
                f"not built: searches scan exactly until `doppel index build -g "
                f"{report.gallery}`",
                highlight=False,
            )
            raise typer.Exit(130) from None
    listed = write_load_log(report, settings.log_dir)
    for bad in report.bad_rows[:5]:
        err.print(f"bad row at line {bad.line}: {bad.reason}", highlight=False)
    for item in report.ignored[:5]:
        err.print(f"ignored (not run) at line {item.line}: {item.what}", highlight=False)
    err.print(
        f"{report.rows_loaded:,} faces loaded into gallery {report.gallery} from a "
        f"{report.format} dump in {report.seconds:.1f} s ({report.rate:,.0f} rows/s); "
        f"{report.rows_present:,} already present, {len(report.bad_rows):,} bad rows skipped, "
        f"{len(report.ignored):,} other statements ignored"
        + (f" (listed in {listed})" if listed else "")
        + index_summary(outcome.built, outcome.background, outcome.seconds)
        + (f"; images from {image_root}" if image_root else ""),
        highlight=False,
        soft_wrap=True,
    )
    if as_json:
        echo_summary(
            gallery=report.gallery,
            format=report.format,
            rows_loaded=report.rows_loaded,
            already_present=report.rows_present,
            bad_rows=[{"line": b.line, "reason": b.reason} for b in report.bad_rows],
            ignored=[{"line": i.line, "what": i.what} for i in report.ignored],
            seconds=round(report.seconds, 3),
            listed_in=str(listed) if listed else None,
            image_root=str(image_root) if image_root else None,
            index=index_outcome(outcome),
        )
