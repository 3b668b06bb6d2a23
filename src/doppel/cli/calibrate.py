"""`doppel calibrate`: a pipeline's same-person threshold, measured on labelled photos."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from doppel.cli.common import (
    JsonOpt,
    ModelOpt,
    PhotoDetectorOpt,
    command_settings,
    err,
    friendly,
    out,
    progress_bar,
)


@friendly
def calibrate_cmd(
    people_dir: Annotated[
        Path, typer.Argument(help="A folder with one subfolder of photos per person.")
    ],
    model: ModelOpt = None,
    detector: PhotoDetectorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Measure a model's same-person threshold on labelled photos and save it.

    `verify`, `people`, `find --strangers` and the strength of each match read it from
    $DOPPEL_HOME/calibration.json, beside the thresholds doppel ships.
    """
    from doppel.faces.catalog import default_config
    from doppel.people.calibrate import calibrate_folder

    settings = command_settings()
    config = default_config(model or settings.model, detector or settings.detector)
    with progress_bar("embedding") as update:
        report = calibrate_folder(
            people_dir,
            config,
            settings.calibration_file,
            settings.face_options,
            settings.max_pixels,
            update,
        )
    cal = report.calibration
    if as_json:
        payload = {
            "pipeline": cal.pipeline,
            "model": cal.model,
            "people": report.people,
            "faces": report.faces,
            "same_pairs": report.same_pairs,
            "different_pairs": report.different_pairs,
            "threshold": cal.threshold,
            "false_accept": cal.false_accept,
            "false_reject": cal.false_reject,
            "logistic_a": cal.logistic_a,
            "logistic_b": cal.logistic_b,
            "skipped": list(report.skipped),
            "saved_to": str(report.saved_to),
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    out.print(
        f"{cal.model} ({cal.pipeline}): threshold {cal.threshold:.4f} on {report.faces} faces "
        f"of {report.people} people ({report.same_pairs} same-person pairs, "
        f"{report.different_pairs} others): {cal.false_accept:.1%} false accepts, "
        f"{cal.false_reject:.1%} false rejects",
        highlight=False,
    )
    if report.skipped:
        err.print(f"no face in {len(report.skipped)} photos, left out", highlight=False)
    err.print(f"saved to {report.saved_to}", highlight=False)
