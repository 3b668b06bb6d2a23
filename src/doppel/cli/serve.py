"""`doppel serve`: the web page and its JSON API."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from doppel.cli.common import command_settings, err, friendly, labelled


# Over 80 lines: most of it is the declaration of the command's eight options.
@friendly
def serve_cmd(
    port: Annotated[
        int | None,
        typer.Option(
            "--port",
            "-p",
            min=1,
            max=65535,
            help="TCP port to listen on (default: $DOPPEL_PORT, else 8765).",
        ),
    ] = None,
    host: Annotated[
        str | None,
        typer.Option(
            "--host",
            help="Address to listen on (default: $DOPPEL_HOST, else 127.0.0.1); anything but "
            "loopback lets other machines in.",
        ),
    ] = None,
    gallery: Annotated[
        str | None,
        typer.Option(
            "--gallery", "-g", help="Gallery the page starts with (default: $DOPPEL_GALLERY)."
        ),
    ] = None,
    reports: Annotated[
        Path | None,
        typer.Option(
            "--reports",
            help="Folder of `doppel resemble` reports (default: $DOPPEL_REPORTS, else "
            "$DOPPEL_HOME/reports).",
        ),
    ] = None,
    max_upload: Annotated[
        int | None,
        typer.Option(
            "--max-upload",
            min=1,
            max=1024,
            help="Largest upload accepted, in MiB (default: $DOPPEL_MAX_UPLOAD_MIB, else 20).",
        ),
    ] = None,
    keep_uploads: Annotated[
        Path | None,
        typer.Option(
            "--keep-uploads",
            help="Save uploaded photos in this folder (default: they are never written to disk).",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            "-w",
            min=0,
            max=1024,
            help="Processes doing the face work, each with its own models (default: "
            "$DOPPEL_WORKERS, else one per core; 0: in the server process).",
        ),
    ] = None,
    queue_wait: Annotated[
        int | None,
        typer.Option(
            "--queue-wait",
            min=0,
            max=3600,
            help="Seconds a search may wait for a worker before the server answers 503 "
            "with Retry-After (default: $DOPPEL_QUEUE_WAIT_S, else 5).",
        ),
    ] = None,
) -> None:
    """Serve the look-alike search page and its JSON API (/api/docs), models loaded once."""
    from doppel.web.app import create_app, is_loopback, serve

    settings = command_settings()
    if workers is not None:
        settings = dataclasses.replace(settings, workers=workers)
    if queue_wait is not None:
        settings = dataclasses.replace(settings, queue_wait_s=queue_wait)
    host, port = host or settings.host, port or settings.port
    if not is_loopback(host):
        err.print(
            labelled(
                "warning:",
                "bold yellow",
                f"listening on {host}: anyone who can reach this machine can search your "
                "galleries and see their photos",
            )
        )
    app_ = create_app(
        settings,
        gallery=gallery or settings.gallery,
        reports_dir=reports or settings.reports_dir,
        report_cwd=Path.cwd(),
        max_upload=(max_upload or settings.max_upload_mib) * 2**20,
        keep_uploads=keep_uploads,
        workers=settings.face_workers,
    )
    err.print(
        f"loading models in {settings.face_workers or 'this'} process(es), then serving on "
        f"http://{host}:{port}/ (Ctrl-C stops)",
        highlight=False,
    )
    serve(app_, host, port)
