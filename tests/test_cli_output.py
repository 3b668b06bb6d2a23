"""Output for terminals and scripts: one JSON document per listing or status, tables that
fit 80 columns, the query photo from standard input, no picture unless asked for."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from doppel.cli import app
from doppel.cli.common import short_source
from tests.helpers import write_faces_dump

runner = CliRunner()
NARROW = {"COLUMNS": "80"}


def _fits(text: str, width: int = 80) -> None:
    """Every line within the width, and no cell cut short with an ellipsis."""
    for line in text.splitlines():
        assert len(line) <= width, line
    assert "…" not in text, text


def test_short_sources_are_file_names_or_paths_below_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert short_source(str(tmp_path / "photos" / "a.jpg")) == os.path.join("photos", "a.jpg")
    assert short_source("/somewhere/else/deep/down/img2.jpg") == "img2.jpg"
    assert short_source(str(tmp_path.parent / "sibling" / "b.png")) == "b.png"
    assert short_source("ffhq/00000/00001.png") == "ffhq/00000/00001.png"


def test_models_fits_80_columns_and_says_what_is_ready() -> None:
    result = runner.invoke(app, ["models"], env=NARROW)
    assert result.exit_code == 0, result.output
    _fits(result.stdout)
    rows = {line.split()[1]: line for line in result.stdout.splitlines() if line.startswith("│ ")}
    for name in ("Facenet512", "GhostFaceNet", "retinaface", "mtcnn", "dlib", "mmod"):
        assert name in rows, result.stdout
    assert "TensorFlow" not in rows["mmod"] and "dlib" in rows["mmod"]
    assert "ready" in rows["dlib"]
    assert "--wide" in result.stdout


def test_models_json() -> None:
    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    models = {m["name"]: m for m in payload["models"]}
    assert models["mmod"]["runtime"] == "dlib"
    # Dlib's weights ship in a wheel; its network is converted to ONNX on first use.
    assert models["Dlib"]["ready"] in ("ready", "to convert"), models["Dlib"]
    assert models["Dlib"]["dimension"] == 128
    assert models["Facenet512"]["detector"] == "mtcnn"
    assert {m["ready"] for m in models.values()} <= {"ready", "no weights", "to convert"}
    assert payload["runtime"] in ("auto", "onnx", "openvino", "tensorflow")


@pytest.fixture
def dumped(database_url: str, server_url: str, tmp_path: Path) -> str:
    """A gallery with a long name, loaded from a small dump (no face model)."""
    dump = write_faces_dump(server_url, tmp_path / "faces.sql", 40)
    name = "a-gallery-with-a-rather-long-name-2026"
    loaded = runner.invoke(app, ["load-dump", str(dump), "-g", name, "--json"])
    assert loaded.exit_code == 0, loaded.output
    summary = json.loads(loaded.stdout)
    assert summary["gallery"] == name and summary["rows_loaded"] == 40
    assert summary["bad_rows"] == [] and summary["index"]["built"] is True
    return name


def test_gallery_list_and_db_status_json(dumped: str) -> None:
    listed = runner.invoke(app, ["gallery", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    (gallery,) = json.loads(listed.stdout)["galleries"]
    assert gallery["name"] == dumped and gallery["faces"] == 40
    assert gallery["model"] == "Facenet512" and gallery["detector"] == "skip"
    assert gallery["index"]["state"] == "ready" and gallery["index"]["bytes"] > 0
    status = runner.invoke(app, ["db", "status", "--json"])
    assert status.exit_code == 0, status.output
    payload = json.loads(status.stdout)
    assert payload["pgvector_version"].startswith("0.8")
    assert [g["name"] for g in payload["galleries"]] == [dumped]
    assert payload["galleries"][0] == gallery


def test_db_status_and_gallery_list_fit_80_columns_without_cutting_names(dumped: str) -> None:
    for args in (["db", "status"], ["gallery", "list"]):
        result = runner.invoke(app, args, env=NARROW)
        assert result.exit_code == 0, result.output
        _fits(result.stdout)
        # The name may wrap inside its cell, but every character of it is there.
        cells = "".join(
            line.split("│")[1].strip() for line in result.stdout.splitlines() if "│" in line
        )
        assert dumped in cells, result.stdout
    wide = runner.invoke(app, ["db", "status", "--wide"], env={"COLUMNS": "200"})
    assert "halfvec" in wide.stdout and "unreadable" in wide.stdout


def test_index_commands_json(dumped: str) -> None:
    present = runner.invoke(app, ["index", "build", "-g", dumped, "--json"])
    assert present.exit_code == 0, present.output
    assert json.loads(present.stdout) == {"gallery": dumped, "outcome": "present"}
    rebuilt = runner.invoke(app, ["index", "rebuild", "-g", dumped, "--json"])
    assert rebuilt.exit_code == 0, rebuilt.output
    payload = json.loads(rebuilt.stdout)
    assert payload["outcome"] == "built" and payload["bytes"] > 0


# With real faces (the Dlib model): find's picture, standard input, the 80-column table.


@pytest.fixture
def gallery_env(unit_gallery: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("DOPPEL_DATABASE_URL", unit_gallery)
    monkeypatch.chdir(tmp_path)  # where a composite would be written
    return tmp_path


def test_find_json_writes_a_picture_only_when_asked(gallery_env: Path, unit_faces: Path) -> None:
    result = runner.invoke(app, ["find", str(unit_faces / "img1.jpg"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["composite"] is None
    assert list(gallery_env.glob("*.png")) == []
    asked = runner.invoke(app, ["find", str(unit_faces / "img1.jpg"), "--json", "-o", "m.png"])
    assert asked.exit_code == 0, asked.output
    assert json.loads(asked.stdout)["composite"] == "m.png"
    assert (gallery_env / "m.png").stat().st_size > 0


def test_find_reads_the_photo_from_stdin(gallery_env: Path, unit_faces: Path) -> None:
    photo = unit_faces / "img1.jpg"
    by_path = runner.invoke(app, ["find", str(photo), "--json"])
    piped = runner.invoke(app, ["find", "-", "--json"], input=photo.read_bytes())
    assert piped.exit_code == 0, piped.output
    payload = json.loads(piped.stdout)
    assert payload["query"] == "-"
    assert payload["faces"] == json.loads(by_path.stdout)["faces"]
    table = runner.invoke(app, ["find", "-"], input=photo.read_bytes())
    assert table.exit_code == 0, table.output
    assert (gallery_env / "doppel-stdin.png").is_file()
    empty = runner.invoke(app, ["find", "-", "--json"], input=b"")
    assert empty.exit_code == 2
    assert "standard input was empty" in empty.stderr
    junk = runner.invoke(app, ["find", "-", "--json"], input=b"not an image")
    assert junk.exit_code == 1 and len(junk.stderr.strip().splitlines()) == 1


def test_find_table_fits_80_columns_with_file_names(gallery_env: Path, unit_faces: Path) -> None:
    result = runner.invoke(app, ["find", str(unit_faces / "img1.jpg"), "--no-picture"], env=NARROW)
    assert result.exit_code == 0, result.output
    _fits(result.stdout)
    assert "../" not in result.stdout and str(unit_faces) not in result.stdout
    # Each source by its file name alone, on one line of its cell.
    assert len(re.findall(r"│ (?:img\d+|couple)\.jpg +│", result.stdout)) == 5, result.stdout


# The ingest bar: its estimate and its running counts.


def test_the_estimate_waits_for_enough_work_then_averages() -> None:
    from doppel.cli.common import remaining_time

    assert remaining_time(3, 100, 3, 30.0) == "…"  # three files promise nothing
    assert remaining_time(50, 100, 50, 2.0) == "…"  # nor two seconds
    assert remaining_time(40, 100, 40, 20.0, stored=False) == "…"  # nothing embedded yet
    assert remaining_time(50, 100, 50, 25.0) == "0:00:25"  # the average rate since the start
    # Files already in the gallery cost nothing: the rate is that of the files worked on.
    assert remaining_time(60, 100, 10, 20.0) == "0:01:20"
    assert remaining_time(100, 100, 0, 0.0) == "0:00:00"


def test_the_bar_shows_what_the_ingest_has_found_so_far() -> None:
    import io

    from rich.console import Console

    from doppel.cli import common
    from doppel.ingest.local import IngestReport

    screen = io.StringIO()
    saved = common.err
    common.err = Console(file=screen, width=80, force_terminal=False)
    try:
        with common.progress_bar("ingest demo") as update:
            report = IngestReport(
                gallery="demo", files=10, faces_added=4, faces_found=7, images_added=6
            )
            report.no_face.append("a.jpg")
            report.unreadable.append("b.jpg\tnot an image")
            update(9, 10, report)
    finally:
        common.err = saved
    text = screen.getvalue()
    assert "ingest demo" in text and "9/10" in text
    assert "faces found: 7 · photos without a face: 1 · unreadable: 1" in text
    _fits(text.replace("…", ""))


def test_the_estimate_counts_files_finished_not_files_waiting_for_their_batch() -> None:
    from doppel.cli.common import settled_files
    from doppel.ingest.local import IngestReport

    # 40 files seen: 5 present already, 20 stored with their faces, 2 without a face,
    # 1 unreadable; the other 12 wait, detected, for the next batch to be embedded.
    report = IngestReport(gallery="g", files=100, skipped=5, images_added=20)
    report.no_face += ["a.jpg", "b.jpg"]
    report.unreadable.append("c.jpg\tnot an image")
    assert settled_files(report) == 28


@pytest.mark.slow
def test_ingest_json_summary(database_url: str, unit_faces: Path, tmp_path: Path) -> None:
    folder = tmp_path / "few"
    folder.mkdir()
    for name in ("img1.jpg", "img2.jpg"):
        (folder / name).symlink_to(unit_faces / name)
    (folder / "broken.jpg").write_bytes(b"not a photo")
    result = runner.invoke(app, ["ingest", str(folder), "-m", "Dlib", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["gallery"] == "few" and summary["files"] == 3
    assert summary["faces_added"] == 2 and summary["files_added"] == 2
    assert [u["path"] for u in summary["unreadable"]] == [str(folder / "broken.jpg")]
    assert summary["unreadable"][0]["reason"]
    again = json.loads(runner.invoke(app, ["ingest", str(folder), "-m", "Dlib", "--json"]).stdout)
    assert again["faces_added"] == 0 and again["already_present"] == 3


def test_exit_codes_as_documented(database_url: str, tmp_path: Path) -> None:
    """0 done, 1 the command failed, 2 a usage mistake (README, "Exit codes")."""
    photo = Path(__file__).resolve().parents[1] / "images" / "demo" / "img1.jpg"
    assert runner.invoke(app, ["gallery", "list", "--json"]).exit_code == 0
    assert runner.invoke(app, ["gallery", "list", "--no-such-option"]).exit_code == 2
    assert runner.invoke(app, ["find", str(tmp_path / "missing.jpg")]).exit_code == 2
    empty = runner.invoke(app, ["find", "-", "--json"], input=b"")
    assert empty.exit_code == 2 and "standard input was empty" in empty.stderr
    unknown = runner.invoke(app, ["find", str(photo), "-g", "nobody", "--json"])
    assert unknown.exit_code == 1 and len(unknown.stderr.strip().splitlines()) == 1
    assert unknown.stdout == ""  # no half a JSON document for a script to misread


@pytest.mark.slow
def test_loading_is_announced_only_when_a_model_is_loaded(
    database_url: str, tmp_path: Path
) -> None:
    import numpy as np
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        pixels = rng.integers(0, 255, (120, 120, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"p{i}.png")
    args = ["ingest", str(folder), "-g", "once", "-m", "Dlib", "-d", "skip", "--workers", "0"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "loading the Dlib model…" in first.output
    assert "faces found: 3" in first.output
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "loading" not in again.output and "3 already present" in again.output
