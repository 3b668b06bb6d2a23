"""A folder into a gallery with bars and a summary: what `doppel ingest` and
`doppel find --in` share, and the JSON summaries of `ingest` and `load-dump`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from doppel.cli.common import (
    connect,
    err,
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
        echo_ingest(report, outcome)


def echo_ingest(report: Any, outcome: Any) -> None:
    """An ingest's summary as one JSON document on stdout."""
    echo_summary(
        gallery=report.gallery,
        files=report.files,
        faces_added=report.faces_added,
        files_added=report.images_added,
        already_present=report.skipped,
        no_face=report.no_face,
        unreadable=[listed_entry(e) for e in report.unreadable],
        too_small=[listed_entry(e) for e in report.too_small],
        skipped=[listed_entry(e) for e in report.passed_over],
        seconds=round(report.seconds, 3),
        listed_in=str(report.listed_in) if report.listed_in else None,
        index=index_outcome(outcome),
    )


def listed_entry(line: str) -> dict[str, str]:
    """A listed file, "path<TAB>reason", as JSON."""
    path, _, reason = line.partition("\t")
    return {"path": path, "reason": reason}


def index_outcome(outcome: Any) -> dict[str, Any]:
    return {
        "built": outcome.built,
        "background": outcome.background,
        "seconds": round(outcome.seconds, 3),
    }


def echo_summary(**fields: Any) -> None:
    typer.echo(json.dumps(fields, indent=2))


# Over 60 lines: most of it is the declaration of the command's fourteen options.
