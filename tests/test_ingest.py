"""doppel ingest: resumable, no duplicates, clear accounting of what it could not use."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psycopg
import pytest
from PIL import Image
from typer.testing import CliRunner

from doppel.cli import app
from doppel.faces.catalog import install
from doppel.faces.embed import Embedder
from doppel.store.repository import Repository
from doppel.types import EmbeddingConfig
from tests.helpers import ingest_folder

runner = CliRunner()


@pytest.fixture(scope="module")
def facenet(facenet_weights: Path) -> EmbeddingConfig:
    """Facenet512 with random weights installed where DeepFace looks."""
    install("Facenet512", facenet_weights)
    return EmbeddingConfig("Facenet512", "skip", align=False)


def make_crops(folder: Path, count: int, seed: int = 0, side: int = 192) -> list[Path]:
    """Pre-aligned 'face crops' (random pictures: detector skip embeds any image)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        pixels = rng.integers(0, 255, size=(side, side, 3), dtype=np.uint8)
        path = folder / f"{i // 100:02d}" / f"{i:05d}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def face_rows(conn: psycopg.Connection, gallery: str) -> list[tuple[str, int]]:
    return conn.execute(
        "SELECT source, face_index FROM faces JOIN galleries g ON g.id = gallery_id"
        " WHERE g.name = %s ORDER BY source",
        (gallery,),
    ).fetchall()


def test_second_run_adds_nothing_and_changed_file_is_redone(
    conn: psycopg.Connection, facenet: EmbeddingConfig, tmp_path: Path
) -> None:
    paths = make_crops(tmp_path / "crops", 40)
    first = ingest_folder(conn, tmp_path / "crops", "crops", facenet)
    assert (first.faces_added, first.skipped) == (40, 0)
    assert Repository(conn).has_index(Repository(conn).gallery("crops"))

    second = ingest_folder(conn, tmp_path / "crops", "crops", facenet)
    assert (second.faces_added, second.skipped) == (0, 40)

    Image.new("RGB", (192, 192), (10, 200, 30)).save(paths[3])
    third = ingest_folder(conn, tmp_path / "crops", "crops", facenet)
    assert (third.faces_added, third.skipped) == (1, 39)
    rows = face_rows(conn, "crops")
    assert len(rows) == 40 == len(set(rows))


def test_unreadable_files_are_listed_and_the_rest_is_ingested(
    conn: psycopg.Connection, facenet: EmbeddingConfig, tmp_path: Path
) -> None:
    make_crops(tmp_path / "mixed", 5)
    (tmp_path / "mixed" / "broken.JPG").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (tmp_path / "mixed" / "readme.txt").write_text("not a photo, not even named like one")
    report = ingest_folder(conn, tmp_path / "mixed", "mixed", facenet, log_dir=tmp_path / "logs")
    assert report.faces_added == 5
    assert len(report.unreadable) == 1 and "broken.JPG" in report.unreadable[0]
    assert report.listed_in is not None
    assert "broken.JPG" in report.listed_in.read_text()
    # A second run does not retry a file that has not changed.
    again = ingest_folder(conn, tmp_path / "mixed", "mixed", facenet)
    assert again.skipped == 6 and not again.unreadable


def test_killed_ingest_resumes_to_the_same_count(
    database_url: str, facenet: EmbeddingConfig, tmp_path: Path
) -> None:
    total = 300
    make_crops(tmp_path / "many", total, seed=1)
    command = [
        sys.executable,
        "-m",
        "doppel",
        "ingest",
        str(tmp_path / "many"),
        "-g",
        "many",
        "-m",
        "Facenet512",
        "-d",
        "skip",
        "--batch-size",
        "16",
    ]
    env = {**os.environ, "DOPPEL_DATABASE_URL": database_url}
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    count = 0
    deadline = time.monotonic() + 300
    with psycopg.connect(database_url, autocommit=True) as watch:
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
            row = watch.execute("SELECT to_regclass('faces') IS NOT NULL").fetchone()
            if row and row[0]:
                count = watch.execute("SELECT count(*) FROM faces").fetchone()[0]  # type: ignore[index]
                if count >= 32:
                    break
        process.send_signal(signal.SIGKILL)
        process.wait()
        partial = watch.execute("SELECT count(*) FROM faces").fetchone()[0]  # type: ignore[index]
    assert 0 < partial < total, "the kill should land halfway through"

    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr
    assert f"{partial} already present" in " ".join(finished.stderr.split())
    with psycopg.connect(database_url) as check:
        rows = face_rows(check, "many")
    assert len(rows) == total == len(set(rows))


def test_gallery_refuses_another_model(
    conn: psycopg.Connection, facenet: EmbeddingConfig, tmp_path: Path
) -> None:
    make_crops(tmp_path / "g", 2)
    ingest_folder(conn, tmp_path / "g", "g", facenet)
    other = EmbeddingConfig("Dlib", "skip", align=False)
    with pytest.raises(Exception, match="holds faces embedded as Facenet512"):
        ingest_folder(conn, tmp_path / "g", "g", other)
    assert Repository(conn).face_count(Repository(conn).gallery("g")) == 2


@pytest.mark.slow
def test_ingest_real_photos_with_dlib_keeps_largest_or_all_faces(
    conn: psycopg.Connection, unit_faces: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "party"
    folder.mkdir()
    for name in ("couple.jpg", "img1.jpg"):
        (folder / name).symlink_to(unit_faces / name)
    Image.new("RGB", (320, 240), (90, 90, 90)).save(folder / "empty-room.png")
    embedder = Embedder(EmbeddingConfig("Dlib", "mtcnn"))
    largest = ingest_folder(conn, folder, "largest", embedder.config, embedder=embedder)
    assert largest.faces_added == 2 and len(largest.no_face) == 1
    everyone = ingest_folder(
        conn, folder, "everyone", embedder.config, embedder=embedder, all_faces=True
    )
    assert everyone.faces_added == 3
    boxes = conn.execute(
        "SELECT box_w * box_h FROM faces WHERE source LIKE '%%couple.jpg' ORDER BY face_index"
        " LIMIT 2"
    ).fetchall()
    assert boxes[0][0] >= boxes[1][0]


def test_cli_summary(database_url: str, facenet: EmbeddingConfig, tmp_path: Path) -> None:
    make_crops(tmp_path / "c", 3)
    result = runner.invoke(app, ["ingest", str(tmp_path / "c"), "-m", "Facenet512", "-d", "skip"])
    assert result.exit_code == 0, result.output
    summary = " ".join(result.stderr.split())
    assert "3 faces added from 3 files" in summary
    assert "HNSW index built" in summary


def test_missing_folder_is_a_usage_error(database_url: str, tmp_path: Path) -> None:
    result = runner.invoke(app, ["ingest", str(tmp_path / "nope"), "-m", "Dlib"])
    assert result.exit_code == 2
    assert "is not a folder" in result.stderr
