"""Look-alikes a person can trust: calibration of one's own, strengths in words,
one face per stranger, several photos as one query, no copies of one picture."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from doppel.cli import app
from doppel.people import calibration

runner = CliRunner()


def _lfw_rows(unit_faces: Path) -> list[tuple[str, str]]:
    lfw = unit_faces.parent / "lfw-dev"
    rows = list(csv.reader((lfw / "identities.csv").read_text().splitlines()))[1:]
    return [(file, person) for file, person in rows if file]


def _people_folder(unit_faces: Path, root: Path, people: int, photos: int) -> Path:
    """lfw-dev's first `people` people with `photos` photos or more, one subfolder each."""
    lfw = unit_faces.parent / "lfw-dev" / "photos"
    by_person: dict[str, list[str]] = {}
    for file, person in _lfw_rows(unit_faces):
        by_person.setdefault(person, []).append(file)
    chosen = [p for p in sorted(by_person) if len(by_person[p]) >= photos][:people]
    for person in chosen:
        (root / person).mkdir(parents=True)
        for file in by_person[person][:photos]:
            (root / person / file).symlink_to(lfw / file)
    return root


@pytest.mark.slow
def test_calibrate_measures_and_saves_a_pipeline(
    unit_faces: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`doppel calibrate` on labelled photos writes the user's file, which the
    commands then read; the saved curve crosses one half at the saved threshold."""
    home = tmp_path / "home"
    monkeypatch.setenv("DOPPEL_HOME", str(home))
    folder = _people_folder(unit_faces, tmp_path / "people", people=6, photos=4)
    result = runner.invoke(app, ["calibrate", str(folder), "-m", "Dlib", "-d", "dlib", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["people"] == 6 and report["faces"] >= 20
    assert 0.85 < report["threshold"] < 0.97
    saved = calibration.known(home / "calibration.json")[report["pipeline"]]
    assert saved.threshold == report["threshold"]
    assert "doppel calibrate" in saved.measured_on
    assert saved.probability(saved.threshold) == pytest.approx(0.5)
    assert saved.logistic_a > 0


def test_calibrate_refuses_a_folder_without_people(tmp_path: Path) -> None:
    (tmp_path / "only").mkdir()
    result = runner.invoke(app, ["calibrate", str(tmp_path), "-m", "Dlib", "-d", "dlib"])
    assert result.exit_code != 0
    assert "one subfolder per person" in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
