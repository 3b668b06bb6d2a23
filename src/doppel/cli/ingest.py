"""`doppel ingest` and `doppel load-dump`: filling a gallery from photos or a dump."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

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
    progress_bar,
)
from doppel.config import Settings
from doppel.errors import UsageError


# Over 80 lines: the declaration of its options, the wait for the gallery, the two bars
# (files, index) and the summary, which share the connection and the report.
def ingest_folder(
    settings: Settings,
    folder: Path,
    gallery: str,
    model: str,
    detector: str | None,
    *,
    all_faces: bool = False,
    batch_size: int | None = None,
    workers: int | None = None,
    storage: str | None = None,
    attributes: bool = False,
    m: int | None = None,
    ef_construction: int | None = None,
    index: str = "auto",
    cluster: str | None = None,
    as_json: bool = False,
) -> None:
    """Ingest with a bar for the files, then one for the index, then a summary line
    (and, with as_json, the summary as one JSON document on stdout)."""
    from doppel.faces.catalog import config_for
    from doppel.index_builds import finish_index
    from doppel.ingest import IngestJob, ingest_photos
    from doppel.store.indexes import check_parameters
    from doppel.store.repository import Repository
    from doppel.types import check_gallery_name

    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder")
    # Checked before anything is written: bad index parameters found after the faces
    # are committed would leave a gallery without its index.
    check_parameters(m, ef_construction)
    gallery = check_gallery_name(gallery)

    def waiting(message: str) -> None:
        err.print(f"{message} (Ctrl-C stops)", highlight=False)

    # The gallery's writer lock covers the index build too; ingest takes it again inside.
    with connect(settings) as conn, Repository(conn).writing(gallery, waiting):
        # A gallery that exists keeps its own pipeline unless another detector is named.
        existing = Repository(conn).find_gallery(gallery)
        config = config_for(model, detector, existing.config if existing else None)
        job = IngestJob(
            folder,
            gallery,
            config,
            all_faces=all_faces,
            batch_size=batch_size or settings.batch_size,
            workers=workers,
            storage=storage,
            attributes=attributes,
            cluster=cluster,
            log_dir=settings.log_dir,
            max_pixels=settings.max_pixels,
            options=settings.face_options,
        )
        with progress_bar(f"ingest {gallery}") as update:
            report = ingest_photos(
                conn,
                job,
                progress=update,
                notice=lambda message: err.print(message, highlight=False),
            )
            update(report.files, report.files, report)  # the counts after the last batch
        # The index after the bar of the files, with a bar of its own.
        with index_progress_bar(f"index {gallery}") as on_build:
            outcome = finish_index(
                conn,
                Repository(conn).gallery(report.gallery),
                index,
                m=m,
                ef_construction=ef_construction,
                progress=on_build,
                log_dir=settings.log_dir,
            )
    for entry in report.passed_over[:5]:
        path, _, reason = entry.partition("\t")
        err.print(f"skipped {path}: {reason}", highlight=False, soft_wrap=True)
    passed = len(report.passed_over)
    err.print(
        f"{report.faces_added} faces added from {report.images_added} files "
        f"({report.rate:.1f} files/s); {report.skipped} already present, "
        f"{len(report.no_face)} without a face, {len(report.unreadable)} unreadable"
        + (f", {len(report.too_small)} too small to hold a face" if report.too_small else "")
        + (
            f", {passed} skipped (special files, link loops, folders that cannot be read)"
            if passed
            else ""
        )
        + (f"; listed in {report.listed_in}" if report.listed_in else "")
        + index_summary(outcome.built, outcome.background, outcome.seconds),
        highlight=False,
    )
    if as_json:
        _echo_ingest(report, outcome)


def _echo_ingest(report: Any, outcome: Any) -> None:
    """An ingest's summary as one JSON document on stdout."""
    _echo_summary(
        gallery=report.gallery,
        files=report.files,
        faces_added=report.faces_added,
        files_added=report.images_added,
        already_present=report.skipped,
        no_face=report.no_face,
        unreadable=[_entry(e) for e in report.unreadable],
        too_small=[_entry(e) for e in report.too_small],
        skipped=[_entry(e) for e in report.passed_over],
        seconds=round(report.seconds, 3),
        listed_in=str(report.listed_in) if report.listed_in else None,
        index=_index_outcome(outcome),
    )


def _entry(line: str) -> dict[str, str]:
    """A listed file, "path<TAB>reason", as JSON."""
    path, _, reason = line.partition("\t")
    return {"path": path, "reason": reason}


def _index_outcome(outcome: Any) -> dict[str, Any]:
    return {
        "built": outcome.built,
        "background": outcome.background,
        "seconds": round(outcome.seconds, 3),
    }


def _echo_summary(**fields: Any) -> None:
    typer.echo(json.dumps(fields, indent=2))


# Over 60 lines: most of it is the declaration of the command's fourteen options.
@friendly
def ingest_cmd(
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
    settings = command_settings()
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

    settings = command_settings()
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
        _echo_summary(
            gallery=report.gallery,
            format=report.format,
            rows_loaded=report.rows_loaded,
            already_present=report.rows_present,
            bad_rows=[{"line": b.line, "reason": b.reason} for b in report.bad_rows],
            ignored=[{"line": i.line, "what": i.what} for i in report.ignored],
            seconds=round(report.seconds, 3),
            listed_in=str(listed) if listed else None,
            image_root=str(image_root) if image_root else None,
            index=_index_outcome(outcome),
        )
