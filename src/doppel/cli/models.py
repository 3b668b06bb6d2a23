"""`doppel models`: the face models, their weights files, their runtime, installing one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from doppel.cli.common import command_settings, err, flag, friendly, out

models_app = typer.Typer(
    help="Face models: list them, see which weights and converted files are present, "
    "install (download or copy, then convert) one.",
    invoke_without_command=True,
)


def _ready(present: str, converted: str) -> str:
    """Whether a model can run now: weights there, and its networks converted (they are
    converted on first use, or by `doppel models install`)."""
    if present == "MISSING":
        return "no weights"
    if converted in ("not yet", "-"):
        return "to convert"
    return "ready"


def model_rows(runtime: str) -> list[dict[str, Any]]:
    """Every model and detector as `doppel models` reports it, without loading any."""
    from doppel.faces.catalog import all_status
    from doppel.faces.networks import runtime_status

    rows = []
    for status in all_status():
        spec = status.spec
        present = "n/a" if spec.weights is None else ("present" if status.present else "MISSING")
        used, converted = runtime_status(spec, runtime)
        recognition = spec.kind == "recognition"
        rows.append(
            {
                "name": spec.name,
                "kind": spec.kind,
                "dimension": spec.dimension,
                "weights": present,
                "weights_file": str(status.path) if status.path else spec.weights,
                "runtime": used,
                "converted": converted,
                "ready": _ready(present, converted),
                "detector": spec.detector if recognition else None,
                "alignment": spec.alignment if recognition else None,
                "mirror": spec.flip if recognition else None,
                "note": spec.note,
            }
        )
    return rows


@models_app.callback()
@friendly
def models_list(
    ctx: typer.Context,
    wide: Annotated[
        bool, flag("--wide", "Every column: weights file, converted file, notes.")
    ] = False,
    as_json: Annotated[bool, flag("--json", "Print JSON.")] = False,
) -> None:
    """List supported models and detectors: whether each is ready (weights present,
    networks converted), the runtime it runs on, and a recognition model's pipeline for
    new galleries."""
    if ctx.invoked_subcommand is not None:
        return
    from doppel.faces.catalog import weights_dir

    settings = command_settings()
    rows = model_rows(settings.runtime)
    if as_json:
        payload = {
            "weights_folder": str(weights_dir()),
            "runtime": settings.runtime,
            "models": rows,
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    if wide:
        table = Table(
            title=f"models (weights folder: {weights_dir()}; runtime: {settings.runtime})"
        )
        columns: tuple[tuple[str, str], ...] = (
            ("name", "name"), ("kind", "kind"), ("dim", "dimension"), ("weights", "weights"),
            ("runtime", "runtime"), ("converted", "converted"), ("where", "weights_file"),
            ("new galleries", "pipeline"), ("note", "note"),
        )  # fmt: skip
    else:
        # Fits 80 columns: the state in one word, the rest behind --wide and --json.
        table = Table(title=f"models (runtime: {settings.runtime})")
        columns = (
            ("name", "name"), ("kind", "kind"), ("dim", "dimension"), ("state", "ready"),
            ("runs on", "runtime"), ("pipeline", "pipeline"),
        )  # fmt: skip
    for header, _ in columns:
        table.add_column(header, overflow="fold")
    for row in rows:
        pipeline = ""
        if row["detector"]:
            pipeline = f"{row['detector']}, {row['alignment']}" + (
                ", mirror" if row["mirror"] else ""
            )
        cells = {**row, "pipeline": pipeline}
        table.add_row(*(str(cells[key] or "") for _, key in columns))
    out.print(table)
    if not wide:
        out.print(f"weights folder: {weights_dir()}; more with --wide or --json", highlight=False)
    out.print(
        "Missing weights are downloaded on first use (not with DOPPEL_OFFLINE=1), and "
        "networks converted on first use; `doppel models install NAME` does both now (with "
        "the model's detector), `doppel models install NAME FILE` installs a file you "
        "downloaded.",
        highlight=False,
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
