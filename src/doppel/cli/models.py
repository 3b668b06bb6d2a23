"""`doppel models`: the face models, their weights files, installing one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from doppel.cli.common import friendly, out

models_app = typer.Typer(
    help="Face models: list them, see which weights are present, install weights from a file.",
    invoke_without_command=True,
)


@models_app.callback()
@friendly
def models_list(ctx: typer.Context) -> None:
    """List supported models and detectors, with whether their weights are present."""
    if ctx.invoked_subcommand is not None:
        return
    from doppel.faces.catalog import all_status, weights_dir

    table = Table(title=f"models (weights folder: {weights_dir()})")
    for column in ("name", "kind", "dim", "weights", "where", "note"):
        table.add_column(column)
    for status in all_status():
        spec = status.spec
        present = "n/a" if spec.weights is None else ("present" if status.present else "MISSING")
        where = str(status.path) if status.path else (spec.weights or "")
        table.add_row(spec.name, spec.kind, str(spec.dimension or ""), present, where, spec.note)
    out.print(table)
    out.print("Install a missing file with `doppel models install NAME FILE`.")


@models_app.command("install")
@friendly
def models_install(
    name: Annotated[str, typer.Argument(help="Model name, as `doppel models` lists it.")],
    file: Annotated[Path, typer.Argument(help="The weights file you downloaded.")],
) -> None:
    """Install a weights file downloaded elsewhere, where DeepFace looks for it."""
    from doppel.faces.catalog import install

    target = install(name, file)
    out.print(f"installed {file} as {target}", highlight=False)
