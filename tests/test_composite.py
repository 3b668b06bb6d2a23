"""The composite: matches cut from photos decoded no larger than needed, and cached."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from doppel.composer import _side_needed, match_picture, render
from doppel.config import Settings
from doppel.faces.imaging import load
from doppel.types import Box, EmbeddedFace, Face, Match, QueryResult


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("DOPPEL_HOME", str(tmp_path / "home"))
    return Settings.from_env()


def test_a_big_photo_is_decoded_only_as_large_as_the_face_needs(unit_faces: Path) -> None:
    path = unit_faces / "img1.jpg"
    with Image.open(path) as img:
        longest = max(img.size)
    face = Box(444, 181, 569, 817)  # the face doppel finds there, in file pixels
    side = _side_needed(path, face, 256)
    assert side < longest / 2  # JPEG draft decodes at 1/2 or less
    # The face still gets at least the tile's pixels.
    photo = load(path, max_side=side)
    assert max(face.w, face.h) * 1.5 / photo.scale >= 256 - 2
    # Without a box (detector skip) the whole picture is the face.
    assert _side_needed(path, None, 256) < longest


def test_match_pictures_are_cut_once_then_read_from_the_cache(
    unit_faces: Path, settings: Settings, tmp_path: Path
) -> None:
    source = str(unit_faces / "img2.jpg")
    box = Box(595, 163, 362, 521)
    first = match_picture(source, box, 256, settings)
    assert first is not None and first.size == (256, 256)
    cached = list((settings.cache_dir / "crops").glob("*.png"))
    assert len(cached) == 1
    again = match_picture(source, box, 256, settings)
    assert again is not None
    assert np.array_equal(np.asarray(first), np.asarray(again))
    # What comes back is the cached file, not a new cut.
    Image.new("RGB", (256, 256), (255, 0, 0)).save(cached[0])
    red = match_picture(source, box, 256, settings)
    assert red is not None and red.getpixel((10, 10)) == (255, 0, 0)
    # Another box is another picture; a missing file is None (a placeholder).
    assert match_picture(source, Box(0, 0, 300, 300), 256, settings) is not None
    assert len(list((settings.cache_dir / "crops").glob("*.png"))) == 2
    assert match_picture(str(tmp_path / "gone.jpg"), box, 256, settings) is None


def test_the_composite_is_written_with_every_match(
    unit_faces: Path, settings: Settings, tmp_path: Path
) -> None:
    names = ["img2.jpg", "img4.jpg", "img5.jpg", "missing.jpg"]
    matches = [
        Match(rank, Face(rank, str(unit_faces / name), 0, None, None, None, None), 0.1 * rank)
        for rank, name in enumerate(names, 1)
    ]
    photo = load(unit_faces / "img1.jpg")
    query = EmbeddedFace(0, Box(444, 181, 569, 817), 1.0, np.zeros(4, dtype=np.float32))
    out = render(photo, QueryResult(query, matches), tmp_path / "out.png", settings)
    with Image.open(out) as img:
        assert img.width >= 4 * 256
    assert len(list((settings.cache_dir / "crops").glob("*.png"))) == 3


@pytest.mark.parametrize("k, rows", [(3, 1), (5, 1), (6, 2), (10, 2), (11, 3)])
def test_the_composite_wraps_at_five_matches_a_row(k: int, rows: int) -> None:
    from doppel.composer import CAPTION, MARGIN, PER_ROW, TILE, Tile, compose

    query = Tile(None, None, "query")
    picture = compose(query, [Tile(None, None, f"#{i + 1}") for i in range(k)])
    columns = min(k, PER_ROW)
    assert picture.width == columns * TILE + (columns + 1) * MARGIN
    big = min(2 * TILE, picture.width - 2 * MARGIN)
    assert picture.height == MARGIN + big + CAPTION + MARGIN + rows * (TILE + CAPTION + MARGIN)
    # The first tile of the last row is there (a placeholder, not the background).
    top = MARGIN + big + CAPTION + MARGIN + (rows - 1) * (TILE + CAPTION + MARGIN)
    assert picture.getpixel((MARGIN + TILE // 2, top + 4)) != picture.getpixel((2, 2))
