"""The `doppel` command: a thin Typer layer over the library, one module per command group.

`doppel.cli:app` is the Typer application and `doppel.cli:main` the console script.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Annotated

import typer

from doppel.cli import calibrate, find, ingest, people, resemble, serve
from doppel.cli import people_edits as people_edits  # adds its commands to people_app
from doppel.cli import people_floor as people_floor  # adds `people floor` to people_app
from doppel.cli.citus import cluster_app
from doppel.cli.common import ClusterCommand
from doppel.cli.db import db_app, index_app
from doppel.cli.gallery import gallery_app
from doppel.cli.models import models_app
from doppel.config import RUNTIMES, Settings, load_dotenv_once

app = typer.Typer(
    help="Find look-alikes in a face gallery, and tell whom a face resembles.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # a DSN holds a password
    add_completion=False,
)


def _print_version(wanted: bool) -> None:
    if wanted:
        from importlib.metadata import version

        typer.echo(f"doppel {version('doppel')}")
        raise typer.Exit()


@app.callback()
def options(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
    runtime: Annotated[
        str | None,
        typer.Option(
            "--runtime",
            help="Inference runtime for the face networks: auto (ONNX Runtime, on a CUDA GPU "
            "when there is one), onnx, openvino (optional extra), or tensorflow (default: "
            "$DOPPEL_RUNTIME, else auto).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Options for every command."""
    chosen = {}
    if runtime is not None:
        chosen["runtime"] = runtime.strip().lower()
        if chosen["runtime"] not in RUNTIMES:
            raise typer.BadParameter(f"use one of {', '.join(RUNTIMES)}", param_hint="--runtime")
    # The command's Settings take these over the environment (common.command_settings);
    # from there the runtime travels, in FaceOptions, to the processes that embed.
    if isinstance(ctx.obj, Settings):  # handed in by the caller
        ctx.obj = dataclasses.replace(ctx.obj, runtime=chosen.get("runtime", ctx.obj.runtime))
    else:
        ctx.obj = chosen


db_app.add_typer(cluster_app, name="cluster")
app.add_typer(db_app, name="db")
app.add_typer(gallery_app, name="gallery")
app.add_typer(models_app, name="models")
app.add_typer(index_app, name="index")
app.command("ingest", cls=ClusterCommand)(ingest.ingest_cmd)
app.command("load-dump")(ingest.load_dump_cmd)
app.command("find")(find.find_cmd)
app.command("resemble")(resemble.resemble_cmd)
app.command("serve")(serve.serve_cmd)
app.add_typer(people.people_app, name="people")
app.command("verify")(people.verify_cmd)
app.command("twins")(people.twins_cmd)
app.command("calibrate")(calibrate.calibrate_cmd)


def main() -> None:
    load_dotenv_once()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    app(prog_name="doppel")


if __name__ == "__main__":  # pragma: no cover
    main()
