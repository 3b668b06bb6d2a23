"""`doppel models`: the face models, their weights files, their runtime, installing one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from doppel.cli.common import command_settings, err, friendly, out

models_app = typer.Typer(
    help="Face models: list them, see which weights and converted files are present, "
    "install (download or copy, then convert) one.",
    invoke_without_command=True,
)


@models_app.callback()
@friendly
def models_list(ctx: typer.Context) -> None:
    """List supported models and detectors: weights present, the runtime each runs on, and
    whether its converted (ONNX) file is there."""
    if ctx.invoked_subcommand is not None:
        return
    from doppel.faces.catalog import all_status, weights_dir
    from doppel.faces.networks import runtime_status

    settings = command_settings()
    table = Table(title=f"models (weights folder: {weights_dir()}; runtime: {settings.runtime})")
    columns = ("name", "kind", "dim", "weights", "runtime", "converted", "where", "new galleries")
    for column in (*columns, "note"):
        table.add_column(column)
    for status in all_status():
        spec = status.spec
        present = "n/a" if spec.weights is None else ("present" if status.present else "MISSING")
        where = str(status.path) if status.path else (spec.weights or "")
        used, converted = runtime_status(spec, settings.runtime)
        pipeline = ""
        if spec.kind == "recognition":
            pipeline = f"{spec.detector}, {spec.alignment}" + (", mirror" if spec.flip else "")
        table.add_row(
            spec.name,
            spec.kind,
            str(spec.dimension or ""),
            present,
            used,
            converted,
            where,
            pipeline,
            spec.note,
        )
    out.print(table)
    out.print(
        "Missing weights are downloaded on first use (not with DOPPEL_OFFLINE=1); "
        "`doppel models install NAME` downloads and converts now, "
        "`doppel models install NAME FILE` installs a file you downloaded."
    )


@models_app.command("install")
@friendly
def models_install(
    name: Annotated[str, typer.Argument(help="Model name, as `doppel models` lists it.")],
    file: Annotated[
        Path | None,
        typer.Argument(help="A weights file you downloaded (default: download it)."),
    ] = None,
) -> None:
    """Install a model's weights (downloaded, or from FILE), then convert its network for
    the fast runtime and check it against TensorFlow."""
    from doppel.faces.catalog import install
    from doppel.faces.networks import prepare

    settings = command_settings()
    if file is not None:
        target = install(name, file)
        out.print(f"installed {file} as {target}", highlight=False)
    for line in prepare(name, settings, say=lambda text: err.print(text, highlight=False)):
        out.print(line, highlight=False)
